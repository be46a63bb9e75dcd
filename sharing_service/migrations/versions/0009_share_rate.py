"""Share-link view limits in the database, so they hold across every instance (sharing_service.ratelimit).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'share_rate',
        sa.Column('share_id', sa.String(length=64), nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.Column('allowed', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['share_id'], ['shares.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('share_id'),
    )


def downgrade() -> None:
    op.drop_table('share_rate')
