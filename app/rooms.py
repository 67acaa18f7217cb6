"""Rooms: the one service every change to a room, and every consistent read of one, goes through.

:class:`Rooms` is a facade over the modules that own each concern, each a mixin on the single
writer (:class:`app.writer.Writer`: the row and its event in one transaction, frames
published in offset order after commit):

* :mod:`app.chats` — creating chats and the demo chat, listing and finding them, sources;
* :mod:`app.posts` — storing posts: an ingester's batch (one transaction per batch, not one
  per post), a post made through an account, notices;
* :mod:`app.pins` — pins, hides;
* :mod:`app.native_posts` — posts typed in the room, host questions.

The room's reads (a snapshot, older posts, events after an offset) are here. The names
callers import from this module (``SourceSpec``, ``chat_json``, ``NotFound``, …) stay
importable from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import events, policy
from .chats import (
    DEMO_SLUG,
    ChatRooms,
    SourceSpec,
    chat_hashtags,
    chat_json,
    demo_moderator_key,
    slugify,
)
from .config import Settings
from .errors import Invalid, NotFound
from .events import Frame
from .hub import Fanout, Hub
from .models import Chat, Post
from .native_posts import NativePosts
from .present import Presenter
from .writer import RoomNote

__all__ = [
    "DEMO_SLUG",
    "Invalid",
    "NotFound",
    "RoomNote",
    "Rooms",
    "Snapshot",
    "SourceSpec",
    "chat_hashtags",
    "chat_json",
    "demo_moderator_key",
    "slugify",
]


@dataclass(slots=True)
class Snapshot:
    """A room as a reader starts from: its visible posts and pins at offset ``offset``."""

    offset: int
    epoch: str
    posts: list[dict[str, Any]]  # {"post": …, "html": …}, newest first
    pins: list[dict[str, Any]]  # {"pin": …, "post": …, "html": …}
    past_questions: list[dict[str, Any]]


class Rooms(ChatRooms, NativePosts):
    """The single writer and the consistent readers of rooms."""

    def __init__(
        self,
        engine: Engine,
        hub: Hub,
        settings: Settings,
        presenter: Presenter,
        fanout: Fanout | None = None,
    ) -> None:
        super().__init__(engine, hub, fanout)
        self.settings = settings
        self.presenter = presenter

    # -- reads ------------------------------------------------------------------------------

    async def snapshot(self, slug_or_id: str | int, limit: int | None = None) -> Snapshot:
        """The room's latest visible posts and pins, with the offset they reflect.

        The head offset is read *before* the rows, so the snapshot may include a change newer
        than its offset; clients apply events idempotently, so that change arriving again
        live is harmless, whereas reading it the other way round could lose one.
        """
        n = limit or self.settings.snapshot_posts

        def fn(session: Session) -> Snapshot:
            if isinstance(slug_or_id, int):
                chat = session.get(Chat, slug_or_id)
                if chat is None:
                    raise NotFound("chat is gone")
            else:
                chat = self.chat_by_slug(session, slug_or_id)
            offset, epoch = events.head(session, chat.id)  # type: ignore[arg-type]
            hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
            posts = (
                session.execute(
                    select(Post)
                    .where(Post.chat_id == chat.id, *policy.visible())  # type: ignore[arg-type]
                    .order_by(Post.id.desc())  # type: ignore[union-attr]
                    .limit(n)
                )
                .scalars()
                .all()
            )
            pins, past = self.pin_lists(session, chat.id, hosts)  # type: ignore[arg-type]
            return Snapshot(
                offset=offset,
                epoch=epoch,
                posts=[self.present(p, hosts) for p in posts],
                pins=pins,
                past_questions=past,
            )

        return await self.read(fn)

    async def posts_before(self, slug: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Visible posts older than post id ``before`` (or the newest), newest first."""

        def fn(session: Session) -> list[dict[str, Any]]:
            chat = self.chat_by_slug(session, slug)
            hosts = self.hosts(session, chat.id)  # type: ignore[arg-type]
            query = select(Post).where(Post.chat_id == chat.id, *policy.visible())  # type: ignore[arg-type]
            if before is not None:
                query = query.where(Post.id < before)  # type: ignore[arg-type, operator]
            rows = session.execute(query.order_by(Post.id.desc()).limit(limit)).scalars().all()  # type: ignore[union-attr]
            return [self.present(p, hosts) for p in rows]

        return await self.read(fn)

    async def events_after(self, slug: str, after: int, limit: int) -> tuple[Chat, list[Frame]]:
        """The chat and up to ``limit`` of its event frames after offset ``after``, in order."""

        def fn(session: Session) -> tuple[Chat, list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            return chat, events.read_after(session, chat.id, after, limit)  # type: ignore[arg-type]

        return await self.read(fn)
