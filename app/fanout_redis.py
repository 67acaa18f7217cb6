"""Cross-process fan-out through Redis pub/sub, with the event log as the truth.

Several web processes on one database each have their own :class:`~app.hub.Hub`. A process
that commits a change publishes its frames on the chat's channel (``hashroom:chat:<id>``,
payload ``{"chat", "epoch", "offset", "frame"}``); every process subscribes to a chat's
channel only while it has viewers of that chat, and hands frames to its hub strictly in
offset order through one sequencer per chat (:class:`_Feed`):

* a frame at or below the last offset delivered is a duplicate and is dropped;
* a frame past the next expected offset waits; if the missing ones do not arrive within
  :data:`GAP_GRACE` (two writers' messages can cross), they are read from the event log;
* after (re)subscribing, the feed reads the log up to the chat's head before trusting the
  channel, so a missed message, a resubscribe or a Redis restarted empty loses nothing;
* while Redis is unreachable the process reads the log of its viewed chats every
  ``redis_poll_interval`` seconds and reconnects with capped backoff; while it is reachable
  a slower sweep (``redis_sweep_interval``) catches a message Redis dropped.

Frames committed by this process are delivered locally at once (through the same sequencer)
and published for the others. Nothing here knows about websockets: the hub does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import events
from .config import Settings
from .events import Frame
from .hub import Hub
from .ingest import backoff_delay
from .tasks import Supervisor

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL_PREFIX = "hashroom:chat:"
# Chat ids whose hosts/blocks/rules changed: every process drops its cached copy.
CONFIG_CHANNEL = "hashroom:config"
# How long a frame past a gap waits for the missing ones before the log is read: frames of
# two processes writing one chat can arrive crossed, and the next message usually closes
# the gap. Short, because readers wait for it.
GAP_GRACE = 0.05
# Frames one chat may hold past a gap; beyond that they are forgotten and read from the log.
PENDING_LIMIT = 4096
FILL_PAGE = 500
# Reconnecting to Redis: first retry after about RECONNECT_BASE s, never more than
# RECONNECT_CAP s apart (the poll fallback serves meanwhile).
RECONNECT_BASE = 0.25
RECONNECT_CAP = 5.0
REDIS_TIMEOUT = 2.0  # connect and command timeout (s): a stalled Redis must not hold writes
READ_TIMEOUT = 1.0  # how long one pub/sub read waits before looping (keeps health checks)
READY_TIMEOUT = 10.0  # a viewer gives up when its chat's log cannot be read this long


def channel(chat_id: int) -> str:
    return f"{CHANNEL_PREFIX}{chat_id}"


def encode_message(frame: Frame) -> str:
    return json.dumps(
        {"chat": frame.chat_id, "epoch": frame.epoch, "offset": frame.offset, "frame": frame.text},
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass(slots=True, eq=False)
class _Feed:
    """One chat this process has viewers of: the sequencer between Redis, the log and the
    hub."""

    chat_id: int
    viewers: int = 0
    delivered: int | None = None  # last offset handed to the hub; None until the head is read
    epoch: str = ""
    pending: dict[int, Frame] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    filling: bool = False
    again: bool = False  # another fill was asked for while one ran
    want_head: bool = False  # the next fill reads up to the chat's head


class RedisFanout:
    """Carries committed frames between the processes of a cluster (see the module)."""

    def __init__(
        self, url: str, hub: Hub, engine: Engine, settings: Settings, supervisor: Supervisor
    ) -> None:
        self.url = url
        self.hub = hub
        self.engine = engine
        self.settings = settings
        self.supervisor = supervisor
        self.client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            health_check_interval=10,
        )
        self.up = False
        # Called with a chat id whose cached configuration another process changed.
        self.on_config: Callable[[int], None] = lambda _chat_id: None
        # Called with a chat id whose followed sources another process changed (its hashtags):
        # this process restarts the followers of that chat it runs, so the lease holder,
        # wherever it is, follows the new list.
        self.on_sources: Callable[[int], None] = lambda _chat_id: None
        self._feeds: dict[int, _Feed] = {}
        self._pubsub: Any = None
        self._unconfirmed: dict[str, int] = {}  # SUBSCRIBEs sent but not yet confirmed
        self._subscribed: set[str] = set()  # channels SUBSCRIBEd on the current connection
        self._unsubscribed = False  # a chat gained viewers while no connection was up
        self._mode_changed = asyncio.Event()
        self._fills = 0
        self.counters = {"from_redis": 0, "from_log": 0, "duplicates": 0, "reconnects": 0}
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the subscriber and the poll/sweep loop under the supervisor."""
        self.supervisor.start("fanout-redis", self._run())
        self.supervisor.start("fanout-poll", self._poll())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()

    def status(self) -> dict[str, Any]:
        return {
            "mode": "redis",
            "connected": self.up,
            "chats_watched": len(self._feeds),
            "chats_subscribed": sum(
                1 for n in self._subscribed if n not in self._unconfirmed and self.up
            ),
            **self.counters,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    # -- what rooms and live clients call -------------------------------------------------

    @asynccontextmanager
    async def watching(self, chat_id: int) -> AsyncIterator[None]:
        """Held by each live client of ``chat_id``. On entry the chat's feed is subscribed
        and knows its head, so every frame past what the client then reads from the log
        reaches the hub; the last client to leave unsubscribes."""
        feed = self._feeds.get(chat_id)
        created = feed is None
        if feed is None:
            feed = self._feeds[chat_id] = _Feed(chat_id)
        feed.viewers += 1
        try:
            if created:
                await self._subscribe(feed)
            await self._until_ready(feed)
            yield
        finally:
            feed.viewers -= 1
            if feed.viewers == 0 and self._feeds.get(chat_id) is feed:
                del self._feeds[chat_id]
                await self._unsubscribe(chat_id)

    async def committed(self, frames: list[Frame]) -> None:
        """Deliver frames this process just committed (in offset order) to its own viewers,
        then publish them for the other processes."""
        if not frames:
            return
        by_chat: dict[int, list[Frame]] = {}
        for frame in frames:
            by_chat.setdefault(frame.chat_id, []).append(frame)
        for chat_id, chat_frames in by_chat.items():
            feed = self._feeds.get(chat_id)
            if feed is not None:
                self._offer(feed, chat_frames)
        if not self.up:
            return  # the others read the log meanwhile (poll fallback, sweep)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for frame in frames:
                    pipe.publish(channel(frame.chat_id), encode_message(frame))
                await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT)
        except Exception as exc:  # the others catch up from the log: never fail a write
            self._error(f"publish failed: {exc!r}")

    async def config_changed(self, chat_ids: set[int]) -> None:
        """Tell every process to drop its cached hosts/blocks/rules of ``chat_ids`` (they
        re-read within app.policy.CONFIG_TTL anyway when Redis is away)."""
        if not chat_ids or not self.up:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for chat_id in chat_ids:
                    pipe.publish(CONFIG_CHANNEL, str(chat_id))
                await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT)
        except Exception as exc:
            self._error(f"publish failed: {exc!r}")

    async def sources_changed(self, chat_id: int) -> None:
        """Tell the other processes to restart their followers of ``chat_id``. Without Redis
        they pick the change up when they next start those followers."""
        if not self.up:
            return
        try:
            message = f"sources:{chat_id}:{self.settings.process_name}"
            await asyncio.wait_for(self.client.publish(CONFIG_CHANNEL, message), REDIS_TIMEOUT)
        except Exception as exc:
            self._error(f"publish failed: {exc!r}")

    # -- sequencing -----------------------------------------------------------------------

    def _offer(self, feed: _Feed, frames: list[Frame]) -> None:
        """Take frames of ``feed``'s chat in any order; deliver what is next in line."""
        floor = feed.delivered if feed.delivered is not None else -1
        for frame in frames:
            if frame.offset <= floor or frame.offset in feed.pending:
                self.counters["duplicates"] += 1
                continue
            feed.pending[frame.offset] = frame
        if len(feed.pending) > PENDING_LIMIT:
            feed.pending.clear()  # bounded memory: all of them are in the log
            self._kick(feed, to_head=True)
            return
        self._flush(feed)

    def _flush(self, feed: _Feed) -> None:
        if feed.delivered is None:
            return
        out: list[Frame] = []
        nxt = feed.delivered + 1
        while (frame := feed.pending.pop(nxt, None)) is not None:
            out.append(frame)
            nxt += 1
        if out:
            feed.delivered = nxt - 1
            self.hub.publish(out)
        if feed.pending and not feed.filling:  # a running fill sees the gap itself
            self._kick(feed, grace=GAP_GRACE)

    def _kick(self, feed: _Feed, *, grace: float = 0.0, to_head: bool = False) -> None:
        """Make sure a fill runs for ``feed`` (at most one at a time per chat)."""
        feed.want_head = feed.want_head or to_head
        if feed.filling:
            feed.again = True
            return
        feed.filling = True
        self._fills += 1  # unique names: a feed's successor may start while it winds down
        self.supervisor.start(f"fanout-fill-{feed.chat_id}-{self._fills}", self._fill(feed, grace))

    async def _fill(self, feed: _Feed, grace: float) -> None:
        """Read the log after the feed's last delivered offset until the gap is closed (or,
        when asked, up to the chat's head)."""
        try:
            if grace:
                await asyncio.sleep(grace)
            while self._feeds.get(feed.chat_id) is feed:
                feed.again = False
                start = feed.delivered
                target = -1
                if feed.delivered is None or feed.want_head:
                    feed.want_head = False
                    head, epoch = await self._read(lambda s: events.head(s, feed.chat_id))
                    if feed.delivered is None:
                        feed.delivered, feed.epoch = head, epoch
                        for offset in [o for o in feed.pending if o <= head]:
                            del feed.pending[offset]
                        feed.ready.set()
                    target = head
                self._flush(feed)
                if feed.pending:
                    target = max(target, max(feed.pending))
                while feed.delivered is not None and feed.delivered < target:
                    after = feed.delivered
                    frames = await self._read(
                        lambda s, a=after: events.read_after(s, feed.chat_id, a, FILL_PAGE)
                    )
                    if not frames:
                        break
                    self.counters["from_log"] += sum(1 for f in frames if f.offset > after)
                    self._offer(feed, frames)
                # Repeat when asked meanwhile, or when frames past a new gap came in while
                # this round made progress; otherwise the next message or sweep kicks again.
                if not (feed.again or (feed.pending and feed.delivered != start)):
                    return
        finally:
            feed.filling = False

    async def _until_ready(self, feed: _Feed) -> None:
        started = time.monotonic()
        deadline = started + READY_TIMEOUT
        while not feed.ready.is_set():
            if not self.up or self._pubsub is None or time.monotonic() - started > 2.0:
                # No subscription to wait for (or its answer is late): read the log now;
                # the subscription, when it comes, catches up, and the sweep covers the rest.
                self._kick(feed, to_head=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"chat {feed.chat_id}: event log unreachable")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(feed.ready.wait(), min(1.0, remaining))

    # -- Redis ----------------------------------------------------------------------------

    async def _subscribe(self, feed: _Feed) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.up:
            # _until_ready reads the log; the subscriber loop subscribes once connected.
            self._unsubscribed = True
            return
        name = channel(feed.chat_id)
        self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
        self._subscribed.add(name)
        try:
            await pubsub.subscribe(name)
        except Exception as exc:
            self._error(f"subscribe failed: {exc!r}")

    async def _unsubscribe(self, chat_id: int) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        self._subscribed.discard(channel(chat_id))
        try:
            await pubsub.unsubscribe(channel(chat_id))
        except Exception as exc:
            self._error(f"unsubscribe failed: {exc!r}")

    async def _run(self) -> None:
        """Stay subscribed; after a failure reconnect with capped, jittered backoff."""
        attempt = 0
        while True:
            connected_at = time.monotonic()
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error(f"subscriber: {exc!r}")
            if self.up:
                log.warning("lost Redis: reading the event log every %ss meanwhile",
                            self.settings.redis_poll_interval)  # fmt: skip
            self._set_up(False)
            if time.monotonic() - connected_at > RECONNECT_CAP:
                attempt = 0
            await asyncio.sleep(backoff_delay(attempt, RECONNECT_BASE, RECONNECT_CAP))
            attempt += 1
            self.counters["reconnects"] += 1

    async def _listen(self) -> None:
        pubsub = self.client.pubsub()
        self._unconfirmed.clear()
        try:
            names = [channel(chat_id) for chat_id in self._feeds]
            for name in names:
                self._unconfirmed[name] = 1
            self._subscribed = set(names)
            self._pubsub = pubsub
            await pubsub.subscribe(CONFIG_CHANNEL, *names)
            while True:
                message = await pubsub.get_message(timeout=READ_TIMEOUT)
                if message is not None:
                    self._handle(message)
                if self._unsubscribed and self.up:
                    # Chats that gained viewers while this connection was being set up.
                    self._unsubscribed = False
                    missing = {channel(c) for c in self._feeds} - self._subscribed
                    for name in missing:
                        self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
                    self._subscribed |= missing
                    if missing:
                        await pubsub.subscribe(*missing)
        finally:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _handle(self, message: dict[str, Any]) -> None:
        kind, name = message.get("type"), message.get("channel")
        if name == CONFIG_CHANNEL:
            if kind == "subscribe":
                if not self.up:
                    log.info("subscribed to Redis fan-out at %s", _redacted(self.url))
                self._set_up(True)
            elif kind == "message":
                data = str(message.get("data", ""))
                if data.startswith("sources:"):
                    _, chat_id, origin = (data.split(":", 2) + ["", ""])[:3]
                    if chat_id.isdigit() and origin != self.settings.process_name:
                        self.on_sources(int(chat_id))
                    return
                with contextlib.suppress(ValueError):
                    self.on_config(int(data))
            return
        if not isinstance(name, str) or not name.startswith(CHANNEL_PREFIX):
            return
        try:
            chat_id = int(name[len(CHANNEL_PREFIX) :])
        except ValueError:
            return
        if kind == "subscribe":
            left = self._unconfirmed.get(name, 1) - 1
            if left > 0:
                self._unconfirmed[name] = left
                return  # an older SUBSCRIBE's answer: wait for the newest
            self._unconfirmed.pop(name, None)
            feed = self._feeds.get(chat_id)
            if feed is not None:
                # Subscribed (again): read the log up to the head before trusting the channel.
                self._kick(feed, to_head=True)
        elif kind == "message":
            feed = self._feeds.get(chat_id)
            if feed is None:
                return
            try:
                data = json.loads(message["data"])
                frame = Frame(chat_id=chat_id, offset=int(data["offset"]), text=data["frame"])
                epoch = data.get("epoch") or ""
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed message on %s", name)
                return
            if feed.epoch and epoch and epoch != feed.epoch:
                return  # another life of this chat id: the log is read instead
            self.counters["from_redis"] += 1
            self._offer(feed, [frame])

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self._mode_changed.set()

    def _error(self, text: str) -> None:
        if text != self.last_error:
            log.warning("redis fan-out: %s", text)
        self.last_error = text
        self.last_error_at = time.time()

    # -- the poll fallback and the sweep --------------------------------------------------

    async def _poll(self) -> None:
        """Read the heads of viewed chats: every poll interval while Redis is away, every
        sweep interval while it is there; fill any chat that is behind."""
        while True:
            self._mode_changed.clear()
            interval = (
                self.settings.redis_sweep_interval if self.up else self.settings.redis_poll_interval
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._mode_changed.wait(), interval)
            ids = [c for c, f in self._feeds.items() if f.delivered is not None]
            if not ids:
                continue
            try:
                heads = await self._read(lambda s, ids=ids: events.heads(s, ids))
            except Exception as exc:
                self._error(f"reading the event log failed: {exc!r}")
                continue
            for chat_id, (head, _epoch) in heads.items():
                feed = self._feeds.get(chat_id)
                if feed is not None and feed.delivered is not None and head > feed.delivered:
                    self._kick(feed, to_head=True)

    async def _read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with Session(self.engine) as session:
                return fn(session)

        return await asyncio.to_thread(run)


def _redacted(url: str) -> str:
    """The URL without its password (logs travel further than the operator's terminal)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
