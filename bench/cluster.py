"""Delivery across processes: two Hashroom processes on PostgreSQL with Redis between them.

One run, one machine: a fresh PostgreSQL database (on TEST_DATABASE_URL's server, default the
local one) and a ``redis-server`` of its own, processes A and B (``python -m app``), one
room. Readers connect to both; posts go through A only, at a fixed rate. The readers on A
measure the one-process path (post and reader on the same process: commit → hub), the
readers on B the cross-process path (commit on A → Redis → B's sequencer → hub), in the same
rounds. Reported per round and as medians:

- latency p50/p99 (ms): the reader's ``time.time()`` when a frame arrived minus the frame's
  ``ts`` (A's wall clock when the event was written), per reader per measured post;
- frames per CPU-second per process: ``post`` frames its readers received in the window over
  its CPU time (user + system, /proc) in the window. A also commits every post; B only relays.
- lost / duplicated (reader, post) pairs: must be 0.

    .venv/bin/python bench/cluster.py          # 3 rounds, 50 readers per process, 20 posts/s
    .venv/bin/python bench/cluster.py --rounds 5 --clients 100 --rate 10 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fanout import cpu_seconds  # noqa: E402
from post_text import post_text  # noqa: E402

from tests.cluster import RedisServer, cluster_env, pg_database  # noqa: E402
from tests.server import ServerProcess  # noqa: E402


class Reader:
    """One websocket reader: latency samples and offsets of the ``post`` frames it got."""

    def __init__(self, base: str, slug: str) -> None:
        self.url = f"{base}/api/chats/{slug}/live"
        self.origin = base.replace("ws://", "http://")
        self.samples: list[tuple[int, float]] = []  # (offset, latency s)
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with connect(self.url, origin=self.origin, max_size=None) as conn:
            async for raw in conn:
                now = time.time()
                frame = json.loads(raw)
                if frame["type"] == "snapshot":
                    self.ready.set()
                elif frame["type"] == "post":
                    self.samples.append((frame["offset"], now - frame["ts"]))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def one_round(
    n: int, a: ServerProcess, b: ServerProcess, slug: str, readers: dict[str, list[Reader]],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    for group in readers.values():
        for r in group:
            r.samples.clear()
    total = int(args.rate * (args.warmup + args.duration))
    warm = int(args.rate * args.warmup)
    first_offset: int | None = None
    interval = 1 / args.rate
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        started = time.monotonic()
        cpu0: dict[str, float] = {}
        pending: set[asyncio.Task[Any]] = set()

        async def send(seq: int) -> None:
            r = await http.post(
                f"/api/chats/{slug}/posts", json={"text": post_text(seq), "author": "Bench"}
            )
            r.raise_for_status()

        for seq in range(total):
            due = started + seq * interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if seq == warm:
                cpu0 = {"A": cpu_seconds(a.proc.pid), "B": cpu_seconds(b.proc.pid)}  # type: ignore[union-attr]
                window_start = time.monotonic()
            task = asyncio.create_task(send(seq))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        head = (await http.get(f"/api/chats/{slug}")).json()["chat"]["offset"]
    first_offset = head - (total - warm) + 1
    measured = range(first_offset, head + 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(
            sum(1 for o, _ in r.samples if o >= first_offset) >= len(measured)
            for group in readers.values()
            for r in group
        ):
            break
        await asyncio.sleep(0.05)
    wall = time.monotonic() - window_start
    cpu = {
        "A": cpu_seconds(a.proc.pid) - cpu0["A"],  # type: ignore[union-attr]
        "B": cpu_seconds(b.proc.pid) - cpu0["B"],  # type: ignore[union-attr]
    }
    out: dict[str, Any] = {"round": n, "wall_s": wall}
    for name, group in readers.items():
        lat = [s for r in group for o, s in r.samples if o in measured]
        lost = dup = 0
        for r in group:
            counts = Counter(o for o, _ in r.samples if o in measured)
            lost += sum(1 for o in measured if o not in counts)
            dup += sum(c - 1 for c in counts.values() if c > 1)
        out[name] = {
            "p50_ms": 1000 * percentile(lat, 0.5),
            "p99_ms": 1000 * percentile(lat, 0.99),
            "frames": len(lat),
            "cpu_s": cpu[name],
            "frames_per_cpu_s": len(lat) / cpu[name] if cpu[name] > 0 else float("inf"),
            "cpu_pct": 100 * cpu[name] / wall,
            "lost": lost,
            "dup": dup,
        }
    return out


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="hashroom-bench-cluster-"))
    quiet = {"HASHROOM_LOG_LEVEL": "WARNING"}
    with pg_database() as db_url:
        redis = RedisServer(workdir / "redis.log").start()
        servers: list[ServerProcess] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for name in ("a", "b"):
                env = cluster_env(redis.url, name, **quiet)
                # The production poll/sweep intervals, not the tests' short ones.
                env.pop("HASHROOM_REDIS_POLL_INTERVAL")
                env.pop("HASHROOM_REDIS_SWEEP_INTERVAL")
                servers.append(ServerProcess(db_url, workdir / f"{name}.log", **env).start(60))
            a, b = servers
            async with httpx.AsyncClient(base_url=a.url) as http:
                r = await http.post(
                    "/api/chats",
                    json={"hashtag": "benchtag", "title": "Bench", "network": "native"},
                )
                r.raise_for_status()
                slug = r.json()["slug"]
            readers = {
                "A": [Reader(a.ws_url, slug) for _ in range(args.clients)],
                "B": [Reader(b.ws_url, slug) for _ in range(args.clients)],
            }
            for group in readers.values():
                for reader in group:
                    reader.task = asyncio.create_task(reader.run())
                    tasks.append(reader.task)
            for group in readers.values():
                for reader in group:
                    await asyncio.wait_for(reader.ready.wait(), 30)
            load0 = os.getloadavg()[0]
            rounds = [
                await one_round(n, a, b, slug, readers, args) for n in range(1, args.rounds + 1)
            ]
            load1 = os.getloadavg()[0]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for server in servers:
                server.stop()
            redis.stop()

    header = (
        f"{'round':>6} {'path':<22} {'p50 ms':>8} {'p99 ms':>8} {'frames':>7} "
        f"{'CPU s':>6} {'frames/CPU-s':>13} {'CPU%':>6} {'lost':>5} {'dup':>4}"
    )
    labels = {"A": "A (post+read on A)", "B": "B (post A, read B)"}
    print(header)
    for res in rounds:
        for key in ("A", "B"):
            m = res[key]
            print(
                f"{res['round']:>6} {labels[key]:<22} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} "
                f"{m['frames']:>7} {m['cpu_s']:>6.2f} {m['frames_per_cpu_s']:>13,.0f} "
                f"{m['cpu_pct']:>6.1f} {m['lost']:>5} {m['dup']:>4}"
            )
    for key in ("A", "B"):
        med = {
            k: statistics.median(r[key][k] for r in rounds)
            for k in ("p50_ms", "p99_ms", "frames_per_cpu_s", "cpu_pct")
        }
        lost = sum(r[key]["lost"] for r in rounds)
        dup = sum(r[key]["dup"] for r in rounds)
        print(
            f"{'median':>6} {labels[key]:<22} {med['p50_ms']:>8.1f} {med['p99_ms']:>8.1f} "
            f"{'':>7} {'':>6} {med['frames_per_cpu_s']:>13,.0f} {med['cpu_pct']:>6.1f} "
            f"{lost:>5} {dup:>4}"
        )
    print(
        f"{args.rounds} rounds of {args.warmup:g} s warm-up + {args.duration:g} s at "
        f"{args.rate:g} posts/s through A; {args.clients} readers on each process; "
        f"load average {load0:.2f} -> {load1:.2f}"
    )
    ok = all(r[k]["lost"] == 0 and r[k]["dup"] == 0 for r in rounds for k in ("A", "B"))
    print("every reader got every post once" if ok else "LOST OR DUPLICATED FRAMES")
    return 0 if ok else 1


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=50, help="readers on each process")
    p.add_argument("--rate", type=float, default=20.0, help="posts per second through A")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per round")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of posts before measuring")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
