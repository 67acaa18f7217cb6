"""A real Hashroom server in a subprocess on a free port, for integration and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


# Every test server accepts this operator token: /healthz shows per-source detail with it.
OPERATOR_TOKEN = "test-operator-token-0123456789abcdef"
OPERATOR_HEADERS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def in_ci() -> bool:
    """True on CI (``CI=true``, any case), where a missing tool or a skip is a failure."""
    return os.environ.get("CI", "").lower() == "true"


TEST_QUOTAS = {
    "HASHROOM_RATE_CHATS_PER_HOUR": "100000",
    "HASHROOM_RATE_POSTS_PER_MINUTE": "100000",
    "HASHROOM_RATE_VOTES_PER_MINUTE": "100000",
    "HASHROOM_RATE_ACCOUNTS_PER_HOUR": "100000",
    "HASHROOM_RATE_SIGN_INS_PER_HOUR": "100000",
    "HASHROOM_WS_PER_CLIENT": "100000",
}


def need_tool(available: bool, install_hint: str) -> None:
    """Skip when an outside tool is missing — except on CI, where that is a failure."""
    if available:
        return
    if in_ci():
        pytest.fail(f"missing on CI: {install_hint}")
    pytest.skip(f"needs an outside tool: {install_hint}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrate(database_url: str) -> None:
    """Create the schema the way operators do: ``alembic upgrade head``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.set_main_option("sqlalchemy.url", database_url)
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


class ServerProcess:
    """``python -m app`` with its own database and settings; start, stop, restart."""

    def __init__(self, database_url: str, log_path: Path, **env: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "HASHROOM_LOG_LEVEL": "INFO",
            "HASHROOM_DEMO_ENABLED": "false",
            # Tests build many chats and posts from one loopback address; the quota tests
            # set their own limits (tests/test_quotas.py).
            **TEST_QUOTAS,
            "HASHROOM_OPERATOR_TOKEN": OPERATOR_TOKEN,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """Stop without any graceful shutdown (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def operator_health(self) -> dict:
        """``/healthz`` as the operator sees it (with per-source ``ingesters``)."""
        response = httpx.get(f"{self.url}/healthz", headers=OPERATOR_HEADERS, timeout=5)
        return response.json()

    def log_text(self) -> str:
        """The whole server log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
