"""Posting to Bluesky: the length and byte limits of a post, the ``reply`` reference to
answer a post in its thread, and :func:`publish`, which creates the record (facets with UTF-8
byte offsets) as a signed-in account."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from app.text import count_graphemes

from ..atproto_identity import BSKY_PROFILE_URL
from ..atproto_richtext import ResolveHandle, build_facets
from ..atproto_session import AccountClient
from ..base import Author, LengthRule, NetworkError, RemotePost, RemoteRejected
from .mapping import POST_COLLECTION, parse_post_uri, record_to_post, rfc3339, strong_ref

log = logging.getLogger(__name__)

MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_LANGS = 3


def length(text: str) -> int:
    """Length of a post as Bluesky counts it: grapheme clusters."""
    return count_graphemes(text)


LENGTH_RULE = LengthRule(limit=MAX_GRAPHEMES, count=length)


def check_post_text(text: str) -> None:
    """Raise :class:`RemoteRejected` naming the rule when ``text`` cannot be a Bluesky post:
    empty, over 300 graphemes or over 3000 UTF-8 bytes."""
    if not isinstance(text, str) or not text.strip():
        raise RemoteRejected("a Bluesky post needs some text")
    if length(text) > MAX_GRAPHEMES:
        raise RemoteRejected(
            f"Bluesky posts are limited to {MAX_GRAPHEMES} characters; this one has {length(text)}"
        )
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise RemoteRejected(f"Bluesky posts are limited to {MAX_BYTES} bytes of text")


def reply_ref(post: RemotePost) -> dict[str, dict[str, str]]:
    """The ``reply`` of a post answering ``post``: parent = ``post``, root = its thread's root
    (``post`` itself when it starts the thread). Raises ValueError without the post's cid."""
    cid = post.extra.get("cid")
    if not isinstance(cid, str) or not cid:
        raise ValueError("cannot reply to a Bluesky post without knowing its cid")
    parent = {"uri": post.remote_id, "cid": cid}
    reply = post.extra.get("reply")
    root = strong_ref(reply.get("root")) if isinstance(reply, dict) else None
    return {"root": root or parent, "parent": parent}


def _checked_reply(reply_to: Any) -> dict[str, dict[str, str]]:
    if not isinstance(reply_to, dict):
        raise ValueError("reply_to must be {root: {uri, cid}, parent: {uri, cid}}")
    root, parent = strong_ref(reply_to.get("root")), strong_ref(reply_to.get("parent"))
    if root is None or parent is None:
        raise ValueError("reply_to needs root and parent, each with an at:// uri and a cid")
    return {"root": root, "parent": parent}


async def publish(
    client: AccountClient,
    text: str,
    reply_to: dict[str, Any] | None = None,
    langs: Iterable[str] | None = None,
    resolve_handle: ResolveHandle | None = None,
) -> RemotePost:
    """Post ``text`` as the client's account; returns the post as the network now holds it.

    Facets (tags, links, and mentions whose handle ``resolve_handle`` — default: the
    account's PDS — resolves) carry UTF-8 byte offsets. ``reply_to`` is
    ``{"root": {uri, cid}, "parent": {uri, cid}}`` (see :func:`reply_ref`); ``langs`` keeps
    the first three. Raises :class:`RemoteRejected` for text Bluesky would refuse (see
    :func:`check_post_text`) or a refusal by the PDS, ValueError for a malformed
    ``reply_to``, :class:`AuthError`/:class:`NetworkError` as :meth:`AccountClient.call`.
    """
    check_post_text(text)
    reply = _checked_reply(reply_to) if reply_to is not None else None

    async def via_pds(handle: str) -> str | None:
        try:
            return await client.resolve_handle(handle)
        except NetworkError as exc:  # a mention left plain beats a post not made
            log.info("mention @%s left unlinked: %s", handle, exc)
            return None

    record: dict[str, Any] = {
        "$type": POST_COLLECTION,
        "text": text,
        "createdAt": rfc3339(datetime.now(UTC)),
    }
    facets = await build_facets(text, resolve_handle or via_pds)
    if facets:
        record["facets"] = facets
    if reply:
        record["reply"] = reply
    chosen = [lang for lang in (langs or []) if isinstance(lang, str) and lang][:MAX_LANGS]
    if chosen:
        record["langs"] = chosen
    session = client.session
    result = await client.post(
        "com.atproto.repo.createRecord",
        {"repo": session.did, "collection": POST_COLLECTION, "record": record},
    )
    parsed = parse_post_uri(result.get("uri"))
    if parsed is None or not isinstance(result.get("cid"), str):
        raise NetworkError("createRecord answered without the new post's uri and cid")
    author = Author(
        name=session.handle,
        handle=f"@{session.handle}",
        profile_url=BSKY_PROFILE_URL.format(did=quote(session.did, safe=":")),
        remote_id=session.did,
    )
    return record_to_post(
        parsed[0], parsed[1], result["cid"], record, author=author, pds_url=client.service
    )
