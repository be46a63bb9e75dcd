"""The clock's role: expire unanswered requests (as a no) and lapsed grants, delete the shared
copies of ended grants, end lapsed share links, forget old nonces.

Every instance sweeps (there is no leader to elect or lose). Why each job is safe
when several run at once:

- expiries: the work items are rows, so they are claimed with ``SELECT ... FOR
  UPDATE SKIP LOCKED``: two sweepers never take the same row, a row another one
  is expiring is skipped (not waited for), and once it committed PostgreSQL
  re-checks the ``WHERE`` and finds it no longer pending, so no request is
  expired twice and no audit row is written twice. SQLite (one host) serialises
  writers with ``BEGIN IMMEDIATE``.
- old nonces: one idempotent ``DELETE`` of rows a day past their expiry, which
  verification already refuses; two sweepers deleting the same rows is harmless.
- shared copies: an S3 delete is idempotent and so is setting ``deleted_at``,
  so no lock is held across the S3 calls (that would hold a transaction open for
  network round trips); at worst two instances delete the same ended copy.
"""
from __future__ import annotations

import logging

from sqlalchemy import delete, or_, select, update

from sharing_service import audit
from sharing_service.consent import closed_message, grant_state_message
from sharing_service.context import Outgoing, ServiceContext
from sharing_service.models import Grant, Nonce, Request, RequestTarget, SharedObject
from sharing_service.shares import sweep_shares

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def sweep(self) -> int:
        """Returns how many requests and grants changed state."""
        now = self.ctx.clock()
        out: list[Outgoing] = []
        with self.ctx.db.write() as s:
            stale = s.execute(select(RequestTarget).join(Request, Request.id == RequestTarget.request_id)
                              .where(RequestTarget.state == "pending", Request.expires_at <= now)
                              .limit(1000).with_for_update(skip_locked=True, of=RequestTarget)).scalars().all()
            for t in stale:
                t.state, t.decided_at = "expired", now
                audit.append(s, kind="expiry", actor="service", subject=t.request_id, owner_id=t.owner_id, ts=now,
                             details={"state": "expired", "meaning": "unanswered request counts as a no"})
                out.append(closed_message(t.request_id, t.owner_id, "expired"))
            lapsed = s.execute(select(Grant).where(Grant.state == "active", Grant.expires_at <= now)
                               .limit(1000).with_for_update(skip_locked=True)).scalars().all()
            for g in lapsed:
                g.state = "expired"
                audit.append(s, kind="grant_expiry", actor="service", subject=g.id, owner_id=g.owner_id, ts=now,
                             details={"request_id": g.request_id, "expired_at": g.expires_at})
                out.append(grant_state_message(s, g))
            # A nonce is needed only while its message could still verify (verify() refuses expired ones).
            s.execute(delete(Nonce).where(Nonce.expires_at < now - 86400))
            changed = len(stale) + len(lapsed)
        if changed:
            log.info("sweep: %d request(s) expired unanswered, %d grant(s) lapsed", len(stale), len(lapsed))
        self.ctx.outbox.emit(out)
        self.delete_ended_copies(now)
        return changed + sweep_shares(self.ctx, now)

    def delete_ended_copies(self, now: float) -> int:
        """Delete the opaque copies (rule 2) of grants revoked or expired; returns how many.

        Link issuance already refuses an ended grant; deleting the copy also ends
        links issued before the revoke, at the next sweep instead of at their expiry.
        A copy whose delete fails stays listed and is tried again next sweep.
        """
        presigner = self.ctx.presigner
        if presigner is None:
            return 0
        with self.ctx.db.read() as s:
            keys = list(s.execute(select(SharedObject.key).join(Grant, Grant.id == SharedObject.grant_id,
                                                                isouter=True)
                                  .where(SharedObject.deleted_at.is_(None),
                                         or_(Grant.id.is_(None), Grant.state != "active", Grant.expires_at <= now))
                                  .limit(1000)).scalars())
        done = []
        for key in keys:
            try:
                presigner.delete(key)
                done.append(key)
            except Exception as exc:  # botocore's errors: retried at the next sweep
                log.warning("deleting shared copy %s failed (retried next sweep): %s", key, exc)
        if done:
            with self.ctx.db.write() as s:
                s.execute(update(SharedObject).where(SharedObject.key.in_(done)).values(deleted_at=now))
            log.info("sweep: deleted %d shared cop(ies) of ended grants", len(done))
        return len(done)
