"""Shared fixtures: a fresh migrated SQLite file per test, real servers on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess, migrate

pytest_plugins = ["tests.browser", "tests.ci_guard", "pytester"]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A new SQLite database file with the schema from ``alembic upgrade head``."""
    url = f"sqlite:///{tmp_path / 'hashroom.db'}"
    migrate(url)
    return url


@pytest.fixture
def make_server(db_url: str, tmp_path: Path) -> Iterator[object]:
    """Factory: ``make_server(**env)`` starts the app on a free port; all stopped after."""
    servers: list[ServerProcess] = []

    def factory(**env: str) -> ServerProcess:
        server = ServerProcess(db_url, tmp_path / f"server{len(servers)}.log", **env)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A running app with the demo off (tests create their own chats)."""
    return make_server()
