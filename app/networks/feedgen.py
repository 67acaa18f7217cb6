"""Bluesky feed generators, the protocol: the service's ``did:web`` and DID document, feed
URIs, skeleton cursors and the ``app.bsky.feed.generator`` record.

A feed generator is a web service with a DID. The AppView asks it for
``app.bsky.feed.getFeedSkeleton?feed=at://<publisher>/app.bsky.feed.generator/<rkey>``
and gets post URIs back, which it hydrates for the viewer; the record in the publisher's
repo names the service's DID, and the DID document names the service's address
(docs.bsky.app, "Custom feeds"). No database or web framework here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import grapheme

GENERATOR_COLLECTION = "app.bsky.feed.generator"
SERVICE_ID = "#bsky_fg"
SERVICE_TYPE = "BskyFeedGenerator"
# Lexicon app.bsky.feed.getFeedSkeleton: limit 1..100, default 50.
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# Lexicon app.bsky.feed.generator: displayName ≤ 24 graphemes (240 bytes), description
# ≤ 300 graphemes (3000 bytes).
MAX_DISPLAY_NAME = 24
MAX_DESCRIPTION = 300
# Record keys: 1–512 characters of [A-Za-z0-9._:~-], not "." or "..". Bluesky's app lists
# feed record keys of at most 15 characters, so ours are kept that short.
MAX_RKEY = 15
_RKEY_RE = re.compile(r"^[A-Za-z0-9._:~-]{1,512}$")
_DID_RE = re.compile(r"^did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}$")
MAX_CURSOR = 100


class FeedError(ValueError):
    """A request the feed generator refuses; ``error`` is the XRPC error name."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def did_web(public_url: str) -> str:
    """The ``did:web`` of the service at ``public_url`` (a port is percent-encoded, as the
    did:web method requires). Raises ValueError without a public https URL."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("set HASHROOM_PUBLIC_URL to the server's https:// address")
    if parts.path.strip("/"):
        raise ValueError("did:web needs HASHROOM_PUBLIC_URL without a path")
    return "did:web:" + quote(parts.netloc.lower(), safe=".-")


def did_document(public_url: str) -> dict[str, Any]:
    """The DID document served at ``/.well-known/did.json``."""
    did = did_web(public_url)
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "service": [
            {
                "id": SERVICE_ID,
                "type": SERVICE_TYPE,
                "serviceEndpoint": public_url.rstrip("/"),
            }
        ],
    }


def feed_uri(publisher_did: str, rkey: str) -> str:
    return f"at://{publisher_did}/{GENERATOR_COLLECTION}/{rkey}"


def parse_feed_uri(uri: str) -> tuple[str, str]:
    """(publisher DID, record key) of a feed URI; raises :class:`FeedError`."""
    if not isinstance(uri, str) or not uri.startswith("at://") or len(uri) > 600:
        raise FeedError("InvalidRequest", "feed: expected at://<did>/app.bsky.feed.generator/<key>")
    parts = uri[5:].split("/")
    if (
        len(parts) != 3
        or parts[1] != GENERATOR_COLLECTION
        or not _DID_RE.match(parts[0])
        or not _RKEY_RE.match(parts[2])
        or parts[2] in (".", "..")
    ):
        raise FeedError("InvalidRequest", "feed: expected at://<did>/app.bsky.feed.generator/<key>")
    return parts[0], parts[2]


def record_key(slug: str) -> str:
    """The record key of a chat's feed: its slug, cut to :data:`MAX_RKEY` characters."""
    key = re.sub(r"[^A-Za-z0-9._~-]", "-", slug)[:MAX_RKEY].strip(".") or "chat"
    return key


def check_limit(raw: Any) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise FeedError("InvalidRequest", "limit: give a whole number from 1 to 100") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise FeedError("InvalidRequest", "limit: give a whole number from 1 to 100")
    return limit


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of the skeleton ended: the last post's time (µs since the epoch) and id."""

    created_us: int
    post_id: int

    def encode(self) -> str:
        return f"{self.created_us}::{self.post_id}"

    @classmethod
    def decode(cls, raw: str | None) -> Cursor | None:
        if raw is None or raw == "":
            return None
        if len(raw) > MAX_CURSOR:
            raise FeedError("InvalidRequest", "cursor: not one this feed gave out")
        ms, sep, pid = raw.partition("::")
        if not sep or not ms.isdigit() or not pid.isdigit():
            raise FeedError("InvalidRequest", "cursor: not one this feed gave out")
        return cls(int(ms), int(pid))


def _clip(text: str, graphemes: int, max_bytes: int) -> str:
    text = " ".join(text.split())
    if grapheme.length(text) > graphemes:
        text = grapheme.slice(text, 0, graphemes - 1) + "…"
    while len(text.encode()) > max_bytes:
        text = grapheme.slice(text, 0, grapheme.length(text) - 2) + "…"
    return text


def generator_record(
    service_did: str, display_name: str, description: str, now: datetime | None = None
) -> dict[str, Any]:
    """An ``app.bsky.feed.generator`` record within the lexicon's limits."""
    return {
        "$type": GENERATOR_COLLECTION,
        "did": service_did,
        "displayName": _clip(display_name, MAX_DISPLAY_NAME, 240) or "Hashroom chat",
        "description": _clip(description, MAX_DESCRIPTION, 3000),
        "createdAt": (now or datetime.now(UTC))
        .astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    }
