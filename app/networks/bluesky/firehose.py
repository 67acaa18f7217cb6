"""Following a hashtag on a repo firehose (``com.atproto.sync.subscribeRepos``; binary
DAG-CBOR frames decoded by :mod:`app.networks.atproto_firehose`): :class:`FirehoseFollower`,
and the cursor value of a firehose frame."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..atproto_firehose import FrameError, decode_frame
from ..base import Change
from .follower import LiveFollower, Malformed, Position, Reconnect, with_query
from .mapping import POST_COLLECTION

log = logging.getLogger(__name__)

# Relays and PDSes keep the firehose for a day or more (they say OutdatedCursor otherwise).
FIREHOSE_REPLAY_WINDOW = 24 * 3600.0

# A protocol error name ("FutureCursor") may be shown; free-text messages never are.
_ERROR_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def firehose_position(frame: str | bytes) -> int | None:
    """The cursor value (``seq``) of a firehose frame, None when it has none."""
    return decode_frame(frame, frozenset()).seq


class FirehoseFollower(LiveFollower):
    """Follows a hashtag on a repo firehose (``com.atproto.sync.subscribeRepos`` of a PDS or
    relay; binary DAG-CBOR frames, records in CAR blocks).

    ``url`` is the service (``https://pds.example``) or the full subscribeRepos URL. The
    cursor is the ``seq`` of the last event read. Error frames: ``FutureCursor`` (the server
    was reset) drops the cursor and starts live with a history search; ``ConsumerTooSlow``
    reconnects from the cursor. ``#info OutdatedCursor`` (events were lost) searches history.
    """

    transport = "firehose"
    replay_window = FIREHOSE_REPLAY_WINDOW
    max_frame = 2**23  # a commit carries its blocks: allow big ones

    _COLLECTIONS = frozenset({POST_COLLECTION})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not urlsplit(self.url).path.endswith("/com.atproto.sync.subscribeRepos"):
            self.url = self.url.rstrip("/") + "/xrpc/com.atproto.sync.subscribeRepos"

    def _connect_url(self, position: Position) -> str:
        if position.value is None:
            return self.url
        return with_query(self.url, [("cursor", str(position.value))])

    def _read(self, message: str | bytes, position: Position) -> tuple[list[Change], bool]:
        try:
            frame = decode_frame(message, self._COLLECTIONS)
        except FrameError as exc:
            raise Malformed(str(exc)) from exc
        if frame.kind == "error":
            # The error name only: the message is the relay's free text (docs/security.md).
            detail = str(frame.error) if _ERROR_NAME_RE.match(str(frame.error)) else "unnamed"
            if frame.error == "FutureCursor":
                raise Reconnect(f"server refused our cursor ({detail})", drop_cursor=True)
            raise Reconnect(f"server error frame ({detail})")
        if frame.seq is not None and position.value is not None and frame.seq <= position.value:
            return [], False
        changes: list[Change] = []
        wants_history = False
        if frame.kind == "#commit" and frame.did:
            for op in frame.ops:
                try:
                    change = self._on_record(frame.did, op.rkey, op.action, op.cid, op.record)
                except Malformed as exc:
                    log.warning("skipped a firehose op: %s", exc)
                    continue
                if change:
                    changes.append(change)
        elif frame.kind in ("#identity", "#handle", "#account") and frame.did:
            self.resolver.forget(frame.did)
        elif frame.kind == "#info" and frame.body.get("name") == "OutdatedCursor":
            wants_history = True
        if frame.seq is not None:
            position.value = frame.seq
            position.event_at = time.monotonic()
            position.event_time = datetime.now(UTC)
        return changes, wants_history
