"""The one place a stored post becomes what clients see: a JSON dict and ``_post.html``.

Live frames, snapshots, the first page render and the API all go through here, so a post
looks the same wherever it appears.

Every stored post is rendered once, on the write path, so the render is kept cheap: the
decisions (which links are safe, which classes apply, how a handle or a time reads) are made
here in plain Python, and the partials only place the prepared values. Jinja looking up keys
of nested dicts, calling macros and importing them per render cost about three times as much.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from .models import Pin, Post
from .templating import at, avatar_colour, initials, network_badge, network_label, utc_text, web_url


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite hands back naive datetimes; they are stored as UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def post_json(post: Post, *, is_host: bool = False, parent_id: int | None = None) -> dict[str, Any]:
    """The post as clients receive it (documented in docs/architecture.md)."""
    in_reply_to = None
    if post.in_reply_to_id is not None or post.in_reply_to_remote or post.reply_to_handle:
        in_reply_to = {
            "id": post.in_reply_to_id if parent_id is None else parent_id,
            "handle": post.reply_to_handle,
        }
    reposted_by = None
    if post.reposted_by_handle:
        reposted_by = {"name": post.reposted_by_name, "handle": post.reposted_by_handle}
    return {
        "id": post.id,
        "network": post.network,
        "remote_id": post.remote_id,
        "url": post.url,
        "author": {
            "name": post.author_name,
            "handle": post.author_handle,
            "avatar": post.author_avatar,
            "url": post.author_url,
        },
        "html": post.html,
        "text": post.text,
        "spoiler_text": post.spoiler_text,
        "sensitive": post.sensitive,
        "media": post.media,
        "quote": post.quote,
        "language": post.language,
        "created_at": iso(post.created_at),
        "edited_at": iso(post.edited_at),
        "in_reply_to": in_reply_to,
        "reposted_by": reposted_by,
        "question": post.question_number,
        "answer": post.answer_number,
        "hidden": post.hidden or post.held,
        "pending": post.pending,
        "is_host": is_host,
    }


def pin_json(pin: Pin) -> dict[str, Any]:
    return {
        "id": pin.id,
        "post_id": pin.post_id,
        "is_question": pin.is_question,
        "pinned_at": iso(pin.pinned_at),
        "unpinned_at": iso(pin.unpinned_at),
    }


_ABSENT = object()
"""A media item's missing ``kind``: unlike ``None`` (an image), it shows as a file link."""
_THUMB_KINDS = (None, "", "image", "gifv")
"""Media kinds whose own URL can stand in for a missing preview image."""
_PLAYABLE = ("video", "gifv", "audio")


def _media_view(m: Any) -> tuple[str, str, Any, Any, str] | None:
    """One attachment as (thumbnail, link, kind, alt, label), or None when it has no web link.

    With a thumbnail it shows as an image linking to the full file, labelled by its kind when
    playable; without one, as a text link labelled "Kind: alt" (thumbnail empty).
    """
    if not isinstance(m, dict):
        m = {}
    kind = m.get("kind", _ABSENT)
    full = web_url(m.get("url"))
    thumb = web_url(m.get("preview_url")) or (full if kind in _THUMB_KINDS else "")
    if kind is _ABSENT:
        kind = None
    if thumb:
        label = ("GIF" if kind == "gifv" else kind.capitalize()) if kind in _PLAYABLE else ""
        return thumb, full or thumb, kind or "image", m.get("alt") or "", label
    if full:
        text, alt = str(kind or "media").capitalize(), m.get("alt")
        return "", full, "file", "", f"{text}: {alt}" if alt else text
    return None


def display_name(author: dict[str, Any]) -> str:
    """The author's name, else their handle without "@", else "Someone"."""
    return author.get("name") or str(author.get("handle") or "").strip("@") or "Someone"


def post_view(post: dict[str, Any]) -> dict[str, Any]:
    """What ``_post.html`` places, for a post as :func:`post_json` shapes it: links already
    checked by :func:`web_url`, display names and labels chosen, classes joined."""
    a = post["author"] or {}
    handle = a.get("handle")
    name = display_name(a)
    reply = post["in_reply_to"]
    repost = post["reposted_by"]
    classes = "post"
    if post["is_host"]:
        classes += " is-host"
    if reply:
        classes += " is-reply"
    if repost:
        classes += " is-repost"
    if post["question"]:
        classes += " is-question"
    if post["answer"]:
        classes += " is-answer"
    if post["pending"]:
        classes += " is-pending"
    if post["hidden"]:
        classes += " is-hidden"
    avatar = a.get("avatar")
    media = post["media"]
    quote = post["quote"]
    view = {
        "post": post,
        "id": post["id"],
        "classes": classes,
        "pid": f"post-{post['id']}",
        "handle": handle,
        "name": name,
        "avatar": avatar if avatar and web_url(avatar) else None,
        "colour": avatar_colour(handle or name),
        "initials": initials(a.get("name") or handle or "?"),
        "handle_at": at(handle),
        "profile": web_url(a.get("url")),
        "original": web_url(post["url"]),
        "reply_to_id": reply and reply.get("id"),
        "reply_to": reply and (at(reply.get("handle")) or "a post"),
        "reposted_by": None,
        "reposted_by_handle": None,
        "badge": network_badge(post["network"]),
        "network_label": network_label(post["network"]),
        "created_text": utc_text(post["created_at"]),
        "edited_text": post["edited_at"] and utc_text(post["edited_at"]),
        "media_n": 0,
        "media": (),
        "quote": None,
    }
    if repost:
        view["reposted_by"] = repost.get("name") or at(repost.get("handle"))
        view["reposted_by_handle"] = repost.get("handle") or ""
    if media:
        view["media_n"] = min(len(media), 4)
        view["media"] = [item for item in map(_media_view, media) if item is not None]
    if quote:
        if not isinstance(quote, dict):
            quote = {}
        author = quote.get("author")
        if isinstance(author, Mapping):
            author = author.get("name") or at(author.get("handle"))
        view["quote"] = (author, quote.get("text"), web_url(quote.get("url")))
    return view


def pin_view(pin: dict[str, Any], post: dict[str, Any]) -> dict[str, Any]:
    """What ``_pin.html`` places: the pin and post as JSON, and the author's display name."""
    return {"pin": pin, "post": post, "name": display_name(post["author"] or {})}


class Presenter:
    """Renders posts and pins with the shared partials."""

    def __init__(self, env: Environment) -> None:
        self._post = env.get_template("_post.html")
        self._pin = env.get_template("_pin.html")

    def post_html(self, post: dict[str, Any]) -> str:
        return self._post.render(post_view(post))

    def pin_html(self, pin: dict[str, Any], post: dict[str, Any]) -> str:
        return self._pin.render(pin_view(pin, post))
