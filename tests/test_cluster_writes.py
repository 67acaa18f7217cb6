"""Writes from several processes to one database: two writers (each its own engine, lock
and hub, as two processes have) storing the same network posts at once, and pinning the
same post at once, leave one row each, gap-free offsets and no error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine
from app.hub import Hub
from app.models import Event, Pin, Post
from app.networks.base import Author, Batch, RemotePost, Upsert
from app.present import Presenter
from app.rooms import Rooms, SourceSpec
from app.templating import make_templates

pytestmark = [pytest.mark.db, pytest.mark.timeout(60)]


def writer(db_url: str) -> Rooms:
    return Rooms(make_engine(db_url), Hub(), Settings(), Presenter(make_templates().env))


def remote(n: int) -> RemotePost:
    return RemotePost(
        network="mastodon",
        remote_id=f"https://social.example/@ann/{n}",
        author=Author(name="Ann", handle="@ann@social.example"),
        created_at=datetime.now(UTC),
        text=f"answer {n} #edchat",
    )


async def test_two_writers_store_the_same_posts_once(db_url: str) -> None:
    """The same 40 posts delivered through two sources by two writers concurrently: 40
    posts, 40 events with offsets 1..40, and no write failed on uq_post_remote."""
    one, two = writer(db_url), writer(db_url)
    chat, _key, sources = await one.create_chat(
        hashtag="edchat",
        title="t",
        network="mastodon",
        sources=[
            SourceSpec("mastodon", {"instance": "a.example"}),
            SourceSpec("mastodon", {"instance": "b.example"}),
        ],
    )
    a, b = (s.id for s in sources)

    async def deliver(rooms: Rooms, source_id: int) -> None:
        for n in range(40):
            await rooms.store_batch(source_id, Batch(changes=[Upsert(remote(n))]))  # type: ignore[arg-type]

    await asyncio.gather(deliver(one, a), deliver(two, b))  # type: ignore[arg-type]
    with Session(one.engine) as session:
        posts = session.execute(select(func.count()).where(Post.chat_id == chat.id)).scalar()
        offsets = session.execute(
            select(Event.offset).where(Event.chat_id == chat.id).order_by(Event.offset)
        ).scalars()
        assert posts == 40
        assert list(offsets) == list(range(1, 41))
    for rooms in (one, two):
        rooms.engine.dispose()


async def test_two_writers_pin_the_same_post_once(db_url: str) -> None:
    """Pinning one post from two writers at once leaves one current pin and one pin event
    (the chat's row lock orders the two checks)."""
    one, two = writer(db_url), writer(db_url)
    chat, _key, _ = await one.create_chat(hashtag="pins", title="t")
    post = await one.add_native_post(chat.slug, "Q1 what works?", "Host")
    for _ in range(5):
        await asyncio.gather(one.pin(chat.slug, post["id"]), two.pin(chat.slug, post["id"]))
    with Session(one.engine) as session:
        pins = session.execute(
            select(func.count()).where(Pin.post_id == post["id"], Pin.unpinned_at.is_(None))  # type: ignore[union-attr]
        ).scalar()
        pin_events = session.execute(
            select(func.count()).where(Event.chat_id == chat.id, Event.type == "pin")
        ).scalar()
    assert pins == 1 and pin_events == 1
    for rooms in (one, two):
        rooms.engine.dispose()
