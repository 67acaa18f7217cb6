"""Posts typed in the room: a native room's posts, and host questions posted and pinned.

A native post is stored like any network's (:meth:`app.posts.PostStore.apply_batch`), as a
``native`` post with the chat's reply tag appended; a host question is also pinned, in the
same transaction.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from . import text
from .chats import chat_by_slug, chat_hashtags
from .errors import Invalid
from .events import Frame
from .models import Pin, Post
from .networks.base import Author, RemotePost, Upsert
from .pins import PinRooms, log_post_change
from .present import post_json
from .security import new_epoch
from .writer import note


class NativePosts(PinRooms):
    """Posting in the room as a display name, through the writer."""

    async def add_native_post(
        self,
        slug: str,
        body: str,
        author: str,
        in_reply_to: int | None = None,
        *,
        vouched: bool = False,
    ) -> dict[str, Any]:
        """Post in a native room as ``author``; the reply tag is appended unless the text
        already carries one of the chat's tags.
        ``vouched``: the poster is a moderator or holds a host link (Host badge, and the
        hold-for-review rules do not apply)."""
        return await self._native(slug, body, author, in_reply_to, pin=False, vouched=vouched)

    async def ask_question(
        self, slug: str, body: str, author: str, *, actor: str | None = None
    ) -> dict[str, Any]:
        """Post a host question and pin it, in one transaction (logged as ``actor``'s)."""
        return await self._native(slug, body, author, None, pin=True, actor=actor)

    async def _native(
        self,
        slug: str,
        body: str,
        author: str,
        in_reply_to: int | None,
        *,
        pin: bool,
        actor: str | None = None,
        vouched: bool = False,
    ) -> dict[str, Any]:
        author = text.clean_name(author)
        if not author:
            raise Invalid("author: give a display name")
        if len(author) > 60:
            raise Invalid("author: keep the display name to 60 characters or fewer")
        if not body.strip():
            raise Invalid("text: the post is empty")

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = chat_by_slug(session, slug)
            if chat.network not in ("native", "demo") and not pin:
                raise Invalid(
                    "this room follows another network: connect an account to post "
                    "(POST /api/accounts), then post with account_id"
                )
            final = body.strip()
            if not text.contains_any_hashtag(final, chat_hashtags(chat)):
                final = text.append_hashtag(final, chat.hashtag)
            length = text.count_graphemes(final)
            limit = self.settings.native_max_graphemes
            if length > limit:
                raise Invalid(
                    f"text: {length} characters with the hashtag, the limit is {limit}; "
                    f"shorten it by {length - limit}"
                )
            parent: Post | None = None
            if in_reply_to is not None:
                parent = self.post_in_chat(session, chat.id, in_reply_to)  # type: ignore[arg-type]
            handle = _native_handle(author)
            rp = RemotePost(
                network="native",
                remote_id=f"native:{chat.id}:{new_epoch()}",
                author=Author(name=author, handle=handle),
                created_at=datetime.now(UTC),
                text=final,
                in_reply_to=parent.remote_id if parent else None,
                reply_to_handle=parent.author_handle if parent else None,
                extra={"is_host": True} if pin or vouched else {},
            )
            stored, frames = self.apply_batch(session, chat, None, [Upsert(rp)])
            post = stored[0]
            if pin:
                pin_row = Pin(chat_id=chat.id, post_id=post.id, is_question=True)  # type: ignore[arg-type]
                session.add(pin_row)
                session.flush()
                frames.append(self.pin_event(session, pin_row, post))
                log_post_change(session, actor, "question", post)
                note(session, chat, "pinned", post)
            hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
            return post_json(post, is_host=self.is_host(post, hosts)), frames

        return await self.write(fn)


def _native_handle(author: str) -> str:
    return "@" + (re.sub(r"[^\w]+", "", author.casefold())[:30] or "guest")
