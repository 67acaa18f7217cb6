"""In-process fan-out of event frames to websocket clients.

Design: one task and queue per client costs about a third of the fan-out throughput on a
2-core box, while a plain loop of ``await ws.send()`` lets one client with a full socket buffer
stall everyone. So :meth:`Subscriber.deliver` writes each frame synchronously — straight into
the connection when :mod:`app.wsdirect` can (what ``websockets.broadcast()`` does), else by
driving the ASGI ``send`` coroutine by hand, which completes without suspending unless that
client's transport is paused — and only when a send really has to wait does that one client
get a task, with later frames kept in its bounded backlog. A live client whose backlog
overflows is disconnected; it resumes from its last offset. (bench/fanout.py measures the
result against a raw ``websockets.broadcast()`` server; figures in docs/benchmarks.md.)

Frames are encoded once per event (by :mod:`app.events`): the same ``str``/``bytes`` goes to
every client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

from .events import Frame, encode
from .wsdirect import DirectWriter

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]

# Every subscriber starts with this shared, always-empty backlog and gets a deque of its own
# only when it first has to keep a frame (:meth:`Subscriber._keep`): most never do, and an
# empty deque costs about 0.7 KB — at 10,000 clients, 7 MB.
_NO_BACKLOG: deque[Frame] = deque(maxlen=0)

# Replayed frames are joined into writes of about this size: one system call for many frames,
# while a reader far behind still gets its bytes in pieces the transport can pace.
REPLAY_WRITE_BYTES = 256 * 1024


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Finish driving ``coro``, which already yielded ``pending`` when started by hand.

    This is what a task does for a coroutine; ``yield`` hands the future the coroutine waits on
    to the surrounding task, and values/exceptions sent back are passed through.
    """
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown into us by the task (e.g. cancellation)
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class Subscriber:
    """One websocket client of one chat.

    Until :meth:`go_live` it only buffers (the handler is replaying history); afterwards frames
    are sent as they come, skipping any offset already sent, so replay and live never duplicate.
    """

    __slots__ = (
        "chat_id",
        "_send",
        "_limit",
        "_on_drop",
        "backlog",
        "live",
        "last_offset",
        "closed",
        "close_reason",
        "_task",
        "_write_now",
        "lagging",
    )

    def __init__(
        self,
        chat_id: int,
        send: SendText,
        *,
        limit: int,
        on_drop: Callable[[Subscriber], None],
        last_offset: int = 0,
        write_now: DirectWriter | None = None,
    ) -> None:
        self.chat_id = chat_id
        self._send = send
        self._limit = limit
        self._on_drop = on_drop
        self.backlog: deque[Frame] = _NO_BACKLOG
        self.live = False
        self.last_offset = last_offset
        self.closed = False
        self.lagging = False  # the catch-up buffer overflowed: re-read the event log
        self.close_reason = ""
        self._task: asyncio.Task[None] | None = None
        # Optional synchronous writer of prebuilt frames (see app/wsdirect.py).
        self._write_now = write_now

    @property
    def direct(self) -> bool:
        return self._write_now is not None

    @property
    def busy(self) -> bool:
        """True while a send is waiting on a full socket buffer."""
        return self._task is not None

    def deliver(self, frame: Frame) -> None:
        """Queue or start sending ``frame``. Never awaits; never blocks other clients."""
        if self.closed:
            return
        if not self.live:
            # Catching up: the server, not the client, is behind. Rather than drop the client,
            # forget the buffer; every frame is in the event log, so the handler re-reads.
            if self.lagging:
                return
            if len(self.backlog) >= self._limit:
                self.backlog.clear()
                self.lagging = True
                return
            self._keep(frame)
            return
        if self._task is not None:
            if len(self.backlog) >= self._limit:
                self._drop("too far behind")
                return
            self._keep(frame)
            return
        if frame.offset <= self.last_offset:
            return
        if frame.offset != self.last_offset + 1:
            # A frame went missing between commit and here; the client must resync by offset.
            self._drop(f"gap: expected {self.last_offset + 1}, got {frame.offset}")
            return
        self.last_offset = frame.offset
        if self._write_now is not None:
            try:
                if self._write_now.write(frame.wire):
                    return
            except Exception as exc:
                self._drop(f"send failed: {exc!r}")
                return
        self._start(frame.text)

    def _keep(self, frame: Frame) -> None:
        if self.backlog is _NO_BACKLOG:
            self.backlog = deque()
        self.backlog.append(frame)

    def ping(self, frame: Frame) -> None:
        """Send the keep-alive ``frame`` (no offset) if this client is live and its socket
        takes it now; a client that is busy or paused already has bytes on the way."""
        if self.closed or not self.live or self._task is not None:
            return
        if self._write_now is None:
            self._start(frame.text)
            return
        try:
            self._write_now.write(frame.wire)
        except Exception as exc:
            self._drop(f"send failed: {exc!r}")

    async def send_frames(self, frames: list[Frame]) -> None:
        """Send ``frames`` (in offset order: a snapshot, logged events) directly, before
        :meth:`go_live`; the last one's offset becomes :attr:`last_offset`.

        Through the direct writer the frames' shared bytes go out joined, a few hundred
        kilobytes per write, waiting for the transport to drain between writes; otherwise one
        awaited ASGI send each.
        """
        if not frames:
            return
        writer = self._write_now
        if writer is None:
            for frame in frames:
                await self._send(frame.text)
                self.last_offset = frame.offset
            return
        chunk: list[bytes] = []
        size = 0
        for i, frame in enumerate(frames):
            chunk.append(frame.wire)
            size += len(frame.wire)
            if size >= REPLAY_WRITE_BYTES or i == len(frames) - 1:
                data = b"".join(chunk)
                while not writer.write(data):
                    await writer.drained()
                chunk, size = [], 0
        self.last_offset = frames[-1].offset

    def start_buffering(self) -> None:
        """Begin (again) to keep published frames; call *before* reading the event log."""
        self.backlog.clear()
        self.lagging = False

    async def go_live(self) -> bool:
        """Flush what arrived during replay, then switch to direct delivery.

        False when the buffer overflowed meanwhile (``lagging``): nothing is lost — the
        caller reads the event log again after :attr:`last_offset` and tries again.
        """
        while self.backlog and not self.lagging:
            batch = [f for f in self.backlog if f.offset > self.last_offset]
            self.backlog.clear()
            await self.send_frames(batch)
        if self.lagging:
            self.backlog.clear()
            return False
        # No await between the checks above and this line: nothing can slip in.
        self.live = True
        return True

    def _start(self, text: str) -> None:
        coro = self._send(text)
        try:
            pending = coro.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return  # the common case: written to the transport without waiting
        except Exception as exc:
            self._drop(f"send failed: {exc!r}")
            return
        self._task = asyncio.get_running_loop().create_task(self._finish(coro, pending))

    async def _finish(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        try:
            await _resume(coro, pending)
            while self.backlog and not self.closed:
                frame = self.backlog.popleft()
                if frame.offset <= self.last_offset:
                    continue
                self.last_offset = frame.offset
                await self._send(frame.text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drop(f"send failed: {exc!r}")
        finally:
            self._task = None

    def _drop(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.backlog.clear()
        self._on_drop(self)

    def cancel(self) -> None:
        """Stop any pending send (the connection is going away)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()


class Recent:
    """The latest frames of one viewed chat, contiguous up to its head, and its cached
    snapshot: what a connecting client is sent without a database round trip.

    Kept by the :class:`Hub` only while the chat has subscribers, because only then does
    every frame of the chat pass through the hub (in a cluster, this process listens to a
    chat's frames only while it has viewers there).
    """

    __slots__ = ("epoch", "head", "frames", "snapshot")

    def __init__(self, epoch: str, head: int, frames: list[Frame], limit: int) -> None:
        self.epoch = epoch
        self.head = head
        self.frames: deque[Frame] = deque(frames, maxlen=limit)
        # (monotonic time built, offset, the snapshot frame without and with "reset"): see
        # app/catchup.py
        self.snapshot: tuple[float, int, dict[bool, Frame]] | None = None

    @property
    def first(self) -> int:
        """The oldest offset held (``head + 1`` when none is)."""
        return self.frames[0].offset if self.frames else self.head + 1

    def covers(self, after: int) -> bool:
        """True when every frame after offset ``after`` up to the head is held."""
        return self.first - 1 <= after <= self.head

    def after(self, after: int) -> list[Frame]:
        """The held frames with offset > ``after`` (call :meth:`covers` first)."""
        start = max(0, after - self.first + 1)
        return list(itertools.islice(self.frames, start, None))

    def record(self, frame: Frame) -> bool:
        """Take a published frame; False when it does not follow the head (a gap, or another
        epoch): the caller forgets this record and rebuilds it from the log."""
        if frame.epoch and frame.epoch != self.epoch:
            return False
        if frame.offset <= self.head:
            return True  # already held (a cluster's log fill can repeat one)
        if frame.offset != self.head + 1:
            return False
        self.frames.append(frame)
        self.head = frame.offset
        return True


class Hub:
    """Routes published frames to the subscribers of their chat, in publication order, and
    keeps the recent frames of each chat that has subscribers (:class:`Recent`)."""

    def __init__(self, recent_limit: int = 600) -> None:
        self._subs: dict[int, set[Subscriber]] = {}
        self._recent: dict[int, Recent] = {}
        # Bumped by every frame published to a chat with subscribers: a record read from the
        # log is kept only if no frame was published while it was read (see seed_recent).
        self._generation: dict[int, int] = {}
        self.recent_limit = recent_limit

    @contextmanager
    def subscribe(self, subscriber: Subscriber) -> Iterator[Subscriber]:
        """Register ``subscriber`` for its chat for the duration of the block."""
        self._subs.setdefault(subscriber.chat_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            self.remove(subscriber)
            subscriber.cancel()

    def remove(self, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber`` (idempotent)."""
        subs = self._subs.get(subscriber.chat_id)
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                chat_id = subscriber.chat_id
                del self._subs[chat_id]
                # Nobody watches: frames may stop coming through here, so the record would
                # go stale.
                self._recent.pop(chat_id, None)
                self._generation.pop(chat_id, None)

    def publish(self, frames: list[Frame]) -> None:
        """Hand ``frames`` (already committed, in offset order) to every subscriber."""
        for frame in frames:
            chat_id = frame.chat_id
            subs = self._subs.get(chat_id)
            if not subs:
                continue
            self._generation[chat_id] = self._generation.get(chat_id, 0) + 1
            recent = self._recent.get(chat_id)
            if recent is not None and not recent.record(frame):
                del self._recent[chat_id]
            for sub in tuple(subs):
                sub.deliver(frame)

    async def keep_alive(self, interval: float) -> None:
        """Every ``interval`` seconds, send a ``ping`` frame to every live client: each hears
        from its room at least that often, so a dead link shows on both ends. One timer for
        all clients (a timer per connection costs memory at ten thousand of them)."""
        ping = Frame(chat_id=0, offset=0, text=encode({"type": "ping"}))
        while True:
            await asyncio.sleep(interval)
            for subs in list(self._subs.values()):
                for sub in tuple(subs):
                    sub.ping(ping)

    def recent(self, chat_id: int) -> Recent | None:
        """The chat's recent frames, when held (only while it has subscribers)."""
        return self._recent.get(chat_id)

    def generation(self, chat_id: int) -> int:
        """A counter of the frames published to ``chat_id`` while it has subscribers."""
        return self._generation.get(chat_id, 0)

    def seed_recent(
        self, chat_id: int, generation: int, epoch: str, head: int, frames: list[Frame]
    ) -> Recent | None:
        """Keep ``frames`` (the log's latest, ending at ``head``) as the chat's record, read
        while :meth:`generation` was ``generation``. None — nothing kept — when a frame was
        published meanwhile, the chat has no subscriber, or the frames do not end at
        ``head`` contiguously."""
        if chat_id not in self._subs or self._generation.get(chat_id, 0) != generation:
            return None
        if frames and (
            frames[-1].offset != head or frames[-1].offset - frames[0].offset + 1 != len(frames)
        ):
            return None
        recent = self._recent.get(chat_id)
        if recent is None:
            recent = Recent(epoch, head, frames[-self.recent_limit :], self.recent_limit)
            self._recent[chat_id] = recent
        return recent

    def forget_snapshots(self, chat_ids: set[int]) -> None:
        """Drop the cached snapshots of ``chat_ids`` (something not in the log changed)."""
        for chat_id in chat_ids:
            recent = self._recent.get(chat_id)
            if recent is not None:
                recent.snapshot = None

    def count_direct(self) -> int:
        """Clients written to without a coroutine per frame (see app/wsdirect.py)."""
        return sum(1 for subs in self._subs.values() for s in subs if s.direct)

    def count(self, chat_id: int | None = None) -> int:
        """How many clients are connected (to one chat, or in all)."""
        if chat_id is not None:
            return len(self._subs.get(chat_id, ()))
        return sum(len(s) for s in self._subs.values())


class Fanout(Protocol):
    """Where committed frames go (:class:`LocalFanout`, or app.fanout_redis.RedisFanout)."""

    def watching(self, chat_id: int) -> Any:
        """An async context manager a live client holds (see LocalFanout.watching)."""
        ...

    async def committed(self, frames: list[Frame]) -> None: ...

    async def config_changed(self, chat_ids: set[int]) -> None: ...

    def status(self) -> dict[str, Any]: ...


class LocalFanout:
    """Committed frames go straight to this process's hub: the one-process setup.

    :class:`app.fanout_redis.RedisFanout` has the same methods and also carries frames to
    and from the other processes of a cluster.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @asynccontextmanager
    async def watching(self, chat_id: int) -> AsyncIterator[None]:
        """Held by each live client while it reads history and stays live (nothing to do
        here: every commit of this process reaches the hub)."""
        yield

    async def committed(self, frames: list[Frame]) -> None:
        """Deliver frames this process just committed (in offset order)."""
        self.hub.publish(frames)

    async def config_changed(self, chat_ids: set[int]) -> None:
        """A chat's cached hosts/blocks/rules changed (only this process caches them)."""

    def status(self) -> dict[str, Any]:
        return {"mode": "local"}
