"""The clock's role: expire unanswered requests (as a no) and lapsed grants, forget old nonces."""
from __future__ import annotations

import logging

from sqlalchemy import delete, select

from sharing_service import audit
from sharing_service.consent import closed_message, grant_state_message
from sharing_service.context import Outgoing, ServiceContext
from sharing_service.models import Grant, Nonce, Request, RequestTarget

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
                              .limit(1000)).scalars().all()
            for t in stale:
                t.state, t.decided_at = "expired", now
                audit.append(s, kind="expiry", actor="service", subject=t.request_id, owner_id=t.owner_id, ts=now,
                             details={"state": "expired", "meaning": "unanswered request counts as a no"})
                out.append(closed_message(t.request_id, t.owner_id, "expired"))
            lapsed = s.execute(select(Grant).where(Grant.state == "active", Grant.expires_at <= now)
                               .limit(1000)).scalars().all()
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
        return changed
