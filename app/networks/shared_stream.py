"""One upstream websocket per stream URL, shared by every follower that reads it.

Bluesky's Jetstream and repo firehoses carry the whole network; every chat following a tag
on the same relay used to open its own full connection. :class:`SharedStreams` stands in for
the websocket ``connect`` function a follower is given: ``async with streams.connect(url) as
ws: await ws.recv()`` behaves like a connection of its own, while one upstream connection per
URL (the ``cursor`` query parameter aside) feeds every follower's bounded queue. Each
follower still filters frames itself and keeps its own cursor.

No loss, whoever joins when:

- A follower starting live (no cursor) opens the upstream at once. One resuming from a
  cursor waits ``gather`` seconds first, and the upstream starts from the oldest cursor of
  the followers that joined meanwhile (a restart or a drop brings them all back at once).
- A follower joining later with a cursor before what the upstream has already delivered
  *rewinds* it: the upstream reconnects from that cursor, and the followers already attached
  see the replayed frames again and skip them by their own cursors (both transports ignore
  events at or before their cursor).
- A follower whose queue fills (it reads slower than the stream) is cut off with
  :class:`StreamLost`; it reconnects from its committed cursor like after any drop.
- When the upstream connection fails or ends, every attached follower gets the error from
  ``recv`` and goes through its own reconnect path (backoff, replay window, history), so the
  behaviour is that of a private connection that dropped.

Protocol knowledge is limited to the ``cursor`` query parameter and a ``position`` function
reading a frame's cursor value, given per transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger(__name__)

# Frames one follower may lag behind the shared stream before it is cut off. The full
# Jetstream post collection peaks at a few hundred events a second: this is several
# seconds of slack for a follower's database batch.
QUEUE_FRAMES = 4096
# Followers restarting together (a process start, an upstream drop) rejoin within their
# first backoff (0.5–1 s); waiting a little before connecting lets one connection serve
# their oldest cursor instead of rewinding once per late joiner.
GATHER = 0.3

Connect = Callable[..., Any]  # websockets' connect: connect(url, **kwargs) -> async cm
Position = Callable[[str | bytes], int | None]


class StreamLost(ConnectionError):
    """The shared upstream failed or ended, or this follower fell too far behind it."""


def split_cursor(url: str) -> tuple[str, int | None]:
    """``url`` without its ``cursor`` parameter, and that cursor (None if absent or bad)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    cursor = None
    rest = []
    for name, value in query:
        if name == "cursor":
            cursor = int(value) if value.isdigit() and len(value) <= 20 else None
        else:
            rest.append((name, value))
    key = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return key, cursor


def _with_cursor(key: str, cursor: int | None) -> str:
    if cursor is None:
        return key
    parts = urlsplit(key)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("cursor", str(cursor))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


class Subscription:
    """What a follower reads: ``recv()`` like a websocket connection's."""

    def __init__(self, limit: int) -> None:
        self._frames: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=limit)
        self._wake = asyncio.Event()
        self._error: BaseException | None = None

    async def recv(self) -> str | bytes:
        """The next frame; raises :class:`StreamLost` once the stream is gone for us (after
        the frames already queued)."""
        while True:
            if not self._frames.empty():
                return self._frames.get_nowait()
            if self._error is not None:
                raise self._error
            self._wake.clear()
            await self._wake.wait()

    def _put(self, frame: str | bytes) -> bool:
        try:
            self._frames.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        self._wake.set()
        return True

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake.set()


class _Upstream:
    """One upstream connection and the followers attached to it."""

    def __init__(self, owner: SharedStreams, key: str, start: int | None, kwargs: Any) -> None:
        self.owner = owner
        self.key = key
        self.kwargs = kwargs
        self.subs: set[Subscription] = set()
        self.start = start  # cursor of the next connection; None: live
        self.position: int | None = None  # cursor value of the newest frame delivered
        self.connected = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.rewind_to: int | None = None
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    def covers(self, cursor: int | None) -> bool:
        """Whether a follower resuming after ``cursor`` misses nothing from here on."""
        if cursor is None:
            return True
        if not self.connected:
            return self.start is not None and self.start <= cursor
        reached = self.position if self.position is not None else self.start
        return reached is not None and cursor >= reached

    def join(self, cursor: int | None) -> None:
        """Make the upstream deliver everything after ``cursor`` (see the module docstring)."""
        if self.covers(cursor):
            return
        assert cursor is not None
        if not self.connected:
            self.start = cursor  # not connected yet: just start further back
            return
        self.rewind_to = cursor if self.rewind_to is None else min(self.rewind_to, cursor)
        ws = self.ws
        if ws is not None:
            self.owner._spawn(ws.close())  # the reader sees the close and reconnects

    async def run(self) -> None:
        error: BaseException | None = None
        try:
            if self.start is not None:  # resuming: wait for the others resuming with it
                await asyncio.sleep(self.owner.gather)
            while self.subs:
                url = _with_cursor(self.key, self.start)
                async with self.owner._connect(url, **self.kwargs) as ws:
                    self.ws = ws
                    self.connected = True
                    self.position = None
                    self.owner.connections += 1
                    if not self.ready.done():
                        self.ready.set_result(None)
                    await self._read(ws)
                self.ws = None
                if self.rewind_to is None:
                    error = StreamLost("the server closed the stream")
                    break
                log.info("shared stream %s rewinds to cursor %s", self.key, self.rewind_to)
                self.start, self.rewind_to = self.rewind_to, None
                self.connected = False
        except asyncio.CancelledError:
            error = StreamLost("the shared stream stopped")
            raise
        except Exception as exc:  # connection refused, handshake, protocol error…
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            error = StreamLost(detail)
            error.__cause__ = exc
        finally:
            self.owner._forget(self)
            for sub in self.subs:
                sub._fail(error or StreamLost("the shared stream stopped"))
            if not self.ready.done():
                self.ready.set_exception(error or StreamLost("the shared stream stopped"))
                self.ready.exception()  # retrieved: joiners raise it themselves

    async def _read(self, ws: Any) -> None:
        position = self.owner.position
        while True:
            try:
                frame = await ws.recv()
            except Exception:
                if self.rewind_to is not None:
                    return  # we closed it to rewind
                raise
            try:
                at = position(frame)
            except Exception:  # a malformed frame: the followers log and skip it
                at = None
            if at is not None and (self.position is None or at > self.position):
                self.position = at
            for sub in list(self.subs):
                if not sub._put(frame):
                    self.subs.discard(sub)
                    sub._fail(StreamLost("fell behind the shared stream"))


class SharedStreams:
    """A ``connect`` function that shares one upstream connection per stream URL."""

    def __init__(
        self,
        position: Position,
        connect: Connect | None = None,
        *,
        queue_frames: int = QUEUE_FRAMES,
        gather: float = GATHER,
    ) -> None:
        """``position`` reads a frame's cursor value (None when it has none); ``connect``
        opens the real websocket (default: websockets' own)."""
        if connect is None:
            from websockets.asyncio.client import connect as ws_connect

            connect = ws_connect
        self.position = position
        self._connect = connect
        self.queue_frames = queue_frames
        self.gather = gather
        self.connections = 0  # upstream connections opened so far (for tests and health)
        self._upstreams: dict[str, _Upstream] = {}
        self._closers: set[asyncio.Task[Any]] = set()

    def upstreams(self) -> int:
        """Upstream connections open or opening now."""
        return len(self._upstreams)

    @contextlib.asynccontextmanager
    async def connect(self, url: str, **kwargs: Any) -> AsyncIterator[Subscription]:
        """Read the stream at ``url`` (its ``cursor`` honoured) through the shared upstream;
        ``kwargs`` go to the real connect when this opens the upstream."""
        key, cursor = split_cursor(url)
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = _Upstream(self, key, cursor, kwargs)
            self._upstreams[key] = upstream
            upstream.task = asyncio.get_running_loop().create_task(
                upstream.run(), name=f"shared-stream {key}"
            )
        else:
            upstream.join(cursor)
        sub = Subscription(self.queue_frames)
        upstream.subs.add(sub)
        try:
            await asyncio.shield(upstream.ready)
            yield sub
        finally:
            upstream.subs.discard(sub)
            if not upstream.subs and upstream.task is not None:
                self._forget(upstream)  # a follower joining now opens a fresh one
                upstream.task.cancel()

    def _forget(self, upstream: _Upstream) -> None:
        if self._upstreams.get(upstream.key) is upstream:
            del self._upstreams[upstream.key]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
