"""Rule 2 (issue 15 finding 4): opaque copies of shared clips, and the stored noise of
each published transparency figure.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shared_objects',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('grant_id', sa.String(length=32), nullable=False),
        sa.Column('clip_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('deleted_at', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_shared_objects_grant', 'shared_objects', ['grant_id', 'clip_id'], unique=True)
    op.create_index('ix_shared_objects_deleted', 'shared_objects', ['deleted_at'], unique=False)
    op.create_table(
        'transparency_noise',
        sa.Column('agency_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('metric', sa.String(length=16), nullable=False),
        sa.Column('noise', sa.Integer(), nullable=False),
        sa.Column('epsilon', sa.Float(), nullable=False),
        sa.Column('drawn_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('agency_id', 'month', 'metric'),
    )


def downgrade() -> None:
    op.drop_table('transparency_noise')
    op.drop_index('ix_shared_objects_deleted', table_name='shared_objects')
    op.drop_index('ix_shared_objects_grant', table_name='shared_objects')
    op.drop_table('shared_objects')
