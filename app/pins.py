"""Pins and hides: what moderators put above the column or take out of it.

A pin row stays as history when unpinned (past questions are listed from it). Hiding is
room-wide and logged; showing a post again leaves it held if it is held for review.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from . import events
from .action_log import describe_post, record
from .chats import chat_by_slug
from .events import Frame
from .models import ModAction, Pin, Post, utcnow
from .policy import HIDDEN_BY_BLOCK
from .posts import PostStore
from .present import pin_json, post_json
from .writer import note


def log_post_change(
    session: Session, actor: str | None, action: str, post: Post, **data: Any
) -> ModAction | None:
    """Log a moderator's change to ``post`` in its transaction; nothing without an actor
    (undo applies inverses unlogged)."""
    if actor is None:
        return None
    return record(
        session, post.chat_id, actor, action, describe_post(post), {"post_id": post.id, **data}
    )


class PinRooms(PostStore):
    """Pinning, unpinning, hiding and showing posts, through the writer."""

    def pin_event(self, session: Session, pin: Pin, post: Post) -> Frame:
        """Append the ``pin`` event of ``pin`` (the pinned post with it) in the caller's
        transaction; returns its frame."""
        hosts = self.hosts(session, pin.chat_id)
        pdata = post_json(post, is_host=self.is_host(post, hosts))
        payload = pin_json(pin)
        return events.append(
            session,
            pin.chat_id,
            "pin",
            {
                "pin": payload,
                "post": pdata,
                "html": self.presenter.pin_html(payload, pdata),
                "post_html": self.presenter.post_html(pdata),
            },
            post_id=post.id,
        )

    async def pin(
        self, slug: str, post_id: int, *, question: bool | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Pin a post (idempotent: pinning a pinned post changes nothing)."""

        def fn(session: Session) -> tuple[dict[str, Any], list[Frame]]:
            chat = chat_by_slug(session, slug)
            post = self.post_in_chat(session, chat.id, post_id)  # type: ignore[arg-type]
            current = self._current_pin(session, chat.id, post_id)  # type: ignore[arg-type]
            if current is not None:
                return pin_json(current), []
            is_q = question if question is not None else post.question_number is not None
            pin = Pin(chat_id=chat.id, post_id=post_id, is_question=is_q)  # type: ignore[arg-type]
            session.add(pin)
            session.flush()
            log_post_change(session, actor, "pin", post, question=is_q)
            if is_q:
                note(session, chat, "pinned", post)
            return pin_json(pin), [self.pin_event(session, pin, post)]

        return await self.write(fn)

    @staticmethod
    def _current_pin(session: Session, chat_id: int, post_id: int) -> Pin | None:
        return (
            session.execute(
                select(Pin).where(
                    Pin.chat_id == chat_id,  # type: ignore[arg-type]
                    Pin.post_id == post_id,  # type: ignore[arg-type]
                    Pin.unpinned_at.is_(None),  # type: ignore[union-attr]
                )
            )
            .scalars()
            .first()
        )

    async def unpin(self, slug: str, post_id: int, *, actor: str | None = None) -> bool:
        """Unpin; False when the post was not pinned. The pin row stays as history."""

        def fn(session: Session) -> tuple[bool, list[Frame]]:
            chat = chat_by_slug(session, slug)
            pin = self._current_pin(session, chat.id, post_id)  # type: ignore[arg-type]
            if pin is None:
                return False, []
            pin.unpinned_at = utcnow()
            session.add(pin)
            post = session.get(Post, post_id)
            if post is not None:
                log_post_change(session, actor, "unpin", post, question=pin.is_question)
            frame = events.append(
                session,
                chat.id,  # type: ignore[arg-type]
                "unpin",
                {"pin": pin_json(pin), "post_id": post_id},
                post_id=post_id,
            )
            return True, [frame]

        return await self.write(fn)

    async def set_hidden(
        self, slug: str, post_id: int, hidden: bool, *, actor: str | None = None
    ) -> bool:
        """Hide (or show again) a post room-wide. False when nothing changed. A post held
        for review stays held when shown again here."""

        def fn(session: Session) -> tuple[bool, list[Frame]]:
            chat = chat_by_slug(session, slug)
            post = self.post_in_chat(session, chat.id, post_id)  # type: ignore[arg-type]
            if post.hidden == hidden:
                return False, []
            post.hidden = hidden
            # A moderator's own decision replaces a block's: unblocking must not touch it.
            post.extra = {k: v for k, v in post.extra.items() if k != HIDDEN_BY_BLOCK}
            session.add(post)
            session.flush()
            log_post_change(session, actor, "hide" if hidden else "unhide", post)
            if hidden:
                frame = events.append(
                    session, chat.id, "hide", {"post_id": post_id}, post_id=post_id
                )  # type: ignore[arg-type]
            elif post.held:
                return True, []
            else:
                frame = self.post_event(session, "unhide", post, self.hosts(session, chat.id))  # type: ignore[arg-type]
            return True, [frame]

        return await self.write(fn)

    def pin_lists(
        self, session: Session, chat_id: int, hosts: set[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The chat's pins as readers get them, oldest first: those pinned now (of shown
        posts), and every question ever pinned whose post is not deleted (past questions)."""
        rows = session.execute(
            select(Pin, Post)
            .join(Post, Post.id == Pin.post_id)  # type: ignore[arg-type]
            .where(Pin.chat_id == chat_id, Post.deleted.is_(False))  # type: ignore[arg-type, attr-defined]
            .order_by(Pin.pinned_at)  # type: ignore[arg-type]
        ).all()
        current, past = [], []
        for pin, post in rows:
            pdata = post_json(post, is_host=self.is_host(post, hosts))
            payload = pin_json(pin)
            item = {"pin": payload, "post": pdata, "html": self.presenter.pin_html(payload, pdata)}
            if pin.unpinned_at is None and not post.hidden:
                current.append(item)
            if pin.is_question:
                past.append(item)
        return current, past
