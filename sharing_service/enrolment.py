"""Linked devices on the service side: the owner-keys table and the enrol/unlink handlers.

An owner's first key is the one the operator enrolled (``owners.public_key``).
Further keys (a browser, a second computer) are added by an :class:`Enrol`
signed with a key that is already active, and revoked by an :class:`Unlink`
signed by any active key. :func:`signing_keys` is what the consent checks
verify against: a decision or revoke is accepted from any active key.
See doorbell/core/linking.py for the pairing protocol and docs/owner-app.md.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from doorbell.core import linking
from doorbell.core import protocol as p
from doorbell.core.age import parse_recipient
from doorbell.core.errors import DoorbellError
from sharing_service import audit
from sharing_service.context import Outgoing
from sharing_service.models import Base, Owner

if TYPE_CHECKING:
    from sharing_service.consent import Consent

log = logging.getLogger(__name__)

MAX_KEYS_PER_OWNER = 20


class OwnerKey(Base):
    """One linked key of an owner: it may sign decisions, revokes, enrols and unlinks while active."""

    __tablename__ = "owner_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), nullable=False)
    public_key: Mapped[str] = mapped_column(String(100), nullable=False)
    x25519: Mapped[str] = mapped_column(String(100), nullable=False)
    label: Mapped[str] = mapped_column(String(250), nullable=False)
    enrolled_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # active/revoked
    revoked_at: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_owner_keys_owner", "owner_id"),)


def signing_keys(s: Session, owner: Owner) -> list[tuple[str, str]]:
    """``[(key_id, public_key), ...]`` that may sign for ``owner``: the enrolled one first, then linked ones."""
    keys = [(linking.key_id(owner.public_key), owner.public_key)]
    rows = s.execute(select(OwnerKey.key_id, OwnerKey.public_key).where(
        OwnerKey.owner_id == owner.id, OwnerKey.state == "active").order_by(OwnerKey.created_at)).all()
    return keys + [(r[0], r[1]) for r in rows]


def key_state(k: OwnerKey) -> Outgoing:
    msg = linking.KeyState(key_id=k.key_id, owner_id=k.owner_id, public_key=k.public_key, x25519=k.x25519,
                           label=k.label, created_at=k.created_at, enrolled_by=k.enrolled_by,
                           state=k.state, revoked_at=k.revoked_at)
    return Outgoing(p.key_topic(k.owner_id, k.key_id), msg.to_json(), retain=True)


class Enrolment:
    """The enrol/unlink handlers, on top of the consent module's signed-message envelope."""

    def __init__(self, consent: "Consent"):
        self.core = consent

    def handle(self, kind: str, owner_id: str, kid: str, payload: bytes) -> list[Outgoing]:
        if kind == "enrol":
            return self.core._handle_signed(linking.Enrol, "enrol", owner_id, kid, payload, self._enrol)
        return self.core._handle_signed(linking.Unlink, "unlink", owner_id, kid, payload, self._unlink)

    def _enrol(self, s: Session, owner_id: str, kid: str, msg: linking.Enrol, now: float) -> list[Outgoing]:
        ref = msg.nonce
        if msg.key_id != kid or linking.key_id(msg.public_key) != kid:
            return self.core._refuse(s, owner_id, ref, "key_id does not match the topic and the public key", kid)
        try:
            parse_recipient(msg.x25519)
        except (DoorbellError, ValueError) as exc:
            return self.core._refuse(s, owner_id, ref, f"x25519 is not an age recipient: {exc}", kid)
        signer, reason = self.core._verify_signer(s, msg, owner_id, now)
        if reason:
            return self.core._refuse(s, owner_id, ref, reason, kid)
        owner = s.get(Owner, owner_id)
        if owner is None or msg.public_key == owner.public_key or s.get(OwnerKey, kid) is not None:
            return self.core._refuse(s, owner_id, ref, "this key is already linked (or was unlinked: make a new one)",
                                     kid)
        count = len(signing_keys(s, owner))
        if count > MAX_KEYS_PER_OWNER:
            return self.core._refuse(s, owner_id, ref, f"at most {MAX_KEYS_PER_OWNER} linked keys", kid)
        k = OwnerKey(key_id=kid, owner_id=owner_id, public_key=msg.public_key, x25519=msg.x25519,
                     label=msg.label, enrolled_by=signer or "?", created_at=now, state="active")
        s.add(k)
        audit.append(s, kind="key_enrolled", actor=f"owner:{owner_id}", subject=kid, owner_id=owner_id, ts=now,
                     details={"public_key": msg.public_key, "x25519": msg.x25519, "label": msg.label,
                              "enrolled_by": k.enrolled_by, "nonce": msg.nonce, "signature": msg.signature})
        log.info("owner %s linked key %s (%s), vouched for by %s", owner_id, kid, msg.label, k.enrolled_by)
        return [Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=True).to_json()), key_state(k)]

    def _unlink(self, s: Session, owner_id: str, kid: str, msg: linking.Unlink, now: float) -> list[Outgoing]:
        ref = msg.nonce
        if msg.key_id != kid:
            return self.core._refuse(s, owner_id, ref, "key_id in the message does not match the topic", kid)
        signer, reason = self.core._verify_signer(s, msg, owner_id, now)
        if reason:
            return self.core._refuse(s, owner_id, ref, reason, kid)
        k = s.get(OwnerKey, kid)
        if k is None or k.owner_id != owner_id:
            return self.core._refuse(s, owner_id, ref, "no such linked key for this owner", kid)
        if k.state != "active":
            return self.core._refuse(s, owner_id, ref, f"key is already {k.state}", kid)
        k.state, k.revoked_at = "revoked", now
        audit.append(s, kind="key_unlinked", actor=f"owner:{owner_id}", subject=kid, owner_id=owner_id, ts=now,
                     details={"label": k.label, "unlinked_by": signer or "?", "nonce": msg.nonce,
                              "signature": msg.signature})
        log.info("owner %s unlinked key %s (%s)", owner_id, kid, k.label)
        return [Outgoing(p.result_topic(owner_id, ref), p.Result(ref=ref, ok=True).to_json()), key_state(k)]


def list_keys(s: Session, owner_id: str) -> list[dict[str, Any]]:
    rows = s.execute(select(OwnerKey).where(OwnerKey.owner_id == owner_id).order_by(OwnerKey.created_at)).scalars()
    return [{"key_id": k.key_id, "label": k.label, "state": k.state, "created_at": k.created_at,
             "revoked_at": k.revoked_at} for k in rows]
