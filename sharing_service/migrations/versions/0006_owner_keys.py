"""Linked devices: an owner's further signing keys (sharing_service.enrolment).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'owner_keys',
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('owner_id', sa.String(length=63), nullable=False),
        sa.Column('public_key', sa.String(length=100), nullable=False),
        sa.Column('x25519', sa.String(length=100), nullable=False),
        sa.Column('label', sa.String(length=250), nullable=False),
        sa.Column('enrolled_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('revoked_at', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('key_id'),
    )
    op.create_index('ix_owner_keys_owner', 'owner_keys', ['owner_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_owner_keys_owner', table_name='owner_keys')
    op.drop_table('owner_keys')
