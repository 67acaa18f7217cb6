"""question votes and answered questions

Revision ID: 0004_votes
Revises: 0003
Create Date: 2026-12-05 21:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString for str fields)
from alembic import op


revision: str = '0004_votes'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('questionvote',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('voter', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['chat_id'], ['chat.id'], ),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('post_id', 'voter', name='uq_vote_voter')
    )
    with op.batch_alter_table('questionvote', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_questionvote_chat_id'), ['chat_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_questionvote_post_id'), ['post_id'], unique=False)

    op.create_table('answeredquestion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.Integer(), nullable=False),
    sa.Column('post_id', sa.Integer(), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['chat_id'], ['chat.id'], ),
    sa.ForeignKeyConstraint(['post_id'], ['post.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('post_id')
    )
    with op.batch_alter_table('answeredquestion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_answeredquestion_chat_id'), ['chat_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('answeredquestion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_answeredquestion_chat_id'))
    op.drop_table('answeredquestion')
    with op.batch_alter_table('questionvote', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_questionvote_post_id'))
        batch_op.drop_index(batch_op.f('ix_questionvote_chat_id'))
    op.drop_table('questionvote')
