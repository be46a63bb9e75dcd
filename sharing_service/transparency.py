"""The public role: per-agency monthly figures for settled months, small counts suppressed."""
from __future__ import annotations

import calendar
from datetime import UTC, datetime

from sqlalchemy import func, select

from sharing_service.context import ServiceContext, month_of
from sharing_service.models import Agency, Grant, GrantClip, ReleasedObject, Request, RequestTarget


class TransparencyReport:
    def __init__(self, ctx: ServiceContext, k: int = 5):
        self.ctx = ctx
        self.k = k  # counts between 1 and k-1 are published as null

    def figures(self) -> dict[str, object]:
        """A month is published once every request created in it has closed
        (month end + request_ttl_h), so figures never move while an agency
        watches; counts between 1 and k-1 are shown as null so a single request
        cannot reveal how many homes declined it.
        """
        now = self.ctx.clock()
        k = self.k
        ttl = self.ctx.settings.request_ttl_h * 3600
        with self.ctx.db.read() as s:
            reqs = s.execute(select(Request.id, Request.agency_id, Request.created_at)).all()
            names = dict(s.execute(select(Agency.id, Agency.name)).all())
            targets = s.execute(select(RequestTarget.request_id, RequestTarget.state)).all()
            shared = list(s.execute(select(Grant.request_id, func.count())
                                    .join(GrantClip, GrantClip.grant_id == Grant.id)
                                    .group_by(Grant.request_id)).all())
            released = select(ReleasedObject.grant_id, ReleasedObject.clip_id).distinct().subquery()
            shared += s.execute(select(Grant.request_id, func.count())  # sealed clips whose keys were released
                                .join(released, released.c.grant_id == Grant.id).group_by(Grant.request_id)).all()
        month_key: dict[str, tuple[int, str]] = {}
        figures: dict[tuple[int, str], dict[str, int]] = {}
        last_settled: str | None = None
        for rid, agency_id, created in reqs:
            m = month_of(created)
            dt = datetime.fromtimestamp(created, UTC)
            nxt = datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)
            if calendar.timegm(nxt.timetuple()) + ttl > now:
                continue  # not settled yet
            month_key[rid] = (agency_id, m)
            f = figures.setdefault((agency_id, m), {"requests": 0, "approvals": 0, "denials": 0, "clips_shared": 0})
            f["requests"] += 1
            last_settled = max(last_settled or m, m)
        for rid, state in targets:
            if rid in month_key:
                f = figures[month_key[rid]]
                if state == "approved":
                    f["approvals"] += 1
                elif state in ("denied", "expired"):
                    f["denials"] += 1
        for rid, n in shared:
            if rid in month_key:
                figures[month_key[rid]]["clips_shared"] += int(n)

        def sup(n: int) -> int | None:
            return None if 0 < n < k else n

        rows = [{"agency": names.get(a, "?"), "month": m, "requests": f["requests"],
                 "approvals": sup(f["approvals"]), "denials": sup(f["denials"]),
                 "clips_shared": sup(f["clips_shared"])}
                for (a, m), f in sorted(figures.items(), key=lambda kv: (kv[0][1], names.get(kv[0][0], "")))]
        return {"suppressed_below": k, "published_through": last_settled, "rows": rows}
