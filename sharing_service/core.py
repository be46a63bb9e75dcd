"""The sharing service's rules, independent of HTTP and MQTT.

:class:`SharingCore` holds every decision the service makes: area matching,
signed consent, grants, revocation, expiry, link issuance, audit and
transparency. It returns MQTT messages to send as :class:`Outgoing` values and
hands them to ``emit`` only after the database transaction has committed, so
an owner is never told about a state that was rolled back.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from doorbell.core import protocol as p
from doorbell.core.bucket import device_prefix
from doorbell.core.config import SharingSection
from doorbell.core.errors import DoorbellError
from doorbell.core.signing import SignatureError, parse_public_key, verify
from sharing_service import audit
from sharing_service.db import Database
from sharing_service.geo import bounding_box, haversine_m
from sharing_service.models import (
    Agency,
    Clip,
    Device,
    Grant,
    GrantClip,
    Nonce,
    Owner,
    Request,
    RequestClip,
    RequestTarget,
)
from sharing_service.schemas import RequestCreate
from sharing_service.storage import Presigner

log = logging.getLogger(__name__)

MAX_CLIP_LENGTH_S = 600.0       # clips.max_length_s is at most 600: bounds the window index scan
MAX_CLIPS_PER_OWNER = 200       # per request message (keeps PoliceRequest under its 256 KiB limit)
SNAPSHOT_LINK_TTL_S = 3600      # owner's snapshot previews in a request; refreshed on reconnect
FUTURE_SKEW_S = 300.0
COORD_DECIMALS = 3              # ~110 m: devices are stored coarse (enough for an area match)
API_KEY_RE = re.compile(r"^dbk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


class Refused(DoorbellError):
    """An input the rules refuse; ``code`` is machine-readable, ``str()`` is for humans."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class NotFound(Refused):
    def __init__(self, what: str = "request"):
        super().__init__("not_found", f"no such {what}", 404)


@dataclass(frozen=True)
class Outgoing:
    """One MQTT message for the bridge to publish (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class AgencyInfo:
    id: int
    name: str
    rate_per_min: int | None


class Clock:
    """Wall-clock time with an adjustable offset (tests move it to exercise expiry)."""

    def __init__(self, offset_s: float = 0.0):
        self.offset_s = offset_s

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


class SharingCore:
    def __init__(self, db: Database, settings: SharingSection, presigner: Presigner | None,
                 clock: Callable[[], float] | None = None,
                 emit: Callable[[list[Outgoing]], None] | None = None,
                 transparency_k: int = 5, key_prefix: str = ""):
        self.db = db
        self.key_prefix = key_prefix  # s3.prefix: a device's objects all live under {prefix}{device_id}/
        self.settings = settings
        self.presigner = presigner
        self.clock = clock or time.time
        self.emit: Callable[[list[Outgoing]], None] = emit or (lambda out: None)
        self.transparency_k = transparency_k

    # ------------------------------------------------------------------ admin

    def add_owner(self, owner_id: str, public_key: str) -> None:
        if not re.match(p.ID_PATTERN, owner_id or ""):
            raise Refused("invalid_field", f"owner id must match {p.ID_PATTERN}")
        try:
            parse_public_key(public_key)
        except SignatureError as exc:
            raise Refused("invalid_field", str(exc)) from None
        with self.db.write() as s:
            if s.get(Owner, owner_id):
                raise Refused("exists", f"owner {owner_id} already exists", 409)
            s.add(Owner(id=owner_id, public_key=public_key, created_at=self.clock()))

    def set_owner_key(self, owner_id: str, public_key: str) -> None:
        """Key rotation: later decisions must verify under the new key."""
        try:
            parse_public_key(public_key)
        except SignatureError as exc:
            raise Refused("invalid_field", str(exc)) from None
        with self.db.write() as s:
            owner = s.get(Owner, owner_id)
            if owner is None:
                raise NotFound("owner")
            owner.public_key = public_key
            audit.append(s, kind="owner_key", actor="admin", subject=owner_id, owner_id=owner_id,
                         details={"public_key": public_key}, ts=self.clock())

    def add_device(self, device_id: str, owner_id: str, lat: float, lon: float) -> None:
        if not re.match(p.ID_PATTERN, device_id or ""):
            raise Refused("invalid_field", f"device id must match {p.ID_PATTERN}")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise Refused("invalid_field", "latitude must be in [-90, 90] and longitude in [-180, 180]")
        with self.db.write() as s:
            if s.get(Owner, owner_id) is None:
                raise NotFound("owner")
            if s.get(Device, device_id):
                raise Refused("exists", f"device {device_id} already exists", 409)
            s.add(Device(id=device_id, owner_id=owner_id, lat=round(lat, COORD_DECIMALS),
                         lon=round(lon, COORD_DECIMALS), created_at=self.clock()))

    def add_agency(self, name: str, rate_per_min: int | None = None) -> tuple[int, str]:
        """Enrol an agency; returns (id, API key). Only the key's SHA-256 is stored."""
        name = (name or "").strip()
        if not 1 <= len(name) <= 200:
            raise Refused("invalid_field", "agency name must be 1-200 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.db.write() as s:
            if s.execute(select(Agency).where(Agency.name == name)).scalar_one_or_none():
                raise Refused("exists", f"agency {name!r} already exists", 409)
            agency = Agency(name=name, key_id=key_id, key_hash=hash_secret(secret),
                            rate_per_min=rate_per_min, disabled=False, created_at=self.clock())
            s.add(agency)
            s.flush()
            agency_id = agency.id
        return agency_id, f"dbk_{key_id}_{secret}"

    def set_agency_disabled(self, name: str, disabled: bool) -> None:
        with self.db.write() as s:
            agency = s.execute(select(Agency).where(Agency.name == name)).scalar_one_or_none()
            if agency is None:
                raise NotFound("agency")
            agency.disabled = disabled

    def list_owners(self) -> list[dict[str, Any]]:
        with self.db.read() as s:
            counts = dict(s.execute(select(Device.owner_id, func.count()).group_by(Device.owner_id)).all())
            return [{"id": o.id, "public_key": o.public_key, "devices": counts.get(o.id, 0),
                     "created_at": o.created_at}
                    for o in s.execute(select(Owner).order_by(Owner.id)).scalars()]

    def list_devices(self, owner_id: str | None = None) -> list[dict[str, Any]]:
        with self.db.read() as s:
            q = select(Device).order_by(Device.id)
            if owner_id:
                q = q.where(Device.owner_id == owner_id)
            return [{"id": d.id, "owner_id": d.owner_id, "lat": d.lat, "lon": d.lon}
                    for d in s.execute(q).scalars()]

    def list_agencies(self) -> list[dict[str, Any]]:
        with self.db.read() as s:
            return [{"id": a.id, "name": a.name, "key_id": a.key_id, "rate_per_min": a.rate_per_min,
                     "disabled": a.disabled, "created_at": a.created_at}
                    for a in s.execute(select(Agency).order_by(Agency.id)).scalars()]

    # ------------------------------------------------------------------ agencies

    def authenticate(self, api_key: str) -> AgencyInfo | None:
        """Constant-time check of an API key against its stored hash."""
        m = API_KEY_RE.match(api_key or "")
        key_id, secret = (m.group(1), m.group(2)) if m else ("", api_key or "")
        with self.db.read() as s:
            agency = s.execute(select(Agency).where(Agency.key_id == key_id)).scalar_one_or_none() if m else None
            stored = agency.key_hash if agency else _DUMMY_HASH
            ok = hmac.compare_digest(hash_secret(secret), stored)
            if not ok or agency is None or agency.disabled:
                return None
            return AgencyInfo(agency.id, agency.name, agency.rate_per_min)

    def check_request(self, body: RequestCreate, now: float) -> tuple[float, float]:
        """Sharing rule 3 with the configured limits; returns the window as UNIX times."""
        st = self.settings
        if not body.case_number.strip():
            raise Refused("missing_field", "case_number is required")
        if not body.legal_basis.strip():
            raise Refused("missing_field", "legal_basis is required")
        if not body.reason.strip():
            raise Refused("missing_field", "reason is required")
        if body.attest_not_protest is not True:
            raise Refused("attestation_required",
                          "attest_not_protest must be true: requests may not target lawful protest")
        start, end = body.window_start.timestamp(), body.window_end.timestamp()
        if end <= start:
            raise Refused("window_invalid", "window_end must be after window_start")
        if end - start > st.max_window_h * 3600 + 1e-6:
            raise Refused("window_too_long", f"the time window may be at most {st.max_window_h:g} hours")
        if start > now + FUTURE_SKEW_S or end > now + FUTURE_SKEW_S:
            raise Refused("window_in_future", "the time window must be in the past (footage must exist)")
        if body.radius_m > st.max_radius_m:
            raise Refused("radius_too_large", f"the radius may be at most {st.max_radius_m:g} m")
        return start, end

    def create_request(self, agency: AgencyInfo, body: RequestCreate) -> dict[str, Any]:
        """Record a request; owners are matched and asked afterwards (see :meth:`deliver`).

        The answer, and how long it takes, must not depend on how many homes
        match (rule 2), so matching runs off the request path: ``schedule`` hands
        the id to the service's matcher thread (without one, it runs inline).
        """
        now = self.clock()
        start, end = self.check_request(body, now)
        rid = p.new_token()
        expires = now + self.settings.request_ttl_h * 3600
        with self.db.write() as s:
            req = Request(id=rid, agency_id=agency.id, case_number=body.case_number.strip(),
                          legal_basis=body.legal_basis.strip(), reason=body.reason.strip(),
                          attest_not_protest=True, window_start=start, window_end=end, lat=body.lat,
                          lon=body.lon, radius_m=body.radius_m, grant_days=self.settings.grant_default_days,
                          created_at=now, expires_at=expires)
            s.add(req)
            audit.append(s, kind="request", actor=f"agency:{agency.name}", subject=rid, ts=now,
                         details={"case_number": req.case_number, "legal_basis": req.legal_basis,
                                  "window": [start, end], "area": [body.lat, body.lon, body.radius_m],
                                  "expires_at": expires})
        self.schedule(rid)
        return {"id": rid, "status": "pending", "created_at": now, "expires_at": expires}

    def deliver(self, rid: str) -> int:
        """Match owners for a recorded request and send each its PoliceRequest; returns owners asked.

        Idempotent: a request is matched once (``matched_at``), so a restart that
        re-queues unmatched requests never asks anyone twice.
        """
        now = self.clock()
        out: list[Outgoing] = []
        with self.db.write() as s:
            req = s.get(Request, rid)
            if req is None or req.matched_at is not None:
                return 0
            agency = s.get(Agency, req.agency_id)
            agency_name = agency.name if agency else "?"
            matches = {} if now >= req.expires_at else self._match(s, req.lat, req.lon, req.radius_m,
                                                                     req.window_start, req.window_end)
            if matches:
                s.execute(insert(RequestTarget), [{"request_id": rid, "owner_id": o, "state": "pending"}
                                                  for o in matches])
                s.execute(insert(RequestClip), [{"request_id": rid, "clip_id": c.id, "owner_id": o}
                                                for o, clips in matches.items() for c in clips])
            audit.append_many(s, [{"kind": "delivery", "actor": "service", "subject": rid, "owner_id": owner_id,
                                   "ts": now, "details": {"agency": agency_name, "case_number": req.case_number,
                                                          "clip_ids": [c.id for c in clips]}}
                                  for owner_id, clips in matches.items()])
            req.matched_at = now
            out = [self._request_message(req, agency_name, owner_id, clips) for owner_id, clips in matches.items()]
        log.info("request %s by %s: %d owner(s) asked", rid, agency_name, len(matches))
        self.emit(out)
        return len(matches)

    def schedule(self, rid: str) -> None:
        """Replaced by the service with its matcher's queue; inline by default."""
        self.deliver(rid)

    def undelivered(self) -> list[str]:
        """Requests recorded but not yet matched (e.g. the process stopped in between)."""
        with self.db.read() as s:
            return list(s.execute(select(Request.id).where(Request.matched_at.is_(None))
                                  .order_by(Request.created_at)).scalars())

    def _match(self, s: Session, lat: float, lon: float, radius_m: float, start: float,
               end: float) -> dict[str, list[Clip]]:
        """Owners with a device inside the circle and clips overlapping the window."""
        lat0, lat1, lon0, lon1 = bounding_box(lat, lon, radius_m)
        cond = [Device.lat.between(lat0, lat1)]
        if lon0 >= -180 and lon1 <= 180:
            cond.append(Device.lon.between(lon0, lon1))
        devices = [d for d in s.execute(select(Device.id, Device.owner_id, Device.lat, Device.lon)
                                        .where(and_(*cond))).all()
                   if haversine_m(lat, lon, d.lat, d.lon) <= radius_m]
        if not devices:
            return {}
        owner_of = {d.id: d.owner_id for d in devices}
        clips = s.execute(select(Clip).where(Clip.device_id.in_(list(owner_of)),
                                             Clip.started_at >= start - MAX_CLIP_LENGTH_S,
                                             Clip.started_at <= end, Clip.ended_at >= start)
                          .order_by(Clip.started_at)).scalars().all()
        by_owner: dict[str, list[Clip]] = {}
        for c in clips:
            lst = by_owner.setdefault(owner_of[c.device_id], [])
            if len(lst) < MAX_CLIPS_PER_OWNER:
                lst.append(c)
            elif len(lst) == MAX_CLIPS_PER_OWNER:
                log.warning("owner %s has more than %d clips in a request window; offering the first %d",
                            owner_of[c.device_id], MAX_CLIPS_PER_OWNER, MAX_CLIPS_PER_OWNER)
        return by_owner

    def _snapshot_url(self, clip: Clip) -> str | None:
        if not clip.snapshot_key or self.presigner is None:
            return None
        return self.presigner.get_url(clip.snapshot_key, SNAPSHOT_LINK_TTL_S)

    def _request_message(self, req: Request, agency_name: str, owner_id: str, clips: list[Clip]) -> Outgoing:
        msg = p.PoliceRequest(
            request_id=req.id, owner_id=owner_id, agency=agency_name, case_number=req.case_number,
            legal_basis=req.legal_basis, reason=req.reason[:2000], window_start=req.window_start,
            window_end=req.window_end, created_at=req.created_at, expires_at=req.expires_at,
            grant_days=min(req.grant_days, self.settings.grant_max_days),
            clips=[p.RequestClip(clip_id=c.id, device_id=c.device_id, started_at=c.started_at,
                                 ended_at=c.ended_at, trigger=c.trigger, snapshot_url=self._snapshot_url(c))
                   for c in clips])
        return Outgoing(p.request_topic(owner_id, req.id), msg.to_json(), retain=True)

    def _own_request(self, s: Session, agency: AgencyInfo, rid: str) -> Request:
        req = s.get(Request, rid) if re.match(p.TOKEN_PATTERN, rid or "") else None
        if req is None or req.agency_id != agency.id:
            raise NotFound()  # another agency's request looks exactly like a missing one
        return req

    def _active_clips(self, s: Session, rid: str, now: float) -> list[tuple[Clip, Grant]]:
        rows = s.execute(select(Clip, Grant).join(GrantClip, GrantClip.clip_id == Clip.id)
                         .join(Grant, Grant.id == GrantClip.grant_id)
                         .where(Grant.request_id == rid, Grant.state == "active", Grant.expires_at > now)
                         .order_by(Clip.started_at, Clip.id)).all()
        return [(c, g) for c, g in rows]

    def _status(self, s: Session, req: Request, now: float) -> dict[str, Any]:
        shared = s.execute(select(func.count()).select_from(GrantClip)
                           .join(Grant, Grant.id == GrantClip.grant_id)
                           .where(Grant.request_id == req.id, Grant.state == "active",
                                  Grant.expires_at > now)).scalar_one()
        return {"id": req.id, "case_number": req.case_number,
                "status": "pending" if now < req.expires_at else "closed",
                "created_at": req.created_at, "expires_at": req.expires_at,
                "window_start": req.window_start, "window_end": req.window_end, "clips_shared": int(shared)}

    def request_status(self, agency: AgencyInfo, rid: str) -> dict[str, Any]:
        now = self.clock()
        with self.db.read() as s:
            return self._status(s, self._own_request(s, agency, rid), now)

    def list_requests(self, agency: AgencyInfo, limit: int = 100) -> list[dict[str, Any]]:
        now = self.clock()
        with self.db.read() as s:
            reqs = s.execute(select(Request).where(Request.agency_id == agency.id)
                             .order_by(Request.created_at.desc()).limit(max(1, min(limit, 500)))).scalars().all()
            return [self._status(s, r, now) for r in reqs]

    def shared_clips(self, agency: AgencyInfo, rid: str) -> dict[str, Any]:
        """Approved, unexpired, unrevoked clips with fresh short-lived links (each audited)."""
        now = self.clock()
        ttl = self.settings.link_ttl_s
        with self.db.write() as s:
            self._own_request(s, agency, rid)
            items, entries = [], []
            for clip, grant in self._active_clips(s, rid, now):
                url = self._link(clip)
                entries.append({"kind": "link_issued", "actor": f"agency:{agency.name}", "subject": clip.id,
                                "owner_id": grant.owner_id, "ts": now,
                                "details": {"request_id": rid, "grant_id": grant.id, "url_expires_at": now + ttl}})
                items.append({"clip_id": clip.id, "started_at": clip.started_at, "ended_at": clip.ended_at,
                              "trigger": clip.trigger, "size": clip.size, "sha256": clip.sha256, "url": url,
                              "url_expires_at": now + ttl, "access_expires_at": grant.expires_at})
            audit.append_many(s, entries)
        return {"request_id": rid, "clips": items}

    def download_url(self, agency: AgencyInfo, rid: str, clip_id: str) -> str:
        now = self.clock()
        with self.db.write() as s:
            self._own_request(s, agency, rid)
            for clip, grant in self._active_clips(s, rid, now):
                if clip.id == clip_id:
                    url = self._link(clip)
                    audit.append(s, kind="download", actor=f"agency:{agency.name}", subject=clip.id,
                                 owner_id=grant.owner_id, ts=now,
                                 details={"request_id": rid, "grant_id": grant.id,
                                          "url_expires_at": now + self.settings.link_ttl_s})
                    return url
        raise NotFound("shared clip")  # unapproved, revoked, expired and non-existent look the same

    def _link(self, clip: Clip) -> str:
        if self.presigner is None:
            raise Refused("unavailable", "storage is not configured", 503)
        return self.presigner.get_url(clip.key, self.settings.link_ttl_s, filename=f"{clip.id}.mp4")

    # ------------------------------------------------------------------ transparency

    def transparency(self) -> dict[str, Any]:
        """Per-agency monthly figures for settled months, small counts suppressed.

        A month is published once every request created in it has closed
        (month end + request_ttl_h), so figures never move while an agency
        watches; counts between 1 and k-1 are shown as null so a single request
        cannot reveal how many homes declined it.
        """
        now = self.clock()
        k = self.transparency_k
        ttl = self.settings.request_ttl_h * 3600
        with self.db.read() as s:
            reqs = s.execute(select(Request.id, Request.agency_id, Request.created_at)).all()
            names = dict(s.execute(select(Agency.id, Agency.name)).all())
            targets = s.execute(select(RequestTarget.request_id, RequestTarget.state)).all()
            shared = s.execute(select(Grant.request_id, func.count()).join(GrantClip, GrantClip.grant_id == Grant.id)
                               .group_by(Grant.request_id)).all()
        month_key: dict[str, tuple[int, str]] = {}
        figures: dict[tuple[int, str], dict[str, int]] = {}
        last_settled = None
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

    # ------------------------------------------------------------------ devices (MQTT)

    def index_clip(self, topic_device: str, payload: bytes) -> bool:
        """Add a clip from ``devices/{id}/clips`` to the index; False if it was refused."""
        try:
            msg = p.decode(p.ClipMessage, payload, "clips")
        except p.ProtocolError as exc:
            log.warning("clip message from %s dropped: %s", topic_device, exc)
            return False
        if msg.device_id != topic_device:
            log.warning("clip message on %s's topic names device %s; dropped", topic_device, msg.device_id)
            return False
        own = device_prefix(self.key_prefix, msg.device_id)
        for key in (msg.key, msg.snapshot_key):
            if key is not None and (not key.startswith(own) or "/../" in f"/{key}/" or "//" in key):
                # Otherwise one device could index (and its owner share) another device's object.
                log.warning("clip %s from %s names object %r outside %s; dropped", msg.clip_id, msg.device_id,
                            key[:200], own)
                return False
        with self.db.write() as s:
            if s.get(Device, msg.device_id) is None:
                log.info("clip %s from unknown device %s ignored (enrol it with 'doorbell sharing device add')",
                         msg.clip_id, msg.device_id)
                return False
            existing = s.get(Clip, msg.clip_id)
            if existing is not None:
                if existing.device_id != msg.device_id:
                    log.warning("clip id %s already indexed for another device; dropped", msg.clip_id)
                    return False
                return True  # QoS 1 redelivery
            s.add(Clip(id=msg.clip_id, device_id=msg.device_id, trigger=msg.trigger, started_at=msg.started_at,
                       ended_at=msg.ended_at, key=msg.key, snapshot_key=msg.snapshot_key, sha256=msg.sha256,
                       size=msg.size, indexed_at=self.clock()))
        log.debug("indexed clip %s of %s", msg.clip_id, msg.device_id)
        return True

    # ------------------------------------------------------------------ owners (MQTT)

    def _refuse(self, s: Session | None, owner_id: str, ref: str, reason: str, subject: str) -> list[Outgoing]:
        log.warning("refused message from owner %s (%s): %s", owner_id, subject, reason)
        if s is not None and s.get(Owner, owner_id) is not None:
            audit.append(s, kind="refusal", actor=f"owner:{owner_id}", subject=subject, owner_id=owner_id,
                         details={"reason": reason, "ref": ref}, ts=self.clock())
        return [Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=False, reason=reason[:2000]).to_json())]

    def _verify_signed(self, s: Session, msg: p.SignedMessage, topic_owner: str, now: float) -> str | None:
        """Signature, validity and replay checks; returns a refusal reason or None."""
        if msg.owner_id != topic_owner:
            return "owner_id in the message does not match the topic"
        owner = s.get(Owner, topic_owner)
        if owner is None:
            return "unknown owner"
        try:
            verify(msg, owner.public_key, now=now, max_age_s=self.settings.decision_max_age_s)
        except SignatureError as exc:
            return str(exc)
        if s.get(Nonce, msg.nonce) is not None:
            return "replayed message (nonce already used)"
        s.add(Nonce(nonce=msg.nonce, owner_id=topic_owner, seen_at=now, expires_at=float(msg.expires_at)))
        s.flush()
        return None

    def handle_decision(self, topic_owner: str, topic_rid: str, payload: bytes) -> list[Outgoing]:
        """Verify a signed decision and turn an approval into a grant."""
        return self._handle_signed(p.Decision, "decision", topic_owner, topic_rid, payload, self._decide)

    def _handle_signed(self, model: type[p.SignedMessage], kind: str, topic_owner: str, topic_ref: str,
                       payload: bytes, apply: Callable[..., list[Outgoing]]) -> list[Outgoing]:
        """The envelope every signed owner message shares: decode or refuse, apply in one
        transaction, refuse a nonce that raced in twice, then publish the outcome."""
        now = self.clock()
        try:
            msg = p.decode(model, payload, kind)
        except p.ProtocolError as exc:
            with self.db.write() as s:
                out = self._refuse(s, topic_owner, topic_ref, str(exc), topic_ref)
            self.emit(out)
            return out
        try:
            with self.db.write() as s:
                out = apply(s, topic_owner, topic_ref, msg, now)
        except IntegrityError:  # the same nonce raced in twice
            with self.db.write() as s:
                out = self._refuse(s, topic_owner, msg.nonce, "replayed message (nonce already used)", topic_ref)
        self.emit(out)
        return out

    def _decide(self, s: Session, owner_id: str, topic_rid: str, msg: p.Decision, now: float) -> list[Outgoing]:
        ref = msg.nonce
        if msg.request_id != topic_rid:
            return self._refuse(s, owner_id, ref, "request_id in the message does not match the topic", topic_rid)
        reason = self._verify_signed(s, msg, owner_id, now)
        if reason:
            return self._refuse(s, owner_id, ref, reason, topic_rid)
        target = s.get(RequestTarget, (msg.request_id, owner_id))
        req = s.get(Request, msg.request_id)
        if target is None or req is None:
            return self._refuse(s, owner_id, ref, "no such request for this owner", topic_rid)
        if target.state != "pending" or now >= req.expires_at:
            state = target.state if target.state != "pending" else "expired"
            return self._refuse(s, owner_id, ref, f"request is no longer pending ({state})", topic_rid)
        agency = s.get(Agency, req.agency_id)
        agency_name = agency.name if agency else "?"
        out: list[Outgoing] = []
        if msg.decision == "deny":
            target.state, target.decided_at = "denied", now
            audit.append(s, kind="decision", actor=f"owner:{owner_id}", subject=req.id, owner_id=owner_id, ts=now,
                         details={"decision": "deny", "nonce": msg.nonce, "signature": msg.signature})
            out.append(Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=True).to_json()))
            out.append(self._closed(req.id, owner_id, "denied"))
            log.info("owner %s denied request %s", owner_id, req.id)
            return out
        offered = set(s.execute(select(RequestClip.clip_id).where(RequestClip.request_id == req.id,
                                                                  RequestClip.owner_id == owner_id)).scalars())
        outside = [c for c in msg.clip_ids if c not in offered]
        if outside:
            return self._refuse(s, owner_id, ref, "clip ids not offered in this request: " + ", ".join(outside[:10]),
                                topic_rid)
        days = min(float(msg.grant_days), self.settings.grant_max_days)
        gid = p.new_token()
        expires = now + days * 86400
        s.add(Grant(id=gid, request_id=req.id, owner_id=owner_id, agency_id=req.agency_id, decision_nonce=msg.nonce,
                    created_at=now, expires_at=expires, state="active"))
        s.flush()
        s.execute(insert(GrantClip), [{"grant_id": gid, "clip_id": c} for c in msg.clip_ids])
        target.state, target.decided_at = "approved", now
        audit.append(s, kind="decision", actor=f"owner:{owner_id}", subject=req.id, owner_id=owner_id, ts=now,
                     details={"decision": "approve", "clip_ids": list(msg.clip_ids), "grant_days": msg.grant_days,
                              "nonce": msg.nonce, "issued_at": msg.issued_at, "expires_at": msg.expires_at,
                              "signature": msg.signature})
        audit.append(s, kind="grant", actor="service", subject=gid, owner_id=owner_id, ts=now,
                     details={"request_id": req.id, "agency": agency_name, "clip_ids": list(msg.clip_ids),
                              "expires_at": expires})
        out.append(Outgoing(p.result_topic(owner_id, ref),
                            p.Result(ref=ref, ok=True, grant_id=gid, expires_at=expires).to_json()))
        out.append(Outgoing(p.grant_topic(owner_id, gid), p.GrantState(
            grant_id=gid, request_id=req.id, owner_id=owner_id, agency=agency_name, case_number=req.case_number,
            clip_ids=list(msg.clip_ids), created_at=now, expires_at=expires, state="active").to_json(), retain=True))
        out.append(self._closed(req.id, owner_id, "approved"))
        log.info("owner %s approved %d clip(s) for request %s: grant %s until %.0f",
                 owner_id, len(msg.clip_ids), req.id, gid, expires)
        return out

    def _closed(self, rid: str, owner_id: str, state: str) -> Outgoing:
        return Outgoing(p.request_topic(owner_id, rid),
                        p.RequestClosed(request_id=rid, owner_id=owner_id, state=state).to_json(),  # type: ignore[arg-type]
                        retain=True)

    def _grant_state(self, s: Session, g: Grant) -> Outgoing:
        req = s.get(Request, g.request_id)
        agency = s.get(Agency, g.agency_id)
        clip_ids = sorted(s.execute(select(GrantClip.clip_id).where(GrantClip.grant_id == g.id)).scalars())
        msg = p.GrantState(grant_id=g.id, request_id=g.request_id, owner_id=g.owner_id,
                           agency=agency.name if agency else "?", case_number=req.case_number if req else "?",
                           clip_ids=clip_ids, created_at=g.created_at, expires_at=g.expires_at,
                           state=g.state)  # type: ignore[arg-type]
        return Outgoing(p.grant_topic(g.owner_id, g.id), msg.to_json(), retain=True)

    def handle_revoke(self, topic_owner: str, topic_gid: str, payload: bytes) -> list[Outgoing]:
        """A signed revoke ends a grant at once: the next link or download fails."""
        return self._handle_signed(p.Revoke, "revoke", topic_owner, topic_gid, payload, self._revoke)

    def _revoke(self, s: Session, owner_id: str, topic_gid: str, msg: p.Revoke, now: float) -> list[Outgoing]:
        ref = msg.nonce
        if msg.grant_id != topic_gid:
            return self._refuse(s, owner_id, ref, "grant_id in the message does not match the topic", topic_gid)
        reason = self._verify_signed(s, msg, owner_id, now)
        if reason:
            return self._refuse(s, owner_id, ref, reason, topic_gid)
        grant = s.get(Grant, msg.grant_id)
        if grant is None or grant.owner_id != owner_id:
            return self._refuse(s, owner_id, ref, "no such grant for this owner", topic_gid)
        if grant.state != "active":
            return self._refuse(s, owner_id, ref, f"grant is already {grant.state}", topic_gid)
        grant.state, grant.revoked_at = "revoked", now
        audit.append(s, kind="revocation", actor=f"owner:{owner_id}", subject=grant.id, owner_id=owner_id, ts=now,
                     details={"request_id": grant.request_id, "nonce": msg.nonce, "signature": msg.signature,
                              "was_expiring_at": grant.expires_at})
        log.info("owner %s revoked grant %s", owner_id, grant.id)
        return [Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=True, grant_id=grant.id).to_json()),
                self._grant_state(s, grant)]

    # ------------------------------------------------------------------ owner RPC

    def handle_rpc(self, topic_owner: str, call_id: str, payload: bytes) -> list[Outgoing]:
        """Answer an owner's query on ``.../rpc/{call}/reply``; errors become ok=false replies."""
        reply_topic = p.rpc_reply_topic(topic_owner, call_id)
        try:
            call = p.decode(p.RpcCall, payload, "rpc")
            with self.db.read() as s:
                if s.get(Owner, topic_owner) is None:
                    raise Refused("unknown_owner", "unknown owner")
            result = getattr(self, f"_rpc_{call.method}")(topic_owner, dict(call.params))
            reply = p.RpcReply(ok=True, result=result)
        except (p.ProtocolError, Refused) as exc:
            log.warning("rpc %s from %s refused: %s", call_id, topic_owner, exc)
            reply = p.RpcReply(ok=False, error=str(exc)[:2000])
        except (TypeError, ValueError) as exc:
            log.warning("rpc %s from %s has bad params: %s", call_id, topic_owner, exc)
            reply = p.RpcReply(ok=False, error=f"bad params: {exc}"[:2000])
        body = reply.to_json()
        if len(body) > p.MAX_PAYLOAD["rpc_reply"]:
            body = p.RpcReply(ok=False, error="reply too large; use a smaller limit").to_json()
        out = [Outgoing(reply_topic, body)]
        self.emit(out)
        return out

    @staticmethod
    def _int(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
        v = params.get(name, default)
        if v is None:
            v = default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} must be a number")
        return max(lo, min(int(v), hi))

    def _rpc_audit(self, owner_id: str, params: dict[str, Any]) -> dict[str, Any]:
        since = self._int(params, "since", 1, 1, 2**62)
        limit = self._int(params, "limit", 2000, 1, 5000)
        with self.db.read() as s:
            return audit.owner_view(s, owner_id, since, limit)

    def _rpc_grants(self, owner_id: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        now = self.clock()
        with self.db.read() as s:
            grants = s.execute(select(Grant).where(Grant.owner_id == owner_id).order_by(Grant.created_at.desc())
                               .limit(self._int(params, "limit", 100, 1, 500))).scalars().all()
            out = []
            for g in grants:
                state = "expired" if g.state == "active" and g.expires_at <= now else g.state
                req = s.get(Request, g.request_id)
                agency = s.get(Agency, g.agency_id)
                out.append({"grant_id": g.id, "request_id": g.request_id, "agency": agency.name if agency else "?",
                            "case_number": req.case_number if req else "?",
                            "clip_ids": sorted(s.execute(select(GrantClip.clip_id)
                                                         .where(GrantClip.grant_id == g.id)).scalars()),
                            "created_at": g.created_at, "expires_at": g.expires_at, "state": state,
                            "revoked_at": g.revoked_at})
            return out

    def _rpc_requests(self, owner_id: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        now = self.clock()
        want = params.get("state")
        with self.db.read() as s:
            q = (select(RequestTarget, Request).join(Request, Request.id == RequestTarget.request_id)
                 .where(RequestTarget.owner_id == owner_id).order_by(Request.created_at.desc())
                 .limit(self._int(params, "limit", 100, 1, 500)))
            out = []
            for t, r in s.execute(q).all():
                state = "expired" if t.state == "pending" and now >= r.expires_at else t.state
                if want and state != want:
                    continue
                agency = s.get(Agency, r.agency_id)
                clip_ids = sorted(s.execute(select(RequestClip.clip_id).where(
                    RequestClip.request_id == r.id, RequestClip.owner_id == owner_id)).scalars())
                out.append({"request_id": r.id, "agency": agency.name if agency else "?",
                            "case_number": r.case_number, "legal_basis": r.legal_basis, "reason": r.reason,
                            "window_start": r.window_start, "window_end": r.window_end,
                            "created_at": r.created_at, "expires_at": r.expires_at, "state": state,
                            "decided_at": t.decided_at, "clip_ids": clip_ids, "grant_days": r.grant_days})
            return out

    def _rpc_clips(self, owner_id: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        q = (select(Clip).join(Device, Device.id == Clip.device_id).where(Device.owner_id == owner_id)
             .order_by(Clip.started_at.desc()).limit(self._int(params, "limit", 100, 1, 500)))
        if params.get("device_id"):
            q = q.where(Clip.device_id == str(params["device_id"]))
        if params.get("since") is not None:
            q = q.where(Clip.started_at >= float(params["since"]))
        if params.get("until") is not None:
            q = q.where(Clip.started_at <= float(params["until"]))
        with self.db.read() as s:
            return [{"clip_id": c.id, "device_id": c.device_id, "trigger": c.trigger, "started_at": c.started_at,
                     "ended_at": c.ended_at, "size": c.size, "sha256": c.sha256,
                     "has_snapshot": c.snapshot_key is not None} for c in s.execute(q).scalars()]

    def _rpc_clip_link(self, owner_id: str, params: dict[str, Any]) -> dict[str, Any]:
        clip_id = str(params.get("clip_id") or "")
        what = str(params.get("what") or "video")
        if what not in ("video", "snapshot"):
            raise ValueError("what must be 'video' or 'snapshot'")
        now = self.clock()
        ttl = self.settings.link_ttl_s
        with self.db.write() as s:
            row = s.execute(select(Clip, Device.owner_id).join(Device, Device.id == Clip.device_id)
                            .where(Clip.id == clip_id)).first()
            if row is None or row[1] != owner_id:
                raise Refused("not_found", "no such clip of this owner")
            clip = row[0]
            key = clip.key if what == "video" else clip.snapshot_key
            if not key:
                raise Refused("not_found", "this clip has no snapshot")
            if self.presigner is None:
                raise Refused("unavailable", "storage is not configured")
            url = self.presigner.get_url(key, ttl)
            audit.append(s, kind="owner_link", actor=f"owner:{owner_id}", subject=clip.id, owner_id=owner_id,
                         ts=now, details={"what": what, "url_expires_at": now + ttl})
        return {"clip_id": clip_id, "what": what, "url": url, "expires_at": now + ttl}

    # ------------------------------------------------------------------ lifecycle

    def sweep(self) -> int:
        """Expire unanswered requests (as a no) and lapsed grants; returns how many changed."""
        now = self.clock()
        out: list[Outgoing] = []
        changed = 0
        with self.db.write() as s:
            stale = s.execute(select(RequestTarget).join(Request, Request.id == RequestTarget.request_id)
                              .where(RequestTarget.state == "pending", Request.expires_at <= now)
                              .limit(1000)).scalars().all()
            for t in stale:
                t.state, t.decided_at = "expired", now
                audit.append(s, kind="expiry", actor="service", subject=t.request_id, owner_id=t.owner_id, ts=now,
                             details={"state": "expired", "meaning": "unanswered request counts as a no"})
                out.append(self._closed(t.request_id, t.owner_id, "expired"))
            lapsed = s.execute(select(Grant).where(Grant.state == "active", Grant.expires_at <= now)
                               .limit(1000)).scalars().all()
            for g in lapsed:
                g.state = "expired"
                audit.append(s, kind="grant_expiry", actor="service", subject=g.id, owner_id=g.owner_id, ts=now,
                             details={"request_id": g.request_id, "expired_at": g.expires_at})
                out.append(self._grant_state(s, g))
            # A nonce is needed only while its message could still verify (verify() refuses expired ones).
            s.execute(delete(Nonce).where(Nonce.expires_at < now - 86400))
            changed = len(stale) + len(lapsed)
        if changed:
            log.info("sweep: %d request(s) expired unanswered, %d grant(s) lapsed", len(stale), len(lapsed))
        self.emit(out)
        return changed

    def pending_messages(self) -> Iterable[Outgoing]:
        """Retained requests still awaiting an answer (re-sent after a reconnect: brokers forget)."""
        now = self.clock()
        with self.db.read() as s:
            rows = s.execute(select(RequestTarget, Request, Agency)
                             .join(Request, Request.id == RequestTarget.request_id)
                             .join(Agency, Agency.id == Request.agency_id)
                             .where(RequestTarget.state == "pending", Request.expires_at > now)).all()
            msgs = []
            for t, r, a in rows:
                clips = s.execute(select(Clip).join(RequestClip, RequestClip.clip_id == Clip.id)
                                  .where(RequestClip.request_id == r.id, RequestClip.owner_id == t.owner_id)
                                  .order_by(Clip.started_at)).scalars().all()
                msgs.append(self._request_message(r, a.name, t.owner_id, list(clips)))
        return msgs

    def verify_audit(self) -> dict[str, Any]:
        with self.db.read() as s:
            return audit.verify_chain(s).as_dict()


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
