"""The one place a stored post becomes what clients see: a JSON dict and ``_post.html``.

Live frames, snapshots, the first page render and the API all go through here, so a post
looks the same wherever it appears.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from .models import Pin, Post


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


class Presenter:
    """Renders posts and pins with the shared partials."""

    def __init__(self, env: Environment) -> None:
        self._post = env.get_template("_post.html")
        self._pin = env.get_template("_pin.html")

    def post_html(self, post: dict[str, Any]) -> str:
        return self._post.render(post=post)

    def pin_html(self, pin: dict[str, Any], post: dict[str, Any]) -> str:
        return self._pin.render(pin=pin, post=post)
