"""several hashtags per chat

Revision ID: 0005_hashtags
Revises: 0004_votes
Create Date: 2026-12-06 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_hashtags'
down_revision: str | Sequence[str] | None = '0004_votes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added with an empty-list default so existing rows satisfy NOT NULL, then each chat's
    # list becomes its one tag; the default is dropped so the table matches the model.
    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hashtags', sa.JSON(), nullable=False, server_default='[]'))
    chat = sa.table('chat', sa.column('id', sa.Integer()), sa.column('hashtag', sa.String()),
                    sa.column('hashtags', sa.JSON()))
    connection = op.get_bind()
    for chat_id, hashtag in connection.execute(sa.select(chat.c.id, chat.c.hashtag)).all():
        connection.execute(
            chat.update().where(chat.c.id == chat_id).values(hashtags=[hashtag])
        )
    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.alter_column('hashtags', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('chat', schema=None) as batch_op:
        batch_op.drop_column('hashtags')
