"""Chats: creating one (and the bundled demo), finding one, listing them, their sources.

:func:`chat_by_slug` is how every write finds its chat: in a write transaction it locks the
chat's row, so writes to one chat from several processes run one after the other.
:func:`chat_json` is a chat as the API and pages describe it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from . import policy, text
from .config import Settings
from .errors import NotFound
from .events import Frame
from .models import Chat, Post, Source
from .security import hash_key, new_epoch, new_moderator_key
from .writer import WRITING, Writer

DEMO_SLUG = "demo"


@dataclass(slots=True)
class SourceSpec:
    """A source to follow, as given at chat creation (validated by the network module)."""

    network: str
    config: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None  # already sealed by the caller


def slugify(tag: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", tag.casefold()).strip("-")
    return slug[:48] or "chat"


def demo_moderator_key(secret_key: str) -> str:
    """The demo chat's moderator key, derived from the secret so it can be shown every start."""
    return hmac.new(secret_key.encode(), b"hashroom-demo-moderator", hashlib.sha256).hexdigest()[
        :32
    ]


def chat_by_slug(session: Session, slug: str) -> Chat:
    """The chat named ``slug``. In a write transaction its row is locked until commit
    (PostgreSQL; SQLite takes its database write lock): writes to one chat from several
    processes then run one after the other, so a check-then-insert (a pin, a vote) sees
    the other's committed row."""
    query = select(Chat).where(Chat.slug == slug)
    if session.info.get(WRITING):
        if session.get_bind().dialect.name == "sqlite":
            # SQLite has no row locks and starts a transaction's write lock at its first
            # write: take it now, before the checks (a no-op UPDATE does).
            session.execute(
                update(Chat).where(Chat.slug == slug).values(last_offset=Chat.last_offset)
            )
        else:
            query = query.with_for_update()
    chat = session.exec(query).scalars().first()  # type: ignore[call-overload]
    if chat is None:
        raise NotFound(f"no chat with slug {slug!r}")
    return chat


class ChatRooms(Writer):
    """Creating and reading chats and their sources, through the writer."""

    settings: Settings
    chat_by_slug = staticmethod(chat_by_slug)

    async def create_chat(
        self,
        *,
        hashtag: str,
        title: str,
        hashtags: Sequence[str] | None = None,
        description: str = "",
        network: str = "native",
        sources: Sequence[SourceSpec] = (),
        schedule: dict[str, Any] | None = None,
        slug: str | None = None,
        moderator_key: str | None = None,
    ) -> tuple[Chat, str, list[Source]]:
        """Create a chat; returns it, its moderator key (shown once) and its sources.

        ``hashtags``, when given, is every tag followed and its first is the reply tag;
        otherwise the chat follows ``hashtag`` alone. Raises ValueError on a bad list."""
        tags = text.normalize_hashtags(hashtags or [hashtag], self.settings.max_hashtags_per_chat)
        tag = tags[0]
        key = moderator_key or new_moderator_key()

        def fn(session: Session) -> tuple[tuple[Chat, str, list[Source]], list[Frame]]:
            base = slug or slugify(tag)
            candidate, n = base, 1
            while session.execute(select(Chat.id).where(Chat.slug == candidate)).first():  # type: ignore[arg-type]
                n += 1
                candidate = f"{base}-{n}"
            chat = Chat(
                slug=candidate,
                hashtag=tag,
                hashtags=tags,
                title=title.strip(),
                description=description.strip(),
                network=network,
                epoch=new_epoch(),
                moderator_key_hash=hash_key(key),
            )
            if schedule:
                chat.schedule_start = schedule.get("start")
                chat.schedule_timezone = schedule.get("timezone")
                chat.schedule_duration_minutes = schedule.get("duration_minutes")
                chat.schedule_rrule = schedule.get("rrule")
            session.add(chat)
            session.flush()
            rows = []
            for spec in sources:
                src = Source(
                    chat_id=chat.id, network=spec.network, config=spec.config, secret=spec.secret
                )
                session.add(src)
                rows.append(src)
            session.flush()
            return (chat, key, rows), []

        return await self.write(fn)

    async def ensure_demo(self) -> Chat:
        """Create the bundled demo chat (following the demo replay) unless it exists."""

        def exists(session: Session) -> Chat | None:
            return session.execute(select(Chat).where(Chat.slug == DEMO_SLUG)).scalars().first()  # type: ignore[arg-type]

        chat = await self.read(exists)
        if chat is not None:
            return chat
        from .networks.demo import load_transcript

        transcript = load_transcript()
        try:
            chat, _key, _ = await self._create_demo(transcript)
        except IntegrityError:  # another process of the cluster created it just now
            found = await self.read(exists)
            if found is None:
                raise
            return found
        return chat

    async def _create_demo(self, transcript: Any) -> tuple[Chat, str, list[Source]]:
        return await self.create_chat(
            hashtag=transcript.hashtag,
            title=transcript.title,
            description=transcript.description,
            network="demo",
            sources=[SourceSpec(network="demo")],
            slug=DEMO_SLUG,
            moderator_key=demo_moderator_key(self.settings.secret_key),
        )

    async def rotate_moderator_key(self, slug: str) -> tuple[Chat, str]:
        """Give chat ``slug`` a new moderator key (returned, shown once). The old key, every
        moderator cookie and every host link made from it stop working at once."""
        key = new_moderator_key()

        def fn(session: Session) -> tuple[Chat, list[Frame]]:
            chat = self.chat_by_slug(session, slug)
            chat.moderator_key_hash = hash_key(key)
            session.add(chat)
            session.flush()
            return chat, []

        return await self.write(fn), key

    async def get_chat(self, slug: str) -> Chat:
        return await self.read(lambda s: self.chat_by_slug(s, slug))

    async def list_chats(self) -> list[dict[str, Any]]:
        def fn(session: Session) -> list[dict[str, Any]]:
            stats = (
                select(
                    Post.chat_id,
                    func.count(Post.id).label("n"),
                    func.max(Post.created_at).label("last"),
                )
                .where(*policy.visible())
                .group_by(Post.chat_id)
                .subquery()
            )
            rows = session.execute(
                select(Chat, stats.c.n, stats.c.last)
                .outerjoin(stats, stats.c.chat_id == Chat.id)
                .order_by(Chat.created_at.desc())  # type: ignore[union-attr]
            ).all()
            return [chat_json(c, n or 0, last) for c, n, last in rows]

        return await self.read(fn)

    async def source_cursor(self, source_id: int) -> str | None:
        def fn(session: Session) -> str | None:
            source = session.get(Source, source_id)
            if source is None:
                raise NotFound(f"source {source_id} is gone")
            return source.cursor

        return await self.read(fn)

    async def sources(self) -> list[tuple[Source, Chat]]:
        def fn(session: Session) -> list[tuple[Source, Chat]]:
            rows = session.execute(
                select(Source, Chat)
                .join(Chat, Chat.id == Source.chat_id)  # type: ignore[arg-type]
                .where(Source.enabled.is_(True))  # type: ignore[attr-defined]
            ).all()
            return [(s, c) for s, c in rows]

        return await self.read(fn)

    async def source_networks(self, chat_id: int) -> list[str]:
        """The networks a chat follows (each once, in the order its sources were added)."""

        def fn(session: Session) -> list[str]:
            rows = session.execute(
                select(Source.network)
                .where(Source.chat_id == chat_id)  # type: ignore[arg-type]
                .order_by(Source.id)  # type: ignore[arg-type]
            ).scalars()
            return list(dict.fromkeys(rows))

        return await self.read(fn)


def chat_json(
    chat: Chat, post_count: int = 0, last_post_at: datetime | None = None
) -> dict[str, Any]:
    from .present import iso

    schedule = None
    if chat.schedule_start:
        schedule = {
            "start": chat.schedule_start,
            "timezone": chat.schedule_timezone,
            "duration_minutes": chat.schedule_duration_minutes,
            "rrule": chat.schedule_rrule,
        }
    return {
        "slug": chat.slug,
        "hashtag": chat.hashtag,
        "hashtags": chat_hashtags(chat),
        "title": chat.title,
        "description": chat.description,
        "network": chat.network,
        "epoch": chat.epoch,
        "offset": chat.last_offset,
        "created_at": iso(chat.created_at),
        "post_count": post_count,
        "last_post_at": iso(last_post_at),
        "schedule": schedule,
    }


def chat_hashtags(chat: Chat | Mapping[str, Any]) -> list[str]:
    """Every tag ``chat`` follows (a row or its ``chat_json``), reply tag first. A row
    written before the list existed follows its one tag."""
    if isinstance(chat, Chat):
        tags, tag = chat.hashtags, chat.hashtag
    else:
        tags, tag = chat.get("hashtags"), chat.get("hashtag")
    return list(tags) if tags else [tag] if tag else []
