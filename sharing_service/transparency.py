"""The public role: per-agency monthly figures for settled months (rule 6), with
differential privacy on the counts of homes (rule 2).

Why not suppression: an agency with one request in a month knows that approvals
plus denials is exactly the number of homes its request reached, and suppressing
1-4 still publishes 0 and every count from 5 up. Any exact count of homes is a
leak for such a month, so the home counts are published with noise:

* **What is protected**: the outcome of any single request (how many homes it
  reached, how many approved, how many declined), also against the agency that
  made it and knows its other requests and the clips it received.
* **Mechanism**: each request counts at most ``clip`` homes towards approvals and
  at most ``clip`` towards denials (a request's influence on each figure is then
  at most ``clip``); each published ``approvals`` and ``denials`` cell gets
  discrete Laplace (two-sided geometric) noise of scale ``clip / epsilon``,
  sampled exactly by OpenDP (no floating-point leak), so each figure is
  ``epsilon``-differentially private with respect to one request's outcome and
  the two together ``2 * epsilon`` (a request lies in one agency-month only).
  Negative results are published as 0 (post-processing keeps the guarantee).
* **Budget**: a month is published once it has settled (month end +
  ``request_ttl_h``), after which its true counts cannot change; its noise is
  drawn once, stored in ``transparency_noise``, and every later read returns
  the same figure. Re-drawing would let repeated reads average the noise away.
  So the whole budget spent on a request is ``2 * epsilon``, for ever.
* ``requests`` and ``clips_shared`` are exact: the agency knows both for its own
  requests, and neither counts homes (rule 2 keeps clips unlinkable to homes).
"""
from __future__ import annotations

import calendar
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from sharing_service.context import ServiceContext, month_of
from sharing_service.models import Agency, Grant, GrantClip, ReleasedObject, Request, RequestTarget, TransparencyNoise

log = logging.getLogger(__name__)

EPSILON_PER_FIGURE = 1.0     # per published home count; 2.0 per request in total
HOMES_PER_REQUEST = 10       # the most homes one request adds to approvals (and to denials)
NOISY = ("approvals", "denials")
METHOD = "discrete Laplace (OpenDP), drawn once per figure and stored"

Cell = tuple[int, str]  # agency id, month


def laplace_sampler(epsilon: float, sensitivity: int) -> Callable[[int], int]:
    """OpenDP's exact discrete Laplace mechanism of scale ``sensitivity / epsilon`` on integers."""
    import opendp.prelude as dp

    dp.enable_features("contrib")  # make_laplace is in OpenDP's contrib set (vetted, not yet proven)
    m = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=sensitivity / epsilon)
    got = float(m.map(sensitivity))
    if got > epsilon + 1e-9:  # OpenDP's own privacy map must agree with ours
        raise ValueError(f"mechanism spends epsilon {got}, more than {epsilon}")
    return lambda value: int(m(value))


def noise_pmf(k: int, epsilon: float, sensitivity: int) -> float:
    """P(noise = k) of the discrete Laplace with scale sensitivity/epsilon (for tests and the docs)."""
    a = math.exp(-epsilon / sensitivity)
    return (1 - a) / (1 + a) * a ** abs(k)


@dataclass
class _Cell:
    requests: int = 0
    approvals: int = 0   # clipped per request
    denials: int = 0     # clipped per request
    clips_shared: int = 0


class TransparencyReport:
    def __init__(self, ctx: ServiceContext, epsilon: float = EPSILON_PER_FIGURE, clip: int = HOMES_PER_REQUEST):
        if epsilon <= 0 or clip < 1:
            raise ValueError("epsilon must be > 0 and clip >= 1")
        self.ctx = ctx
        self.epsilon = epsilon
        self.clip = clip
        self._sample: Callable[[int], int] | None = None

    def _sampler(self) -> Callable[[int], int]:
        if self._sample is None:
            self._sample = laplace_sampler(self.epsilon, self.clip)
        return self._sample

    def draw_noise(self) -> int:
        """One draw of the mechanism's noise (what a new cell gets)."""
        return self._sampler()(0)

    def exact(self) -> tuple[dict[Cell, _Cell], dict[int, str], str | None]:
        """True (clipped) figures of settled months: the operator's view, never published."""
        now = self.ctx.clock()
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
        cell_of: dict[str, Cell] = {}
        cells: dict[Cell, _Cell] = {}
        last_settled: str | None = None
        for rid, agency_id, created in reqs:
            m = month_of(created)
            dt = datetime.fromtimestamp(created, UTC)
            nxt = datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)
            if calendar.timegm(nxt.timetuple()) + ttl > now:
                continue  # not settled yet: its counts may still change
            cell_of[rid] = (agency_id, m)
            cells.setdefault((agency_id, m), _Cell()).requests += 1
            last_settled = max(last_settled or m, m)
        per_request: dict[str, list[int]] = {}
        for rid, state in targets:
            if rid in cell_of:
                counts = per_request.setdefault(rid, [0, 0])
                if state == "approved":
                    counts[0] += 1
                elif state in ("denied", "expired"):
                    counts[1] += 1
        for rid, (approved, declined) in per_request.items():
            c = cells[cell_of[rid]]
            c.approvals += min(approved, self.clip)
            c.denials += min(declined, self.clip)
        for rid, n in shared:
            if rid in cell_of:
                cells[cell_of[rid]].clips_shared += int(n)
        return cells, names, last_settled

    def _noise(self, keys: list[tuple[int, str, str]]) -> dict[tuple[int, str, str], int]:
        """Stored noise for every (agency, month, metric); missing ones are drawn once and stored."""
        def stored() -> dict[tuple[int, str, str], int]:
            with self.ctx.db.read() as s:
                rows = s.execute(select(TransparencyNoise.agency_id, TransparencyNoise.month,
                                        TransparencyNoise.metric, TransparencyNoise.noise)).all()
            return {(a, m, k): n for a, m, k, n in rows}

        have = stored()
        missing = [k for k in keys if k not in have]
        if missing:
            now = self.ctx.clock()
            try:
                with self.ctx.db.write() as s:
                    taken = {(r.agency_id, r.month, r.metric) for r in s.execute(select(TransparencyNoise)).scalars()}
                    for a, m, k in missing:
                        if (a, m, k) not in taken:  # another reader may have drawn it meanwhile
                            s.add(TransparencyNoise(agency_id=a, month=m, metric=k, noise=self.draw_noise(),
                                                    epsilon=self.epsilon, drawn_at=now))
            except IntegrityError:  # a concurrent writer (PostgreSQL) stored it first: use theirs
                log.info("transparency noise drawn concurrently; using the stored draw")
            have = stored()
        return have

    def figures(self) -> dict[str, object]:
        """The published figures: settled months only, home counts with stored noise."""
        cells, names, last_settled = self.exact()
        noise = self._noise([(a, m, k) for (a, m) in cells for k in NOISY])
        rows = []
        for (a, m), c in sorted(cells.items(), key=lambda kv: (kv[0][1], names.get(kv[0][0], ""))):
            rows.append({"agency": names.get(a, "?"), "month": m, "requests": c.requests,
                         "approvals": max(0, c.approvals + noise[(a, m, "approvals")]),
                         "denials": max(0, c.denials + noise[(a, m, "denials")]),
                         "clips_shared": c.clips_shared})
        return {"method": METHOD, "epsilon_per_figure": self.epsilon, "epsilon_per_request": 2 * self.epsilon,
                "homes_counted_per_request": self.clip, "published_through": last_settled, "rows": rows}
