"""The owner's signed consent: decisions become grants, revokes end them.

Every signed owner message shares one envelope (:meth:`Consent._handle_signed`):
decode or refuse, apply in one transaction, refuse a nonce that raced in twice,
then publish the verdict on ``owners/{o}/results/{nonce}`` after the commit.

Several instances: the nonce row (unique key) is inserted in the transaction
that applies the message, together with the verdict (``nonces.result``) and a
digest of the signature. The owner's app sends an unanswered message again
(same nonce: an instance may have died between commit and answer, or with the
message unacknowledged); the identical message is then answered with the stored
verdict and never applied twice. Two instances applying the same nonce at once
are serialised by the unique key: the loser's transaction fails with
IntegrityError and it answers with the winner's verdict. The rows a decision or
revoke changes (request target, grant) are locked ``FOR UPDATE``, so two
*different* signed messages about one request (two of the owner's devices)
cannot both apply.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from doorbell.core import linking
from doorbell.core import protocol as p
from doorbell.core.age import AgeError
from doorbell.core.bucket import SEALED_SUFFIXES, device_prefix
from doorbell.core.release import ReleaseError, check_headers
from doorbell.core.signing import SignatureError, verify
from sharing_service import audit, enrolment
from sharing_service.context import Outgoing, ServiceContext
from sharing_service.models import (
    Agency,
    Device,
    Grant,
    GrantClip,
    Nonce,
    Owner,
    ReleasedObject,
    Request,
    RequestClip,
    RequestTarget,
)

log = logging.getLogger(__name__)

S = TypeVar("S", bound=p.SignedMessage)
# Built once and run on the session's connection (Core: no ORM bulk path, no expression building
# per message). The rows they write reference nothing the session still holds unflushed.
_INSERT_NONCE = insert(Nonce)
_STORE_RESULT = (update(Nonce).where(Nonce.nonce == bindparam("n"), Nonce.result.is_(None),
                                     Nonce.sig_sha256 == bindparam("sig")).values(result=bindparam("answer")))
_INSERT_GRANT = insert(Grant)
_INSERT_GRANT_CLIPS = insert(GrantClip)
_OFFERED = select(RequestClip.clip_id).where(RequestClip.request_id == bindparam("rid"),
                                             RequestClip.owner_id == bindparam("owner"))
# Session.info key: the nonce this transaction looked up and found unused (see Consent._verify_signer)
_NONCE_ABSENT = "consent.nonce_absent"
ClosedState = Literal["approved", "denied", "expired", "withdrawn"]


def closed_message(rid: str, owner_id: str, state: ClosedState) -> Outgoing:
    """Replaces an owner's retained request once it is decided or expired."""
    return Outgoing(p.request_topic(owner_id, rid),
                    p.RequestClosed(request_id=rid, owner_id=owner_id, state=state).to_json(), retain=True)


def grant_clip_ids(s: Session, grant_id: str) -> list[str]:
    """The clips a grant shares: indexed clear clips, or the sealed clips whose keys it released."""
    clear = s.execute(select(GrantClip.clip_id).where(GrantClip.grant_id == grant_id)).scalars()
    sealed = s.execute(select(ReleasedObject.clip_id).where(ReleasedObject.grant_id == grant_id).distinct()).scalars()
    return sorted({*clear, *sealed})


def grant_state_message(s: Session, g: Grant) -> Outgoing:
    """The retained state of one grant, for the owner's app."""
    req = s.get(Request, g.request_id)
    agency = s.get(Agency, g.agency_id)
    clip_ids = grant_clip_ids(s, g.id)
    msg = p.GrantState(grant_id=g.id, request_id=g.request_id, owner_id=g.owner_id,
                       agency=agency.name if agency else "?", case_number=req.case_number if req else "?",
                       clip_ids=clip_ids, created_at=g.created_at, expires_at=g.expires_at,
                       state=g.state)
    return Outgoing(p.grant_topic(g.owner_id, g.id), msg.to_json(), retain=True)


class Consent:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def handle_decision(self, topic_owner: str, topic_rid: str, payload: bytes) -> list[Outgoing]:
        """Verify a signed decision and turn an approval into a grant."""
        return self._handle_signed(p.Decision, "decision", topic_owner, topic_rid, payload, self._decide)

    def handle_revoke(self, topic_owner: str, topic_gid: str, payload: bytes) -> list[Outgoing]:
        """A signed revoke ends a grant at once: the next link or download fails."""
        return self._handle_signed(p.Revoke, "revoke", topic_owner, topic_gid, payload, self._revoke)

    def refuse_retained(self, topic: str, payload: bytes) -> list[Outgoing]:
        """A retained decision or revoke is never applied (it would be replayed to the service at
        every reconnect); the owner is answered, on its nonce's result topic when it has one."""
        log.warning("ignoring retained owner message on %s (decisions must be live)", topic)
        try:
            t = p.parse_topic(topic)
        except p.ProtocolError:
            return []
        if t.kind not in ("decision", "revoke") or not t.owner_id or not t.name:
            return []
        ref = t.name
        try:
            ref = p.decode(p.Decision if t.kind == "decision" else p.Revoke, payload, t.kind).nonce
        except p.ProtocolError:
            pass
        out = self._refuse(None, t.owner_id, ref, "not applied: decisions and revokes must be sent live, "
                           "not as retained messages", t.name)
        self.ctx.outbox.emit(out)
        return out

    def _refuse(self, s: Session | None, owner_id: str, ref: str, reason: str, subject: str) -> list[Outgoing]:
        log.warning("refused message from owner %s (%s): %s", owner_id, subject, reason)
        if s is not None and s.get(Owner, owner_id) is not None:
            audit.append(s, kind="refusal", actor=f"owner:{owner_id}", subject=subject, owner_id=owner_id,
                         details={"reason": reason, "ref": ref}, ts=self.ctx.clock())
        return [Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=False, reason=reason[:2000]).to_json())]

    def _verify_signed(self, s: Session, msg: p.SignedMessage, topic_owner: str, now: float) -> str | None:
        """Signature, validity and replay checks; returns a refusal reason or None."""
        return self._verify_signer(s, msg, topic_owner, now)[1]

    def _verify_signer(self, s: Session, msg: p.SignedMessage, topic_owner: str, now: float
                       ) -> tuple[str | None, str | None]:
        """``(key_id, None)`` for the owner's active key that signed ``msg``, else ``(None, reason)``.

        Any of the owner's active keys may sign: the enrolled one and linked ones
        (sharing_service.enrolment); the linked ones are only looked up when the
        enrolled one does not verify (one query less for the common case).
        When this transaction already found no row for ``msg.nonce`` (:meth:`_handle_signed`
        looks first and notes it in ``s.info``), the replay lookup is not repeated; the nonce
        is inserted here either way, and its unique key refuses a racing twin.
        """
        if msg.owner_id != topic_owner:
            return None, "owner_id in the message does not match the topic"
        owner = s.get(Owner, topic_owner)
        if owner is None:
            return None, "unknown owner"
        signer, first_error = None, None
        for kid, public_key in _signing_keys(s, owner):
            try:
                verify(msg, public_key, now=now, max_age_s=self.ctx.settings.decision_max_age_s)
            except SignatureError as exc:
                first_error = first_error or str(exc)
                continue
            signer = kid
            break
        if signer is None:
            return None, first_error or "signature does not verify"
        if s.info.get(_NONCE_ABSENT) != msg.nonce and s.get(Nonce, msg.nonce) is not None:
            return None, "replayed message (nonce already used)"
        s.connection().execute(_INSERT_NONCE, {"nonce": msg.nonce, "owner_id": topic_owner, "seen_at": now,
                                               "expires_at": float(msg.expires_at), "sig_sha256": _sig_digest(msg)})
        return signer, None

    def _handle_signed(self, model: type[S], kind: str, topic_owner: str, topic_ref: str, payload: bytes,
                       apply: Callable[[Session, str, str, S, float], list[Outgoing]]) -> list[Outgoing]:
        """Decode; then in one transaction answer a resend from its stored verdict, or apply and
        store the verdict (the nonce lookup is shared with :meth:`_verify_signer`)."""
        now = self.ctx.clock()
        try:
            msg = p.decode(model, payload, kind)
        except p.ProtocolError as exc:
            with self.ctx.db.write() as s:
                out = self._refuse(s, topic_owner, topic_ref, str(exc), topic_ref)
            self.ctx.outbox.emit(out)
            return out
        try:
            with self.ctx.db.write() as s:
                row = s.get(Nonce, msg.nonce)
                stored = None if row is None else _stored_answer(row, topic_owner, msg)
                if stored is not None:  # the same signed message again: answer it again, apply nothing
                    out = stored
                else:
                    if row is None:
                        s.info[_NONCE_ABSENT] = msg.nonce
                    out = apply(s, topic_owner, topic_ref, msg, now)
                    self._store_answer(s, topic_owner, msg, out)
        except IntegrityError:  # the same nonce raced in twice (another instance, or a resend)
            with self.ctx.db.read() as s:
                row = s.get(Nonce, msg.nonce)
                stored = None if row is None else _stored_answer(row, topic_owner, msg)
            if stored is not None:
                out = stored
            else:
                with self.ctx.db.write() as s:
                    out = self._refuse(s, topic_owner, msg.nonce, "replayed message (nonce already used)",
                                       topic_ref)
        except Exception:  # rolled back: the owner must hear that it was not applied, not nothing
            log.exception("applying %s %s from owner %s failed; rolled back", kind, topic_ref, topic_owner)
            out = self._refuse(None, topic_owner, msg.nonce, "not applied: internal error at the sharing service "
                               "(logged); nothing changed, you may send it again", topic_ref)
        self.ctx.outbox.emit(out)
        return out

    @staticmethod
    def _store_answer(s: Session, owner_id: str, msg: p.SignedMessage, out: list[Outgoing]) -> None:
        """Keep the verdict with the nonce this transaction inserted (not with an older one it refused)."""
        topic = p.result_topic(owner_id, msg.nonce)
        answer = next((o.payload for o in out if o.topic == topic), None)
        if answer is not None:
            if b'"token"' in answer:  # a share link's token is shown once and stored only as a hash
                verdict = p.decode(p.Result, answer, "result")  # (sharing_service.shares): not here
                answer = verdict.model_copy(update={"token": None}).to_json() if verdict.token else answer
            s.connection().execute(_STORE_RESULT, {"n": msg.nonce, "sig": _sig_digest(msg), "answer": answer.decode()})

    def _decide(self, s: Session, owner_id: str, topic_rid: str, msg: p.Decision, now: float) -> list[Outgoing]:
        ref = msg.nonce
        if msg.request_id != topic_rid:
            return self._refuse(s, owner_id, ref, "request_id in the message does not match the topic", topic_rid)
        reason = self._verify_signed(s, msg, owner_id, now)
        if reason:
            return self._refuse(s, owner_id, ref, reason, topic_rid)
        # the target row is locked: another instance's decision (or the sweeper's expiry) on it waits
        # for us; its request and agency come in the same statement (one round trip, not three)
        found = s.execute(select(RequestTarget, Request, Agency)
                          .join(Request, Request.id == RequestTarget.request_id)
                          .outerjoin(Agency, Agency.id == Request.agency_id)
                          .where(RequestTarget.request_id == msg.request_id, RequestTarget.owner_id == owner_id)
                          .with_for_update(of=RequestTarget)
                          .execution_options(populate_existing=True)).one_or_none()
        if found is None:
            return self._refuse(s, owner_id, ref, "no such request for this owner", topic_rid)
        target, req, agency = found
        if target.state != "pending" or now >= req.expires_at:
            state = target.state if target.state != "pending" else "expired"
            return self._refuse(s, owner_id, ref, f"request is no longer pending ({state})", topic_rid)
        agency_name = agency.name if agency else "?"
        out: list[Outgoing] = []
        if msg.decision == "deny":
            target.state, target.decided_at = "denied", now
            audit.append(s, kind="decision", actor=f"owner:{owner_id}", subject=req.id, owner_id=owner_id, ts=now,
                         details={"decision": "deny", "nonce": msg.nonce, "signature": msg.signature})
            out.append(Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=True).to_json()))
            out.append(closed_message(req.id, owner_id, "denied"))
            log.info("owner %s denied request %s", owner_id, req.id)
            return out
        released: list[dict[str, object]] = []
        if msg.released is not None:
            checked = self._check_release(s, owner_id, msg, agency)
            if isinstance(checked, str):
                return self._refuse(s, owner_id, ref, checked, topic_rid)
            released = checked
        else:
            offered = set(s.connection().execute(_OFFERED, {"rid": req.id, "owner": owner_id}).scalars())
            outside = [c for c in msg.clip_ids if c not in offered]
            if outside:
                return self._refuse(s, owner_id, ref, "clip ids not offered in this request: "
                                    + ", ".join(outside[:10]), topic_rid)
        days = min(float(msg.grant_days), self.ctx.settings.grant_max_days)
        gid = p.new_token()
        expires = now + days * 86400
        conn = s.connection()
        conn.execute(_INSERT_GRANT, {"id": gid, "request_id": req.id, "owner_id": owner_id, "agency_id": req.agency_id,
                                     "decision_nonce": msg.nonce, "created_at": now, "expires_at": expires,
                                     "state": "active", "revoked_at": None})
        if released:
            s.execute(insert(ReleasedObject), [{**r, "grant_id": gid} for r in released])
        else:
            conn.execute(_INSERT_GRANT_CLIPS, [{"grant_id": gid, "clip_id": c} for c in msg.clip_ids])
        target.state, target.decided_at = "approved", now
        details: dict[str, object] = {
            "decision": "approve", "clip_ids": list(msg.clip_ids), "grant_days": msg.grant_days, "nonce": msg.nonce,
            "issued_at": msg.issued_at, "expires_at": msg.expires_at, "signature": msg.signature}
        if msg.released is not None:  # what the owner signed, so anyone can re-verify the decision from the log
            details["agency_recipient"] = msg.agency_recipient
            details["released"] = {c: {k: o.model_dump(mode="json") for k, o in objs.items()}
                                   for c, objs in msg.released.items()}
        # the decision and its grant: two consecutive rows, one head read and update (audit.append_many)
        audit.append_many(s, [
            {"kind": "decision", "actor": f"owner:{owner_id}", "subject": req.id, "owner_id": owner_id, "ts": now,
             "details": details},
            {"kind": "grant", "actor": "service", "subject": gid, "owner_id": owner_id, "ts": now,
             "details": {"request_id": req.id, "agency": agency_name, "clip_ids": list(msg.clip_ids),
                         "expires_at": expires}}])
        out.append(Outgoing(p.result_topic(owner_id, ref),
                            p.Result(ref=ref, ok=True, grant_id=gid, expires_at=expires).to_json()))
        out.append(Outgoing(p.grant_topic(owner_id, gid), p.GrantState(
            grant_id=gid, request_id=req.id, owner_id=owner_id, agency=agency_name, case_number=req.case_number,
            clip_ids=list(msg.clip_ids), created_at=now, expires_at=expires, state="active").to_json(), retain=True))
        out.append(closed_message(req.id, owner_id, "approved"))
        log.info("owner %s approved %d clip(s) for request %s: grant %s until %.0f",
                 owner_id, len(msg.clip_ids), req.id, gid, expires)
        return out

    def _check_release(self, s: Session, owner_id: str, msg: p.Decision,
                       agency: Agency | None) -> list[dict[str, object]] | str:
        """Rows to store for a signed release of sealed clips, or the reason it is refused.

        The service cannot check which clips a request's window covers (it knows
        none of them: rule 9); it checks what it can: the keys go to the agency's
        registered recipient, each header is the one the owner signed, and every
        object lies under one device of this owner that is registered as sealing.
        """
        if agency is None or agency.age_recipient is None:
            return "this agency has no registered age recipient; keys cannot be released to it"
        if msg.agency_recipient != agency.age_recipient:
            return "the keys are addressed to another recipient than the agency's registered one"
        try:
            headers = check_headers(msg)
        except (ReleaseError, AgeError) as exc:
            return str(exc)
        devices = {d.id: d for d in s.execute(select(Device).where(Device.owner_id == owner_id)).scalars()}
        rows: list[dict[str, object]] = []
        assert msg.released is not None
        for clip_id, objects in msg.released.items():
            device_ids = {_device_of(self.ctx.key_prefix, o.key, devices) for o in objects.values()}
            dirs = {o.key.rsplit("/", 1)[0] for o in objects.values()}
            if len(device_ids) != 1 or None in device_ids or len(dirs) != 1:
                return f"clip {clip_id}: its objects are not one sealed clip of one of your devices"
            device_id = device_ids.pop()
            assert device_id is not None
            if devices[device_id].public_key is None:
                return f"clip {clip_id}: device {device_id} is not registered as sealing (no device key)"
            for kind, o in objects.items():
                if not o.key.endswith("/" + SEALED_SUFFIXES[kind]):
                    return f"clip {clip_id}: the object named as its {kind} is not a {kind}"
                rows.append({"clip_id": clip_id, "kind": kind, "device_id": device_id, "key": o.key,
                             "payload_offset": o.payload_offset,
                             "header": base64.b64encode(headers[clip_id][kind]).decode(),
                             "header_sha256": o.header_sha256})
        return rows

    def _revoke(self, s: Session, owner_id: str, topic_gid: str, msg: p.Revoke, now: float) -> list[Outgoing]:
        ref = msg.nonce
        if msg.grant_id != topic_gid:
            return self._refuse(s, owner_id, ref, "grant_id in the message does not match the topic", topic_gid)
        reason = self._verify_signed(s, msg, owner_id, now)
        if reason:
            return self._refuse(s, owner_id, ref, reason, topic_gid)
        grant = s.get(Grant, msg.grant_id, with_for_update=True)  # one revoke per grant, whichever instance
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
                grant_state_message(s, grant)]


def _stored_answer(row: Nonce, owner_id: str, msg: p.SignedMessage) -> list[Outgoing] | None:
    """The verdict already given to this very message (same nonce, same signature), if any."""
    if row.result is None or row.owner_id != owner_id or row.sig_sha256 != _sig_digest(msg):
        return None
    log.info("owner %s sent message %s again: answered with the stored verdict", owner_id, msg.nonce)
    try:
        verdict = p.decode(p.Result, row.result.encode(), "result")
    except p.ProtocolError:
        return None
    # the replay itself is refused (nothing is applied again); the verdict it gets is the first one's
    note = "replayed message (nonce already used): not applied again; this is the answer it got first"
    verdict = verdict.model_copy(update={"reason": f"{note}: {verdict.reason}" if verdict.reason else note})
    return [Outgoing(p.result_topic(owner_id, msg.nonce), verdict.to_json())]


def _signing_keys(s: Session, owner: Owner) -> Iterator[tuple[str, str]]:
    """The owner's enrolled key, then (looked up only if asked for) the linked ones."""
    yield linking.key_id(owner.public_key), owner.public_key
    yield from enrolment.signing_keys(s, owner)[1:]


def _sig_digest(msg: p.SignedMessage) -> str:
    return hashlib.sha256(msg.signature.encode()).hexdigest()


def _device_of(prefix: str, key: str, devices: dict[str, Device]) -> str | None:
    """The device whose sealed-object tree holds ``key`` ({prefix}{device}/o/{object_id}/{x}), or None."""
    for device_id in devices:
        own = device_prefix(prefix, device_id) + "o/"
        rest = key[len(own):] if key.startswith(own) else ""
        if re.fullmatch(r"[0-9a-f]{32}/[a-z]", rest):
            return device_id
    return None
