"""Shared fixtures: a fresh migrated SQLite file per test, real servers on free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import pg_database
from tests.server import ServerProcess, migrate

pytest_plugins = ["tests.browser", "tests.ci_guard", "pytester"]


@pytest.fixture
def db_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database with the schema from ``alembic upgrade head``: a SQLite file, or — for
    tests marked ``db`` when ``TEST_DATABASE_URL`` is set (``make test-pg``) — a fresh
    PostgreSQL database on that server, dropped afterwards."""
    if os.environ.get("TEST_DATABASE_URL") and request.node.get_closest_marker("db"):
        with pg_database() as url:
            yield url
        return
    url = f"sqlite:///{tmp_path / 'hashroom.db'}"
    migrate(url)
    yield url


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
