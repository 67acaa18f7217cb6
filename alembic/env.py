"""Alembic environment: Hashroom's tables (``SQLModel.metadata``) on the configured database.

Where the database is, in order of precedence:

1. a SQLAlchemy connection handed in by the caller as ``config.attributes["connection"]``
   (the caller owns its transaction, and on SQLite its foreign-key pragma);
2. ``alembic -x url=postgresql+psycopg://...``;
3. ``sqlalchemy.url`` in the Alembic config (blank in alembic.ini);
4. the app's settings: the ``DATABASE_URL`` environment variable, else the default SQLite file.

Engines come from ``app.db.make_engine``, so migrations see the same SQLite pragmas (WAL, busy
timeout) as the running app.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import app.models  # noqa: F401  (imported for its side effect: every table joins the metadata)
from app.config import get_settings
from app.db import make_engine

config = context.config
target_metadata = SQLModel.metadata

# Code that runs migrations in its own process (the tests) keeps its logging set-up by passing
# configure_logger=False; the command line gets alembic.ini's.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Batch mode rebuilds a SQLite table by copy-and-rename, the only way SQLite can alter most
# columns; compare_type lets autogenerate notice a changed length or type.
CONFIGURE_OPTIONS = {"render_as_batch": True, "compare_type": True}


def database_url() -> str:
    """The URL to migrate, following the precedence in the module docstring."""
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_offline() -> None:
    """Print the SQL for the migrations instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **CONFIGURE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def _run_sqlite(connection: Connection) -> None:
    """Run migrations with foreign-key enforcement paused, then prove nothing dangles.

    A batch migration drops and recreates a table; with enforcement on, dropping a table that
    other rows reference fails (or worse, deletes them). SQLite's documented procedure for
    schema changes is to pause enforcement and run ``foreign_key_check`` afterwards. The pragma
    is a no-op inside a transaction, so it is issued before the migration's transaction starts.
    """
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        _run(connection)
        dangling = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        if dangling:
            raise RuntimeError(f"migration left rows with dangling foreign keys: {dangling[:10]}")
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on a fresh engine for the URL."""
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                _run_sqlite(connection)
            else:
                _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
