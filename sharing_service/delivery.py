"""Matching a recorded request to owners and asking them (the service's matcher role).

The agency API only records a request and hands its id to a :class:`Scheduler`;
the service's scheduler is its matcher process (``sharing_service.matcher.MatcherProcess``),
so neither the HTTP answer nor the time of the agency's next calls depends on how
many homes match (rule 2). Without one, :class:`InlineScheduler` delivers at once
(admin tools, unit use).
"""
from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy import and_, insert, select
from sqlalchemy.orm import Session

from doorbell.core import protocol as p
from sharing_service import audit
from sharing_service.context import (
    MAX_CLIP_LENGTH_S,
    MAX_CLIPS_PER_OWNER,
    SNAPSHOT_LINK_TTL_S,
    Outgoing,
    ServiceContext,
)
from sharing_service.geo import bounding_box, haversine_m
from sharing_service.models import Agency, Clip, Device, Request, RequestClip, RequestTarget

log = logging.getLogger(__name__)


class Scheduler(Protocol):
    """Takes the id of a recorded request; asks its owners later or now."""

    def schedule(self, rid: str) -> None: ...


class Delivery:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def deliver(self, rid: str) -> int:
        """Match owners for a recorded request and send each its PoliceRequest; returns owners asked.

        Idempotent: a request is matched once (``matched_at``), so a restart that
        re-queues unmatched requests never asks anyone twice. Several instances may
        be handed the same request (each re-queues orphans): the request row is
        claimed ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's write lock
        serialises), so one delivers and the others skip it, and whoever comes after
        the commit sees ``matched_at``. Row locks rather than an advisory lock: the
        work item *is* the row, and different requests are delivered in parallel.
        """
        now = self.ctx.clock()
        with self.ctx.db.write() as s:
            req = s.execute(select(Request).where(Request.id == rid)
                            .with_for_update(skip_locked=True)).scalar_one_or_none()
            if req is None or req.matched_at is not None:
                return 0
            agency = s.get(Agency, req.agency_id)
            agency_name = agency.name if agency else "?"
            recipient = agency.age_recipient if agency else None
            matches = {} if now >= req.expires_at else self._match(s, req.lat, req.lon, req.radius_m,
                                                                     req.window_start, req.window_end,
                                                                     sealed=recipient is not None)
            if matches:
                s.execute(insert(RequestTarget), [{"request_id": rid, "owner_id": o, "state": "pending"}
                                                  for o in matches])
                offered = [{"request_id": rid, "clip_id": c.id, "owner_id": o}
                           for o, clips in matches.items() for c in clips]
                if offered:  # owners of sealed devices are asked with no clip the service knows of
                    s.execute(insert(RequestClip), offered)
            audit.append_many(s, [{"kind": "delivery", "actor": "service", "subject": rid, "owner_id": owner_id,
                                   "ts": now, "details": {"agency": agency_name, "case_number": req.case_number,
                                                          "clip_ids": [c.id for c in clips]}}
                                  for owner_id, clips in matches.items()])
            req.matched_at = now
            out = [self.request_message(req, agency_name, owner_id, clips,
                                        recipient if _has_sealed_device(s, owner_id) else None)
                   for owner_id, clips in matches.items()]
        log.info("request %s by %s: %d owner(s) asked", rid, agency_name, len(matches))
        self.ctx.outbox.emit(out)
        return len(matches)

    def undelivered(self, older_than: float | None = None, limit: int = 1000) -> list[str]:
        """Requests recorded but not yet matched (the process stopped, or another instance died, in between)."""
        q = select(Request.id).where(Request.matched_at.is_(None))
        if older_than is not None:
            q = q.where(Request.created_at <= older_than)
        with self.ctx.db.read() as s:
            return list(s.execute(q.order_by(Request.created_at).limit(limit)).scalars())

    def _match(self, s: Session, lat: float, lon: float, radius_m: float, start: float,
               end: float, sealed: bool = False) -> dict[str, list[Clip]]:
        """Owners with a device inside the circle: those whose devices seal their clips (``sealed``: the
        agency has a registered recipient) by area alone, since their apps match the window themselves
        (rule 9); those whose devices upload in clear, by the clips the service indexed in the window."""
        lat0, lat1, lon0, lon1 = bounding_box(lat, lon, radius_m)
        cond = [Device.lat.between(lat0, lat1)]
        if lon0 >= -180 and lon1 <= 180:
            cond.append(Device.lon.between(lon0, lon1))
        devices = [d for d in s.execute(select(Device.id, Device.owner_id, Device.lat, Device.lon, Device.public_key)
                                        .where(and_(*cond))).all()
                   if haversine_m(lat, lon, d.lat, d.lon) <= radius_m]
        if not devices:
            return {}
        by_owner: dict[str, list[Clip]] = {}
        if sealed:
            for d in devices:
                if d.public_key is not None:
                    by_owner.setdefault(d.owner_id, [])
        owner_of = {d.id: d.owner_id for d in devices}
        clips = s.execute(select(Clip).where(Clip.device_id.in_(list(owner_of)),
                                             Clip.started_at >= start - MAX_CLIP_LENGTH_S,
                                             Clip.started_at <= end, Clip.ended_at >= start)
                          .order_by(Clip.started_at)).scalars().all()
        for c in clips:
            lst = by_owner.setdefault(owner_of[c.device_id], [])
            if len(lst) < MAX_CLIPS_PER_OWNER:
                lst.append(c)
            elif len(lst) == MAX_CLIPS_PER_OWNER:
                log.warning("owner %s has more than %d clips in a request window; offering the first %d",
                            owner_of[c.device_id], MAX_CLIPS_PER_OWNER, MAX_CLIPS_PER_OWNER)
        return by_owner

    def _snapshot_url(self, clip: Clip) -> str | None:
        if not clip.snapshot_key or self.ctx.presigner is None:
            return None
        return self.ctx.presigner.get_url(clip.snapshot_key, SNAPSHOT_LINK_TTL_S)

    def request_message(self, req: Request, agency_name: str, owner_id: str, clips: list[Clip],
                        agency_recipient: str | None = None) -> Outgoing:
        msg = p.PoliceRequest(
            request_id=req.id, owner_id=owner_id, agency=agency_name, case_number=req.case_number,
            legal_basis=req.legal_basis, reason=req.reason[:2000], window_start=req.window_start,
            window_end=req.window_end, created_at=req.created_at, expires_at=req.expires_at,
            grant_days=min(req.grant_days, self.ctx.settings.grant_max_days),
            lat=req.lat, lon=req.lon, radius_m=req.radius_m,
            clips=[p.RequestClip(clip_id=c.id, device_id=c.device_id, started_at=c.started_at,
                                 ended_at=c.ended_at, trigger=c.trigger, snapshot_url=self._snapshot_url(c))
                   for c in clips],
            agency_recipient=agency_recipient)
        return Outgoing(p.request_topic(owner_id, req.id), msg.to_json(), retain=True)

    def pending_messages(self) -> list[Outgoing]:
        """Retained requests still awaiting an answer (re-sent after a reconnect: brokers forget)."""
        now = self.ctx.clock()
        with self.ctx.db.read() as s:
            rows = s.execute(select(RequestTarget, Request, Agency)
                             .join(Request, Request.id == RequestTarget.request_id)
                             .join(Agency, Agency.id == Request.agency_id)
                             .where(RequestTarget.state == "pending", Request.expires_at > now)).all()
            msgs = []
            for t, r, a in rows:
                clips = s.execute(select(Clip).join(RequestClip, RequestClip.clip_id == Clip.id)
                                  .where(RequestClip.request_id == r.id, RequestClip.owner_id == t.owner_id)
                                  .order_by(Clip.started_at)).scalars().all()
                msgs.append(self.request_message(r, a.name, t.owner_id, list(clips),
                                                 a.age_recipient if _has_sealed_device(s, t.owner_id) else None))
        return msgs


def _has_sealed_device(s: Session, owner_id: str) -> bool:
    """Whether this owner has a device that seals (its app then matches and releases keys)."""
    return s.execute(select(Device.id).where(Device.owner_id == owner_id, Device.public_key.is_not(None))
                     .limit(1)).first() is not None


class InlineScheduler:
    """Delivers at once, in the caller's thread (no matcher running)."""

    def __init__(self, delivery: Delivery):
        self.delivery = delivery

    def schedule(self, rid: str) -> None:
        self.delivery.deliver(rid)
