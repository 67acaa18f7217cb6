"""Helpers for cluster tests: a fresh PostgreSQL database, a redis-server the test owns, two
web processes, and live clients that reconnect and resume by offset like the page does."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from tests.server import ServerProcess, free_port, migrate, need_tool

# The pre-started server of the development and CI machines; TEST_DATABASE_URL points
# elsewhere. Each test gets its own database on it, dropped afterwards.
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_base_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)


def _admin_connect(url: str) -> Any:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(plain, autocommit=True, connect_timeout=3)


@contextmanager
def pg_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database (its SQLAlchemy URL); dropped afterwards."""
    base = pg_base_url()
    try:
        admin = _admin_connect(base)
    except Exception as exc:  # no server: skip locally, fail on CI
        need_tool(False, f"PostgreSQL at {base} (set TEST_DATABASE_URL): {exc}")
        raise
    name = f"hashroom_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        yield url
    finally:
        with _admin_connect(base) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class RedisServer:
    """A throwaway ``redis-server`` on a free port, without persistence: a restart comes
    back empty, as a Redis without a disk does."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        need_tool(binary is not None, "redis-server (apt-get install redis-server)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],  # fmt: skip
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        import redis

        while time.monotonic() < deadline:
            with suppress(Exception):
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cluster_env(redis_url: str, name: str, **extra: str) -> dict[str, str]:
    """Settings of one process of a test cluster: short leases and polls keep tests fast."""
    return {
        "HASHROOM_REDIS_URL": redis_url,
        "HASHROOM_PROCESS_ID": name,
        "HASHROOM_REDIS_POLL_INTERVAL": "0.5",
        "HASHROOM_REDIS_SWEEP_INTERVAL": "2",
        "HASHROOM_LEASE_TTL": "6",
        "HASHROOM_LEASE_HEARTBEAT": "1",
        **extra,
    }


def start_cluster(
    db_url: str, redis: RedisServer, tmp_path: Path, n: int = 2, **extra: str
) -> list[ServerProcess]:
    servers: list[ServerProcess] = []
    try:
        for i in range(n):
            name = "ab"[i] if n <= 2 else f"p{i}"
            server = ServerProcess(
                db_url, tmp_path / f"server-{name}.log", **cluster_env(redis.url, name, **extra)
            )
            servers.append(server.start(timeout=30))
    except BaseException:
        for server in servers:  # the ones that did start
            server.stop()
        raise
    return servers


@dataclass
class Follower:
    """A live client of one room that reconnects (to the next URL in ``bases`` when its
    server is gone) and resumes after the last offset it holds, recording every event."""

    bases: list[str]
    slug: str
    epoch: str
    offsets: list[int] = field(default_factory=list)
    frames: dict[int, dict[str, Any]] = field(default_factory=dict)
    connects: int = 0
    task: asyncio.Task[None] | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> Follower:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    @property
    def last(self) -> int:
        return max(self.offsets, default=0)

    async def _run(self) -> None:
        i = 0
        while True:
            base = self.bases[i % len(self.bases)]
            url = f"{base}/api/chats/{self.slug}/live?after={self.last}&epoch={self.epoch}"
            try:
                origin = base.replace("ws://", "http://")
                async with connect(url, origin=origin, max_size=None, open_timeout=3) as conn:
                    self.connects += 1
                    self.connected.set()
                    async for raw in conn:
                        frame = json.loads(raw)
                        if frame["type"] in ("ping", "snapshot"):
                            continue
                        self.offsets.append(frame["offset"])
                        self.frames[frame["offset"]] = frame
            except asyncio.CancelledError:
                raise
            except Exception:
                i += 1  # that server is gone or dropped us: try the next one
            await asyncio.sleep(0.1)

    async def wait_for(self, offset: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.last < offset:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"client stuck at offset {self.last}, expected {offset} ({self.bases})"
                )
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task


@dataclass
class Tally:
    """Per scenario: events sent (committed × clients), received, lost, duplicated."""

    scenario: str
    sent: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0

    def add(self, head: int, follower: Follower) -> None:
        counts = Counter(follower.offsets)
        self.sent += head
        self.received += sum(1 for o in counts if 1 <= o <= head)
        self.lost += sum(1 for o in range(1, head + 1) if o not in counts)
        self.duplicated += sum(n - 1 for n in counts.values() if n > 1)
        self.reordered += sum(
            1 for a, b in zip(follower.offsets, follower.offsets[1:], strict=False) if b <= a
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: sent {self.sent}, received {self.received}, lost {self.lost}, "
            f"duplicated {self.duplicated}, reordered {self.reordered}"
        )


def record(tally: Tally) -> None:
    """Print the tally and append it to build/cluster-scenarios.txt (for the release notes)."""
    record_line(tally.line())


def record_line(line: str) -> None:
    print(line)  # noqa: T201 - the figures the cluster tests exist to show
    out = Path(__file__).resolve().parent.parent / "build" / "cluster-scenarios.txt"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as fh:
        fh.write(line + "\n")


def loop_time() -> float:
    return time.monotonic()


def needs_postgres() -> None:
    """Fail early (on CI) or skip (elsewhere) without a PostgreSQL server."""
    try:
        _admin_connect(pg_base_url()).close()
    except Exception as exc:
        need_tool(False, f"PostgreSQL at {pg_base_url()} (set TEST_DATABASE_URL): {exc}")


NGINX_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"


class Nginx:
    """Real nginx running deploy/nginx.conf, with its upstreams pointed at local processes
    and its port at a free one (the only edits: the file is the one compose mounts)."""

    def __init__(self, upstreams: list[str], tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path / "nginx"
        self.dir.mkdir()
        conf = NGINX_CONF.read_text()
        servers = [line for line in conf.splitlines() if line.strip().startswith("server web")]
        assert len(servers) == len(upstreams), "deploy/nginx.conf names another number of webs"
        for line, upstream in zip(servers, upstreams, strict=True):
            conf = conf.replace(line, line.replace(line.split()[1], upstream))
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _command(self, *extra: str, directives: str = "") -> list[str]:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        need_tool(Path(binary).exists(), "nginx (apt-get install nginx-light)")
        # Runtime files in the test's folder; the configuration itself stays untouched.
        directives = f"pid {self.dir}/nginx.pid; {directives}"
        return [binary, "-p", f"{self.dir}/", "-c", str(self.conf), "-g", directives, *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t``: the configuration parses and its upstreams resolve."""
        return subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=20)

    def start(self, timeout: float = 10.0) -> Nginx:
        log = open(self.dir / "nginx.log", "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            self._command("-e", str(self.dir / "error.log"), directives="daemon off;"),
            stdout=log,
            stderr=log,
        )
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not serve /healthz:\n{(self.dir / 'nginx.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
