"""What Bluesky's AppView answers, read as posts: ``app.bsky.feed.searchPosts`` for
history (:func:`search_posts`) and ``app.bsky.feed.getPostThread`` for the replies under a
question (:func:`get_post_thread`, :func:`read_thread`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from ..atproto_session import AccountClient, json_object, raise_for_xrpc, xrpc
from ..base import RemotePost
from .mapping import matches_tag, post_view_to_post, rfc3339

# How far below the question replies are read (getPostThread's own default) and how many
# posts one answer may add: a viral thread must not flood the room or the event loop.
THREAD_DEPTH = 6
THREAD_POSTS_LIMIT = 200
# Bluesky's own AppView, as a PDS names it in the atproto-proxy header.
DEFAULT_APPVIEW_PROXY = "did:web:api.bsky.app#bsky_appview"
THREAD_VIEW = "app.bsky.feed.defs#threadViewPost"
GET_POST_THREAD = "app.bsky.feed.getPostThread"


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results (newest first) and the cursor for the next, if any."""

    posts: list[RemotePost]
    cursor: str | None


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
        params["since"] = rfc3339(since)
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
