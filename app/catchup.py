"""What a connecting live client is sent before it goes live, from memory where possible.

A client connects with an offset it has seen (it resumes) or without one (it gets a snapshot:
the latest posts and pins). Either way the frames of a chat that has viewers are already in
this process: the hub keeps each viewed chat's latest frames (:class:`app.hub.Recent`) and
the snapshot built for the previous client. So a resume within those frames, or a snapshot
less than :data:`SNAPSHOT_TTL` old followed by the frames since, costs no database round
trip — a thousand clients reconnecting at once, or ten thousand opening the room, read the
log once. Only a chat nobody watched yet, a client further behind than the frames held, or
an old snapshot go to the database, and then one read serves every client waiting for it.

Correctness rests on the order the live endpoint keeps: a client is subscribed to the hub
*before* anything here is read, so a frame published later is in its backlog, and one
published earlier is in the record (the hub records and delivers each frame in one step).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from . import events
from .events import Frame, encode
from .hub import Hub, Recent
from .models import Chat
from .rooms import Rooms, chat_json

T = TypeVar("T")

SNAPSHOT_TTL = 1.0
"""Seconds a built snapshot is handed to new clients (followed by the frames since it).
Changes that are not events (a chat's title, say) reach new viewers within this time."""
SEED_ATTEMPTS = 3
"""Reads of the log that a busy chat may invalidate (a frame published during the read)
before a client is served from the database alone."""
CHAT_TTL = 5.0
"""Seconds a chat's slug is resolved from memory."""


class CatchUp:
    """Recent frames, snapshots and chat lookups for the live endpoint, one build at a time
    per chat (every other client waiting for it shares the result)."""

    def __init__(self, rooms: Rooms, hub: Hub) -> None:
        self._rooms = rooms
        self._hub = hub
        self._flights: dict[tuple[str, Any], asyncio.Future[Any]] = {}
        self._chats: dict[str, tuple[float, int]] = {}
        # Shown on /healthz: how many clients connected, and how often any of them needed
        # the database (chat lookups, log reads, snapshots built).
        self.stats = {"clients": 0, "database_reads": 0}

    async def read(self, fn: Callable[[Any], T]) -> T:
        """A counted database read (see :attr:`stats`)."""
        self.stats["database_reads"] += 1
        return await self._rooms.read(fn)

    async def _once(self, key: tuple[str, Any], build: Callable[[], Awaitable[T]]) -> T:
        """Run ``build`` once for every caller that asks with ``key`` while it runs."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(build())
            self._flights[key] = flight
            flight.add_done_callback(lambda _f: self._flights.pop(key, None))
        return await asyncio.shield(flight)

    async def chat_id(self, slug: str) -> int:
        """The id of the chat named ``slug`` (raises NotFound)."""
        now = time.monotonic()
        known = self._chats.get(slug)
        if known is not None and known[0] > now:
            return known[1]

        async def load() -> int:
            self.stats["database_reads"] += 1
            chat = await self._rooms.get_chat(slug)
            assert chat.id is not None
            if len(self._chats) > 10_000:  # names probed by clients: keep the map bounded
                self._chats.clear()
            self._chats[slug] = (time.monotonic() + CHAT_TTL, chat.id)
            return chat.id

        return await self._once(("chat", slug), load)

    async def recent(self, chat_id: int) -> Recent | None:
        """The chat's recent frames — from the hub, or read from the log and kept there.

        Call only while a subscriber of the chat is registered. None when the chat is so
        busy that every read was overtaken by a new frame: the caller reads the log itself.
        """
        limit = self._hub.recent_limit
        for _ in range(SEED_ATTEMPTS):
            recent = self._hub.recent(chat_id)
            if recent is not None:
                return recent

            async def seed() -> Recent | None:
                generation = self._hub.generation(chat_id)

                def read(session: Any) -> tuple[int, str, list[Frame]]:
                    head, epoch = events.head(session, chat_id)
                    frames = events.read_after(session, chat_id, max(0, head - limit), limit)
                    return head, epoch, frames

                head, epoch, frames = await self.read(read)
                return self._hub.seed_recent(chat_id, generation, epoch, head, frames)

            recent = await self._once(("recent", chat_id), seed)
            if recent is not None:
                return recent
        return None

    async def snapshot(self, chat_id: int, recent: Recent, reset: bool) -> Frame:
        """A snapshot frame of the chat (``reset`` tells a client that had posts to replace
        them): the one built for an earlier client while it is young and ``recent`` holds
        every frame since, else a new one. Its ``offset`` is the snapshot's."""
        cached = recent.snapshot
        if (
            cached is not None
            and time.monotonic() - cached[0] < SNAPSHOT_TTL
            and recent.covers(cached[1])
        ):
            return cached[2][reset]

        async def build() -> tuple[float, int, dict[bool, Frame]]:
            offset, payload = await self.build_snapshot(chat_id)
            frames = {
                flag: Frame(chat_id=chat_id, offset=offset, text=encode({**payload, "reset": flag}))
                for flag in (False, True)
            }
            return time.monotonic(), offset, frames

        built = await self._once(("snapshot", chat_id), build)
        if self._hub.recent(chat_id) is recent:
            recent.snapshot = built
        return built[2][reset]

    async def build_snapshot(self, chat_id: int) -> tuple[int, dict[str, Any]]:
        """A snapshot read from the database now: its offset, and the frame's payload
        without ``reset``."""
        self.stats["database_reads"] += 1
        snap = await self._rooms.snapshot(chat_id)
        chat = await self.read(lambda s: chat_json(s.get(Chat, chat_id)))  # type: ignore[arg-type]
        return snap.offset, {
            "type": "snapshot",
            "offset": snap.offset,
            "epoch": snap.epoch,
            "chat": chat,
            "posts": snap.posts,
            "pins": snap.pins,
            "past_questions": snap.past_questions,
        }
