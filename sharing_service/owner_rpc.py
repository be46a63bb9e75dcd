"""The owner's queries: audit view, grants, requests, clips and clip links over MQTT.

Each method is one entry of a typed table: its params model (from
:mod:`doorbell.core.protocol`) and a handler returning its result model.
Every error becomes an ``ok=false`` reply on ``.../rpc/{call}/reply``.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import select

from doorbell.core import protocol as p
from doorbell.core.bucket import device_prefix
from sharing_service import audit
from sharing_service.consent import grant_clip_ids
from sharing_service.context import Outgoing, Refused, ServiceContext
from sharing_service.models import Agency, Clip, Device, Grant, Owner, Request, RequestClip, RequestTarget
from sharing_service.shares import list_shares

log = logging.getLogger(__name__)

P = TypeVar("P", bound=p.RpcParams)


class _Handler(Protocol):
    def __call__(self, owner_id: str, call: p.RpcCall) -> p.RpcResult: ...


@dataclass(frozen=True)
class _Method(Generic[P]):
    """One table entry: validates the call's params as ``params``, then runs ``run``."""

    params: type[P]
    run: Callable[[str, P], p.RpcResult]

    def __call__(self, owner_id: str, call: p.RpcCall) -> p.RpcResult:
        return self.run(owner_id, call.parse_params(self.params))


class OwnerRpc:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.methods: dict[p.RpcMethod, _Handler] = {
            "audit": _Method(p.AuditParams, self.audit),
            "grants": _Method(p.GrantsParams, self.grants),
            "requests": _Method(p.RequestsParams, self.requests),
            "clips": _Method(p.ClipsParams, self.clips),
            "clip_link": _Method(p.ClipLinkParams, self.clip_link),
            "object_link": _Method(p.ObjectLinkParams, self.object_link),
            "devices": _Method(p.DevicesParams, self.devices),
            "shares": _Method(p.SharesParams, lambda o, q: list_shares(self.ctx, o, q)),
        }

    def handle(self, topic_owner: str, call_id: str, payload: bytes) -> list[Outgoing]:
        """Answer one call; the reply is published (and returned) after any write committed."""
        reply_topic = p.rpc_reply_topic(topic_owner, call_id)
        try:
            call = p.decode(p.RpcCall, payload, "rpc")
            with self.ctx.db.read() as s:
                if s.get(Owner, topic_owner) is None:
                    raise Refused("unknown_owner", "unknown owner")
            result = self.methods[call.method](topic_owner, call)
            reply = p.RpcReply(ok=True, result=result.model_dump(mode="json", exclude_none=True))
        except (p.ProtocolError, Refused) as exc:
            log.warning("rpc %s from %s refused: %s", call_id, topic_owner, exc)
            reply = p.RpcReply(ok=False, error=str(exc)[:2000])
        body = reply.to_json()
        if len(body) > p.MAX_PAYLOAD["rpc_reply"]:
            body = p.RpcReply(ok=False, error="reply too large; use a smaller limit").to_json()
        out = [Outgoing(reply_topic, body)]
        self.ctx.outbox.emit(out)
        return out

    def audit(self, owner_id: str, q: p.AuditParams) -> p.AuditView:
        with self.ctx.db.read() as s:
            return audit.owner_view(s, owner_id, q.since, q.limit)

    def grants(self, owner_id: str, q: p.GrantsParams) -> p.GrantList:
        now = self.ctx.clock()
        with self.ctx.db.read() as s:
            grants = s.execute(select(Grant).where(Grant.owner_id == owner_id).order_by(Grant.created_at.desc())
                               .limit(q.limit)).scalars().all()
            out = []
            for g in grants:
                state = "expired" if g.state == "active" and g.expires_at <= now else g.state
                req = s.get(Request, g.request_id)
                agency = s.get(Agency, g.agency_id)
                out.append(p.GrantInfo(
                    grant_id=g.id, request_id=g.request_id, agency=agency.name if agency else "?",
                    case_number=req.case_number if req else "?",
                    clip_ids=grant_clip_ids(s, g.id),
                    created_at=g.created_at, expires_at=g.expires_at, state=state,
                    revoked_at=g.revoked_at))
            return p.GrantList(grants=out)

    def requests(self, owner_id: str, q: p.RequestsParams) -> p.RequestList:
        now = self.ctx.clock()
        with self.ctx.db.read() as s:
            rows = s.execute(select(RequestTarget, Request).join(Request, Request.id == RequestTarget.request_id)
                             .where(RequestTarget.owner_id == owner_id).order_by(Request.created_at.desc())
                             .limit(q.limit)).all()
            out = []
            sealed = s.execute(select(Device.id).where(Device.owner_id == owner_id, Device.public_key.is_not(None))
                               .limit(1)).first() is not None
            for t, r in rows:
                state = "expired" if t.state == "pending" and now >= r.expires_at else t.state
                if q.state and state != q.state:
                    continue
                agency = s.get(Agency, r.agency_id)
                recipient = agency.age_recipient if agency is not None and sealed else None
                clip_ids = sorted(s.execute(select(RequestClip.clip_id).where(
                    RequestClip.request_id == r.id, RequestClip.owner_id == owner_id)).scalars())
                out.append(p.RequestInfo(
                    request_id=r.id, agency=agency.name if agency else "?", case_number=r.case_number,
                    legal_basis=r.legal_basis, reason=r.reason, window_start=r.window_start,
                    window_end=r.window_end, created_at=r.created_at, expires_at=r.expires_at,
                    state=state, decided_at=t.decided_at, clip_ids=clip_ids,
                    grant_days=r.grant_days, agency_recipient=recipient))
            return p.RequestList(requests=out)

    def clips(self, owner_id: str, q: p.ClipsParams) -> p.ClipList:
        stmt = (select(Clip).join(Device, Device.id == Clip.device_id).where(Device.owner_id == owner_id)
                .order_by(Clip.started_at.desc()).limit(q.limit))
        if q.device_id:
            stmt = stmt.where(Clip.device_id == q.device_id)
        if q.since is not None:
            stmt = stmt.where(Clip.started_at >= q.since)
        if q.until is not None:
            stmt = stmt.where(Clip.started_at <= q.until)
        with self.ctx.db.read() as s:
            return p.ClipList(clips=[
                p.ClipInfo(clip_id=c.id, device_id=c.device_id, trigger=c.trigger, started_at=c.started_at,
                           ended_at=c.ended_at, size=c.size, sha256=c.sha256,
                           has_snapshot=c.snapshot_key is not None) for c in s.execute(stmt).scalars()])

    def clip_link(self, owner_id: str, q: p.ClipLinkParams) -> p.ClipLink:
        now = self.ctx.clock()
        ttl = self.ctx.settings.link_ttl_s
        with self.ctx.db.write() as s:
            row = s.execute(select(Clip, Device.owner_id).join(Device, Device.id == Clip.device_id)
                            .where(Clip.id == q.clip_id)).first()
            if row is None or row[1] != owner_id:
                raise Refused("not_found", "no such clip of this owner")
            clip = row[0]
            key = clip.key if q.what == "video" else clip.snapshot_key
            if not key:
                raise Refused("not_found", "this clip has no snapshot")
            if self.ctx.presigner is None:
                raise Refused("unavailable", "storage is not configured")
            url = self.ctx.presigner.get_url(key, ttl)
            audit.append(s, kind="owner_link", actor=f"owner:{owner_id}", subject=clip.id, owner_id=owner_id,
                         ts=now, details={"what": q.what, "url_expires_at": now + ttl})
        return p.ClipLink(clip_id=q.clip_id, what=q.what, url=url, expires_at=now + ttl)

    def object_link(self, owner_id: str, q: p.ObjectLinkParams) -> p.ObjectLink:
        """A link to a sealed object of one of this owner's devices (ciphertext only: the service cannot open
        it); the owner's app reads the household header from it to re-wrap the key for an agency."""
        now = self.ctx.clock()
        ttl = min(self.ctx.settings.link_ttl_s, 300)
        with self.ctx.db.read() as s:
            devices = list(s.execute(select(Device.id).where(Device.owner_id == owner_id)).scalars())
        if not any(re.fullmatch(re.escape(device_prefix(self.ctx.key_prefix, d)) + r"o/[0-9a-f]{32}/[vsmn]", q.key)
                   for d in devices):
            raise Refused("not_found", "no such sealed object of this owner's devices")
        if self.ctx.presigner is None:
            raise Refused("unavailable", "storage is not configured")
        return p.ObjectLink(key=q.key, url=self.ctx.presigner.get_url(q.key, ttl), expires_at=now + ttl)

    def devices(self, owner_id: str, q: p.DevicesParams) -> p.DeviceList:
        """The owner's devices with their registered keys (the key a clip's manifest must be signed with)."""
        with self.ctx.db.read() as s:
            rows = s.execute(select(Device.id, Device.public_key).where(Device.owner_id == owner_id)
                             .order_by(Device.id)).all()
        return p.DeviceList(devices=[p.DeviceInfo(device_id=d, public_key=k) for d, k in rows])
