"""Many websocket readers in one process, counting every post frame and timing its delivery.

Run by ``fanout.py``; it talks to it on stdio, one line each:
    stdout  ``READY <connected>``   every reader has its first frame (the snapshot)
    stdin   ``END <published> <first_measured>``  publishing is over: wait for delivery
    stdout  ``DRAINED <seconds>``   every reader has every post, or the drain deadline passed
    stdout  ``RESULT <json>``       counts; latencies (seconds) are written to ``--lat-file``

A reader knows a post by the sequence number in its text, so a lost post and a duplicated one
are both visible whatever the server's offsets say. A reader whose connection is closed
reconnects with ``after``/``epoch`` like the web client and counts the reconnect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from post_text import parse_seq
from raw_server import run_with_loop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

CONNECT_CONCURRENCY = 100
"""Handshakes in flight at once by default (``--connect-concurrency``): enough to connect
1,000 readers in a few seconds without overflowing the server's accept backlog."""


@dataclass
class Tally:
    """What all readers saw. One process, one event loop: plain counters are safe."""

    readers: int
    max_seq: int
    per_reader: list[bytearray] = field(init=False)
    seen: array = field(init=False)
    latencies: array = field(default_factory=lambda: array("d"))
    latency_seqs: array = field(default_factory=lambda: array("l"))
    ready: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    out_of_order: int = 0
    unknown_posts: int = 0
    missing_ts: int = 0
    other_frames: int = 0
    sample_bytes: int = 0
    sample_frames: int = 0
    sample: str = ""
    extensions: set[str] = field(default_factory=set)
    last_error: str = ""

    def __post_init__(self) -> None:
        self.per_reader = [bytearray(self.max_seq) for _ in range(self.readers)]
        self.seen = array("l", [0]) * self.max_seq


async def read_frames(index: int, ws: ClientConnection, tally: Tally, state: dict) -> None:
    """Count and time every frame on ``ws`` until it closes; ``state`` keeps offset/epoch."""
    counts = tally.per_reader[index]
    seen = tally.seen
    latencies = tally.latencies
    latency_seqs = tally.latency_seqs
    last_offset = state["offset"]
    now = time.time
    loads = json.loads
    try:
        async for message in ws:
            received = now()
            frame = loads(message)
            kind = frame.get("type")
            if kind != "post":
                if kind == "snapshot":
                    state["epoch"] = frame.get("epoch")
                    last_offset = frame.get("offset", last_offset)
                elif kind != "ping":
                    tally.other_frames += 1
                    last_offset = frame.get("offset", last_offset)
                continue
            offset = frame["offset"]
            if offset <= last_offset:
                tally.out_of_order += 1
            last_offset = offset
            seq = parse_seq(frame["post"]["text"])
            if seq is None or seq >= tally.max_seq:
                tally.unknown_posts += 1
                continue
            if counts[seq] < 255:
                counts[seq] += 1
            seen[seq] += 1
            ts = frame.get("ts")
            if ts is None:
                tally.missing_ts += 1
            else:
                latencies.append(received - ts)
                latency_seqs.append(seq)
            if index == 0:
                if not tally.sample:
                    tally.sample = message if isinstance(message, str) else message.decode()
                tally.sample_bytes += len(message.encode() if isinstance(message, str) else message)
                tally.sample_frames += 1
    finally:
        state["offset"] = last_offset


async def run_reader(
    index: int,
    url: str,
    origin: str,
    tally: Tally,
    gate: asyncio.Semaphore,
    stop: asyncio.Event,
) -> None:
    """Keep one reader connected until ``stop``; resume by offset after any close."""
    state: dict = {"offset": 0, "epoch": None}
    ready = False
    attempts = 0
    while not stop.is_set():
        target = url
        if state["epoch"] is not None:
            query = urlencode({"after": state["offset"], "epoch": state["epoch"]})
            target = f"{url}{'&' if '?' in url else '?'}{query}"
        try:
            async with gate:
                ws = await connect(
                    target,
                    origin=origin,  # type: ignore[arg-type]
                    proxy=None,
                    ping_interval=None,
                    max_size=None,
                    max_queue=64,
                    open_timeout=60,
                    close_timeout=2,
                )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            tally.connect_failures += 1
            tally.last_error = f"connect: {exc!r}"
            attempts += 1
            await asyncio.sleep(min(0.05 * 2**attempts, 2.0))
            continue
        attempts = 0
        tally.extensions.add(ws.response.headers.get("Sec-WebSocket-Extensions", "") or "none")
        try:
            if not ready:
                first = json.loads(await ws.recv())
                state["epoch"] = first.get("epoch")
                state["offset"] = first.get("offset", 0)
                ready = True
                tally.ready += 1
            await read_frames(index, ws, tally, state)
        except ConnectionClosed as exc:
            tally.last_error = f"closed: {exc!r}"
        finally:
            await ws.close()
        if not stop.is_set():
            tally.reconnects += 1


async def wait_drained(tally: Tally, published: int, deadline: float) -> None:
    """Return once every reader has every published post, or at ``deadline`` (monotonic)."""
    want = tally.readers
    while time.monotonic() < deadline:
        if all(tally.seen[s] >= want for s in range(published)):
            return
        await asyncio.sleep(0.01)


def summary(tally: Tally, published: int, first_measured: int) -> dict:
    """Count losses and duplicates over every published post and keep window latencies."""
    lost = duplicates = in_window = 0
    for counts in tally.per_reader:
        window = counts[:published]
        lost += window.count(0)
        duplicates += sum(c - 1 for c in window if c > 1)
        in_window += sum(counts[first_measured:published])
    return {
        "readers": tally.readers,
        "ready": tally.ready,
        "frames_in_window": in_window,
        "lost": lost,
        "duplicates": duplicates,
        "out_of_order": tally.out_of_order,
        "late_posts": sum(1 for counts in tally.per_reader for c in counts[published:] if c),
        "unknown_posts": tally.unknown_posts,
        "missing_ts": tally.missing_ts,
        "other_frames": tally.other_frames,
        "reconnects": tally.reconnects,
        "connect_failures": tally.connect_failures,
        "mean_frame_bytes": tally.sample_bytes / tally.sample_frames if tally.sample_frames else 0,
        "extensions": sorted(tally.extensions),
        "last_error": tally.last_error,
    }


async def main_async(args: argparse.Namespace) -> None:
    """Connect every reader, report READY, then follow the stdin commands to the end."""
    tally = Tally(args.clients, args.max_seq)
    stop = asyncio.Event()
    gate = asyncio.Semaphore(args.connect_concurrency)
    readers = [
        asyncio.create_task(run_reader(i, args.url, args.origin, tally, gate, stop))
        for i in range(args.clients)
    ]
    deadline = time.monotonic() + args.connect_timeout
    while tally.ready < args.clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print(f"READY {tally.ready}", flush=True)

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    published = first_measured = 0
    while line := (await stdin.readline()).decode():
        command, *rest = line.split()
        if command == "END":
            published, first_measured = int(rest[0]), int(rest[1])
            break
    started = time.monotonic()
    await wait_drained(tally, published, started + args.drain)
    print(f"DRAINED {time.monotonic() - started:.3f}", flush=True)

    window = array(
        "d",
        (
            lat
            for lat, s in zip(tally.latencies, tally.latency_seqs, strict=True)
            if first_measured <= s < published
        ),
    )
    with open(args.lat_file, "wb") as out:
        window.tofile(out)
    if args.sample_file and tally.sample:
        Path(args.sample_file).write_text(tally.sample)
    print("RESULT " + json.dumps(summary(tally, published, first_measured)), flush=True)

    stop.set()
    for task in readers:
        task.cancel()
    await asyncio.wait(readers, timeout=5)


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: each reader holds one socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    """Parse arguments and run the readers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--max-seq", type=int, required=True, help="posts that may be published")
    parser.add_argument("--lat-file", required=True)
    parser.add_argument("--sample-file", help="where to write the first post frame received")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--connect-concurrency", type=int, default=CONNECT_CONCURRENCY)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args()
    raise_fd_limit()
    run_with_loop(main_async(args), args.loop)


if __name__ == "__main__":
    main()
