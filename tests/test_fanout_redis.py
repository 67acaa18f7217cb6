"""The Redis bridge in one process against a real redis-server and a real database: what it
hands the hub is the event log in order — gaps filled from the log, duplicates dropped, a
silent Redis caught up by the sweep, an absent one by the poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app import events
from app.config import Settings
from app.db import make_engine, session_scope
from app.fanout_redis import RedisFanout, channel, encode_message
from app.hub import Hub, Subscriber
from app.models import Chat
from app.tasks import Supervisor
from tests.cluster import RedisServer

pytestmark = pytest.mark.timeout(60)


class Room:
    """A chat row, a fan-out bridge and one hub subscriber recording what it was sent."""

    def __init__(self, db_url: str, redis: RedisServer) -> None:
        self.engine = make_engine(db_url)
        self.redis = redis
        with session_scope(self.engine) as session:
            chat = Chat(
                slug="bridge", hashtag="bridge", title="t", epoch="e1", moderator_key_hash="-"
            )
            session.add(chat)
            session.flush()
            self.chat_id: int = chat.id  # type: ignore[assignment]
        self.hub = Hub()
        self.supervisor = Supervisor()
        # No sweep to begin with: what arrives must come from the gap fill.
        settings = Settings(redis_poll_interval=0.2, redis_sweep_interval=300)
        self.fanout = RedisFanout(redis.url, self.hub, self.engine, settings, self.supervisor)
        self.sent: list[int] = []

    def commit(self, n: int = 1) -> list[events.Frame]:
        """Commit ``n`` events straight to the log (no publish: the test decides that)."""
        with session_scope(self.engine) as session:
            return [events.append(session, self.chat_id, "notice", {"text": "x"}) for _ in range(n)]

    async def publish(self, *frames: events.Frame) -> None:
        client = aioredis.Redis.from_url(self.redis.url)
        try:
            for frame in frames:
                await client.publish(channel(frame.chat_id), encode_message(frame))
        finally:
            await client.aclose()

    async def until(self, offsets: list[int], what: str, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.sent != offsets:
            assert len(self.sent) <= len(offsets) and self.sent == offsets[: len(self.sent)], (
                f"{what}: hub got {self.sent}"
            )
            assert asyncio.get_running_loop().time() < deadline, f"{what}: hub got {self.sent}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def room(db_url: str, tmp_path: Path) -> AsyncIterator[Room]:
    redis = RedisServer(tmp_path / "redis.log").start()
    try:
        room = Room(db_url, redis)
    except BaseException:
        redis.stop()
        raise
    room.fanout.start()
    try:
        while not room.fanout.up:
            await asyncio.sleep(0.02)
        yield room
    finally:
        await room.supervisor.shutdown()
        await room.fanout.close()
        redis.stop()
        room.engine.dispose()


async def test_bridge_delivers_the_log_in_order_whatever_redis_does(room: Room) -> None:
    """Crossed and missing messages, a duplicate, a message never sent, Redis gone and back
    empty: the hub still gets offsets 1..n once each, in order."""
    room.commit(2)

    async def send(text: str) -> None:
        room.sent.append(int(text.split('"offset":')[1].split(",")[0]))

    sub = Subscriber(room.chat_id, send, limit=64, on_drop=lambda s: None)
    with room.hub.subscribe(sub):
        async with room.fanout.watching(room.chat_id):
            sub.last_offset = 2  # as if its history (1, 2) was read after watching began
            assert await sub.go_live()
            f3, f4, f5 = room.commit(3)
            await room.publish(f5, f3)  # crossed, and 4 never comes: read from the log
            await room.until([3, 4, 5], "gap fill")
            await room.publish(f4, f5)  # late duplicates
            (f6,) = room.commit(1)  # committed but never published: the sweep finds it
            room.fanout.settings = Settings(redis_poll_interval=0.2, redis_sweep_interval=0.3)
            room.fanout._mode_changed.set()  # start sweeping with the new interval now
            await room.until([3, 4, 5, 6], "sweep", timeout=3)
            assert room.fanout.counters["duplicates"] >= 2

            room.redis.stop()
            room.commit(2)  # Redis gone: the poll reads the log
            await room.until([3, 4, 5, 6, 7, 8], "poll while Redis is down", timeout=3)
            assert not room.fanout.up
            room.redis.start()  # back, empty
            for _ in range(300):
                if room.fanout.up:
                    break
                await asyncio.sleep(0.02)
            assert room.fanout.up, "the bridge did not return to Redis"
            (f9,) = room.commit(1)
            await room.publish(f9)
            await room.until([3, 4, 5, 6, 7, 8, 9], "after Redis came back")
        assert room.fanout.status()["chats_watched"] == 0  # the last viewer unsubscribed


async def test_a_chat_first_viewed_while_redis_is_down_is_subscribed_once_it_is_back(
    room: Room,
) -> None:
    """A viewer arriving during an outage is served from the log at once; when Redis returns
    the chat is subscribed, so the next published frame arrives without waiting for a sweep."""

    async def send(text: str) -> None:
        room.sent.append(int(text.split('"offset":')[1].split(",")[0]))

    room.redis.stop()
    while room.fanout.up:
        await asyncio.sleep(0.02)
    room.commit(1)
    sub = Subscriber(room.chat_id, send, limit=64, on_drop=lambda s: None)
    with room.hub.subscribe(sub):
        async with room.fanout.watching(room.chat_id):  # ready from the log, Redis or not
            sub.last_offset = 1
            assert await sub.go_live()
            room.redis.start()
            for _ in range(300):
                if room.fanout.status()["chats_subscribed"] == 1:
                    break
                await asyncio.sleep(0.02)
            assert room.fanout.status()["chats_subscribed"] == 1, room.fanout.status()
            (f2,) = room.commit(1)
            await room.publish(f2)
            await room.until([2], "published frame after the outage", timeout=1.5)
