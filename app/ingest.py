"""Runs network followers: one supervised task per source, committing in small batches.

A follower yields :class:`~app.networks.base.Batch` objects; a reader task moves them into a
bounded queue and the writer loop here merges whatever is waiting (up to
``ingest_batch_size`` changes, or ``ingest_batch_window`` seconds) into one transaction with
the newest cursor. On any failure the follower is restarted from the last *committed* cursor
after a capped, jittered backoff, so nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .leases import Leases, run_while_holding, source_lease
from .models import Chat, Source
from .networks.base import AuthError, Batch, Follower, NetworkError
from .rooms import NotFound, Rooms
from .tasks import Supervisor

log = logging.getLogger(__name__)

QUEUE_BATCHES = 64  # batches a follower may run ahead of the database before it waits

FollowerFactory = Callable[[Source, Chat], Follower | Awaitable[Follower]]


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Full-jitter exponential backoff: uniform in [base/2, min(cap, base·2^attempt)]."""
    ceiling = min(cap, base * (2 ** min(attempt, 20)))
    return random.uniform(min(base / 2, ceiling), ceiling)


@dataclass(slots=True)
class IngestStatus:
    """What /healthz shows for one source."""

    source_id: int
    chat: str
    network: str
    state: str = "starting"
    last_error: str | None = None
    last_error_at: float | None = None
    last_batch_at: float | None = None
    posts_stored: int = 0
    restarts: int = 0
    holder: str | None = None  # with leases: the process following it (None: not this one)
    notices: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"budget": {...}} from X

    def as_json(self) -> dict[str, Any]:
        return {
            **self.detail,
            "source_id": self.source_id,
            "chat": self.chat,
            "network": self.network,
            "state": self.state,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_batch_at": self.last_batch_at,
            "posts_stored": self.posts_stored,
            "restarts": self.restarts,
            **({"holder": self.holder} if self.holder is not None else {}),
        }


class _Notice:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Context:
    """The FollowContext handed to a follower."""

    def __init__(self, status: IngestStatus, queue: asyncio.Queue[Any]) -> None:
        self._status = status
        self._queue = queue

    def report(self, state: str, error: str | None = None) -> None:
        self._status.state = state
        if error:
            self._status.last_error = error
            self._status.last_error_at = time.time()

    def detail(self, info: dict[str, Any]) -> None:
        self._status.detail = dict(info)

    def notice(self, message: str) -> None:
        try:
            self._queue.put_nowait(_Notice(message))
        except asyncio.QueueFull:
            log.warning("notice dropped (queue full): %s", message)


class Ingester:
    """Follows one source forever; restarts its follower after failures."""

    def __init__(
        self,
        rooms: Rooms,
        source: Source,
        chat: Chat,
        factory: FollowerFactory,
        settings: Settings,
    ) -> None:
        self.rooms = rooms
        self.source_id: int = source.id  # type: ignore[assignment]
        self.chat_id: int = chat.id  # type: ignore[assignment]
        self.source = source
        self.chat = chat
        self.factory = factory
        self.settings = settings
        self.status = IngestStatus(source_id=self.source_id, chat=chat.slug, network=source.network)
        self._noticed: set[str] = set()

    async def run(self) -> None:
        """Follow until cancelled. Never raises except on cancellation or a deleted source."""
        attempt = 0
        while True:
            try:
                cursor = await self.rooms.source_cursor(self.source_id)
                follower = self.factory(self.source, self.chat)
                if inspect.isawaitable(follower):  # factories may need I/O (e.g. known ids)
                    follower = await follower
                stored = await self.run_once(follower, cursor)
                attempt = 0 if stored else attempt
                self.status.state = "restarting"
                delay = backoff_delay(
                    attempt, self.settings.backoff_base, self.settings.backoff_cap
                )
            except asyncio.CancelledError:
                self.status.state = "stopped"
                raise
            except NotFound:
                self.status.state = "stopped"
                return
            except Exception as exc:
                self.status.restarts += 1
                # Network errors are worded from status codes and kinds of failure only
                # (docs/security.md); any other exception's text may quote what a server
                # sent, so only its type is shown (the log keeps the traceback).
                self.status.last_error = (
                    f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, NetworkError)
                    else f"{type(exc).__name__} (details in the server log)"
                )
                self.status.last_error_at = time.time()
                delay = backoff_delay(
                    attempt, self.settings.backoff_base, self.settings.backoff_cap
                )
                if isinstance(exc, NetworkError) and exc.retry_after:
                    delay = max(delay, min(exc.retry_after, 3600.0))
                if isinstance(exc, AuthError):
                    self.status.state = "auth failed, retrying"
                else:
                    self.status.state = "backing off"
                log.warning(
                    "ingester %s (%s) failed, retrying in %.1fs: %s",
                    self.source_id,
                    self.source.network,
                    delay,
                    self.status.last_error,
                    exc_info=not isinstance(exc, NetworkError),
                )
            attempt += 1
            await asyncio.sleep(delay)

    async def run_once(self, follower: Follower, cursor: str | None) -> int:
        """Run one follower from ``cursor`` until it ends or fails. Returns posts stored.

        Exposed separately so tests can drive a single cycle.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_BATCHES)
        ctx = _Context(self.status, queue)
        reader = asyncio.get_running_loop().create_task(
            self._read(follower, cursor, ctx, queue), name=f"ingest-read-{self.source_id}"
        )
        stored = 0
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return stored
                if isinstance(item, _Notice):
                    await self._notice(item.text)
                    continue
                batch, end = await self._gather(item, queue)
                if batch.changes or batch.cursor is not None:
                    n = await self.rooms.store_batch(self.source_id, batch)
                    stored += n
                    self.status.posts_stored += n
                    self.status.last_batch_at = time.time()
                if end is not None:
                    if end.error is not None:
                        raise end.error
                    return stored
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(
        self, follower: Follower, cursor: str | None, ctx: _Context, queue: asyncio.Queue[Any]
    ) -> None:
        batches = follower.follow(cursor, ctx)
        try:
            async for batch in batches:
                await queue.put(batch)
        except asyncio.CancelledError:
            # Close the follower now, not at garbage collection: its cleanup (e.g. removing
            # an X stream rule) must run while the HTTP client is still open.
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            raise
        except BaseException as exc:
            await queue.put(_End(exc))
        else:
            await queue.put(_End(None))

    async def _gather(self, first: Batch, queue: asyncio.Queue[Any]) -> tuple[Batch, _End | None]:
        """Merge batches already waiting (or arriving within the window) into one."""
        changes = list(first.changes)
        cursor = first.cursor
        end: _End | None = None
        deadline = time.monotonic() + self.settings.ingest_batch_window
        while len(changes) < self.settings.ingest_batch_size:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if isinstance(item, _End):
                end = item
                break
            if isinstance(item, _Notice):
                await self._notice(item.text)
                continue
            changes.extend(item.changes)
            if item.cursor is not None:
                cursor = item.cursor
        return Batch(changes=changes, cursor=cursor), end

    async def _notice(self, text: str) -> None:
        if text in self._noticed:
            return
        self._noticed.add(text)
        self.status.notices.append(text)
        await self.rooms.add_notice(self.chat_id, text)


class IngestManager:
    """Starts and stops ingesters under the supervisor; knows which factory serves a network."""

    def __init__(
        self,
        rooms: Rooms,
        supervisor: Supervisor,
        settings: Settings,
        factories: dict[str, FollowerFactory],
        leases: Leases | None = None,
    ) -> None:
        self.rooms = rooms
        self.supervisor = supervisor
        self.settings = settings
        self.factories = factories
        # In a cluster each source is followed only by the process holding its lease.
        self.leases = leases
        self.ingesters: dict[int, Ingester] = {}
        # Set by app.scheduler.Scheduler: chats with a schedule are followed around their
        # sessions only, so starting one just asks the scheduler to plan again.
        self.on_scheduled: Callable[[], None] | None = None

    def start(self, source: Source, chat: Chat) -> bool:
        """Start following ``source``; False when no follower serves its network, or when
        the chat has a schedule and the scheduler will follow it around its sessions."""
        if chat.schedule_start and self.on_scheduled is not None:
            self.on_scheduled()
            return False
        return self.start_now(source, chat)

    def start_now(self, source: Source, chat: Chat) -> bool:
        """Start following ``source`` whatever its schedule; False when no follower serves
        its network or it is already followed."""
        factory = self.factories.get(source.network)
        if factory is None or source.id in self.ingesters:
            return False
        ingester = Ingester(self.rooms, source, chat, factory, self.settings)
        self.ingesters[source.id] = ingester  # type: ignore[index]
        self.supervisor.start(f"ingest-{source.id}", self._follow(ingester))
        return True

    async def _follow(self, ingester: Ingester) -> None:
        """Run ``ingester`` while this process holds its source's lease; when the lease is
        lost, stop at once and wait to win it again (resuming from the stored cursor)."""

        def standby() -> None:
            ingester.status.state = "standby (another process follows it)"
            ingester.status.holder = None

        def hold() -> None:
            ingester.status.holder = self.leases.holder if self.leases else None

        await run_while_holding(
            self.leases, source_lease(ingester.source_id), ingester.run, standby, hold
        )

    async def start_all(self) -> int:
        n = 0
        for source, chat in await self.rooms.sources():
            n += self.start(source, chat)
        return n

    async def restart_chat(self, chat: Chat) -> int:
        """Restart the running followers of ``chat`` with this copy of its row (e.g. after
        its hashtags changed); each resumes from its committed cursor. Sources not running
        (outside a scheduled session) are left to the scheduler, which reads the row anew.
        Returns how many restarted."""
        running = [i for i in self.ingesters.values() if i.chat_id == chat.id]
        for ingester in running:
            await self.stop(ingester.source_id)
            self.start_now(ingester.source, chat)
        return len(running)

    async def stop(self, source_id: int) -> None:
        await self.supervisor.stop(f"ingest-{source_id}")
        self.ingesters.pop(source_id, None)

    def statuses(self) -> list[dict[str, Any]]:
        return [i.status.as_json() for i in self.ingesters.values()]
