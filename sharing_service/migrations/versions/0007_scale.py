"""Several instances: rate limits in the database, and stored answers to signed owner messages.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'agency_rate',
        sa.Column('agency_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.Column('allowed', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('agency_id'),
    )
    with op.batch_alter_table('nonces') as batch:
        batch.add_column(sa.Column('sig_sha256', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('result', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nonces') as batch:
        batch.drop_column('result')
        batch.drop_column('sig_sha256')
    op.drop_table('agency_rate')
