"""Rule 2 in the transparency figures (issue 15 finding 4): an agency with one request in a
month must not read how many homes it reached or how many declined. The figures are
differentially private (sharing_service/transparency.py); these tests attack the published
figures of a real database, check the mechanism's properties (stored noise, no re-draw,
the privacy loss) and that the figures stay useful in aggregate."""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from doorbell.core.config import SharingSection
from doorbell.core.signing import generate_key, public_key_text
from sharing_service.context import ServiceContext
from sharing_service.core import SharingCore
from sharing_service.db import Database
from sharing_service.models import Request, RequestTarget, TransparencyNoise
from sharing_service.transparency import TransparencyReport, noise_pmf

MARCH = 1740787200.0  # 2025-03-01T00:00:00Z: long settled


@pytest.fixture
def core(tmp_path: Path) -> Iterator[SharingCore]:
    db = Database(f"sqlite:///{tmp_path / 'sharing.db'}")
    db.migrate()
    c = SharingCore(ServiceContext(db, SharingSection()))
    for i in range(12):
        c.registry.add_owner(f"owner-{i}", public_key_text(generate_key()))
    yield c
    db.dispose()


def _requests(core: SharingCore, agency_id: int, month_start: float, outcomes: list[tuple[int, int]]) -> None:
    """Requests of one agency in one month, each with (approved, declined) homes."""
    reqs, targets = [], []
    for n, (approved, declined) in enumerate(outcomes):
        rid = f"r{agency_id}x{int(month_start)}x{n}"
        reqs.append({"id": rid, "agency_id": agency_id, "case_number": "c", "legal_basis": "b", "reason": "r",
                     "attest_not_protest": True, "window_start": month_start, "window_end": month_start + 3600,
                     "lat": 52.5, "lon": 13.4, "radius_m": 500, "grant_days": 7, "created_at": month_start + 86400,
                     "expires_at": month_start + 86400 * 4, "matched_at": month_start + 86400})
        states = ["approved"] * approved + ["denied"] * declined
        targets += [{"request_id": rid, "owner_id": f"owner-{i}", "state": st} for i, st in enumerate(states)]
    with core.db.write() as s:
        s.execute(insert(Request), reqs)
        if targets:
            s.execute(insert(RequestTarget), targets)


def _prob(published: int, true: int, eps: float, clip: int) -> float:
    """P(published figure | true count) under the mechanism (0 collects all the negative mass)."""
    if published > 0:
        return noise_pmf(published - true, eps, clip)
    a = math.exp(-eps / clip)
    return (1 - a) / (1 + a) * a ** true / (1 - a)  # sum of pmf(k) for k <= -true


def test_rule2_one_request_month_does_not_reveal_homes_asked_or_declined(core: SharingCore) -> None:
    agency_id, _ = core.registry.add_agency("Springfield PD")
    _requests(core, agency_id, MARCH, [(5, 6)])  # 11 homes asked: k=5 suppression published 5 and 6 exactly
    pub = core.transparency.figures()
    row = pub["rows"][0]  # type: ignore[index]
    assert (row["requests"], row["month"]) == (1, "2025-03")
    eps, clip = core.transparency.epsilon, core.transparency.clip
    assert pub["epsilon_per_request"] == 2 * eps
    with core.db.read() as s:
        noise = dict(s.execute(select(TransparencyNoise.metric, TransparencyNoise.noise)
                               .where(TransparencyNoise.agency_id == agency_id)).all())
    assert set(noise) == {"approvals", "denials"}
    assert row["approvals"] == max(0, 5 + noise["approvals"]) and row["denials"] == max(0, 6 + noise["denials"])
    # The attack: which outcomes of the one request could have produced these figures? Every one,
    # from "no home asked" to "clip homes approved and clip declined", and none more than e^(2 eps)
    # times likelier than any other: the figures do not determine the homes asked or declined.
    likelihood = {(a, d): _prob(row["approvals"], a, eps, clip) * _prob(row["denials"], d, eps, clip)
                  for a in range(clip + 1) for d in range(clip + 1)}
    assert min(likelihood.values()) > 0
    assert max(likelihood.values()) / min(likelihood.values()) <= math.exp(2 * eps) * (1 + 1e-9)
    # The operator still has the true (clipped) figures.
    assert core.transparency.exact()[0][(agency_id, "2025-03")].denials == 6


def test_rule2_noise_is_drawn_once_and_stored(core: SharingCore) -> None:
    agency_id, _ = core.registry.add_agency("Springfield PD")
    _requests(core, agency_id, MARCH, [(2, 1)])
    first = core.transparency.figures()
    assert all(core.transparency.figures() == first for _ in range(20))  # reads cannot average the noise away
    with core.db.read() as s:
        assert len(s.execute(select(TransparencyNoise)).scalars().all()) == 2
    restarted = TransparencyReport(core.ctx)  # a new process publishes the same figures
    assert restarted.figures() == first
    with core.db.write() as s:  # the published figure is the stored draw, not a fresh one
        s.execute(update(TransparencyNoise).where(TransparencyNoise.metric == "approvals").values(noise=40))
    assert restarted.figures()["rows"][0]["approvals"] == 42  # type: ignore[index]
    # A month that settles later gets its own draw; the earlier month's stays.
    _requests(core, agency_id, MARCH + 31 * 86400, [(1, 1)])
    later = restarted.figures()
    with core.db.read() as s:
        assert len(s.execute(select(TransparencyNoise)).scalars().all()) == 4
    assert later["rows"][0]["approvals"] == 42  # type: ignore[index]


def test_rule2_mechanism_spends_the_documented_epsilon() -> None:
    eps, clip = 1.0, 10
    report = TransparencyReport.__new__(TransparencyReport)
    report.epsilon, report.clip, report._sample = eps, clip, None
    draws = [report.draw_noise() for _ in range(4000)]
    a = math.exp(-eps / clip)
    sd = math.sqrt(2 * a) / (1 - a)  # the discrete Laplace's standard deviation
    assert abs(statistics.fmean(draws)) < 5 * sd / math.sqrt(len(draws))
    assert 0.9 * sd < statistics.pstdev(draws) < 1.1 * sd
    # neighbouring outcomes (counts differing by up to clip) change any figure's probability by <= e^eps
    assert all(noise_pmf(k, eps, clip) / noise_pmf(k + clip, eps, clip) <= math.exp(eps) * (1 + 1e-9)
               for k in range(0, 50))
    with pytest.raises(ValueError):
        TransparencyReport.__init__(report, None, epsilon=0)  # type: ignore[arg-type]


def test_rule2_figures_stay_useful_in_aggregate(core: SharingCore) -> None:
    """Noise per figure is fixed (sd ~ 14 at the defaults), so it shrinks relative to larger totals."""
    agencies = [core.registry.add_agency(f"PD {i}")[0] for i in range(25)]
    months = [MARCH + m * 31 * 86400 for m in range(4)]
    for a in agencies:
        for m in months:
            _requests(core, a, m, [(5, 3)] * 10)
    rows = core.transparency.figures()["rows"]
    assert len(rows) == 100  # type: ignore[arg-type]
    eps, clip = core.transparency.epsilon, core.transparency.clip
    a = math.exp(-eps / clip)
    sd_sum = math.sqrt(2 * a) / (1 - a) * math.sqrt(len(rows))  # type: ignore[arg-type]
    for metric, true in (("approvals", 50 * 100), ("denials", 30 * 100)):
        total = sum(r[metric] for r in rows)  # type: ignore[union-attr]
        assert abs(total - true) < 5 * sd_sum, (metric, total, true)
    assert sum(r["requests"] for r in rows) == 1000  # type: ignore[union-attr]
