"""Initial schema: registry, clip index, requests, grants, nonces, hash-chained audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 21:38:13.424455
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agencies',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('rate_per_min', sa.Integer(), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('audit',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=250), nullable=False),
    sa.Column('subject', sa.String(length=250), nullable=False),
    sa.Column('owner_id', sa.String(length=63), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('body_digest', sa.String(length=64), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index('ix_audit_kind_ts', ['kind', 'ts'], unique=False)
        batch_op.create_index('ix_audit_owner_seq', ['owner_id', 'seq'], unique=False)

    head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # The chain starts empty: seq 0, genesis hash.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table('nonces',
    sa.Column('nonce', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.String(length=63), nullable=False),
    sa.Column('seen_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('nonce')
    )
    op.create_table('owners',
    sa.Column('id', sa.String(length=63), nullable=False),
    sa.Column('public_key', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('devices',
    sa.Column('id', sa.String(length=63), nullable=False),
    sa.Column('owner_id', sa.String(length=63), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index('ix_devices_lat_lon', ['lat', 'lon'], unique=False)
        batch_op.create_index('ix_devices_owner', ['owner_id'], unique=False)

    op.create_table('requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('agency_id', sa.Integer(), nullable=False),
    sa.Column('case_number', sa.String(length=100), nullable=False),
    sa.Column('legal_basis', sa.String(length=500), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('attest_not_protest', sa.Boolean(), nullable=False),
    sa.Column('window_start', sa.Float(), nullable=False),
    sa.Column('window_end', sa.Float(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('radius_m', sa.Float(), nullable=False),
    sa.Column('grant_days', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.create_index('ix_requests_agency_created', ['agency_id', 'created_at'], unique=False)
        batch_op.create_index('ix_requests_expires', ['expires_at'], unique=False)

    op.create_table('clips',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('device_id', sa.String(length=63), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=False),
    sa.Column('key', sa.String(length=1024), nullable=False),
    sa.Column('snapshot_key', sa.String(length=1024), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('indexed_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.create_index('ix_clips_device_started', ['device_id', 'started_at'], unique=False)

    op.create_table('grants',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.String(length=63), nullable=False),
    sa.Column('agency_id', sa.Integer(), nullable=False),
    sa.Column('decision_nonce', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('revoked_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], ),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.create_index('ix_grants_owner', ['owner_id'], unique=False)
        batch_op.create_index('ix_grants_request', ['request_id'], unique=False)
        batch_op.create_index('ix_grants_state_expires', ['state', 'expires_at'], unique=False)

    op.create_table('request_targets',
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.String(length=63), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('decided_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'owner_id')
    )
    with op.batch_alter_table('request_targets', schema=None) as batch_op:
        batch_op.create_index('ix_targets_owner_state', ['owner_id', 'state'], unique=False)
        batch_op.create_index('ix_targets_state', ['state'], unique=False)

    op.create_table('grant_clips',
    sa.Column('grant_id', sa.String(length=32), nullable=False),
    sa.Column('clip_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['grant_id'], ['grants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('grant_id', 'clip_id')
    )
    op.create_table('request_clips',
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('clip_id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.String(length=63), nullable=False),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'clip_id')
    )
    with op.batch_alter_table('request_clips', schema=None) as batch_op:
        batch_op.create_index('ix_request_clips_owner', ['request_id', 'owner_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('request_clips', schema=None) as batch_op:
        batch_op.drop_index('ix_request_clips_owner')

    op.drop_table('request_clips')
    op.drop_table('grant_clips')
    with op.batch_alter_table('request_targets', schema=None) as batch_op:
        batch_op.drop_index('ix_targets_state')
        batch_op.drop_index('ix_targets_owner_state')

    op.drop_table('request_targets')
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_index('ix_grants_state_expires')
        batch_op.drop_index('ix_grants_request')
        batch_op.drop_index('ix_grants_owner')

    op.drop_table('grants')
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_index('ix_clips_device_started')

    op.drop_table('clips')
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index('ix_requests_expires')
        batch_op.drop_index('ix_requests_agency_created')

    op.drop_table('requests')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index('ix_devices_owner')
        batch_op.drop_index('ix_devices_lat_lon')

    op.drop_table('devices')
    op.drop_table('owners')
    op.drop_table('nonces')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_owner_seq')
        batch_op.drop_index('ix_audit_kind_ts')

    op.drop_table('audit')
    op.drop_table('agencies')
