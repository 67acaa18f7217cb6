"""account ids are never reused

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 16:40:00

SQLite hands a deleted row's id to the next insert unless the table is AUTOINCREMENT; a
browser session or a log line that names an account by id would then point at the next
person to connect. The table is rebuilt with AUTOINCREMENT (rows keep their ids; the
counter starts above the highest one). PostgreSQL's SERIAL ids come from a sequence that
never goes back, so nothing changes there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "account", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "account", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
