"""The agency role: authenticate, record requests (rule 3), report status, issue links.

Nothing returned here depends on which homes were asked or what they answered
until a clip is actually shared (rule 2); matching happens later, through the
injected :class:`~sharing_service.delivery.Scheduler`.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Float, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import ScalarSelect

from doorbell.core import protocol as p
from doorbell.core.bucket import shared_key
from sharing_service import audit
from sharing_service.context import FUTURE_SKEW_S, AgencyInfo, NotFound, Refused, ServiceContext, hash_secret
from sharing_service.delivery import Scheduler
from sharing_service.models import Agency, Clip, Device, Grant, GrantClip, ReleasedObject, Request, SharedObject
from sharing_service.schemas import RequestCreate
from sharing_service.storage import Presigner

API_KEY_RE = re.compile(r"^dbk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()
log = logging.getLogger(__name__)

Status = dict[str, object]
T = TypeVar("T")

# The hot reads (every call's key check, status reads) are SQLAlchemy Core statements built
# once: no ORM session, identity map or per-call statement construction, and the compiled
# form comes from the engine's cache (profiled in docs/scale.md).
_AUTH = select(Agency.id, Agency.name, Agency.rate_per_min, Agency.key_hash,
               Agency.disabled).where(Agency.key_id == bindparam("key_id"))


def _shared_count(now: BindParameter[float]) -> tuple[ScalarSelect[int], ScalarSelect[int]]:
    clear = (select(func.count()).select_from(GrantClip).join(Grant, Grant.id == GrantClip.grant_id)
             .where(Grant.request_id == Request.id, Grant.state == "active", Grant.expires_at > now)
             .correlate(Request).scalar_subquery())
    sealed = (select(func.count(func.distinct(ReleasedObject.clip_id)))
              .join(Grant, Grant.id == ReleasedObject.grant_id)
              .where(Grant.request_id == Request.id, Grant.state == "active", Grant.expires_at > now)
              .correlate(Request).scalar_subquery())
    return clear, sealed


_CLEAR, _SEALED = _shared_count(bindparam("now", type_=Float))
_STATUS_COLUMNS = (Request.id, Request.case_number, Request.created_at, Request.expires_at,
                   Request.window_start, Request.window_end, _CLEAR.label("shared_clear"),
                   _SEALED.label("shared_sealed"))
# Another agency's request is filtered out by the WHERE clause: it looks exactly like a missing one.
_STATUS = select(*_STATUS_COLUMNS).where(Request.id == bindparam("rid"), Request.agency_id == bindparam("agency_id"))
_LIST = (select(*_STATUS_COLUMNS).where(Request.agency_id == bindparam("agency_id"))
         .order_by(Request.created_at.desc()).limit(bindparam("limit")))


def _status_of(row: tuple[Any, ...], now: float) -> Status:
    """The agency's view of one request: time-based, and clips actually shared (rule 2)."""
    rid, case_number, created_at, expires_at, window_start, window_end, clear, sealed = row
    return {"id": rid, "case_number": case_number, "status": "pending" if now < expires_at else "closed",
            "created_at": created_at, "expires_at": expires_at, "window_start": window_start,
            "window_end": window_end, "clips_shared": int(clear or 0) + int(sealed or 0)}


class AgencyDesk:
    def __init__(self, ctx: ServiceContext, scheduler: Scheduler):
        self.ctx = ctx
        self.scheduler = scheduler

    def hot_read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on one hot-read connection (a key check and a status read share it).

        The hot-read pool does not ping at checkout (db.py): when the server dropped the
        connection (a restart, a fail-over), the pool is refreshed and ``fn`` runs once
        more on a fresh connection; these reads change nothing, so running twice is safe.
        """
        for attempt in (1, 2):
            try:
                with self.ctx.db.hot_read_engine.connect() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt == 2:
                    raise
                log.warning("database connection lost; reading once more: %s", exc.orig)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, conn: Connection | None, stmt: Any, params: dict[str, object]) -> Any:
        """The first row of ``stmt``, on ``conn`` or on a hot-read connection of its own."""
        if conn is not None:
            return conn.execute(stmt, params).first()
        return self.hot_read(lambda c: c.execute(stmt, params).first())

    def authenticate(self, api_key: str, conn: Connection | None = None) -> AgencyInfo | None:
        """Constant-time check of an API key against its stored hash (one indexed read).

        The key's secret is 256 random bits, so one SHA-256 is the right check (as for
        any random API key); a slow password KDF would add milliseconds per call and no
        security (docs/security.md).
        """
        m = API_KEY_RE.match(api_key or "")
        key_id, secret = (m.group(1), m.group(2)) if m else ("", api_key or "")
        row = self._read(conn, _AUTH, {"key_id": key_id}) if m else None
        ok = hmac.compare_digest(hash_secret(secret), row.key_hash if row is not None else _DUMMY_HASH)
        if not ok or row is None or row.disabled:
            return None
        return AgencyInfo(row.id, row.name, row.rate_per_min)

    def check_request(self, body: RequestCreate, now: float) -> tuple[float, float]:
        """Sharing rule 3 with the configured limits; returns the window as UNIX times."""
        st = self.ctx.settings
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

    def create_request(self, agency: AgencyInfo, body: RequestCreate) -> Status:
        """Record a request; its owners are matched and asked by the scheduler, off this path."""
        now = self.ctx.clock()
        start, end = self.check_request(body, now)
        rid = p.new_token()
        expires = now + self.ctx.settings.request_ttl_h * 3600
        with self.ctx.db.write() as s:
            req = Request(id=rid, agency_id=agency.id, case_number=body.case_number.strip(),
                          legal_basis=body.legal_basis.strip(), reason=body.reason.strip(),
                          attest_not_protest=True, window_start=start, window_end=end, lat=body.lat,
                          lon=body.lon, radius_m=body.radius_m, grant_days=self.ctx.settings.grant_default_days,
                          created_at=now, expires_at=expires)
            s.add(req)
            audit.append(s, kind="request", actor=f"agency:{agency.name}", subject=rid, ts=now,
                         details={"case_number": req.case_number, "legal_basis": req.legal_basis,
                                  "window": [start, end], "area": [body.lat, body.lon, body.radius_m],
                                  "expires_at": expires})
        self.scheduler.schedule(rid)
        return {"id": rid, "status": "pending", "created_at": now, "expires_at": expires}

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
        return list(rows)

    def _active_released(self, s: Session, rid: str, now: float) -> list[tuple[ReleasedObject, Grant, str | None]]:
        """Sealed objects whose keys an active grant of this request released, with their device's key."""
        rows = s.execute(select(ReleasedObject, Grant, Device.public_key)
                         .join(Grant, Grant.id == ReleasedObject.grant_id)
                         .join(Device, Device.id == ReleasedObject.device_id)
                         .where(Grant.request_id == rid, Grant.state == "active", Grant.expires_at > now)
                         .order_by(ReleasedObject.clip_id, ReleasedObject.kind)).all()
        return [(r, g, k) for r, g, k in rows]

    def request_status(self, agency: AgencyInfo, rid: str, conn: Connection | None = None) -> Status:
        """One statement: the request (if it is this agency's) and its shared-clip counts."""
        if not re.match(p.TOKEN_PATTERN, rid or ""):
            raise NotFound()
        now = self.ctx.clock()
        row = self._read(conn, _STATUS, {"rid": rid, "agency_id": agency.id, "now": now})
        if row is None:
            raise NotFound()  # another agency's request looks exactly like a missing one
        return _status_of(tuple(row), now)

    def list_requests(self, agency: AgencyInfo, limit: int = 100) -> list[Status]:
        now = self.ctx.clock()
        params = {"agency_id": agency.id, "now": now, "limit": max(1, min(limit, 500))}
        rows = self.hot_read(lambda conn: conn.execute(_LIST, params).all())
        return [_status_of(tuple(r), now) for r in rows]

    def shared_clips(self, agency: AgencyInfo, rid: str) -> dict[str, object]:
        """Approved, unexpired, unrevoked clips with fresh short-lived links (each audited).

        Links point at opaque copies (:meth:`_publish`), never at a device's objects.
        Every clip carries the same ``access_expires_at`` (the earliest end of any
        grant under the request): a per-grant value would tell which clips came from
        the same home (rule 2).
        """
        self._publish(agency, rid)
        now = self.ctx.clock()
        ttl = self.ctx.settings.link_ttl_s
        with self.ctx.db.write() as s:
            self._own_request(s, agency, rid)
            rows = self._active_clips(s, rid, now)
            shared = self._shared_keys(s, [(g.id, c.id) for c, g in rows])
            access_until = min((g.expires_at for _, g in rows), default=now)
            items, entries = [], []
            for clip, grant in rows:
                key = shared.get((grant.id, clip.id))
                if key is None:  # approved after _publish looked: it appears in the next listing
                    continue
                url = self._link(key, clip)
                entries.append({"kind": "link_issued", "actor": f"agency:{agency.name}", "subject": clip.id,
                                "owner_id": grant.owner_id, "ts": now,
                                "details": {"request_id": rid, "grant_id": grant.id, "url_expires_at": now + ttl}})
                items.append({"clip_id": clip.id, "started_at": clip.started_at, "ended_at": clip.ended_at,
                              "trigger": clip.trigger, "size": clip.size, "sha256": clip.sha256, "url": url,
                              "url_expires_at": now + ttl, "access_expires_at": access_until})
            released = self._active_released(s, rid, now)
            access_until = min([g.expires_at for _, g in rows] + [g.expires_at for _, g, _ in released],
                               default=now)
            for listed in items:  # one request-wide value, also over sealed clips' grants
                listed["access_expires_at"] = access_until
            copies = self._shared_keys(s, [(g.id, _sealed_copy_id(o)) for o, g, _ in released])
            complete = {o.clip_id for o, _, _ in released}
            complete -= {o.clip_id for o, g, _ in released if (g.id, _sealed_copy_id(o)) not in copies}
            sealed: dict[str, dict[str, object]] = {}
            for obj, grant, device_key in released:
                if obj.clip_id not in complete:  # its copies are made on the next listing
                    continue
                item = sealed.get(obj.clip_id)
                if item is None:
                    # No device id and no device prefix (rule 2). The device's public key is
                    # there so the agency can check the footage without trusting the cloud; it
                    # is a pseudonym that links only clips this home's owner chose to share.
                    item = sealed[obj.clip_id] = {"clip_id": obj.clip_id,
                                                  "device_key": device_key or "", "objects": {},
                                                  "url_expires_at": now + ttl, "access_expires_at": access_until}
                    entries.append({"kind": "link_issued", "actor": f"agency:{agency.name}", "subject": obj.clip_id,
                                    "owner_id": grant.owner_id, "ts": now,
                                    "details": {"request_id": rid, "grant_id": grant.id, "sealed": True,
                                                "url_expires_at": now + ttl}})
                objects = item["objects"]
                assert isinstance(objects, dict)
                objects[obj.kind] = {"url": self._presign(copies[(grant.id, _sealed_copy_id(obj))]),
                                     "payload_offset": obj.payload_offset,
                                     "header": obj.header, "header_sha256": obj.header_sha256}
            audit.append_many(s, entries)
        return {"request_id": rid, "clips": items, "sealed": list(sealed.values())}

    def download_url(self, agency: AgencyInfo, rid: str, clip_id: str) -> str:
        self._publish(agency, rid, clip_id)
        now = self.ctx.clock()
        with self.ctx.db.write() as s:
            self._own_request(s, agency, rid)
            rows = [(c, g) for c, g in self._active_clips(s, rid, now) if c.id == clip_id]
            shared = self._shared_keys(s, [(g.id, c.id) for c, g in rows])
            for clip, grant in rows:
                key = shared.get((grant.id, clip.id))
                if key is not None:
                    url = self._link(key, clip)
                    audit.append(s, kind="download", actor=f"agency:{agency.name}", subject=clip.id,
                                 owner_id=grant.owner_id, ts=now,
                                 details={"request_id": rid, "grant_id": grant.id,
                                          "url_expires_at": now + self.ctx.settings.link_ttl_s})
                    return url
        raise NotFound("shared clip")  # unapproved, revoked, expired and non-existent look the same

    def _presign(self, key: str) -> str:
        return self._presigner().get_url(key, self.ctx.settings.link_ttl_s)

    def _publish(self, agency: AgencyInfo, rid: str, clip_id: str | None = None) -> None:
        """Copy approved clips that have no opaque copy yet (S3 CopyObject), outside any transaction.

        Copies are made when the agency first asks for a clip, so the copy's
        ``Last-Modified`` is the time of the agency's own call, which it knows anyway.
        The key is deterministic (grant, clip), so two racing calls copy to the same
        object; the sweeper deletes copies whose grant ended.
        """
        presigner = self._presigner()
        now = self.ctx.clock()
        with self.ctx.db.read() as s:
            self._own_request(s, agency, rid)
            rows = [(c, g) for c, g in self._active_clips(s, rid, now) if clip_id in (None, c.id)]
            have = self._shared_keys(s, [(g.id, c.id) for c, g in rows])
            released = [(o, g) for o, g, _ in self._active_released(s, rid, now) if clip_id in (None, o.clip_id)]
            have_sealed = self._shared_keys(s, [(g.id, _sealed_copy_id(o)) for o, g in released])
        # (source key, grant id, copy id): clear clips by clip id, sealed objects by clip id and kind
        todo = [(c.key, g.id, c.id) for c, g in rows if (g.id, c.id) not in have]
        todo += [(o.key, g.id, _sealed_copy_id(o)) for o, g in released
                 if (g.id, _sealed_copy_id(o)) not in have_sealed]
        made = []
        for source, grant_id, copy_id in todo:
            key = shared_key(self.ctx.key_prefix, grant_id, copy_id)
            try:
                presigner.copy_to_shared(source, key)
            except Exception as exc:  # botocore's errors; the clip is left out, the rest still listed
                log.error("copying shared clip %s of request %s failed: %s", copy_id, rid, exc)
                continue
            made.append({"key": key, "grant_id": grant_id, "clip_id": copy_id, "created_at": now})
        if made:
            # ON CONFLICT DO NOTHING: another instance may have copied and recorded the same key meanwhile
            upsert = pg_insert if self.ctx.db.dialect == "postgresql" else sqlite_insert
            with self.ctx.db.write() as s:
                s.execute(upsert(SharedObject).on_conflict_do_nothing(), made)

    @staticmethod
    def _shared_keys(s: Session, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(grant id, clip id) -> key of its live opaque copy."""
        if not pairs:
            return {}
        grants = sorted({g for g, _ in pairs})
        rows = s.execute(select(SharedObject.grant_id, SharedObject.clip_id, SharedObject.key)
                         .where(SharedObject.grant_id.in_(grants), SharedObject.deleted_at.is_(None))).all()
        wanted = set(pairs)
        return {(g, c): k for g, c, k in rows if (g, c) in wanted}

    def _presigner(self) -> Presigner:
        if self.ctx.presigner is None:
            raise Refused("unavailable", "storage is not configured", 503)
        return self.ctx.presigner

    def _link(self, key: str, clip: Clip) -> str:
        return self._presigner().get_url(key, self.ctx.settings.link_ttl_s, filename=f"{clip.id}.mp4")


_KIND_CODES = {"video": "v", "snapshot": "s", "manifest": "m", "metadata": "n"}


def _sealed_copy_id(obj: ReleasedObject) -> str:
    """The copy id of one released sealed object: its clip id and a one-letter kind (fits the 32-char column)."""
    return f"{obj.clip_id}/{_KIND_CODES.get(obj.kind, obj.kind[:1])}"
