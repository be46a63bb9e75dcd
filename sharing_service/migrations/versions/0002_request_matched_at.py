"""Requests record when owners were matched (matching moved off the HTTP request path).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('matched_at', sa.Float(), nullable=True))
    # Requests created before this revision were matched inline, at creation.
    op.execute("UPDATE requests SET matched_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_column('matched_at')
