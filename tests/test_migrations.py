"""The migrations build exactly the tables app/models.py declares, on SQLite and PostgreSQL.

When a model changes without a migration, the "matches models" tests fail and print the
difference; docs/development.md explains how to regenerate the migration.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.db import make_engine
from tests.server import need_tool

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC_INI = ROOT / "alembic.ini"
# The PostgreSQL server the suite may use: it only ever creates and drops its own schemas.
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def alembic_config(url: str) -> Config:
    """The project's alembic.ini, aimed at ``url`` the way ``alembic -x url=…`` would be."""
    config = Config(str(ALEMBIC_INI), cmd_opts=argparse.Namespace(x=[f"url={url}"]))
    config.attributes["configure_logger"] = False
    return config


def schema_diff(url: str) -> list[object]:
    """What autogenerate would still have to do to make the database match the models."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_as_batch": True}
            )
            return compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def postgres_schema() -> Iterator[str]:
    """A URL whose connections live in a fresh schema, dropped afterwards with all it holds."""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        admin.dispose()
        reason = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({error.orig}); start a server "
            "with a `test` database, or point TEST_POSTGRES_URL at one"
        )
        need_tool(False, reason)
    schema = f"hr_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each supported kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hashroom.db'}"
    else:
        yield from postgres_schema()


def test_migrations_have_a_single_head() -> None:
    """The revisions form one line, so `alembic upgrade head` is unambiguous."""
    heads = ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_heads()
    assert len(heads) == 1, f"several migration heads, merge them: {heads}"


def test_upgrade_head_matches_models(database_url: str) -> None:
    """After `upgrade head`, autogenerate finds nothing left to do: migrations == models."""
    command.upgrade(alembic_config(database_url), "head")

    diff = schema_diff(database_url)

    assert diff == [], (
        "the migrations and app/models.py disagree; regenerate the migration "
        f"(docs/development.md): {diff}"
    )
    assert set(SQLModel.metadata.tables) <= table_names(database_url)


def test_downgrade_base_removes_every_table(database_url: str) -> None:
    """`downgrade base` undoes the whole schema, leaving only Alembic's own bookkeeping."""
    config = alembic_config(database_url)
    command.upgrade(config, "head")

    command.downgrade(config, "base")

    assert table_names(database_url) <= {"alembic_version"}
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() is None
    finally:
        engine.dispose()


def test_existing_chats_follow_their_one_tag_after_0005(database_url: str) -> None:
    """Chats made before several tags existed get `hashtags` = [their hashtag]."""
    config = alembic_config(database_url)
    command.upgrade(config, "0004_votes")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO chat (slug, hashtag, title, description, network, epoch, "
                    "last_offset, moderator_key_hash, created_at) VALUES ('a', 'EdChat', 't', "
                    "'', 'native', 'e', 0, 'h', CURRENT_TIMESTAMP)"
                )
            )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            raw = connection.execute(sa.text("SELECT hashtags FROM chat")).scalar_one()
    finally:
        engine.dispose()
    assert (json.loads(raw) if isinstance(raw, str) else raw) == ["EdChat"]


def test_alembic_command_reads_database_url_and_enables_wal(tmp_path: Path) -> None:
    """`alembic upgrade head`, as `make run` calls it, migrates the DATABASE_URL database in
    WAL mode, from any working directory."""
    db = tmp_path / "fresh.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    env.pop("HASHROOM_DATABASE_URL", None)

    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        head = ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    assert set(SQLModel.metadata.tables) <= tables
