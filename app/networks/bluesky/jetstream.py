"""Following a hashtag on Jetstream, Bluesky's JSON stream of network events
(:class:`JetstreamFollower`), and the cursor value of a Jetstream frame."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ..base import Change
from .follower import JETSTREAM_REPLAY_WINDOW, LiveFollower, Malformed, Position, with_query
from .mapping import POST_COLLECTION


def jetstream_position(frame: str | bytes) -> int | None:
    """The cursor value (``time_us``) of a Jetstream frame, None when it has none."""
    event = json.loads(frame)
    time_us = event.get("time_us") if isinstance(event, dict) else None
    return time_us if type(time_us) is int and time_us >= 0 else None


class JetstreamFollower(LiveFollower):
    """Follows a hashtag on Jetstream (JSON over websocket).

    ``url`` is the ``/subscribe`` endpoint. Connects with
    ``wantedCollections=app.bsky.feed.post`` and, when resuming, ``cursor=<time_us>``;
    events at or before the cursor are not yielded again. ``rewind`` (seconds) asks for a
    little more than that and lets redeliveries through (for switching between Jetstream
    instances, whose clocks differ slightly; the room dedupes by remote id).
    """

    transport = "jetstream"
    replay_window = JETSTREAM_REPLAY_WINDOW
    max_frame = 2**21

    def __init__(self, *args: Any, rewind: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rewind_us = int(rewind * 1_000_000)

    def _connect_url(self, position: Position) -> str:
        params = [("wantedCollections", POST_COLLECTION)]
        if position.value is not None:
            params.append(("cursor", str(max(0, position.value - self.rewind_us))))
        return with_query(self.url, params)

    def _cursor_too_old(self, value: int) -> bool:
        return time.time() - value / 1_000_000 > self.replay_window

    def _history_since(self, position: Position) -> datetime | None:
        if position.event_time is not None:
            return position.event_time
        if position.value is not None:
            return datetime.fromtimestamp(position.value / 1_000_000, UTC)
        return None

    def _read(self, message: str | bytes, position: Position) -> tuple[list[Change], bool]:
        try:
            event = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Malformed(f"not JSON: {exc}") from exc
        if not isinstance(event, dict):
            raise Malformed("an event must be a JSON object")
        time_us = event.get("time_us")
        did = event.get("did")
        if type(time_us) is not int or time_us < 0:
            raise Malformed("an event without a usable time_us")
        if not isinstance(did, str) or not did.startswith("did:"):
            raise Malformed("an event without a DID")
        if position.value is not None and time_us <= position.value and not self.rewind_us:
            return [], False  # replayed from before the cursor: already handled
        change = None
        kind = event.get("kind")
        if kind == "commit":
            change = self._commit(did, event.get("commit"))
        elif kind == "identity":
            self.resolver.forget(did)
        if position.value is None or time_us > position.value:
            position.value = time_us
        position.event_at = time.monotonic()
        position.event_time = datetime.fromtimestamp(time_us / 1_000_000, UTC)
        return ([change] if change else []), False

    def _commit(self, did: str, commit: Any) -> Change | None:
        if not isinstance(commit, dict):
            raise Malformed("commit event without a commit")
        if commit.get("collection") != POST_COLLECTION:
            return None
        rkey, operation = commit.get("rkey"), commit.get("operation")
        if not isinstance(rkey, str) or not rkey or "/" in rkey:
            raise Malformed("commit without a record key")
        if operation not in ("create", "update", "delete"):
            raise Malformed(f"unknown commit operation {operation!r}")
        cid = commit.get("cid") if isinstance(commit.get("cid"), str) else None
        return self._on_record(did, rkey, operation, cid, commit.get("record"))
