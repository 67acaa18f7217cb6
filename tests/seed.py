"""Fill rooms through the app's own code, fast, before a browser opens them.

:func:`seed_room` stores posts through :meth:`app.rooms.Rooms.store_batch`, the path an
ingester takes: rows, Q/A numbers and events exactly as live posts get them. It also makes
posts the public API cannot: reposts, and replies to posts outside the room. That path costs
about a millisecond per post (one event-log update each), so :func:`seed_history` writes a
long plain history in bulk instead — rows only, no events, like history imported before a
room went live: readers see it through snapshots and paging, which read the post table.
The writers run in the test process, so a running server's websocket clients do not see
these posts live — seed before opening a page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from app import text
from app.config import Settings
from app.db import make_engine, session_scope
from app.hub import Hub
from app.models import Post
from app.networks.base import Author, Batch, RemotePost, Upsert
from app.present import Presenter
from app.rooms import Rooms, SourceSpec
from app.templating import make_templates

BATCH = 1000
# A network no follower serves, so a server started on the same database leaves it alone.
SEED_NETWORK = "seed"


@dataclass(frozen=True, slots=True)
class Seeded:
    slug: str
    moderator_key: str
    posts: int
    source_id: int = 0  # what :func:`add_posts` writes through (rooms made by seed_room)


def author(name: str) -> Author:
    """A participant whose handle is ``@`` + the lower-cased first name."""
    return Author(name=name, handle="@" + name.split()[0].casefold())


def remote_post(
    n: int,
    text: str,
    who: Author,
    *,
    reply_to: str | None = None,
    reposted_by: Author | None = None,
    is_host: bool = False,
    start: datetime | None = None,
) -> RemotePost:
    """Post number ``n`` (remote id ``seed:n``), a second after post ``n - 1``."""
    start = start or datetime(2025, 1, 1, 18, 0, tzinfo=UTC)
    return RemotePost(
        network=SEED_NETWORK,
        remote_id=f"seed:{n}",
        author=who,
        created_at=start + timedelta(seconds=n),
        text=text,
        in_reply_to=reply_to,
        reply_to_handle="@someone" if reply_to else None,
        reposted_by=reposted_by,
        extra={"is_host": True} if is_host else {},
    )


def numbered_posts(count: int, first: int = 1) -> list[RemotePost]:
    """``count`` plain posts "Post <first>" … from a handful of authors."""
    people = [author(n) for n in ("Ada", "Ben", "Cleo", "Dev", "Eli")]
    numbers = range(first, first + count)
    return [remote_post(i, f"Post {i} #seeded", people[i % len(people)]) for i in numbers]


async def _seed(database_url: str, hashtag: str, title: str, posts: Sequence[RemotePost]) -> Seeded:
    engine = make_engine(database_url)
    try:
        rooms = Rooms(engine, Hub(), Settings(), Presenter(make_templates().env))
        chat, key, sources = await rooms.create_chat(
            hashtag=hashtag, title=title, network="native", sources=[SourceSpec(SEED_NETWORK)]
        )
        stored = await _store(rooms, sources[0].id, posts)  # type: ignore[arg-type]
        return Seeded(chat.slug, key, stored, sources[0].id)  # type: ignore[arg-type]
    finally:
        engine.dispose()


async def _store(rooms: Rooms, source_id: int, posts: Sequence[RemotePost]) -> int:
    stored = 0
    for i in range(0, len(posts), BATCH):
        changes = [Upsert(p) for p in posts[i : i + BATCH]]
        stored += await rooms.store_batch(source_id, Batch(list(changes)))
    return stored


async def _add(database_url: str, room: Seeded, posts: Sequence[RemotePost]) -> Seeded:
    engine = make_engine(database_url)
    try:
        rooms = Rooms(engine, Hub(), Settings(), Presenter(make_templates().env))
        stored = await _store(rooms, room.source_id, posts)
        return Seeded(room.slug, room.moderator_key, room.posts + stored, room.source_id)
    finally:
        engine.dispose()


def seed_room(
    database_url: str, posts: Sequence[RemotePost], hashtag: str = "seeded", title: str = "Seeded"
) -> Seeded:
    """Create a native room and store ``posts`` in it, oldest first; returns its slug."""
    return _run(_seed(database_url, hashtag, title, posts))


def add_posts(database_url: str, room: Seeded, posts: Sequence[RemotePost]) -> Seeded:
    """Store more posts (with their events) in a room made by :func:`seed_room`."""
    return _run(_add(database_url, room, posts))


def _history_rows(chat_id: int, count: int) -> list[dict[str, object]]:
    people = [author(n) for n in ("Ada", "Ben", "Cleo", "Dev", "Eli")]
    start = datetime(2025, 1, 1, 18, 0, tzinfo=UTC)
    rows = []
    for i in range(1, count + 1):
        who = people[i % len(people)]
        plain = f"Post {i} #seeded"
        when = start + timedelta(seconds=i)
        rows.append(
            {
                "chat_id": chat_id,
                "network": SEED_NETWORK,
                "remote_id": f"seed:{i}",
                "author_name": who.name,
                "author_handle": who.handle,
                "text": plain,
                "html": text.render_text(plain),
                "media": [],
                "extra": {},
                "created_at": when,
                "stored_at": when,
            }
        )
    return rows


async def _history(database_url: str, count: int, hashtag: str) -> Seeded:
    engine = make_engine(database_url)
    try:
        rooms = Rooms(engine, Hub(), Settings(), Presenter(make_templates().env))
        chat, key, _ = await rooms.create_chat(hashtag=hashtag, title=hashtag, network="native")
        rows = _history_rows(chat.id, count)  # type: ignore[arg-type]
        with session_scope(engine) as session:
            for i in range(0, len(rows), BATCH):
                session.execute(insert(Post), rows[i : i + BATCH])
        return Seeded(slug=chat.slug, moderator_key=key, posts=count)
    finally:
        engine.dispose()


def seed_history(database_url: str, count: int, hashtag: str = "longchat") -> Seeded:
    """Create a native room holding ``count`` plain posts ("Post 1" … "Post N") in bulk."""
    return _run(_history(database_url, count, hashtag))


def _run(coro: Coroutine[object, object, Seeded]) -> Seeded:
    # In a thread of its own: Playwright's sync API keeps an event loop on the test's thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
