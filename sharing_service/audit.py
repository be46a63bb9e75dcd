"""The append-only audit log in the database: append, verify, and the owner's view.

Appends happen inside the transaction of the action they record, so an action
and its audit row commit together or not at all. The single ``audit_head`` row
(seq and hash of the last entry) is read and updated in the same transaction;
on PostgreSQL it is locked ``FOR UPDATE``, on SQLite the write lock serialises
appends. See :mod:`doorbell.core.auditchain` for the hash construction.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from doorbell.core import protocol as p
from doorbell.core.auditchain import GENESIS, ChainReport, body_digest, canonical, chain_hash, verify_rows
from sharing_service.models import AuditEntry, AuditHead, AuditOwnerHead

KINDS = ("owner_key", "request", "delivery", "decision", "refusal", "grant", "link_issued", "download",
         "revocation", "expiry", "grant_expiry", "owner_link", "key_enrolled", "key_unlinked",
         "share", "share_view", "share_revocation", "share_expiry")


# Built once (SQLAlchemy expressions are immutable): building them per append cost more CPU than
# running them. Executed on the session's connection: the audit tables have no foreign keys, so
# nothing pending in the session has to be flushed first, and Core skips the ORM's bulk paths.
_HEAD = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
# The owners' heads are read by a statement of their own AFTER the head row is locked: joined into
# the locking statement, PostgreSQL would return them from the snapshot taken before the wait for
# the lock (READ COMMITTED re-checks only the locked row), i.e. stale when another instance just
# appended for the same owner, and the owner's chain would fork (its unique key refuses that).
_OWNER_HEAD = select(AuditOwnerHead.seq, AuditOwnerHead.hash).where(AuditOwnerHead.owner_id == bindparam("owner"))
_INSERT_ROWS = insert(AuditEntry)
_SET_HEAD = update(AuditHead).where(AuditHead.id == 1).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
_SET_OWNER_HEAD = (update(AuditOwnerHead).where(AuditOwnerHead.owner_id == bindparam("owner"))
                   .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
_NEW_OWNER_HEAD = insert(AuditOwnerHead)


def append(session: Session, *, kind: str, actor: str, subject: str, owner_id: str | None = None,
           details: dict[str, Any] | None = None, ts: float | None = None) -> dict[str, Any]:
    """Add one entry at the end of the chain (in the caller's transaction)."""
    return append_many(session, [{"kind": kind, "actor": actor, "subject": subject, "owner_id": owner_id,
                                  "details": details, "ts": ts}])[0]


def append_many(session: Session, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add several entries in order with one head read, one bulk insert and one head update.

    Each item has ``kind, actor, subject`` and optionally ``owner_id, details, ts``.
    Core statements, not ORM objects: a request that reaches many owners appends
    one row per owner, and this keeps that cheap.
    """
    if not items:
        return []
    # The global head row is locked first, so the owners' heads need no lock of their own.
    conn = session.connection()
    owners = {item["owner_id"] for item in items if item.get("owner_id")}
    owner_heads: dict[str, tuple[int, str]] = {}
    seq, prev = conn.execute(_HEAD).one()
    if len(owners) == 1:  # the common case, with a prebuilt statement
        (owner,) = owners
        found = conn.execute(_OWNER_HEAD, {"owner": owner}).first()
        if found is not None:  # None: the owner's first entry
            owner_heads[owner] = (found[0], found[1])
    elif owners:
        owner_heads = {o: (n, h) for o, n, h in conn.execute(
            select(AuditOwnerHead.owner_id, AuditOwnerHead.seq, AuditOwnerHead.hash)
            .where(AuditOwnerHead.owner_id.in_(owners))).all()}
    known = set(owner_heads)
    rows = []
    now = time.time()
    for item in items:
        seq += 1
        ts = now if item.get("ts") is None else float(item["ts"])
        details_json = canonical(item.get("details") or {})
        digest = body_digest(seq=seq, ts=ts, kind=item["kind"], actor=item["actor"], subject=item["subject"],
                             owner_id=item.get("owner_id"), details_json=details_json)
        h = chain_hash(prev, digest)
        owner_id = item.get("owner_id")
        owner_seq = owner_prev = owner_hash = None
        if owner_id:
            n, owner_prev = owner_heads.get(owner_id, (0, GENESIS))
            owner_seq, owner_hash = n + 1, chain_hash(owner_prev, digest)
            owner_heads[owner_id] = (owner_seq, owner_hash)
        rows.append({"seq": seq, "ts": ts, "kind": item["kind"], "actor": item["actor"], "subject": item["subject"],
                     "owner_id": owner_id, "details": details_json, "body_digest": digest,
                     "prev_hash": prev, "hash": h, "owner_seq": owner_seq, "owner_prev": owner_prev,
                     "owner_hash": owner_hash})
        prev = h
    conn.execute(_INSERT_ROWS, rows)
    conn.execute(_SET_HEAD, {"new_seq": seq, "new_hash": prev})
    for o in owners:
        n, h = owner_heads[o]
        if o in known:
            conn.execute(_SET_OWNER_HEAD, {"owner": o, "new_seq": n, "new_hash": h})
        else:
            conn.execute(_NEW_OWNER_HEAD, {"owner_id": o, "seq": n, "hash": h})
    return rows


def _row(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "ts": e.ts, "kind": e.kind, "actor": e.actor, "subject": e.subject,
            "owner_id": e.owner_id, "details": e.details, "body_digest": e.body_digest,
            "prev_hash": e.prev_hash, "hash": e.hash, "owner_seq": e.owner_seq, "owner_prev": e.owner_prev,
            "owner_hash": e.owner_hash}


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    """Recompute every digest and link from genesis to the recorded head."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()

    def rows() -> Iterator[dict[str, Any]]:
        last = 0
        while True:
            chunk = session.execute(select(AuditEntry).where(AuditEntry.seq > last)
                                    .order_by(AuditEntry.seq).limit(batch)).scalars().all()
            if not chunk:
                return
            for e in chunk:
                yield _row(e)
            last = chunk[-1].seq

    owner_heads = {o: (n, h) for o, n, h in session.execute(
        select(AuditOwnerHead.owner_id, AuditOwnerHead.seq, AuditOwnerHead.hash)).all()}
    return verify_rows(rows(), head=(head.seq, head.hash), owner_heads=owner_heads)


def owner_view(session: Session, owner_id: str, since: int = 1, limit: int = 2000) -> p.AuditView:
    """Rows ``since`` .. ``since+limit-1``: this owner's in full, everyone else's as digests.

    ``start_prev`` is the hash before the first row, so the owner can verify a
    page on its own and continue from the last hash it verified.
    """
    since = max(1, int(since))
    limit = max(1, min(int(limit), 5000))
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    entries = session.execute(select(AuditEntry).where(AuditEntry.seq >= since)
                              .order_by(AuditEntry.seq).limit(limit)).scalars().all()
    start_prev = entries[0].prev_hash if entries else (head.hash if since > head.seq else GENESIS)
    own_head = session.get(AuditOwnerHead, owner_id)
    rows: list[p.AuditRow] = []
    for e in entries:
        if e.owner_id == owner_id:
            rows.append(p.AuditRow.model_validate(_row(e)))
        else:
            rows.append(p.AuditRow(seq=e.seq, body_digest=e.body_digest, hash=e.hash))
    last = entries[-1].seq if entries else since - 1
    return p.AuditView(from_seq=since, start_prev=start_prev, rows=rows,
                       head=p.AuditHeadRef(seq=head.seq, hash=head.hash),
                       owner_head=p.OwnerChainHead(seq=own_head.seq if own_head else 0,
                                                   hash=own_head.hash if own_head else GENESIS),
                       complete=last >= head.seq,
                       next_since=None if last >= head.seq else last + 1)
