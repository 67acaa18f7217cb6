"""Catch-up storm: N clients, each E events behind, reconnect at once — Hashroom beside a raw
``websockets`` server replaying the same frames.

One run, one machine. For each server: start it, create a chat and keep one watcher connected
all along (a chat with a live audience); connect N clients that each read a snapshot and
close; post E posts; then reconnect all N at once with ``after``/``epoch``. Reported: time until
every client has every frame up to the head (and p50/p99 per client), frames and bytes
delivered, server CPU for the storm, ``GET /healthz`` latency polled every 20 ms meanwhile,
the database reads the app's catch-up needed, and lost/duplicated/out-of-order frames.

    .venv/bin/python bench/catchup.py                  # 3 rounds: 1,000 clients, 300 events behind
    .venv/bin/python bench/catchup.py --smoke          # 50 clients, 30 events, one round
    .venv/bin/python bench/catchup.py --only app --repeat 1

Exit status: 0 PASS, 1 FAIL (or a broken run), 2 a single server was measured (no verdict).
``--smoke`` exits 0 whatever the figures, unless the run itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fanout import (
    BENCH,
    CLOCK_TICKS,
    DEFAULT_FRAME_BYTES,
    HEALTH_DEADLINE,
    AppServer,
    RawServer,
    cpu_seconds,
    percentile,
    raise_fd_limit,
    read_tagged,
    stop_process,
    tail,
)
from post_text import post_text
from results_file import save as save_results
from websockets.asyncio.client import ClientConnection, connect

TARGET_ALL_CAUGHT_UP_S = 2.0
"""Every client of the storm has every frame within this many seconds of the first connect."""
TARGET_HEALTHZ_P99_MS = 200.0
"""``GET /healthz`` keeps answering while the storm is served: an operator's probe (or a load
balancer's) must not time out and take the server out of rotation."""
HEALTH_INTERVAL = 0.02
"""Seconds between ``/healthz`` requests during the storm (one connection, one at a time)."""
POSTS_IN_FLIGHT = 8
"""Post requests outstanding at once while the clients are away (not timed)."""
WATCH_TIMEOUT = 120.0
"""Seconds the watcher may take to see every post."""


# --------------------------------------------------------------------------- servers


def schedstat(pid: int) -> tuple[float, float]:
    """Seconds the main thread of ``pid`` (the server's event loop) has run, and has waited
    runnable for a CPU (/proc/<pid>/schedstat). On a shared machine the second one tells how
    much of a storm's wall time was other work's, not the server's; (0, 0) where absent."""
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def system_seconds(pid: int) -> float:
    """Kernel CPU time (stime, seconds) of ``pid`` itself: on loopback the sender's kernel
    does most of the TCP work of a write, so this shows how much of a storm is copying."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2 :].split()[12]) / CLOCK_TICKS


class RawCatchupServer(RawServer):
    """``bench/raw_catchup.py``: the websockets library's server replaying frames it holds."""

    async def start(self) -> None:
        """Start the raw server on a free port and wait for it to listen."""
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / "raw_catchup.py"),
                "--frame-bytes",
                str(self.frame_bytes),
                "--loop",
                self.loop,
                *(["--template", str(self.template)] if self.template else []),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self.pid = self.proc.pid
        try:
            port = int(await read_tagged(self.proc, "LISTENING", HEALTH_DEADLINE))
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"raw server did not start: {exc}\n{tail(self.log)}") from exc
        self.origin = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/"


class Watcher:
    """The one client that stays connected all along; it keeps the post frames it sees."""

    def __init__(self, url: str, origin: str) -> None:
        self.url = url
        self.origin = origin
        self.ws: ClientConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.posts: list[str] = []
        self.last_offset = 0
        self.changed = asyncio.Event()

    async def start(self) -> None:
        """Connect and read the snapshot; then keep reading in the background."""
        self.ws = await connect(
            self.url,
            origin=self.origin,  # type: ignore[arg-type]
            proxy=None,
            ping_interval=None,
            max_size=None,
            compression=None,
        )
        first = json.loads(await self.ws.recv())
        self.last_offset = int(first.get("offset", 0))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            text = message if isinstance(message, str) else message.decode()
            frame = json.loads(text)
            if "offset" in frame:
                self.last_offset = int(frame["offset"])
            if frame.get("type") == "post":
                self.posts.append(text)
            self.changed.set()

    async def wait_posts(self, count: int, timeout: float) -> None:
        """Return once ``count`` post frames have arrived (TimeoutError otherwise)."""

        async def wait() -> None:
            while len(self.posts) < count:
                if self.task is not None and self.task.done():
                    self.task.result()
                    raise RuntimeError("watcher connection closed")
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        """Close the connection."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.ws is not None:
            await self.ws.close()


class HealthPoller:
    """``GET /healthz`` every :data:`HEALTH_INTERVAL` seconds on its own HTTP connection,
    one request at a time (a slow answer delays the next), timing each."""

    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, timeout=30.0, trust_env=False)
        self.latencies = array("d")
        self.failures = 0
        self.stop = asyncio.Event()

    async def get(self) -> dict[str, Any]:
        """One ``/healthz`` answer as JSON (not timed)."""
        resp = await self.http.get("/healthz")
        resp.raise_for_status()
        return resp.json()

    async def run(self) -> None:
        """Poll until :attr:`stop` is set."""
        began = time.monotonic()
        n = 0
        while not self.stop.is_set():
            sent = time.perf_counter()
            try:
                resp = await self.http.get("/healthz")
                if resp.status_code != 200:
                    self.failures += 1
            except httpx.HTTPError:
                self.failures += 1
            self.latencies.append(time.perf_counter() - sent)
            n += 1
            delay = began + n * HEALTH_INTERVAL - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)

    async def close(self) -> None:
        await self.http.aclose()


# --------------------------------------------------------------------------- one measurement


class ClientProcs:
    """The ``catchup_clients.py`` processes holding the N clients between them."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.workdir = workdir
        self.name = name
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: list[Path] = []

    async def start(self, ws_url: str, origin: str, shares: list[int], deadline: float) -> None:
        url = urlsplit(ws_url)
        for i, share in enumerate(shares):
            log = self.workdir / f"{self.name}-clients-{i}.log"
            with open(log, "ab") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(BENCH / "catchup_clients.py"),
                    "--port",
                    str(url.port),
                    "--path",
                    url.path,
                    "--origin",
                    origin,
                    "--clients",
                    str(share),
                    "--deadline",
                    str(deadline),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            self.procs.append(proc)
            self.logs.append(log)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def command(self, line: str) -> None:
        """Send ``line`` to every process (as close together as the pipes allow)."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{line}\n".encode())
        for proc in self.procs:
            assert proc.stdin is not None
            await proc.stdin.drain()

    async def expect(self, tag: str, timeout: float) -> list[dict[str, Any]]:
        """Every process' ``tag`` line, parsed; a failure names the cause from its log."""
        answers = []
        for proc, log in zip(self.procs, self.logs, strict=True):
            try:
                answers.append(json.loads(await read_tagged(proc, tag, timeout)))
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"client process: no {tag} ({exc!r})\n{tail(log)}") from exc
        return answers

    async def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, RuntimeError):
                if proc.stdin is not None and proc.returncode is None:
                    proc.stdin.write(b"END\n")
                    await proc.stdin.drain()
                    proc.stdin.close()
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            await stop_process(proc, grace=5)


async def post_all(server: AppServer | RawCatchupServer, events: int) -> None:
    """Publish ``events`` posts, a few requests in flight (this part is not timed)."""
    gate = asyncio.Semaphore(POSTS_IN_FLIGHT)

    async def one(seq: int) -> None:
        async with gate:
            await server.publish(seq, post_text(seq))

    await asyncio.gather(*(one(seq) for seq in range(events)))


async def measure(
    server: AppServer | RawCatchupServer, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Run one server through connect, post, storm; return its figures."""
    shares = [
        args.clients // args.client_procs + (1 if i < args.clients % args.client_procs else 0)
        for i in range(args.client_procs)
    ]
    shares = [s for s in shares if s]
    load_before = os.getloadavg()[0]
    await server.start()
    clients = ClientProcs(workdir, server.name)
    watcher = Watcher(server.ws_url, server.origin)
    poller = HealthPoller(server.origin)
    try:
        await watcher.start()
        # 2. Every client reads a snapshot, remembers epoch and offset, and leaves.
        await clients.start(server.ws_url, server.origin, shares, args.deadline)
        snap_cpu0 = cpu_seconds(server.pid)
        await clients.command("SNAP")
        snapped = await clients.expect("SNAPPED", 180)
        # What N handshakes, snapshots and closes cost: the storm's fixed part, for comparison.
        snap_cpu = cpu_seconds(server.pid) - snap_cpu0
        got = sum(s["snapshots"] for s in snapped)
        if got != args.clients:
            errors = [e for s in snapped for e in s["errors"]]
            raise RuntimeError(f"{server.name}: {got}/{args.clients} snapshots; {errors[:3]}")
        # 3. E posts through the real API while they are away; the watcher sees them all.
        await post_all(server, args.events)
        await watcher.wait_posts(args.events, WATCH_TIMEOUT)
        await asyncio.sleep(0.2)  # anything a post caused besides its frame arrives too
        head = watcher.last_offset
        if isinstance(server, AppServer):
            (workdir / "app-frames.jsonl").write_text("\n".join(watcher.posts) + "\n")
        before = await poller.get()
        await asyncio.sleep(0.5)  # the posts' own work settles before the clock starts
        # 4 and 5. The storm, /healthz polled meanwhile.
        server_cpu0 = cpu_seconds(server.pid)
        server_sys0 = system_seconds(server.pid)
        loop_run0, loop_wait0 = schedstat(server.pid)
        client_cpu0 = sum(cpu_seconds(p) for p in clients.pids)
        wall0 = time.monotonic()
        polling = asyncio.create_task(poller.run())
        await clients.command(f"STORM {head}")
        caught = await clients.expect("CAUGHT", args.deadline + 60)
        wall = time.monotonic() - wall0
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        server_sys = system_seconds(server.pid) - server_sys0
        loop_run, loop_wait = schedstat(server.pid)
        client_cpu = sum(cpu_seconds(p) for p in clients.pids) - client_cpu0
        poller.stop.set()
        await polling
        after = await poller.get()
    finally:
        await clients.stop()
        await watcher.stop()
        await poller.close()
        await server.stop()

    start = min(c["started"] for c in caught)
    done = [d - start for c in caught for d in c["done"] if d is not None]
    everyone = len(done) == args.clients
    per_client = array("d", sorted(done))
    upgraded = array("d", sorted(u - start for c in caught for u in c["upgraded"] if u))
    health = array("d", sorted(poller.latencies))
    catchup_before = before.get("catchup", {})
    catchup_after = after.get("catchup", {})

    def total(key: str) -> int:
        return sum(c[key] for c in caught)

    frames = total("frames")
    return {
        "server": server.name,
        "clients": args.clients,
        "events": args.events,
        "head": head,
        "behind": head - min(o for s in snapped for o in s["offsets"]),
        "client_procs": len(shares),
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        # None when some client never caught up before the deadline.
        "all_caught_up_s": per_client[-1] if everyone and per_client else None,
        "caught_up": len(done),
        "p50_ms": percentile(per_client, 50) * 1000,
        "p99_ms": percentile(per_client, 99) * 1000,
        # When the 101 answers arrived: how much of the storm is handshakes.
        "upgraded_p50_ms": percentile(upgraded, 50) * 1000,
        "upgraded_max_ms": upgraded[-1] * 1000 if upgraded else 0.0,
        "frames": frames,
        "expected_frames": total("expected"),
        "mb": total("bytes") / 1e6,
        "frame_bytes": total("bytes") / frames if frames else 0.0,
        "storm_wall_s": wall,
        "server_cpu_s": server_cpu,
        "server_sys_s": server_sys,
        "loop_run_s": loop_run - loop_run0,
        "loop_runnable_wait_s": loop_wait - loop_wait0,
        "connect_cpu_s": snap_cpu,
        "client_cpu_s": client_cpu,
        "client_cpu_pct": 100 * client_cpu / wall,
        "healthz_samples": len(health),
        "healthz_failures": poller.failures,
        "healthz_p50_ms": percentile(health, 50) * 1000,
        "healthz_p99_ms": percentile(health, 99) * 1000,
        "healthz_max_ms": health[-1] * 1000 if health else 0.0,
        "db_reads": (
            catchup_after["database_reads"] - catchup_before["database_reads"]
            if "database_reads" in catchup_after and "database_reads" in catchup_before
            else None
        ),
        "lost": total("lost"),
        "duplicates": total("duplicates"),
        "out_of_order": total("out_of_order"),
        "other_frames": total("other_frames"),
        "bad_last": total("bad_last"),
        "connect_failures": total("connect_failures"),
        "reconnects": total("reconnects"),
        "errors": [e for c in caught for e in c["errors"]][:5],
    }


# --------------------------------------------------------------------------- report

COLUMNS = [
    ("round", "round", "{}"),
    ("server", "server", "{}"),
    ("N", "clients", "{:,}"),
    ("E", "behind", "{:,}"),
    ("all (s)", "all_caught_up_s", "{:.2f}"),
    ("p50 ms", "p50_ms", "{:,.0f}"),
    ("p99 ms", "p99_ms", "{:,.0f}"),
    ("frames", "frames", "{:,.0f}"),
    ("MB", "mb", "{:,.0f}"),
    ("srv CPU s", "server_cpu_s", "{:.2f}"),
    ("srv wait s", "loop_runnable_wait_s", "{:.2f}"),
    ("hz p50", "healthz_p50_ms", "{:.1f}"),
    ("hz p99", "healthz_p99_ms", "{:.1f}"),
    ("hz max", "healthz_max_ms", "{:.1f}"),
    ("db reads", "db_reads", "{:.0f}"),
    ("lost", "lost", "{}"),
    ("dup", "duplicates", "{}"),
    ("cli CPU%", "client_cpu_pct", "{:.0f}"),
]
ANOMALY_KEYS = (
    "out_of_order",
    "other_frames",
    "bad_last",
    "connect_failures",
    "reconnects",
    "healthz_failures",
)
"""Counters that should be zero; a round names them when they are not."""


def table(results: list[dict[str, Any]]) -> str:
    """Render the figures as an aligned text table (``n/a`` where a figure is missing)."""
    rows = [[title for title, _, _ in COLUMNS]]
    rows += [
        [fmt.format(r[key]) if r.get(key) is not None else "n/a" for _, key, fmt in COLUMNS]
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def round_line(r: dict[str, Any]) -> str:
    """The figures of one round that the table leaves out, and any anomaly."""
    notes = [f"{k}={r[k]}" for k in ANOMALY_KEYS if r[k]]
    return (
        f"[{r['round']}] {r['server']}: {r['caught_up']}/{r['clients']} caught up, "
        f"{r['frames']:,}/{r['expected_frames']:,} frames of {r['frame_bytes']:,.0f} B; "
        f"101 answers p50 {r['upgraded_p50_ms']:,.0f} ms, last {r['upgraded_max_ms']:,.0f} ms; "
        f"storm {r['storm_wall_s']:.2f} s wall; server CPU {r['server_cpu_s']:.2f} s of which "
        f"kernel {r['server_sys_s']:.2f} s; its event loop ran {r['loop_run_s']:.2f} s and "
        f"waited {r['loop_runnable_wait_s']:.2f} s for a CPU; server CPU for the N first connects "
        f"(snapshot, close) {r['connect_cpu_s']:.2f} s; client CPU {r['client_cpu_s']:.2f} s "
        f"({r['client_cpu_pct']:.0f}%) in {r['client_procs']} processes; "
        f"{r['healthz_samples']} /healthz polls; "
        f"load avg {r['loadavg_1min_before']:.2f}→{r['loadavg_1min_after']:.2f}"
        + (f"; ANOMALIES {' '.join(notes)}" if notes else "")
        + (f"; errors {r['errors']}" if r["errors"] else "")
    )


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a server over several rounds: medians, except counts of loss, which add up.
    A round in which some client never caught up makes the all-caught-up median missing."""
    if not rounds:
        return {}
    row = dict(rounds[0])
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds if r[key] is not None]
        if isinstance(value, int | float) and not isinstance(value, bool) and values:
            row[key] = statistics.median(values)
    if any(r["all_caught_up_s"] is None for r in rounds):
        row["all_caught_up_s"] = None
    row["round"] = "median"
    for key in ("lost", "duplicates", *ANOMALY_KEYS):
        row[key] = sum(r[key] for r in rounds)
    return row


def verdict(app: dict[str, Any], raw: dict[str, Any] | None) -> tuple[bool, list[str]]:
    """Judge the app against the targets; return (passed, one line per check)."""
    caught = app["all_caught_up_s"]
    checks = [
        (
            caught is not None and caught <= TARGET_ALL_CAUGHT_UP_S,
            f"app all caught up in {'never' if caught is None else f'{caught:.2f} s'} "
            f"(target ≤ {TARGET_ALL_CAUGHT_UP_S:g} s)",
        ),
        (
            app["healthz_p99_ms"] < TARGET_HEALTHZ_P99_MS and app["healthz_failures"] == 0,
            f"app /healthz p99 {app['healthz_p99_ms']:.1f} ms, "
            f"{app['healthz_failures']} failed (target < {TARGET_HEALTHZ_P99_MS:g} ms, 0 failed)",
        ),
        (
            app["lost"] == 0 and app["duplicates"] == 0,
            f"app lost {app['lost']}, duplicates {app['duplicates']} (target 0)",
        ),
    ]
    checks.append(
        (
            True,
            f"app event loop on a CPU {app['loop_run_s']:.2f} s of the storm, runnable but "
            f"waiting for one {app['loop_runnable_wait_s']:.2f} s (other work on the machine; "
            "for information)",
        )
    )
    if raw is not None:
        raw_caught = raw["all_caught_up_s"]
        checks.append(
            (
                raw["lost"] == 0 and raw["duplicates"] == 0,
                f"baseline valid: raw lost {raw['lost']}, duplicates {raw['duplicates']}",
            )
        )
        if caught is not None and raw_caught:
            ratio = caught / raw_caught
            cpu = app["server_cpu_s"] / raw["server_cpu_s"] if raw["server_cpu_s"] else 0.0
            checks.append(
                (
                    True,
                    f"app/raw: all caught up {ratio:.2f}×, server CPU {cpu:.2f}× (for information)",
                )
            )
    return all(ok for ok, _ in checks), [("ok   " if ok else "FAIL ") + t for ok, t in checks]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the reference configuration."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, default=1000, help="clients in the storm (1000)")
    p.add_argument("--events", type=int, default=300, help="posts each client is behind (300)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (3)")
    p.add_argument("--only", choices=["app", "raw"], help="measure one server only")
    p.add_argument(
        "--client-procs", type=int, default=2, help="client processes sharing the clients (2)"
    )
    p.add_argument(
        "--frame-bytes",
        type=int,
        help="synthetic raw frames of this size; default: replay the app's post frames from "
        f"this run, else {DEFAULT_FRAME_BYTES} bytes",
    )
    p.add_argument(
        "--deadline", type=float, default=60.0, help="seconds a storm may take at most (60)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="50 clients, 30 events, one round: checks it runs"
    )
    p.add_argument("--json", type=Path, help="results file (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    if args.smoke:
        args.clients, args.events, args.repeat = 50, 30, 1
    if min(args.clients, args.events, args.client_procs, args.repeat) <= 0:
        p.error("--clients, --events, --client-procs and --repeat must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    """Measure the chosen servers, print the report, write the JSON file, return exit status."""
    workdir = Path(tempfile.mkdtemp(prefix="hashroom-catchup-"))
    results: list[dict[str, Any]] = []
    failed = False
    servers = ["app", "raw"] if args.only is None else [args.only]
    captured = workdir / "app-frames.jsonl"
    try:
        for round_no in range(1, args.repeat + 1):
            # Alternate the order from round to round so drift in the machine's load is
            # shared; the app goes first in round 1, so the baseline replays its frames.
            order = servers if round_no % 2 else servers[::-1]
            for name in order:
                server: AppServer | RawCatchupServer
                if name == "app":
                    server = AppServer(workdir, round_no)
                    shape = "posts through the API"
                else:
                    replay = args.frame_bytes is None and captured.exists()
                    server = RawCatchupServer(
                        workdir,
                        args.frame_bytes or DEFAULT_FRAME_BYTES,
                        captured if replay else None,
                        "none",
                        "auto",
                    )
                    shape = (
                        "replaying the app's post frames"
                        if replay
                        else f"synthetic frames of {server.frame_bytes} bytes"
                    )
                print(
                    f"[{round_no}] {name}: {args.clients} clients, {args.events} events "
                    f"behind, {shape} …",
                    flush=True,
                )
                result = await measure(server, args, workdir)
                result["round"] = round_no
                results.append(result)
    except Exception as exc:  # report what we have, then the cause
        print(f"\nrun aborted: {exc}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        failed = True
    summaries = [summarise([r for r in results if r["server"] == n]) for n in servers]
    summaries = [s for s in summaries if s]
    if results:
        print()
        print(table(results + (summaries if args.repeat > 1 else [])))
        for r in results:
            print(round_line(r))
    status = 1 if failed else 2
    by_name = {r["server"]: r for r in summaries}
    verdict_lines: list[str] = []
    if not failed and "app" in by_name:
        passed, verdict_lines = verdict(by_name["app"], by_name.get("raw"))
        print()
        print("\n".join(verdict_lines))
        basis = "same run" if args.repeat == 1 else f"medians of {args.repeat} rounds"
        print("PASS" if passed else "FAIL", f"— catch-up storm, {basis}")
        if "raw" in by_name:
            status = 0 if passed else 1
    if args.smoke and not failed:
        status = 0  # a smoke run checks that the bench runs, not the figures
    save_results(
        "catchup",
        args,
        {
            "results": results,
            "summaries": summaries,
            "verdict": verdict_lines,
            "status": status,
        },
    )
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def main() -> None:
    """Entry point."""
    args = parse_args()
    raise_fd_limit()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
