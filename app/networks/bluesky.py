"""Bluesky (AT Protocol): follow a hashtag live, load its history, post as a signed-in account.

Reading
    Two live transports share one behaviour (:class:`JetstreamFollower`,
    :class:`FirehoseFollower`): they read every new ``app.bsky.feed.post`` on the network and
    keep those carrying the tag (:func:`matches_tag`: a ``#tag`` facet, the ``tags`` field, or
    ``#tag`` written in the text). Creates and updates become :class:`Upsert`, deletes of posts
    this follower has yielded (or was told about through ``known_ids``) become :class:`Delete`.
    The cursor is Jetstream's ``time_us`` or the firehose ``seq`` of the last event read,
    as a string. Drops are retried inside the follower with capped, jittered backoff; a
    malformed frame is logged and skipped.

History
    Neither stream can go back further than its replay window (about a day), and nothing
    can be replayed for a chat that just started. A follower given a signed-in
    :class:`AccountClient` loads recent posts with ``app.bsky.feed.searchPosts`` (through the
    account's PDS, which forwards to its AppView) when it starts without a cursor and after an
    outage longer than the replay window. Without an account it posts a notice instead, once.

Replies without the hashtag
    Answers to a host's question often leave the tag out, so no stream filter sees them. The
    follower remembers the questions it delivered (a post opening with a question marker,
    :func:`app.qa.question_number`) for ``context_window`` seconds, at most
    :data:`CONTEXT_QUESTIONS`, and every ``context_interval`` seconds fetches up to
    :data:`CONTEXT_REQUESTS_PER_CYCLE` of their threads with ``app.bsky.feed.getPostThread``
    (:func:`get_post_thread`): through the signed-in account's PDS with an ``atproto-proxy``
    header naming the AppView when the source has an account, else from a public AppView.
    Untagged replies found there (:func:`read_thread`) are yielded once, flagged
    ``extra["thread_context"] = True``, in a batch whose cursor is None (they are not part of
    the stream's position). The fetch runs beside the stream, never in its way; failures are
    logged and the next cycle tries again.

Authors never hold up a post
    A post is yielded at once with the author the resolver has cached, or with the DID as a
    stand-in. The follower then looks the author up in the background
    (:class:`IdentityResolver`) and, when the profile arrives, yields the waiting posts again
    as :class:`Upsert` with the full author (display name, handle, avatar) in a later batch.

Writing
    :func:`publish` creates a post (facets with UTF-8 byte offsets, reply root and parent) as
    the account of an :class:`AccountClient`, which keeps and renews its session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from app.networks.atproto_firehose import FrameError, decode_frame
from app.networks.atproto_identity import (
    BSKY_PROFILE_URL,
    Identity,
    IdentityResolver,
    blob_cid,
    blob_url,
    fallback_author,
)
from app.networks.atproto_richtext import (
    FACET_LINK,
    FACET_MENTION,
    FACET_TAG,
    ResolveHandle,
    build_facets,
    facets_for,
    render_post_html,
)
from app.networks.atproto_session import (
    DEFAULT_SERVICE,
    AccountClient,
    BlueskySession,
    create_session,
    json_object,
    raise_for_xrpc,
    refresh_session,
    resolve_handle,
    resolve_pds,
    sign_in,
    xrpc,
)
from app.networks.base import (
    Author,
    Batch,
    Change,
    Delete,
    FollowContext,
    LengthRule,
    Media,
    NetworkError,
    RemotePost,
    RemoteRejected,
    Upsert,
)
from app.outbound import describe_failure
from app.qa import question_number
from app.text import contains_any_hashtag, count_graphemes, tag_key

__all__ = [
    "DEFAULT_APPVIEW_PROXY",
    "DEFAULT_SERVICE",
    "FACET_LINK",
    "FACET_MENTION",
    "FACET_TAG",
    "LENGTH_RULE",
    "MAX_BYTES",
    "MAX_GRAPHEMES",
    "NETWORK",
    "NO_HISTORY_NOTICE",
    "POST_COLLECTION",
    "AccountClient",
    "BlueskySession",
    "FirehoseFollower",
    "Identity",
    "IdentityResolver",
    "JetstreamFollower",
    "SearchPage",
    "build_facets",
    "check_post_text",
    "create_session",
    "facets_for",
    "get_post_thread",
    "length",
    "matches_tag",
    "parse_post_uri",
    "post_url",
    "post_view_to_post",
    "publish",
    "read_thread",
    "record_to_post",
    "refresh_session",
    "render_post_html",
    "reply_ref",
    "resolve_handle",
    "resolve_pds",
    "search_posts",
    "sign_in",
]

log = logging.getLogger(__name__)

NETWORK = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"
MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_LANGS = 3
NO_HISTORY_NOTICE = (
    "History before the live stream is not available: sign in with a Bluesky account to load "
    "earlier posts."
)

CDN_FULLSIZE_URL = "https://cdn.bsky.app/img/feed_fullsize/plain/{did}/{cid}@jpeg"
CDN_THUMB_URL = "https://cdn.bsky.app/img/feed_thumbnail/plain/{did}/{cid}@jpeg"
VIDEO_PLAYLIST_URL = "https://video.bsky.app/watch/{did}/{cid}/playlist.m3u8"
# A protocol error name ("FutureCursor") may be shown; free-text messages never are.
_ERROR_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
VIDEO_THUMB_URL = "https://video.bsky.app/watch/{did}/{cid}/thumbnail.jpg"
POST_URL = "https://bsky.app/profile/{actor}/post/{rkey}"

# A createdAt later than this is a wrong clock or a trick to stay on top of the column.
_FUTURE_TOLERANCE = timedelta(minutes=5)
# Jetstream keeps about 36 hours; start history search well inside that.
JETSTREAM_REPLAY_WINDOW = 24 * 3600.0
# Relays and PDSes keep the firehose for a day or more (they say OutdatedCursor otherwise).
FIREHOSE_REPLAY_WINDOW = 24 * 3600.0
# A restart re-reads what came after the last committed cursor; committing it every few
# seconds even when nothing matched keeps that re-read short on a busy network.
CURSOR_INTERVAL = 10.0
# Remembered (uri → cid) of posts yielded, to turn deletes into Delete and drop redeliveries.
SEEN_LIMIT = 50_000
# Posts waiting for their author's profile, and concurrent profile lookups.
WAITING_LIMIT = 2_000
LOOKUP_CONCURRENCY = 8
# Thread context (see the module docstring). A chat asks one question every few minutes, so
# the last 20 cover any session; 3 thread fetches a cycle (one a minute by default) are a
# sliver of the public AppView's 3,000 requests per 5 minutes per address.
CONTEXT_QUESTIONS = 20
CONTEXT_REQUESTS_PER_CYCLE = 3
# How far below the question replies are read (getPostThread's own default) and how many
# posts one answer may add: a viral thread must not flood the room or the event loop.
THREAD_DEPTH = 6
THREAD_POSTS_LIMIT = 200
# The question check reads only the opening of a post (a marker opens it), so a hostile
# record with megabytes of text costs what a normal post does.
QUESTION_PEEK = 2000
# Bluesky's own AppView, as a PDS names it in the atproto-proxy header.
DEFAULT_APPVIEW_PROXY = "did:web:api.bsky.app#bsky_appview"
THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
GET_POST_THREAD = "app.bsky.feed.getPostThread"


# --- posts --------------------------------------------------------------------------------


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


def matches_tag(record: Any, tag: str | Iterable[str]) -> bool:
    """True when a post record carries ``tag`` — or any of several (case-insensitive, '#'
    optional): a ``#tag`` facet, an entry of its ``tags`` field, or ``#tag`` written as a
    whole tag in its text (``#tagger`` does not carry ``tag``)."""
    if not isinstance(record, dict):
        return False
    keys = {tag_key(t) for t in ([tag] if isinstance(tag, str) else tag)} - {""}
    if not keys:
        return False
    facets = record.get("facets")
    for facet in facets if isinstance(facets, list) else []:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else []:
            if (
                isinstance(feature, dict)
                and feature.get("$type") == FACET_TAG
                and isinstance(feature.get("tag"), str)
                and tag_key(feature["tag"]) in keys
            ):
                return True
    tags = record.get("tags")
    for extra in tags if isinstance(tags, list) else []:
        if isinstance(extra, str) and tag_key(extra) in keys:
            return True
    text = record.get("text")
    return isinstance(text, str) and contains_any_hashtag(text, keys)


def post_uri(did: str, rkey: str) -> str:
    """The ``at://`` uri of post ``rkey`` in ``did``'s repo (the post's remote id)."""
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def parse_post_uri(uri: Any) -> tuple[str, str] | None:
    """(did, rkey) of an ``at://did/app.bsky.feed.post/rkey`` uri, else None."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    if len(parts) != 3 or parts[1] != POST_COLLECTION or not parts[0].startswith("did:"):
        return None
    if not parts[2]:
        return None
    return parts[0], parts[2]


def post_url(did: str, rkey: str) -> str:
    """The post's page on bsky.app (by DID: handles change, DIDs do not)."""
    return POST_URL.format(actor=quote(did, safe=":"), rkey=quote(rkey, safe=""))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _created_at(record: dict[str, Any], fallback: datetime | None = None) -> datetime:
    now = datetime.now(UTC)
    created = _parse_time(record.get("createdAt")) or fallback or now
    return now if created > now + _FUTURE_TOLERANCE else created


def _strong_ref(value: Any) -> dict[str, str] | None:
    if isinstance(value, dict) and isinstance(value.get("uri"), str):
        if value["uri"].startswith("at://") and isinstance(value.get("cid"), str):
            return {"uri": value["uri"], "cid": value["cid"]}
    return None


def _media(did: str, embed: Any, pds_url: str | None) -> list[Media]:
    if not isinstance(embed, dict):
        return []
    kind = embed.get("$type")
    if kind == "app.bsky.embed.recordWithMedia":
        return _media(did, embed.get("media"), pds_url)
    found = []
    if kind == "app.bsky.embed.images":
        images = embed.get("images")
        for image in images[:4] if isinstance(images, list) else []:
            if not isinstance(image, dict):
                continue
            cid = blob_cid(image.get("image"))
            if not cid:
                continue
            alt = image.get("alt") if isinstance(image.get("alt"), str) else None
            found.append(
                Media(
                    url=blob_url(did, cid, pds_url, CDN_FULLSIZE_URL),
                    preview_url=blob_url(did, cid, pds_url, CDN_THUMB_URL),
                    alt=alt or None,
                    kind="image",
                )
            )
    elif kind == "app.bsky.embed.video":
        cid = blob_cid(embed.get("video"))
        if cid:
            alt = embed.get("alt") if isinstance(embed.get("alt"), str) else None
            found.append(
                Media(
                    url=blob_url(did, cid, pds_url, VIDEO_PLAYLIST_URL),
                    preview_url=None if pds_url else blob_url(did, cid, None, VIDEO_THUMB_URL),
                    alt=alt or None,
                    kind="video",
                )
            )
    return found


def _quote(embed: Any) -> dict[str, Any] | None:
    if not isinstance(embed, dict):
        return None
    ref = None
    if embed.get("$type") == "app.bsky.embed.record":
        ref = _strong_ref(embed.get("record"))
    elif embed.get("$type") == "app.bsky.embed.recordWithMedia":
        inner = embed.get("record")
        ref = _strong_ref(inner.get("record")) if isinstance(inner, dict) else None
    if ref is None:
        return None
    parsed = parse_post_uri(ref["uri"])
    return {
        "uri": ref["uri"],
        "url": post_url(*parsed) if parsed else None,
        "author": None,
        "text": None,
    }


def record_to_post(
    did: str,
    rkey: str,
    cid: str | None,
    record: dict[str, Any],
    *,
    author: Author | None = None,
    handle: str | None = None,
    pds_url: str | None = None,
    indexed_at: datetime | None = None,
) -> RemotePost:
    """A post record as a :class:`RemotePost`.

    ``remote_id`` is the ``at://`` uri; ``html`` the text with its facets applied
    (:func:`render_post_html`, everything escaped); ``created_at`` the record's ``createdAt``
    (``indexed_at`` or now when missing or unreadable, now when in the future);
    ``in_reply_to``/``thread_root`` the reply's parent and root uris; media blobs link to
    ``getBlob`` on ``pds_url`` when given, else to the Bluesky CDN. ``extra`` keeps ``cid``,
    ``did``, ``rkey``, ``reply`` (root and parent uri + cid, to reply in the same thread) and
    ``tags``. Without ``author`` the DID (or ``handle``) stands in. Raises ValueError when
    ``record`` is not an object.
    """
    if not isinstance(record, dict):
        raise ValueError("a post record must be a JSON object")
    text = record.get("text") if isinstance(record.get("text"), str) else ""
    reply = record.get("reply") if isinstance(record.get("reply"), dict) else {}
    root, parent = _strong_ref(reply.get("root")), _strong_ref(reply.get("parent"))
    langs = record.get("langs")
    language = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    extra: dict[str, Any] = {"cid": cid, "did": did, "rkey": rkey}
    if root and parent:
        extra["reply"] = {"root": root, "parent": parent}
    tags = record.get("tags")
    if isinstance(tags, list):
        extra["tags"] = [t for t in tags if isinstance(t, str)][:8]
    return RemotePost(
        network=NETWORK,
        remote_id=post_uri(did, rkey),
        author=author or fallback_author(did, handle),
        created_at=_created_at(record, indexed_at),
        text=text,
        html=render_post_html(text, record.get("facets")),
        url=post_url(did, rkey),
        in_reply_to=parent["uri"] if parent else None,
        thread_root=root["uri"] if root else None,
        media=_media(did, record.get("embed"), pds_url),
        language=language[:16] if language else None,
        quote=_quote(record.get("embed")),
        extra=extra,
    )


def _author_from_view(view: Any, did: str) -> Author:
    if not isinstance(view, dict) or view.get("did") != did:
        return fallback_author(did)
    handle = view.get("handle") if isinstance(view.get("handle"), str) else None
    if handle == "handle.invalid":
        handle = None
    name = view.get("displayName") if isinstance(view.get("displayName"), str) else ""
    avatar = view.get("avatar")
    return Author(
        name=name.strip() or handle or did,
        handle=f"@{handle}" if handle else did,
        avatar_url=avatar if isinstance(avatar, str) and avatar.startswith("https://") else None,
        profile_url=BSKY_PROFILE_URL.format(did=quote(did, safe=":")),
        remote_id=did,
    )


def _view_media(embed: Any) -> list[Media]:
    """Media of an embed *view* (AppView answers carry ready CDN URLs)."""
    if not isinstance(embed, dict):
        return []
    if embed.get("$type") == "app.bsky.embed.recordWithMedia#view":
        return _view_media(embed.get("media"))
    if embed.get("$type") != "app.bsky.embed.images#view":
        return []
    found = []
    images = embed.get("images")
    for image in images[:4] if isinstance(images, list) else []:
        if isinstance(image, dict) and isinstance(image.get("fullsize"), str):
            thumb = image.get("thumb") if isinstance(image.get("thumb"), str) else None
            alt = image.get("alt") if isinstance(image.get("alt"), str) else None
            found.append(Media(url=image["fullsize"], preview_url=thumb, alt=alt or None))
    return found


def post_view_to_post(view: Any, *, pds_url: str | None = None) -> RemotePost | None:
    """An AppView ``postView`` (``{uri, cid, author, record, embed, indexedAt}``) as a
    :class:`RemotePost` with the full author; None when it is not a usable post view."""
    if not isinstance(view, dict):
        return None
    parsed = parse_post_uri(view.get("uri"))
    record = view.get("record")
    if parsed is None or not isinstance(record, dict):
        return None
    did, rkey = parsed
    cid = view.get("cid") if isinstance(view.get("cid"), str) else None
    post = record_to_post(
        did,
        rkey,
        cid,
        record,
        author=_author_from_view(view.get("author"), did),
        pds_url=pds_url,
        indexed_at=_parse_time(view.get("indexedAt")),
    )
    media = _view_media(view.get("embed"))
    if media:
        post.media = media
    return post


def reply_ref(post: RemotePost) -> dict[str, dict[str, str]]:
    """The ``reply`` of a post answering ``post``: parent = ``post``, root = its thread's root
    (``post`` itself when it starts the thread). Raises ValueError without the post's cid."""
    cid = post.extra.get("cid")
    if not isinstance(cid, str) or not cid:
        raise ValueError("cannot reply to a Bluesky post without knowing its cid")
    parent = {"uri": post.remote_id, "cid": cid}
    reply = post.extra.get("reply")
    root = _strong_ref(reply.get("root")) if isinstance(reply, dict) else None
    return {"root": root or parent, "parent": parent}


# --- search -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results (newest first) and the cursor for the next, if any."""

    posts: list[RemotePost]
    cursor: str | None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def search_posts(
    client: AccountClient,
    tag: str,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 25,
    *,
    service: str | None = None,
) -> SearchPage:
    """Recent posts carrying ``#tag``, newest first (``app.bsky.feed.searchPosts``,
    ``sort=latest``), as the signed-in account.

    The call goes to the account's PDS (which forwards it to its AppView), or to ``service``.
    ``since`` keeps posts indexed at or after that moment; ``limit`` is clamped to 1–100.
    Results that do not really carry the tag are dropped. Raises like
    :meth:`AccountClient.call`.
    """
    bare = tag.strip().lstrip("#")
    params: dict[str, Any] = {
        "q": f"#{bare}",
        "tag": bare,
        "sort": "latest",
        "limit": max(1, min(100, int(limit))),
    }
    if since is not None:
        params["since"] = _rfc3339(since)
    if cursor:
        params["cursor"] = cursor
    data = await client.get("app.bsky.feed.searchPosts", params, service=service)
    views = data.get("posts")
    posts = []
    for view in views if isinstance(views, list) else []:
        post = post_view_to_post(view)
        if post is not None and matches_tag(view.get("record"), bare):
            posts.append(post)
    next_cursor = data.get("cursor")
    return SearchPage(posts=posts, cursor=next_cursor if isinstance(next_cursor, str) else None)


# --- threads ------------------------------------------------------------------------------


async def get_post_thread(
    http: httpx.AsyncClient,
    uri: str,
    *,
    account: AccountClient | None = None,
    service: str | None = None,
    proxy: str | None = None,
    depth: int = THREAD_DEPTH,
) -> dict[str, Any]:
    """The ``app.bsky.feed.getPostThread`` answer for post ``uri``: its replies down to
    ``depth`` levels, no parents (``parentHeight=0``).

    With ``account`` the call is made as that account, on ``service`` when given, else on its
    PDS, which forwards it to the AppView that ``proxy`` (an ``atproto-proxy`` value such as
    :data:`DEFAULT_APPVIEW_PROXY`) names. Without an account it goes, unauthenticated, to
    ``service`` (an AppView). Raises ValueError when there is nowhere to send it, else like
    :meth:`AccountClient.call`: a 400 (e.g. ``NotFound`` for a deleted post) is
    :class:`RemoteRejected`, invalid JSON a :class:`NetworkError`.
    """
    params: dict[str, Any] = {"uri": uri, "depth": max(0, min(1000, depth)), "parentHeight": 0}
    if account is not None:
        headers = {"atproto-proxy": proxy} if proxy else None
        return await account.get(GET_POST_THREAD, params, service=service, headers=headers)
    if not service:
        raise ValueError("getPostThread needs a signed-in account or an AppView address")
    response = await xrpc(http, "GET", service, GET_POST_THREAD, params=params)
    raise_for_xrpc(response, GET_POST_THREAD)
    return json_object(response, GET_POST_THREAD)


def _thread_view(node: Any) -> dict[str, Any] | None:
    """``node`` when it is a ``threadViewPost`` with a post view, else None (``notFoundPost``,
    ``blockedPost``, members the lexicon may add later and anything malformed)."""
    if isinstance(node, dict) and node.get("$type") == THREAD_VIEW:
        if isinstance(node.get("post"), dict):
            return node
    return None


def read_thread(
    answer: Any,
    uri: str,
    *,
    skip_tag: str | Sequence[str] | None = None,
    depth: int = THREAD_DEPTH,
    limit: int = THREAD_POSTS_LIMIT,
) -> list[RemotePost] | None:
    """The replies under post ``uri`` in a :func:`get_post_thread` answer, parents before
    their replies; None when the thread's own post is gone (``notFoundPost``, ``blockedPost``).

    Guarantees, whatever the answer holds: every post returned answers the post it hangs
    under (its record's ``reply.parent`` is that post's uri, so nothing is threaded under a
    post it does not answer), each uri once, none deeper than ``depth`` levels, at most
    ``limit`` posts; replies carrying ``skip_tag`` are left out (the stream delivers those)
    but their own replies are still read. Wrong types are ignored; it never raises.
    """
    thread = answer.get("thread") if isinstance(answer, dict) else None
    root = _thread_view(thread)
    if root is None:
        return None if isinstance(thread, dict) and "$type" in thread else []
    if root["post"].get("uri") != uri:
        return []
    found: list[RemotePost] = []
    seen = {uri}
    level: list[tuple[dict[str, Any], str]] = [(root, uri)]
    for _ in range(max(0, depth)):
        below: list[tuple[dict[str, Any], str]] = []
        for node, node_uri in level:
            replies = node.get("replies")
            for child in replies if isinstance(replies, list) else []:
                view = _thread_view(child)
                post = post_view_to_post(view["post"]) if view else None
                if view is None or post is None or post.remote_id in seen:
                    continue
                if post.in_reply_to != node_uri:
                    continue  # not an answer to this post: the AppView misplaced it
                seen.add(post.remote_id)
                if len(seen) > 4 * limit:
                    return found  # mostly tagged or hidden replies: enough work for one answer
                below.append((view, post.remote_id))
                if skip_tag and matches_tag(view["post"].get("record"), skip_tag):
                    continue
                found.append(post)
                if len(found) >= limit:
                    return found
        level = below
        if not level:
            break
    return found


# --- publishing ---------------------------------------------------------------------------


def _checked_reply(reply_to: Any) -> dict[str, dict[str, str]]:
    if not isinstance(reply_to, dict):
        raise ValueError("reply_to must be {root: {uri, cid}, parent: {uri, cid}}")
    root, parent = _strong_ref(reply_to.get("root")), _strong_ref(reply_to.get("parent"))
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
        "createdAt": _rfc3339(datetime.now(UTC)),
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


# --- following ----------------------------------------------------------------------------


class _Malformed(Exception):
    """A frame that cannot be understood; it is logged and skipped."""


class _Reconnect(Exception):
    """The server asked us to go away (an error frame); reconnect, maybe from elsewhere."""

    def __init__(self, reason: str, *, drop_cursor: bool = False):
        super().__init__(reason)
        self.drop_cursor = drop_cursor


@dataclass(slots=True)
class _Position:
    """Where the stream is: the last event read, and what the ingester last got as cursor."""

    value: int | None
    committed: int | None
    event_at: float  # monotonic time of the last event read (for outage length)
    event_time: datetime | None  # the network's time of that event, when known
    yielded_at: float


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a websocket or http(s) URL: {url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    names = {name for name, _ in params}
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in names] + params
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential delay capped at ``cap``, jittered over its upper half."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class _LiveFollower:
    """What both live transports share: matching, authors, history, cursor and reconnects."""

    transport = "stream"
    replay_window = JETSTREAM_REPLAY_WINDOW
    max_frame = 2**21

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        tag: str | Sequence[str],
        resolver: IdentityResolver,
        *,
        account: AccountClient | None = None,
        search_service: str | None = None,
        backfill_limit: int = 100,
        known_ids: Iterable[str] = (),
        replay_window: float | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        cursor_interval: float = CURSOR_INTERVAL,
        open_timeout: float = 10.0,
        appview_url: str | None = None,
        appview_proxy: str | None = DEFAULT_APPVIEW_PROXY,
        context_interval: float = 60.0,
        context_window: float = 2 * 3600.0,
        connect: Callable[..., Any],
    ):
        """Follow ``tag`` (with or without '#'), or every one of a list of tags (a post
        carrying any of them), on the stream at ``url``.

        ``resolver`` names authors (looked up in the background, see the module docstring).
        ``account`` (a signed-in :class:`AccountClient`) enables history search, at most
        ``backfill_limit`` posts, sent to ``search_service`` when given (else the account's
        PDS). ``known_ids`` are remote ids of posts already in the room, so their deletes
        are reported after a restart. ``replay_window`` (s) is how far back the stream can
        replay; a longer outage searches history. Reconnects wait ``backoff_base`` doubling
        up to ``backoff_cap`` seconds, jittered. With nothing matching, the cursor still
        moves forward every ``cursor_interval`` seconds (a batch with no changes). ``connect``
        opens the websocket (the signature of websockets' ``connect``).

        Thread context (module docstring) asks ``account``'s PDS (or ``search_service``),
        with ``appview_proxy`` as its ``atproto-proxy`` header, or without an account the
        public AppView at ``appview_url``; with neither it is off. Questions are watched for
        ``context_window`` seconds, their threads fetched every ``context_interval`` seconds.
        """
        if context_interval <= 0:
            raise ValueError("context_interval must be positive")
        self.http = http
        self.connect = connect  # websockets' connect signature; the app passes a guarded one
        self.url = _ws_url(url)
        self.tags = [t.strip().lstrip("#") for t in ([tag] if isinstance(tag, str) else tag)]
        if not self.tags or not all(tag_key(t) for t in self.tags):
            raise ValueError("a Bluesky follower needs a hashtag")
        self.tag = self.tags[0]  # for logs
        self.resolver = resolver
        self.account = account
        self.search_service = search_service
        self.backfill_limit = max(0, backfill_limit)
        if replay_window is not None:
            self.replay_window = replay_window
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.cursor_interval = cursor_interval
        self.open_timeout = open_timeout
        self._seen: OrderedDict[str, str | None] = OrderedDict((uri, None) for uri in known_ids)
        self._trim_seen()
        self._noticed = False
        self._waiting: dict[str, list[RemotePost]] = {}
        self._waiting_count = 0
        self._lookups: dict[str, asyncio.Task[Author]] = {}
        self._resolved: list[tuple[str, Author]] = []
        self._lookup_slots = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        self.appview_url = appview_url.rstrip("/") if appview_url else None
        self.appview_proxy = appview_proxy or None
        self.context_interval = context_interval
        self.context_window = context_window
        self._questions: OrderedDict[str, float] = OrderedDict()  # uri → first seen (monotonic)
        self._threaded: OrderedDict[str, None] = OrderedDict()  # uris found in threads
        self._context_due = 0.0
        self._context_task: asyncio.Task[list[RemotePost]] | None = None

    # --- to implement per transport --------------------------------------------------------

    def _connect_url(self, position: _Position) -> str:
        raise NotImplementedError

    def _read(self, message: str | bytes, position: _Position) -> tuple[list[Change], bool]:
        """Changes in one message and whether history should be searched now."""
        raise NotImplementedError

    def _parse_cursor(self, cursor: str | None) -> int | None:
        if cursor is None or cursor == "":
            return None
        try:
            value = int(cursor)
        except ValueError:
            log.warning("ignoring unreadable %s cursor %r", self.transport, cursor)
            return None
        return value if value >= 0 else None

    def _history_since(self, position: _Position) -> datetime | None:
        return position.event_time

    def _cursor_too_old(self, value: int) -> bool:
        return False

    # --- the loop ------------------------------------------------------------------------

    async def follow(self, cursor: str | None, ctx: FollowContext) -> AsyncIterator[Batch]:
        """Yield batches from ``cursor`` on, forever; reconnects on drops, never gives up."""
        value = self._parse_cursor(cursor)
        now = time.monotonic()
        position = _Position(value, value, now, None, now)
        want_history = value is None or self._cursor_too_old(value)
        attempt = 0
        self._context_due = now + self.context_interval
        try:
            while True:
                error = None
                try:
                    async with self.connect(
                        self._connect_url(position),
                        open_timeout=self.open_timeout,
                        max_size=self.max_frame,
                        user_agent_header="Hashroom",
                    ) as ws:
                        ctx.report("streaming")
                        if want_history:
                            want_history = False
                            async for batch in self._history(ctx, self._history_since(position)):
                                yield batch
                        async for batch in self._stream(ws, position, ctx):
                            attempt = 0
                            yield batch
                        error = "the server closed the stream"
                except _Reconnect as exc:
                    error = str(exc)
                    if exc.drop_cursor:
                        position.value = position.committed = None
                        want_history = True
                except (WebSocketException, OSError, TimeoutError) as exc:
                    error = describe_failure(exc)
                log.info("%s stream for #%s interrupted: %s", self.transport, self.tag, error)
                ctx.report("reconnecting", error)
                if time.monotonic() - position.event_at > self.replay_window:
                    want_history = True  # the stream cannot replay all we missed
                await asyncio.sleep(_backoff(attempt, self.backoff_base, self.backoff_cap))
                attempt += 1
        finally:
            for task in self._lookups.values():
                task.cancel()
            if self._context_task is not None:
                self._context_task.cancel()

    async def _stream(
        self, ws: ClientConnection, position: _Position, ctx: FollowContext
    ) -> AsyncIterator[Batch]:
        while True:
            busy = self._lookups or self._resolved or self._context_task is not None
            wait = 0.2 if busy else self.cursor_interval
            if self._questions:
                wait = min(wait, max(0.01, self._context_due - time.monotonic()))
            try:
                message: str | bytes | None = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                message = None
            changes: list[Change] = []
            if message is not None:
                wants_history = False
                try:
                    changes, wants_history = self._read(message, position)
                except _Reconnect:
                    raise
                except _Malformed as exc:
                    log.warning("skipped a malformed %s frame: %s", self.transport, exc)
                except Exception:  # one hostile event must not stop the room's stream
                    log.exception("skipped a %s frame that could not be handled", self.transport)
                if wants_history:
                    async for batch in self._history(ctx, None):
                        yield batch
            changes.extend(self._take_resolved())
            now = time.monotonic()
            cursor = None
            moved = position.value is not None and position.value != position.committed
            if moved and (changes or now - position.yielded_at >= self.cursor_interval):
                cursor = str(position.value)
                position.committed = position.value
            if changes or cursor is not None:
                position.yielded_at = now
                yield Batch(changes=changes, cursor=cursor)
            thread = self._thread_changes()
            if thread:
                yield Batch(changes=thread)  # not part of the stream: the cursor stays

    # --- records -------------------------------------------------------------------------

    def _trim_seen(self) -> None:
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    def _on_record(
        self, did: str, rkey: str, action: str, cid: str | None, record: Any
    ) -> Change | None:
        """The change one post operation brings to the room, if any."""
        uri = post_uri(did, rkey)
        if action == "delete":
            if uri in self._seen:
                del self._seen[uri]
                return Delete(remote_id=uri)
            return None
        if not isinstance(record, dict):
            raise _Malformed(f"{action} of {uri} without a record")
        threaded = uri in self._threaded
        if not matches_tag(record, self.tags) and not (threaded and action == "update"):
            if action == "update" and uri in self._seen:
                del self._seen[uri]  # edited to drop the tag: it leaves the room
                return Delete(remote_id=uri)
            return None
        if uri in self._seen and cid is not None and self._seen[uri] == cid:
            return None  # the same version delivered again
        self._seen[uri] = cid
        self._seen.move_to_end(uri)
        self._trim_seen()
        identity = self.resolver.cached_identity(did)
        author = self.resolver.cached_author(did)
        post = record_to_post(
            did,
            rkey,
            cid,
            record,
            author=author or fallback_author(did, identity.handle if identity else None),
            pds_url=identity.pds if identity else None,
        )
        if threaded:
            post.extra["thread_context"] = True
        else:
            self._remember_question(post)
        if author is None:
            self._wait_for_author(did, post)
        return Upsert(post)

    def _wait_for_author(self, did: str, post: RemotePost) -> None:
        if self._waiting_count >= WAITING_LIMIT:
            return  # keeps the stand-in author; better than unbounded memory
        self._waiting.setdefault(did, []).append(post)
        self._waiting_count += 1
        if did not in self._lookups:
            task = asyncio.get_running_loop().create_task(self._look_up(did))
            self._lookups[did] = task

    async def _look_up(self, did: str) -> Author:
        try:
            async with self._lookup_slots:
                author = await self.resolver.author(did)
            self._resolved.append((did, author))
            return author
        finally:
            self._lookups.pop(did, None)

    def _take_resolved(self) -> list[Change]:
        changes: list[Change] = []
        resolved, self._resolved = self._resolved, []
        for did, author in resolved:
            posts = self._waiting.pop(did, [])
            self._waiting_count -= len(posts)
            for post in posts:
                if author != post.author and post.remote_id in self._seen:
                    changes.append(Upsert(replace(post, author=author)))
        return changes

    # --- thread context --------------------------------------------------------------------

    @property
    def context_enabled(self) -> bool:
        """True when threads can be fetched: a signed-in account or a public AppView."""
        return self.account is not None or self.appview_url is not None

    def _remember_question(self, post: RemotePost) -> None:
        """Watch ``post``'s thread when it is a question (see the module docstring)."""
        if not self.context_enabled or post.remote_id in self._questions:
            return
        if question_number(post.text[:QUESTION_PEEK]) is None:
            return
        self._questions[post.remote_id] = time.monotonic()
        while len(self._questions) > CONTEXT_QUESTIONS:
            oldest = min(self._questions, key=self._questions.__getitem__)
            del self._questions[oldest]

    def _thread_changes(self) -> list[Change]:
        """Starts a thread-context cycle when one is due; returns the replies of a finished
        one that the room has not had yet, flagged. Never raises (but for cancellation)."""
        task = self._context_task
        if task is None:
            if self._questions and time.monotonic() >= self._context_due:
                self._context_task = asyncio.get_running_loop().create_task(self._context_cycle())
            return []
        if not task.done():
            return []
        self._context_task = None
        if task.cancelled():
            return []
        if task.exception() is not None:  # a bug, not the network: log it, keep following
            log.error("thread context for #%s failed", self.tag, exc_info=task.exception())
            return []
        changes: list[Change] = []
        for post in task.result():
            cid = post.extra.get("cid")
            if post.remote_id in self._seen and self._seen[post.remote_id] in (None, cid):
                continue  # delivered already (or in the room since before a restart)
            self._seen[post.remote_id] = cid
            self._seen.move_to_end(post.remote_id)
            self._threaded[post.remote_id] = None
            self._threaded.move_to_end(post.remote_id)
            post.extra["thread_context"] = True
            changes.append(Upsert(post))
        self._trim_seen()
        while len(self._threaded) > SEEN_LIMIT:
            self._threaded.popitem(last=False)
        return changes

    async def _context_cycle(self) -> list[RemotePost]:
        """One thread-context cycle: the replies found under up to
        :data:`CONTEXT_REQUESTS_PER_CYCLE` watched questions (the least recently fetched).

        Network failures and malformed answers are logged and end the cycle early; the next
        comes ``context_interval`` seconds later, or when a 429's reset says. A question the
        AppView refuses (400, e.g. ``NotFound`` once deleted) or reports gone is forgotten.
        """
        now = time.monotonic()
        self._context_due = now + self.context_interval
        for uri, first_seen in list(self._questions.items()):
            if now - first_seen > self.context_window:
                del self._questions[uri]
        found: list[RemotePost] = []
        for uri in list(self._questions)[:CONTEXT_REQUESTS_PER_CYCLE]:
            if uri not in self._questions:
                continue  # pushed out by newer questions while a fetch was under way
            self._questions.move_to_end(uri)
            try:
                answer = await get_post_thread(
                    self.http,
                    uri,
                    account=self.account,
                    service=self.search_service if self.account else self.appview_url,
                    proxy=self.appview_proxy,
                )
            except RemoteRejected as exc:
                log.info("thread of %s (#%s) no longer watched: %s", uri, self.tag, exc)
                self._questions.pop(uri, None)
                continue
            except NetworkError as exc:
                if exc.retry_after is not None:
                    self._context_due = max(self._context_due, time.monotonic() + exc.retry_after)
                log.warning("thread of %s (#%s) not fetched: %s", uri, self.tag, exc)
                break
            replies = read_thread(answer, uri, skip_tag=self.tags)
            if replies is None:
                log.info("thread of %s (#%s) is gone; no longer watched", uri, self.tag)
                self._questions.pop(uri, None)
                continue
            found.extend(replies)
        return found

    # --- history -------------------------------------------------------------------------

    async def _history(self, ctx: FollowContext, since: datetime | None) -> AsyncIterator[Batch]:
        """Recent posts from search, oldest first, in one batch (cursor unchanged)."""
        if self.account is None:
            if not self._noticed:
                self._noticed = True
                ctx.notice(NO_HISTORY_NOTICE)
            return
        if self.backfill_limit == 0:
            return
        ctx.report("loading history")
        found: dict[str, RemotePost] = {}
        tag = self.tag
        try:
            # One search per tag (searchPosts takes a single query); a post carrying two of
            # them is found twice and kept once, by its uri.
            for tag in self.tags:
                cursor, taken = None, 0
                while taken < self.backfill_limit:
                    page = await search_posts(
                        self.account,
                        tag,
                        since=since,
                        cursor=cursor,
                        limit=min(100, self.backfill_limit - taken),
                        service=self.search_service,
                    )
                    taken += len(page.posts)
                    for post in page.posts:
                        found.setdefault(post.remote_id, post)
                    if not page.posts or not page.cursor or page.cursor == cursor:
                        break
                    cursor = page.cursor
        except (NetworkError, ValueError) as exc:
            log.warning("history search for #%s failed: %s", tag, exc)
            ctx.report("streaming", f"history search failed: {exc}")
            if not found:
                return
        posts = sorted(found.values(), key=lambda p: p.created_at)[-self.backfill_limit :]
        for post in posts:
            self._seen[post.remote_id] = post.extra.get("cid")
            self._remember_question(post)
        self._trim_seen()
        ctx.report("streaming")
        if posts:
            yield Batch(changes=[Upsert(p) for p in posts], cursor=None)


def jetstream_position(frame: str | bytes) -> int | None:
    """The cursor value (``time_us``) of a Jetstream frame, None when it has none."""
    event = json.loads(frame)
    time_us = event.get("time_us") if isinstance(event, dict) else None
    return time_us if type(time_us) is int and time_us >= 0 else None


def firehose_position(frame: str | bytes) -> int | None:
    """The cursor value (``seq``) of a firehose frame, None when it has none."""
    return decode_frame(frame, frozenset()).seq


class JetstreamFollower(_LiveFollower):
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

    def _connect_url(self, position: _Position) -> str:
        params = [("wantedCollections", POST_COLLECTION)]
        if position.value is not None:
            params.append(("cursor", str(max(0, position.value - self.rewind_us))))
        return _with_query(self.url, params)

    def _cursor_too_old(self, value: int) -> bool:
        return time.time() - value / 1_000_000 > self.replay_window

    def _history_since(self, position: _Position) -> datetime | None:
        if position.event_time is not None:
            return position.event_time
        if position.value is not None:
            return datetime.fromtimestamp(position.value / 1_000_000, UTC)
        return None

    def _read(self, message: str | bytes, position: _Position) -> tuple[list[Change], bool]:
        try:
            event = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Malformed(f"not JSON: {exc}") from exc
        if not isinstance(event, dict):
            raise _Malformed("an event must be a JSON object")
        time_us = event.get("time_us")
        did = event.get("did")
        if type(time_us) is not int or time_us < 0:
            raise _Malformed("an event without a usable time_us")
        if not isinstance(did, str) or not did.startswith("did:"):
            raise _Malformed("an event without a DID")
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
            raise _Malformed("commit event without a commit")
        if commit.get("collection") != POST_COLLECTION:
            return None
        rkey, operation = commit.get("rkey"), commit.get("operation")
        if not isinstance(rkey, str) or not rkey or "/" in rkey:
            raise _Malformed("commit without a record key")
        if operation not in ("create", "update", "delete"):
            raise _Malformed(f"unknown commit operation {operation!r}")
        cid = commit.get("cid") if isinstance(commit.get("cid"), str) else None
        return self._on_record(did, rkey, operation, cid, commit.get("record"))


class FirehoseFollower(_LiveFollower):
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

    def _connect_url(self, position: _Position) -> str:
        if position.value is None:
            return self.url
        return _with_query(self.url, [("cursor", str(position.value))])

    def _read(self, message: str | bytes, position: _Position) -> tuple[list[Change], bool]:
        try:
            frame = decode_frame(message, self._COLLECTIONS)
        except FrameError as exc:
            raise _Malformed(str(exc)) from exc
        if frame.kind == "error":
            # The error name only: the message is the relay's free text (docs/security.md).
            detail = str(frame.error) if _ERROR_NAME_RE.match(str(frame.error)) else "unnamed"
            if frame.error == "FutureCursor":
                raise _Reconnect(f"server refused our cursor ({detail})", drop_cursor=True)
            raise _Reconnect(f"server error frame ({detail})")
        if frame.seq is not None and position.value is not None and frame.seq <= position.value:
            return [], False
        changes: list[Change] = []
        wants_history = False
        if frame.kind == "#commit" and frame.did:
            for op in frame.ops:
                try:
                    change = self._on_record(frame.did, op.rkey, op.action, op.cid, op.record)
                except _Malformed as exc:
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
