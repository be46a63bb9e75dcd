"""Share links: one clip shared with anyone (a neighbour, an insurer) by an expiring, revocable link.

The owner's app signs a :class:`~doorbell.core.protocol.ShareCreate` (any of the
owner's active keys) on ``owners/{o}/shares/{share_id}/create``. For a sealed clip
it carries the clip's video, snapshot and manifest headers re-wrapped to a fresh
X25519 identity made for this share (the digests are signed, as in a decision);
the identity itself goes only into the link's URL fragment, which browsers never
send to a server. The service answers on ``results/{nonce}`` with a random token
(kept here only as its SHA-256) and keeps the retained
:class:`~doorbell.core.protocol.ShareState` on ``owners/{o}/shares/{share_id}``.

A viewer (no login) opens ``/app/share.html#t=TOKEN&k=IDENTITY``; the page asks
``GET /v1/shares/{token}`` (:meth:`Shares.open`): the service makes the opaque
``_shared/`` copies on first use (as for agencies, rule 2), returns short-lived
links, the re-wrapped headers and the device's public key, and audits the
access in the owner's chain (no viewer identity is recorded: there is none). A
revoked, expired or unknown token gets the same 404. Revoking
(:class:`~doorbell.core.protocol.ShareRevoke`) deletes the copies at once; the
sweeper ends expired shares and deletes their copies (:meth:`Shares.sweep`).

A clip stored in clear (its device does not seal) is shared as the same copy
without a key: the token is the only secret, and the service could see the
clip anyway (docs/sharing.md).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from doorbell.core import age
from doorbell.core import protocol as p
from doorbell.core.bucket import SEALED_SUFFIXES, shared_key
from doorbell.core.release import sha256_hex
from sharing_service import audit
from sharing_service.context import NotFound, Outgoing, Refused, ServiceContext
from sharing_service.models import Base, Clip, Device
from sharing_service.ratelimit import SHARE_LINKS, RateLimiter
from sharing_service.storage import Presigner

if TYPE_CHECKING:
    from sharing_service.consent import Consent

log = logging.getLogger(__name__)

MAX_ACTIVE_SHARES_PER_OWNER = 100
VIEW_RATE_PER_MIN = 30          # per token: a viewer's page asks once per play; enough for reloads
_KIND_CODES = {"video": "v", "snapshot": "s", "manifest": "m"}


class Share(Base):
    """One share link. The token is stored only as its SHA-256; its key (sealed clips) is never here."""

    __tablename__ = "shares"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    clip_id: Mapped[str] = mapped_column(String(32), nullable=False)
    device_id: Mapped[str] = mapped_column(String(63), nullable=False)
    sealed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    recipient: Mapped[str | None] = mapped_column(String(100))   # the share's age recipient (public)
    nonce: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # active/expired/revoked
    revoked_at: Mapped[float | None] = mapped_column(Float)
    views: Mapped[int] = mapped_column(Integer, nullable=False)
    last_viewed_at: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_shares_token", "token_hash", unique=True),
                      Index("ix_shares_owner", "owner_id"), Index("ix_shares_state", "state", "expires_at"))


class ShareObject(Base):
    """One object of a shared clip: its source key, its re-wrapped header (sealed) and its opaque copy."""

    __tablename__ = "share_objects"
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), nullable=False)
    payload_offset: Mapped[int | None] = mapped_column(Integer)
    header: Mapped[str | None] = mapped_column(Text)
    header_sha256: Mapped[str | None] = mapped_column(String(64))
    copy_key: Mapped[str] = mapped_column(String(200), nullable=False)
    copied_at: Mapped[float | None] = mapped_column(Float)
    deleted_at: Mapped[float | None] = mapped_column(Float)


class ShareRate(Base):
    """One share link's view bucket, shared by every instance (``sharing_service.ratelimit``)."""

    __tablename__ = "share_rate"
    share_id: Mapped[str] = mapped_column(ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    allowed: Mapped[bool] = mapped_column(Boolean, nullable=False)


def token_hash(token: str) -> str:
    return hashlib.sha256(b"doorbell share token v1\x00" + token.encode()).hexdigest()


def share_state(sh: Share, now: float) -> Outgoing:
    state = "expired" if sh.state == "active" and sh.expires_at <= now else sh.state
    msg = p.ShareState(share_id=sh.id, owner_id=sh.owner_id, clip_id=sh.clip_id, sealed=sh.sealed,
                       created_at=sh.created_at, expires_at=sh.expires_at, state=state,
                       revoked_at=sh.revoked_at)
    return Outgoing(p.share_topic(sh.owner_id, sh.id), msg.to_json(), retain=True)


class Shares:
    """Create, revoke, list, open and sweep share links (on top of the consent envelope)."""

    def __init__(self, ctx: ServiceContext, consent: "Consent"):
        self.ctx = ctx
        self.consent = consent
        self.limiter = RateLimiter(ctx.db, VIEW_RATE_PER_MIN, buckets=SHARE_LINKS)  # one limit per link, all instances

    # ------------------------------------------------------------------ owner side (MQTT)
    def handle_create(self, topic_owner: str, topic_sid: str, payload: bytes) -> list[Outgoing]:
        return self.consent._handle_signed(p.ShareCreate, "share_create", topic_owner, topic_sid, payload,
                                           self._create)

    def handle_revoke(self, topic_owner: str, topic_sid: str, payload: bytes) -> list[Outgoing]:
        out = self.consent._handle_signed(p.ShareRevoke, "share_revoke", topic_owner, topic_sid, payload,
                                          self._revoke)
        delete_ended_copies(self.ctx, self.ctx.clock())  # the copies go now, not at the next sweep
        return out

    def _refuse_unless_signed(self, s: Session, owner_id: str, topic_sid: str, msg: p.ShareCreate | p.ShareRevoke,
                              now: float) -> list[Outgoing] | None:
        """The refusal (answered on the nonce) unless the message is for this topic's share and signed
        by one of the owner's active keys; None when it may be applied."""
        if msg.share_id != topic_sid:
            return self.consent._refuse(s, owner_id, msg.nonce, "share_id in the message does not match the topic",
                                        topic_sid)
        _, reason = self.consent._verify_signer(s, msg, owner_id, now)
        return self.consent._refuse(s, owner_id, msg.nonce, reason, topic_sid) if reason else None

    def _create(self, s: Session, owner_id: str, topic_sid: str, msg: p.ShareCreate, now: float) -> list[Outgoing]:
        refused = self._refuse_unless_signed(s, owner_id, topic_sid, msg, now)
        if refused is not None:
            return refused
        ref = msg.nonce
        refuse = self.consent._refuse
        if s.get(Share, msg.share_id) is not None:
            return refuse(s, owner_id, ref, "this share id is already used", topic_sid)
        active = s.execute(select(Share.id).where(Share.owner_id == owner_id, Share.state == "active",
                                                  Share.expires_at > now)).all()
        if len(active) >= MAX_ACTIVE_SHARES_PER_OWNER:
            return refuse(s, owner_id, ref, f"at most {MAX_ACTIVE_SHARES_PER_OWNER} share links may be active; "
                          "revoke some first", topic_sid)
        objects = self._sealed_objects(s, owner_id, msg) if msg.released is not None else self._clear_objects(
            s, owner_id, msg)
        if isinstance(objects, str):
            return refuse(s, owner_id, ref, objects, topic_sid)
        device_id, rows = objects
        days = min(float(msg.days), self.ctx.settings.grant_max_days)
        token = secrets.token_urlsafe(32)
        sh = Share(id=msg.share_id, owner_id=owner_id, token_hash=token_hash(token), clip_id=msg.clip_id,
                   device_id=device_id, sealed=msg.released is not None, recipient=msg.share_recipient,
                   nonce=msg.nonce, created_at=now, expires_at=now + days * 86400, state="active", views=0)
        s.add(sh)
        s.flush()
        for row in rows:
            s.add(ShareObject(share_id=sh.id, copy_key=shared_key(self.ctx.key_prefix, f"share/{sh.id}",
                                                                    _KIND_CODES[row["kind"]]), **row))
        details: dict[str, object] = {"clip_id": msg.clip_id, "days": msg.days, "expires_at": sh.expires_at,
                                      "sealed": sh.sealed, "nonce": msg.nonce, "issued_at": msg.issued_at,
                                      "signed_expires_at": msg.expires_at, "signature": msg.signature}
        if msg.released is not None:  # what the owner signed, so the decision can be re-verified from the log
            details["share_recipient"] = msg.share_recipient
            details["released"] = {k: o.model_dump(mode="json") for k, o in msg.released.items()}
        audit.append(s, kind="share", actor=f"owner:{owner_id}", subject=sh.id, owner_id=owner_id, ts=now,
                     details=details)
        log.info("owner %s shared clip %s by link %s until %.0f", owner_id, msg.clip_id, sh.id, sh.expires_at)
        return [Outgoing(p.result_topic(owner_id, ref),
                         p.Result(ref=ref, ok=True, share_id=sh.id, token=token, expires_at=sh.expires_at).to_json()),
                share_state(sh, now)]

    def _clear_objects(self, s: Session, owner_id: str, msg: p.ShareCreate
                       ) -> tuple[str, list[dict[str, Any]]] | str:
        row = s.execute(select(Clip, Device).join(Device, Device.id == Clip.device_id)
                        .where(Clip.id == msg.clip_id)).first()
        if row is None or row[1].owner_id != owner_id:
            return "no such clip of this owner (a sealed clip is shared with its re-wrapped keys)"
        clip, device = row
        rows: list[dict[str, Any]] = [{"kind": "video", "key": clip.key}]
        if clip.snapshot_key:
            rows.append({"kind": "snapshot", "key": clip.snapshot_key})
        return device.id, rows

    def _sealed_objects(self, s: Session, owner_id: str, msg: p.ShareCreate
                        ) -> tuple[str, list[dict[str, Any]]] | str:
        """The signed objects of one sealed clip of one of this owner's sealing devices, headers checked."""
        from sharing_service.consent import _device_of

        assert msg.released is not None and msg.headers is not None and msg.share_recipient is not None
        devices = {d.id: d for d in s.execute(select(Device).where(Device.owner_id == owner_id)).scalars()}
        device_ids = {_device_of(self.ctx.key_prefix, o.key, devices) for o in msg.released.values()}
        dirs = {o.key.rsplit("/", 1)[0] for o in msg.released.values()}
        if len(device_ids) != 1 or None in device_ids or len(dirs) != 1:
            return "the shared objects are not one sealed clip of one of your devices"
        device_id = device_ids.pop()
        assert device_id is not None
        if devices[device_id].public_key is None:
            return f"device {device_id} is not registered as sealing (no device key)"
        try:
            age.parse_recipient(msg.share_recipient)
        except age.AgeError as exc:
            return f"share_recipient: {exc}"
        rows = []
        for kind, obj in msg.released.items():
            if not obj.key.endswith("/" + SEALED_SUFFIXES[kind]):
                return f"the object named as the {kind} is not a {kind}"
            try:
                header = base64.b64decode(msg.headers[kind], validate=True)
                parsed = age.parse_header(header)
            except (binascii.Error, age.AgeError) as exc:
                return f"the {kind} header is not an age header: {exc}"
            if sha256_hex(header) != obj.header_sha256:
                return f"the {kind} header is not the one the owner signed"
            if len(parsed.stanzas) != 1 or parsed.stanzas[0].type != "X25519":
                return f"the {kind} header must have exactly one X25519 recipient"
            rows.append({"kind": kind, "key": obj.key, "payload_offset": obj.payload_offset,
                         "header": msg.headers[kind], "header_sha256": obj.header_sha256})
        return device_id, rows

    def _revoke(self, s: Session, owner_id: str, topic_sid: str, msg: p.ShareRevoke, now: float) -> list[Outgoing]:
        refused = self._refuse_unless_signed(s, owner_id, topic_sid, msg, now)
        if refused is not None:
            return refused
        ref = msg.nonce
        refuse = self.consent._refuse
        sh = s.get(Share, msg.share_id, with_for_update=True)  # one revoke per share, whichever instance
        if sh is None or sh.owner_id != owner_id:
            return refuse(s, owner_id, ref, "no such share link of this owner", topic_sid)
        if sh.state != "active":
            return refuse(s, owner_id, ref, f"this share link is already {sh.state}", topic_sid)
        sh.state, sh.revoked_at = "revoked", now
        audit.append(s, kind="share_revocation", actor=f"owner:{owner_id}", subject=sh.id, owner_id=owner_id,
                     ts=now, details={"clip_id": sh.clip_id, "nonce": msg.nonce, "signature": msg.signature,
                                      "was_expiring_at": sh.expires_at, "views": sh.views})
        log.info("owner %s revoked share link %s", owner_id, sh.id)
        return [Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=True, share_id=sh.id).to_json()),
                share_state(sh, now)]

    # ------------------------------------------------------------------ viewer side (HTTP)

    def open(self, token: str) -> dict[str, Any]:
        """What a viewer's page needs to fetch, decrypt and check the clip; 404 for anything not live.

        Raises :class:`Refused` (429) beyond the per-token rate."""
        if not isinstance(token, str) or len(token) != 43 or not all(
                c.isalnum() or c in "-_" for c in token):
            raise NotFound("share link")
        th = token_hash(token)
        presigner = self.ctx.presigner
        if presigner is None:
            raise Refused("unavailable", "storage is not configured", 503)
        now = self.ctx.clock()
        with self.ctx.db.read() as s:
            sh = s.execute(select(Share).where(Share.token_hash == th)).scalar_one_or_none()
            if sh is None or sh.state != "active" or sh.expires_at <= now:
                raise NotFound("share link")  # revoked, expired and unknown look the same
            todo = [(o.kind, o.key, o.copy_key) for o in s.execute(
                select(ShareObject).where(ShareObject.share_id == sh.id, ShareObject.copied_at.is_(None))).scalars()]
            share_id = sh.id
        wait = self.limiter.take_key(share_id)
        if wait > 0:
            raise Refused("rate_limited", f"too many requests for this link; try again in {int(wait + 0.999)} s",
                          429)
        copied = []
        for kind, src, dst in todo:  # server-side copies, outside any transaction (as for agencies)
            try:
                presigner.copy_to_shared(src, dst)
                copied.append(kind)
            except Exception as exc:  # botocore's errors: that object is missing from this answer
                log.error("copying the %s of share %s failed: %s", kind, share_id, exc)
        ttl = self.ctx.settings.link_ttl_s
        with self.ctx.db.read() as s:
            sh = s.get(Share, share_id)
            revoked = sh is None or sh.state != "active"
        if revoked:  # revoked while copying: the copies just made go too
            for kind, _src, dst in todo:
                if kind in copied:
                    _delete_quietly(presigner, dst)
            raise NotFound("share link")
        with self.ctx.db.write() as s:
            sh = s.get(Share, share_id)
            if sh is None or sh.state != "active":  # revoked this instant: its revoke deleted the copies
                raise NotFound("share link")
            objs = list(s.execute(select(ShareObject).where(ShareObject.share_id == sh.id)).scalars())
            for o in objs:
                if o.kind in copied:
                    o.copied_at = now
            device = s.get(Device, sh.device_id)
            clip = s.get(Clip, sh.clip_id) if not sh.sealed else None
            sh.views += 1
            sh.last_viewed_at = now
            audit.append(s, kind="share_view", actor="share-link", subject=sh.id, owner_id=sh.owner_id, ts=now,
                         details={"clip_id": sh.clip_id, "view": sh.views, "url_expires_at": now + ttl})
            objects: dict[str, dict[str, Any]] = {}
            for o in objs:
                if o.copied_at is None:
                    continue
                item: dict[str, Any] = {"url": presigner.get_url(o.copy_key, ttl)}
                if sh.sealed:
                    item.update(payload_offset=o.payload_offset, header=o.header, header_sha256=o.header_sha256)
                objects[o.kind] = item
            answer: dict[str, Any] = {"clip_id": sh.clip_id, "sealed": sh.sealed, "expires_at": sh.expires_at,
                                      "url_expires_at": now + ttl, "objects": objects}
            if sh.sealed:
                # the device's key lets the viewer check the device-signed manifest without trusting us
                answer["device_key"] = device.public_key if device is not None else None
            elif clip is not None:
                answer["sha256"] = clip.sha256
                answer["size"] = clip.size
            return answer


def list_shares(ctx: ServiceContext, owner_id: str, q: p.SharesParams) -> p.ShareList:
    """The owner's share links, newest first (the ``shares`` RPC)."""
    now = ctx.clock()
    with ctx.db.read() as s:
        rows = s.execute(select(Share).where(Share.owner_id == owner_id).order_by(Share.created_at.desc())
                         .limit(q.limit)).scalars().all()
        return p.ShareList(shares=[p.ShareInfo(
            share_id=sh.id, clip_id=sh.clip_id, sealed=sh.sealed, created_at=sh.created_at,
            expires_at=sh.expires_at, revoked_at=sh.revoked_at, views=sh.views, last_viewed_at=sh.last_viewed_at,
            state="expired" if sh.state == "active" and sh.expires_at <= now else sh.state,
        ) for sh in rows])


def sweep_shares(ctx: ServiceContext, now: float) -> int:
    """End lapsed shares (audited, retained state updated) and delete ended shares' copies."""
    out: list[Outgoing] = []
    with ctx.db.write() as s:
        # claimed with SKIP LOCKED as the sweeper's other rows: several instances never expire one twice
        lapsed = s.execute(select(Share).where(Share.state == "active", Share.expires_at <= now)
                           .limit(1000).with_for_update(skip_locked=True)).scalars().all()
        for sh in lapsed:
            sh.state = "expired"
            audit.append(s, kind="share_expiry", actor="service", subject=sh.id, owner_id=sh.owner_id, ts=now,
                         details={"clip_id": sh.clip_id, "expired_at": sh.expires_at, "views": sh.views})
            out.append(share_state(sh, now))
    ctx.outbox.emit(out)
    delete_ended_copies(ctx, now)
    return len(lapsed)


def delete_ended_copies(ctx: ServiceContext, now: float) -> int:
    """Delete the copies of revoked or expired shares; a failed delete is tried again next sweep."""
    presigner = ctx.presigner
    if presigner is None:
        return 0
    with ctx.db.read() as s:
        rows = s.execute(select(ShareObject.share_id, ShareObject.kind, ShareObject.copy_key)
                         .join(Share, Share.id == ShareObject.share_id)
                         .where(ShareObject.copied_at.is_not(None), ShareObject.deleted_at.is_(None),
                                (Share.state != "active") | (Share.expires_at <= now)).limit(1000)).all()
    done = [(sid, kind) for sid, kind, key in rows if _delete_quietly(presigner, key)]
    if done:
        with ctx.db.write() as s:
            for sid, kind in done:
                o = s.get(ShareObject, (sid, kind))
                if o is not None:
                    o.deleted_at = now
        log.info("deleted %d cop(ies) of ended share links", len(done))
    return len(done)


def _delete_quietly(presigner: Presigner, key: str) -> bool:
    """Delete one copy (a missing one is fine: S3 answers 204); False and a log line if storage fails."""
    try:
        presigner.delete(key)
        return True
    except Exception as exc:  # botocore's errors: retried at the next sweep
        log.warning("deleting share copy %s failed (retried next sweep): %s", key, exc)
        return False
