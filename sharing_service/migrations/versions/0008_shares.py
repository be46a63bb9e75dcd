"""Share links: one clip shared with anyone by an expiring, revocable link (sharing_service.shares).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shares',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('owner_id', sa.String(length=63), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('clip_id', sa.String(length=32), nullable=False),
        sa.Column('device_id', sa.String(length=63), nullable=False),
        sa.Column('sealed', sa.Boolean(), nullable=False),
        sa.Column('recipient', sa.String(length=100), nullable=True),
        sa.Column('nonce', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('revoked_at', sa.Float(), nullable=True),
        sa.Column('views', sa.Integer(), nullable=False),
        sa.Column('last_viewed_at', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_shares_token', 'shares', ['token_hash'], unique=True)
    op.create_index('ix_shares_owner', 'shares', ['owner_id'], unique=False)
    op.create_index('ix_shares_state', 'shares', ['state', 'expires_at'], unique=False)
    op.create_table(
        'share_objects',
        sa.Column('share_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('key', sa.String(length=1024), nullable=False),
        sa.Column('payload_offset', sa.Integer(), nullable=True),
        sa.Column('header', sa.Text(), nullable=True),
        sa.Column('header_sha256', sa.String(length=64), nullable=True),
        sa.Column('copy_key', sa.String(length=200), nullable=False),
        sa.Column('copied_at', sa.Float(), nullable=True),
        sa.Column('deleted_at', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['share_id'], ['shares.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('share_id', 'kind'),
    )


def downgrade() -> None:
    op.drop_table('share_objects')
    op.drop_index('ix_shares_state', table_name='shares')
    op.drop_index('ix_shares_owner', table_name='shares')
    op.drop_index('ix_shares_token', table_name='shares')
    op.drop_table('shares')
