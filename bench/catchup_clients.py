"""Many light websocket readers in one process, for the catch-up storm (``catchup.py``).

A thousand clients each receiving 300 frames of ~3 KB is ~900 MB: a websocket library that
builds a message object per frame would measure itself, not the server. So each client is an
asyncio ``Protocol`` that writes its upgrade request by hand, checks the 101, and then only
walks frame headers in its buffer (server frames are unmasked): it counts frames and bytes and
reads each frame's ``offset`` with a bytes search near the frame's start. JSON is decoded only
for the snapshot and for the frame that completes a client's catch-up.

Run by ``catchup.py``; it talks to it on stdio, one line each:
    stdin   ``SNAP``          connect every client without ``after``, read its snapshot, close
    stdout  ``SNAPPED <json>``  how many got a snapshot, and the epochs/offsets they saw
    stdin   ``STORM <head>``  reconnect every client at once with ``after``/``epoch``
    stdout  ``CAUGHT <json>``   when every client has every frame up to ``head`` (or the
                                deadline passed): counts and each client's finishing time
    stdin   ``END``           close every connection and exit

Times are ``time.monotonic()``, a system-wide clock on Linux: the parent compares them across
processes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import struct
import sys
import time
from typing import Any

from fanout import raise_fd_limit
from raw_server import run_with_loop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OFFSET_KEY = b'"offset":'
OFFSET_WINDOW = 64
"""Bytes from a frame's start searched for ``"offset":`` (it is the second key of every
event frame; a longer search would scan the post's text)."""
SNAPSHOT_PREFIX = b'{"type":"snapshot"'
SNAP_CONCURRENCY = 100
"""Handshakes in flight while the clients first connect (that phase is not timed)."""
RETRY_LIMIT = 20
"""Reconnects one client may make during the storm before it gives up."""


def close_frame() -> bytes:
    """A masked close frame with code 1000 (clients must mask what they send)."""
    mask = os.urandom(4)
    payload = struct.pack("!H", 1000)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x88, 0x80 | len(payload))) + mask + masked


class Client(asyncio.Protocol):
    """One websocket connection that counts frames without building message objects.

    ``after``/``epoch`` are what it resumes from; during the storm it counts event frames
    with offsets ``after + 1 .. head`` and records when it has them all.
    """

    def __init__(self, pool: Pool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        self.key = b""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.snapshot: asyncio.Future[dict[str, Any]] | None = None
        # Storm state.
        self.after = 0
        self.last = 0
        self.epoch = ""
        self.frames = 0
        self.bytes = 0
        self.dup = 0
        self.out_of_order = 0
        self.missing = 0
        self.other = 0
        self.done_at: float | None = None
        self.upgraded_at: float | None = None  # the storm's first 101

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is no subclass)
        self.key = base64.b64encode(os.urandom(16))
        pool = self.pool
        query = f"?after={self.last}&epoch={self.epoch}" if pool.resuming else ""
        transport.write(
            f"GET {pool.path}{query} HTTP/1.1\r\nHost: {pool.host}:{pool.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {pool.origin}\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.snapshot is not None and not self.snapshot.done():
            self.snapshot.set_exception(ConnectionError(f"closed before the snapshot: {exc!r}"))

    def close(self) -> None:
        """Send a close frame and drop the connection (no wait for the server's answer)."""
        if self.transport is not None and not self.transport.is_closing():
            if self.handshaken:
                self.transport.write(close_frame())
            self.transport.close()

    # -- reading ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
            if not head.startswith(b"HTTP/1.1 101") or accept not in head:
                self.pool.note(f"handshake refused: {head.splitlines()[0]!r}")
                self.pool.failures += 1
                self.transport.close()  # type: ignore[union-attr]
                return
            self.handshaken = True
            if self.upgraded_at is None:
                self.upgraded_at = time.monotonic()
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            pos = end
            if opcode == 1:
                self.text_frame(buf, start, end)
            elif opcode == 8:
                self.pool.note("server closed the connection")
            elif opcode != 9 and opcode != 10:  # pings/pongs: the storm is shorter than them
                self.other += 1
        del buf[:pos]

    def text_frame(self, buf: bytearray, start: int, end: int) -> None:
        if self.snapshot is not None:
            if not self.snapshot.done():
                self.snapshot.set_result(json.loads(bytes(buf[start:end])))
            return
        if buf.startswith(SNAPSHOT_PREFIX, start):
            self.other += 1  # the server did not resume this client
            return
        key = buf.find(OFFSET_KEY, start, min(end, start + OFFSET_WINDOW))
        if key < 0:
            self.other += 1  # {"type":"ping"} and the like
            return
        digits = key + len(OFFSET_KEY)
        offset = int(buf[digits : buf.find(b",", digits, digits + 24)])
        self.frames += 1
        self.bytes += end - start
        last = self.last
        if offset != last + 1:
            self.out_of_order += 1  # offsets must be consecutive: a skip or a repeat
            if offset <= last:
                self.dup += 1
                return
            self.missing += offset - last - 1
        self.last = offset
        if offset == self.pool.head and self.done_at is None:
            self.done_at = time.monotonic()
            try:
                frame = json.loads(bytes(buf[start:end]))
                ok = frame.get("offset") == offset and "type" in frame
            except ValueError:
                ok = False
            if not ok:
                self.pool.bad_last += 1
            self.pool.finished()


class Pool:
    """This process' share of the clients, and what they saw."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.host = args.host
        self.port = args.port
        self.path = args.path
        self.origin = args.origin
        self.size = args.clients
        self.deadline = args.deadline
        self.resuming = False
        self.head = 0
        self.clients: list[Client] = []
        self.failures = 0
        self.reconnects = 0
        self.bad_last = 0
        self.pending = 0
        self.all_done: asyncio.Event = asyncio.Event()
        self.errors: list[str] = []

    def note(self, error: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(error)

    def finished(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.all_done.set()

    async def open(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: client, self.host, self.port)

    async def snap(self) -> dict[str, Any]:
        """Connect every client without ``after``, keep its snapshot's epoch and offset."""
        gate = asyncio.Semaphore(SNAP_CONCURRENCY)

        async def one(i: int) -> Client | None:
            async with gate:
                client = Client(self, i)
                client.snapshot = asyncio.get_running_loop().create_future()
                try:
                    await self.open(client)
                    frame = await asyncio.wait_for(client.snapshot, 60)
                except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
                    self.note(f"snapshot: {exc!r}")
                    client.close()
                    return None
                client.close()
                await client.closed
                client.snapshot = None
                client.upgraded_at = None
                client.after = client.last = int(frame["offset"])
                client.epoch = str(frame["epoch"])
                return client

        got = await asyncio.gather(*(one(i) for i in range(self.size)))
        self.clients = [c for c in got if c is not None]
        return {
            "snapshots": len(self.clients),
            "epochs": sorted({c.epoch for c in self.clients}),
            "offsets": sorted({c.after for c in self.clients}),
            "errors": self.errors,
        }

    async def storm(self, head: int) -> dict[str, Any]:
        """Reconnect every client at once; return when all have ``head`` or at the deadline."""
        self.head = head
        self.resuming = True
        self.pending = len(self.clients)
        self.all_done.clear()
        if self.pending == 0:
            self.all_done.set()
        started = time.monotonic()
        keepers = [asyncio.create_task(self.keep(c)) for c in self.clients]
        with_deadline = False
        try:
            await asyncio.wait_for(self.all_done.wait(), self.deadline)
        except TimeoutError:
            with_deadline = True
        ended = time.monotonic()
        for task in keepers:
            task.cancel()
        clients = self.clients
        return {
            "started": started,
            "ended": ended,
            "deadline_passed": with_deadline,
            "clients": len(clients),
            "done": [c.done_at for c in clients],
            "upgraded": [c.upgraded_at for c in clients],
            "expected": sum(head - c.after for c in clients),
            "frames": sum(c.frames for c in clients),
            "bytes": sum(c.bytes for c in clients),
            # Offsets skipped over, and those never reached.
            "lost": sum(c.missing + max(head - c.last, 0) for c in clients),
            "out_of_order": sum(c.out_of_order for c in clients),
            "duplicates": sum(c.dup for c in clients),
            "other_frames": sum(c.other for c in clients),
            "bad_last": self.bad_last,
            "connect_failures": self.failures,
            "reconnects": self.reconnects,
            "errors": self.errors,
        }

    async def keep(self, client: Client) -> None:
        """Connect ``client`` (resuming from its last offset), and again if it is closed
        before it has caught up, so a refused or dropped client is counted, not hung."""
        for attempt in range(RETRY_LIMIT):
            if attempt:
                self.reconnects += 1
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            client.closed = asyncio.get_running_loop().create_future()
            client.handshaken = False
            client.buf.clear()
            try:
                await self.open(client)
            except OSError as exc:
                self.failures += 1
                self.note(f"connect: {exc!r}")
                continue
            await client.closed
            if client.done_at is not None:
                return

    def close_all(self) -> None:
        for client in self.clients:
            client.close()


async def main_async(args: argparse.Namespace) -> None:
    """Follow the stdin commands (see the module docstring) until ``END``."""
    pool = Pool(args)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := (await stdin.readline()).decode():
        command, *rest = line.split()
        if command == "SNAP":
            print("SNAPPED " + json.dumps(await pool.snap()), flush=True)
        elif command == "STORM":
            print("CAUGHT " + json.dumps(await pool.storm(int(rest[0]))), flush=True)
        elif command == "END":
            break
    pool.close_all()
    await asyncio.sleep(0.2)  # let the close frames go out


def main() -> None:
    """Parse arguments and serve the parent's commands."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="the websocket path, e.g. /api/chats/x/live")
    parser.add_argument("--origin", required=True)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds a storm may take")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args()
    raise_fd_limit()
    run_with_loop(main_async(args), args.loop)


if __name__ == "__main__":
    main()
