"""Consent releases keys (issue 12): devices' manifest keys, agencies' age recipients, released objects.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('public_key', sa.String(length=100), nullable=True))
    with op.batch_alter_table('agencies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('age_recipient', sa.String(length=70), nullable=True))
    op.create_table(
        'released_objects',
        sa.Column('grant_id', sa.String(length=32), nullable=False),
        sa.Column('clip_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('device_id', sa.String(length=63), nullable=False),
        sa.Column('key', sa.String(length=1024), nullable=False),
        sa.Column('payload_offset', sa.Integer(), nullable=False),
        sa.Column('header', sa.Text(), nullable=False),
        sa.Column('header_sha256', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['grant_id'], ['grants.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('grant_id', 'clip_id', 'kind'),
    )


def downgrade() -> None:
    op.drop_table('released_objects')
    with op.batch_alter_table('agencies', schema=None) as batch_op:
        batch_op.drop_column('age_recipient')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('public_key')
