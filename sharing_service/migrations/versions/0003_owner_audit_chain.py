"""Per-owner audit chains: each row about an owner carries that owner's sequence number
and chain hash, and each owner's head is recorded (issue 15, owner audit completeness).

Existing rows are chained in seq order, so an owner's first verification after the
upgrade pins the history as it stood.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from doorbell.core.auditchain import GENESIS, chain_hash

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('owner_prev', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('owner_hash', sa.String(length=64), nullable=True))
    op.create_table(
        'audit_owner_head',
        sa.Column('owner_id', sa.String(length=63), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('owner_id'),
    )
    conn = op.get_bind()
    heads: dict[str, tuple[int, str]] = {}
    rows = conn.execute(sa.text("SELECT seq, owner_id, body_digest FROM audit WHERE owner_id IS NOT NULL "
                                "ORDER BY seq")).all()
    for seq, owner_id, digest in rows:
        n, prev = heads.get(owner_id, (0, GENESIS))
        h = chain_hash(prev, digest)
        conn.execute(sa.text("UPDATE audit SET owner_seq = :n, owner_prev = :p, owner_hash = :h WHERE seq = :s"),
                     {"n": n + 1, "p": prev, "h": h, "s": seq})
        heads[owner_id] = (n + 1, h)
    if heads:
        conn.execute(sa.text("INSERT INTO audit_owner_head (owner_id, seq, hash) VALUES (:o, :n, :h)"),
                     [{"o": o, "n": n, "h": h} for o, (n, h) in heads.items()])
    op.create_index('ux_audit_owner_chain', 'audit', ['owner_id', 'owner_seq'], unique=True)


def downgrade() -> None:
    op.drop_index('ux_audit_owner_chain', table_name='audit')
    op.drop_table('audit_owner_head')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_column('owner_hash')
        batch_op.drop_column('owner_prev')
        batch_op.drop_column('owner_seq')
