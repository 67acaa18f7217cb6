"""Websocket fan-out benchmark: Hashroom beside a raw ``websockets.broadcast()`` server.

One run, one machine. For each server: start it on a free port, connect N readers in a separate
client process, publish posts at a fixed rate (a warm-up, then the measured window), and report
delivered frames/s, frames per server CPU-second, commit-to-reader latency (p50/p99/max), lost
and duplicated posts, and the client process' own CPU. The raw server replays a post frame the
app's readers received in the same run (same fields, same bytes), so app/raw is like for like.

    .venv/bin/python bench/fanout.py                       # both servers, 1,000 readers, 10 posts/s
    .venv/bin/python bench/fanout.py --only raw --clients 200

Exit status: 0 PASS, 1 FAIL (or a broken run), 2 a single server was measured (no verdict).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from post_text import post_text
from results_file import save as save_results

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

TARGET_CPU_RATIO = 1.0
"""The app must deliver at least as many frames per CPU-second as the raw server, counting
everything it does for a post (HTTP request, commit, event log, delivery): framing each
message once for every client, instead of once per client, pays for the rest."""
TARGET_P99_FACTOR = 1.2
"""The app's p99 may be at most 1.2x the raw server's p99 measured in the same run."""
TARGET_KB_PER_CONN = 40.0
"""--capacity: server memory (RSS growth) per open connection, in KB."""
TARGET_CAPACITY_P99_FACTOR = 2.0
"""--capacity: the app's p99 may be at most twice the raw server's at that size."""
DEFAULT_FRAME_BYTES = 2800
"""Raw frame size when the app is not measured in the same run (--only raw)."""
MAX_POSTS_IN_FLIGHT = 16
"""Publish requests outstanding at once (httpx keeps that many keep-alive connections)."""
HEALTH_DEADLINE = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- CPU accounting


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(_stat_fields(int(entry))[1]) == pid:
                    found.append(int(entry))
    return found


def rss_kb(pid: int) -> int:
    """The process' resident memory in KiB (VmRSS; children not included)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, seconds) used so far by ``pid`` and its live descendants.

    Reads /proc/<pid>/stat (utime, stime); falls back to psutil where /proc is absent.
    """
    if not Path("/proc/self/stat").exists():
        import psutil  # only on systems without /proc

        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            fields = _stat_fields(current)
            # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            pending.extend(_children(current))
    return total


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """Ask ``proc`` to stop (SIGINT, as Ctrl-C would), then kill it after ``grace`` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def read_tagged(proc: asyncio.subprocess.Process, tag: str, timeout: float) -> str:
    """Return the rest of the first stdout line of ``proc`` starting with ``tag``."""
    assert proc.stdout is not None

    async def scan() -> str:
        while line := (await proc.stdout.readline()).decode():  # type: ignore[union-attr]
            if line.startswith(tag + " "):
                return line[len(tag) + 1 :].rstrip("\n")
        raise RuntimeError(f"process {proc.pid} exited before printing {tag}")

    return await asyncio.wait_for(scan(), timeout)


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Server(Protocol):
    """A server under test: started, published to, stopped."""

    name: str
    pid: int
    ws_url: str
    origin: str

    async def start(self) -> None: ...
    async def publish(self, seq: int, text: str) -> None: ...
    async def stop(self) -> None: ...


class AppServer:
    """Hashroom itself: migrated SQLite database, ``python -m app``, one native chat."""

    name = "app"

    def __init__(self, workdir: Path, round_no: int = 1) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.origin = self.base
        self.log = workdir / "app.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{workdir / f'bench-{round_no}.db'}",
            "HASHROOM_DEMO_ENABLED": "false",
            "HASHROOM_LOG_LEVEL": "WARNING",
            # Every reader and the publisher come from one loopback address: the per-address
            # quotas (meant for the public internet) would refuse most of them.
            "HASHROOM_WS_PER_CLIENT": "0",
            "HASHROOM_RATE_POSTS_PER_MINUTE": "0",
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.http: httpx.AsyncClient | None = None
        self.slug = ""
        self.ws_url = ""
        self.pid = 0
        self.post_seconds = array("d")

    async def start(self) -> None:
        """Migrate, start the app, wait for /healthz, create the chat."""
        with open(self.log, "ab") as log:
            migrate = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "alembic",
                "upgrade",
                "head",
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )
            if await migrate.wait() != 0:
                raise RuntimeError(f"alembic upgrade head failed:\n{tail(self.log)}")
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app",
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )
        self.pid = self.proc.pid
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30.0, trust_env=False)
        deadline = time.monotonic() + HEALTH_DEADLINE
        while True:
            if self.proc.returncode is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{tail(self.log)}")
            with contextlib.suppress(httpx.TransportError):
                if (await self.http.get("/healthz")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz not 200 within {HEALTH_DEADLINE}s:\n{tail(self.log)}")
            await asyncio.sleep(0.2)
        resp = await self.http.post(
            "/api/chats",
            json={"hashtag": "benchtag", "title": "Bench", "network": "native"},
            headers={"Origin": self.origin},
        )
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/chats → {resp.status_code}: {resp.text[:500]}")
        self.slug = resp.json()["slug"]
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/chats/{self.slug}/live"

    async def publish(self, seq: int, text: str) -> None:
        """POST one post; any answer but 2xx stops the run."""
        assert self.http is not None
        began = time.perf_counter()
        resp = await self.http.post(
            f"/api/chats/{self.slug}/posts",
            json={"text": text, "author": "bench"},
            headers={"Origin": self.origin},
        )
        self.post_seconds.append(time.perf_counter() - began)
        if not resp.is_success:
            raise RuntimeError(f"post {seq} → {resp.status_code}: {resp.text[:500]}")

    async def stop(self) -> None:
        """Close the HTTP client and stop the app."""
        if self.http is not None:
            await self.http.aclose()
        if self.proc is not None:
            await stop_process(self.proc)


class RawServer:
    """``bench/raw_server.py``: websockets' own server, one ``broadcast()`` per post."""

    name = "raw"

    def __init__(
        self, workdir: Path, frame_bytes: int, template: Path | None, compression: str, loop: str
    ) -> None:
        self.workdir = workdir
        self.frame_bytes = frame_bytes
        self.template = template
        self.compression = compression
        self.loop = loop
        self.log = workdir / "raw.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.ws_url = ""
        self.origin = ""
        self.pid = 0
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the raw server on a free port and wait for it to listen."""
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / "raw_server.py"),
                "--frame-bytes",
                str(self.frame_bytes),
                "--compression",
                self.compression,
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

    async def publish(self, seq: int, text: str) -> None:
        """Hand the raw server one post to broadcast."""
        assert self.proc is not None and self.proc.stdin is not None
        async with self.lock:  # one writer on the pipe, in sequence order
            self.proc.stdin.write(f"PUB {text}\n".encode())
            await self.proc.stdin.drain()

    async def stop(self) -> None:
        """Tell the raw server to quit, then make sure it has."""
        if self.proc is None:
            return
        if self.proc.stdin is not None and self.proc.returncode is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"QUIT\n")
                await self.proc.stdin.drain()
                self.proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        await stop_process(self.proc)


# --------------------------------------------------------------------------- one measurement


@dataclass
class ClientProcess:
    """One ``ws_clients.py`` process holding a share of the readers."""

    proc: asyncio.subprocess.Process
    lat_file: Path
    log: Path
    result: dict[str, Any] = field(default_factory=dict)

    async def expect(self, tag: str, timeout: float) -> str:
        """The process' next ``tag`` line; a failure names the cause from its log."""
        try:
            return await read_tagged(self.proc, tag, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"client process: no {tag} ({exc!r})\n{tail(self.log)}") from exc


def percentile(sorted_values: array, q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(math.ceil(q / 100 * len(sorted_values)) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


async def measure(server: Server, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run one server through connect, warm-up and the measured window; return its figures."""
    warmup_posts = round(args.rate * args.warmup)
    total_posts = warmup_posts + round(args.rate * args.duration)
    shares = [
        args.clients // args.client_procs + (1 if i < args.clients % args.client_procs else 0)
        for i in range(args.client_procs)
    ]
    clients: list[ClientProcess] = []
    load_before = os.getloadavg()[0]
    await server.start()
    await asyncio.sleep(1.0)  # start-up work settles before memory is read
    rss_before = rss_kb(server.pid)
    try:
        for i, share in enumerate(shares):
            lat_file = workdir / f"{server.name}-lat-{i}.bin"
            log = workdir / f"{server.name}-clients-{i}.log"
            with open(log, "ab") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(BENCH / "ws_clients.py"),
                    "--url",
                    server.ws_url,
                    "--origin",
                    server.origin,
                    "--clients",
                    str(share),
                    "--max-seq",
                    str(total_posts + 16),
                    "--lat-file",
                    str(lat_file),
                    "--drain",
                    str(args.drain),
                    "--sample-file",
                    str(workdir / f"{server.name}-frame-{i}.json"),
                    "--connect-timeout",
                    str(args.connect_timeout),
                    "--connect-concurrency",
                    str(args.connect_concurrency),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            clients.append(ClientProcess(proc, lat_file, log))
        connect_began = time.monotonic()
        for c in clients:
            ready = await c.expect("READY", args.connect_timeout + 30)
            expected = shares[clients.index(c)]
            if int(ready) != expected:
                raise RuntimeError(
                    f"{server.name}: only {ready}/{expected} readers connected\n{tail(c.log)}"
                )
        connect_seconds = time.monotonic() - connect_began
        await asyncio.sleep(1.0)  # let handshake work settle before the clock starts
        rss_connected = rss_kb(server.pid)

        pids = [c.proc.pid for c in clients]
        interval = 1.0 / args.rate
        # Posts are sent on schedule, not one after another: a slow answer must not lower the
        # offered rate. A bound on requests in flight keeps a stuck server from piling up more.
        in_flight = asyncio.Semaphore(MAX_POSTS_IN_FLIGHT)
        sending: set[asyncio.Task[None]] = set()

        async def send(seq: int) -> None:
            try:
                await server.publish(seq, post_text(seq))
            finally:
                in_flight.release()

        began = time.monotonic()
        t0 = server_cpu0 = client_cpu0 = 0.0
        last_publish = 0.0
        max_lag = 0.0
        for seq in range(total_posts):
            due = began + seq * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            max_lag = max(max_lag, time.monotonic() - due)
            if seq == warmup_posts:
                server_cpu0 = cpu_seconds(server.pid)
                client_cpu0 = sum(cpu_seconds(p) for p in pids)
                t0 = time.monotonic()
            last_publish = time.monotonic()
            sending.add(asyncio.create_task(send(seq)))
            for done in [t for t in sending if t.done()]:
                sending.discard(done)
                done.result()  # a failed post stops the run now, not at the end
        window_seconds = last_publish - t0 + interval
        if sending:
            await asyncio.gather(*sending)

        for c in clients:
            assert c.proc.stdin is not None
            c.proc.stdin.write(f"END {total_posts} {warmup_posts}\n".encode())
            await c.proc.stdin.drain()
        drained = [float(await c.expect("DRAINED", args.drain + 30)) for c in clients]
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        client_cpu = sum(cpu_seconds(p) for p in pids) - client_cpu0
        cpu_wall = time.monotonic() - t0
        for c in clients:
            c.result = json.loads(await c.expect("RESULT", 60))
    finally:
        for c in clients:
            with contextlib.suppress(OSError, RuntimeError):
                if c.proc.stdin is not None:
                    c.proc.stdin.close()
            await stop_process(c.proc, grace=10)
        await server.stop()

    latencies = array("d")
    for c in clients:
        with open(c.lat_file, "rb") as f:
            latencies.frombytes(f.read())
    latencies = array("d", sorted(latencies))
    frames = sum(c.result["frames_in_window"] for c in clients)

    def total(key: str) -> int:
        return sum(c.result[key] for c in clients)

    result: dict[str, Any] = {
        "server": server.name,
        "clients": args.clients,
        "client_procs": args.client_procs,
        "posts": total_posts,
        "measured_posts": total_posts - warmup_posts,
        "publish_rate": (total_posts - warmup_posts) / window_seconds,
        "publish_max_lag_ms": max_lag * 1000,
        "window_seconds": window_seconds,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        "connect_seconds": connect_seconds,
        "connects_per_s": args.clients / connect_seconds if connect_seconds > 0 else None,
        "rss_before_kb": rss_before,
        "rss_connected_kb": rss_connected,
        # Server memory each open connection costs: RSS growth while they connected.
        "kb_per_conn": (rss_connected - rss_before) / args.clients,
        "frames": frames,
        "frames_per_s": frames / window_seconds,
        "server_cpu_s": server_cpu,
        "server_cpu_pct": 100 * server_cpu / cpu_wall,
        # None when the window was too short for the kernel's CPU clock to tick.
        "frames_per_cpu_s": frames / server_cpu if server_cpu > 0 else None,
        "client_cpu_s": client_cpu,
        "client_cpu_pct": 100 * client_cpu / cpu_wall,
        "client_us_per_frame": 1e6 * client_cpu / frames if frames else 0.0,
        "latency_samples": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else 0.0,
        "drain_seconds": max(drained),
        "frame_bytes": clients[0].result["mean_frame_bytes"],
        "extensions": sorted({e for c in clients for e in c.result["extensions"]}),
        "last_error": next((c.result["last_error"] for c in clients if c.result["last_error"]), ""),
    }
    for key in (
        "lost",
        "duplicates",
        "out_of_order",
        "late_posts",
        "unknown_posts",
        "missing_ts",
        "other_frames",
        "reconnects",
        "connect_failures",
    ):
        result[key] = total(key)
    if isinstance(server, AppServer) and server.post_seconds:
        ordered = sorted(server.post_seconds)
        result["post_request_p50_ms"] = percentile(array("d", ordered), 50) * 1000
        result["post_request_max_ms"] = ordered[-1] * 1000
    return result


# --------------------------------------------------------------------------- report

COLUMNS = [
    ("round", "round", "{}"),
    ("server", "server", "{}"),
    ("frames/s", "frames_per_s", "{:,.0f}"),
    ("frames/CPU-s", "frames_per_cpu_s", "{:,.0f}"),
    ("srv CPU%", "server_cpu_pct", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.1f}"),
    ("lost", "lost", "{}"),
    ("dup", "duplicates", "{}"),
    ("cli CPU%", "client_cpu_pct", "{:.1f}"),
    ("cli µs/fr", "client_us_per_frame", "{:.1f}"),
    ("frame B", "frame_bytes", "{:,.0f}"),
    ("conn/s", "connects_per_s", "{:,.0f}"),
    ("KB/conn", "kb_per_conn", "{:.1f}"),
    ("conn fail", "connect_failures", "{}"),
]


def table(results: list[dict[str, Any]]) -> str:
    """Render the per-server figures as an aligned text table."""
    rows = [[title for title, _, _ in COLUMNS]]
    rows += [
        [fmt.format(r[key]) if r[key] is not None else "n/a" for _, key, fmt in COLUMNS]
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for a server over several rounds: medians, except counts of loss, which add up."""
    if not rounds:
        return {}
    row = dict(rounds[0])
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds if r[key] is not None]
        if isinstance(value, int | float) and not isinstance(value, bool) and values:
            row[key] = statistics.median(values)
    row["round"] = "median"
    for key in ("lost", "duplicates", *ANOMALY_KEYS):
        row[key] = sum(r[key] for r in rounds)
    return row


ANOMALY_KEYS = ("out_of_order", "late_posts", "unknown_posts", "missing_ts", "reconnects")


def anomalies(r: dict[str, Any]) -> list[str]:
    """Counters that should be zero in a healthy run, named when they are not."""
    return [f"{k}={r[k]}" for k in ANOMALY_KEYS if r[k]]


def verdict(
    app: dict[str, Any], raw: dict[str, Any], capacity: bool = False
) -> tuple[bool, list[str]]:
    """Judge the app against the raw baseline; return (passed, one line per check).

    ``capacity`` judges the many-connections profile instead of the efficiency one: every
    connection accepted, memory per connection, p99 within twice the baseline's.
    """
    ratio = (app["frames_per_cpu_s"] or 0.0) / (raw["frames_per_cpu_s"] or float("inf"))
    factor = app["p99_ms"] / raw["p99_ms"] if raw["p99_ms"] > 0 else float("inf")
    if capacity:
        checks = [
            (
                app["connect_failures"] == 0,
                f"app refused or failed {app['connect_failures']} connection attempts (target 0)",
            ),
            (
                app["kb_per_conn"] <= TARGET_KB_PER_CONN,
                f"app memory per connection {app['kb_per_conn']:.1f} KB "
                f"(raw {raw['kb_per_conn']:.1f} KB; target ≤ {TARGET_KB_PER_CONN} KB)",
            ),
            (
                factor <= TARGET_CAPACITY_P99_FACTOR,
                f"p99 app/raw = {factor:.2f}× ({app['p99_ms']:.1f} ms vs "
                f"{raw['p99_ms']:.1f} ms; target ≤ {TARGET_CAPACITY_P99_FACTOR}×)",
            ),
            (True, f"frames per CPU-second app/raw = {ratio:.2f} (for information)"),
        ]
    else:
        checks = [
            (
                ratio >= TARGET_CPU_RATIO,
                f"frames per CPU-second app/raw = {ratio:.2f} (target ≥ {TARGET_CPU_RATIO})",
            ),
            (
                factor <= TARGET_P99_FACTOR,
                f"p99 app/raw = {factor:.2f}× ({app['p99_ms']:.1f} ms vs "
                f"{raw['p99_ms']:.1f} ms; target ≤ {TARGET_P99_FACTOR}×)",
            ),
        ]
    checks += [
        (app["lost"] == 0, f"app lost {app['lost']} (target 0)"),
        (app["duplicates"] == 0, f"app duplicates {app['duplicates']} (target 0)"),
        (
            raw["lost"] == 0 and raw["duplicates"] == 0,
            f"baseline valid: raw lost {raw['lost']}, duplicates {raw['duplicates']}",
        ),
    ]
    return all(ok for ok, _ in checks), [("ok   " if ok else "FAIL ") + t for ok, t in checks]


# --------------------------------------------------------------------------- main


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one (servers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the reference configuration."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, default=1000, help="websocket readers (default 1000)")
    p.add_argument("--rate", type=float, default=10.0, help="posts per second (default 10)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first (3)")
    p.add_argument("--only", choices=["app", "raw"], help="measure one server only")
    p.add_argument(
        "--repeat", type=int, default=1, help="rounds of app+raw; the verdict uses medians (1)"
    )
    p.add_argument(
        "--client-procs", type=int, default=1, help="client processes sharing the readers (1)"
    )
    p.add_argument(
        "--frame-bytes",
        type=int,
        help="synthetic raw frames of this size; default: replay the app's own post frame "
        f"from this run, else {DEFAULT_FRAME_BYTES} bytes",
    )
    p.add_argument("--raw-compression", choices=["none", "deflate"], default="none")
    p.add_argument(
        "--raw-loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="raw server's event loop; auto = uvloop when installed, as uvicorn picks",
    )
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for stragglers")
    p.add_argument("--connect-timeout", type=float, default=120.0)
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=100,
        help="handshakes each client process keeps in flight (100)",
    )
    p.add_argument(
        "--capacity",
        action="store_true",
        help="the many-viewers profile: 10,000 readers opened 1,000 at a time, 1 post/s, "
        "judged on connections accepted, memory per connection and p99 (explicit "
        "--clients/--rate/--connect-concurrency still win)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="a few seconds with 20 readers: checks it runs"
    )
    p.add_argument("--json", type=Path, help="results file (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    given = set(argv if argv is not None else sys.argv[1:])
    if args.capacity:
        if "--clients" not in given:
            args.clients = 10_000
        if "--rate" not in given:
            args.rate = 1.0
        if "--connect-concurrency" not in given:
            args.connect_concurrency = 1000
    if args.smoke:
        args.clients, args.rate, args.duration, args.warmup, args.drain = 20, 5.0, 2.0, 1.0, 5.0
    if min(args.rate, args.duration, args.clients, args.client_procs, args.repeat) <= 0:
        p.error("--rate, --duration, --clients, --client-procs and --repeat must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    """Measure the chosen servers, print the report, write the JSON file, return exit status."""
    workdir = Path(tempfile.mkdtemp(prefix="hashroom-bench-"))
    results: list[dict[str, Any]] = []
    frame_bytes = args.frame_bytes or DEFAULT_FRAME_BYTES
    template: Path | None = None
    failed = False
    servers = ["app", "raw"] if args.only is None else [args.only]
    try:
        for round_no in range(1, args.repeat + 1):
            # Alternate the order from round to round so drift in the machine's load is shared.
            order = servers if round_no % 2 else servers[::-1]
            for name in order:
                if name == "app":
                    print(
                        f"[{round_no}] app: {args.clients} readers, {args.rate:g} posts/s, "
                        f"{args.warmup:g}s warm-up + {args.duration:g}s …",
                        flush=True,
                    )
                    server: Server = AppServer(workdir, round_no)
                else:
                    shape = (
                        "replaying the app's own post frame"
                        if template
                        else f"synthetic frames of {frame_bytes} bytes"
                    )
                    print(f"[{round_no}] raw: same load, {shape} …", flush=True)
                    server = RawServer(
                        workdir, frame_bytes, template, args.raw_compression, args.raw_loop
                    )
                result = await measure(server, args, workdir)
                result["round"] = round_no
                results.append(result)
                sample = workdir / "app-frame-0.json"
                if name == "app" and args.frame_bytes is None and template is None:
                    template = sample if sample.exists() else None
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
            notes = anomalies(r)
            extra = (
                f"; post request p50 {r['post_request_p50_ms']:.1f} ms"
                if ("post_request_p50_ms" in r)
                else ""
            )
            print(
                f"[{r['round']}] {r['server']}: {r['frames']:,} frames in "
                f"{r['window_seconds']:.1f}s at {r['publish_rate']:.2f} posts/s, "
                f"drain {r['drain_seconds']:.2f}s, "
                f"ws extensions {', '.join(r['extensions'])}{extra}; "
                f"load avg {r['loadavg_1min_before']:.2f}→{r['loadavg_1min_after']:.2f}"
                + (f"; ANOMALIES {' '.join(notes)}" if notes else "")
            )
    status = 1 if failed else 2
    by_name = {r["server"]: r for r in summaries}
    verdict_lines: list[str] = []
    if not failed and "app" in by_name and "raw" in by_name:
        passed, verdict_lines = verdict(by_name["app"], by_name["raw"], args.capacity)
        print()
        print("\n".join(verdict_lines))
        basis = "same run" if args.repeat == 1 else f"medians of {args.repeat} rounds"
        print("PASS" if passed else "FAIL", f"— app vs raw websockets.broadcast(), {basis}")
        status = 0 if passed else 1
        if args.smoke:
            status = 0  # a smoke run checks that the bench runs, not the figures
    save_results(
        "fanout",
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
