"""The operator's role: enrol owners, devices and agencies, rotate keys, check the audit chain."""
from __future__ import annotations

import re
import secrets

from sqlalchemy import func, select

from doorbell.core import protocol as p
from doorbell.core.age import AgeError, parse_recipient
from doorbell.core.signing import SignatureError, parse_public_key
from doorbell.core.text import refusal as text_refusal
from sharing_service import audit
from sharing_service.context import COORD_DECIMALS, NotFound, Refused, ServiceContext, hash_secret
from sharing_service.models import Agency, Device, Owner

Row = dict[str, object]


class Registry:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def add_owner(self, owner_id: str, public_key: str) -> None:
        if not re.match(p.ID_PATTERN, owner_id or ""):
            raise Refused("invalid_field", f"owner id must match {p.ID_PATTERN}")
        try:
            parse_public_key(public_key)
        except SignatureError as exc:
            raise Refused("invalid_field", str(exc)) from None
        with self.ctx.db.write() as s:
            if s.get(Owner, owner_id):
                raise Refused("exists", f"owner {owner_id} already exists", 409)
            s.add(Owner(id=owner_id, public_key=public_key, created_at=self.ctx.clock()))

    def set_owner_key(self, owner_id: str, public_key: str) -> None:
        """Key rotation: later decisions must verify under the new key."""
        try:
            parse_public_key(public_key)
        except SignatureError as exc:
            raise Refused("invalid_field", str(exc)) from None
        with self.ctx.db.write() as s:
            owner = s.get(Owner, owner_id)
            if owner is None:
                raise NotFound("owner")
            owner.public_key = public_key
            audit.append(s, kind="owner_key", actor="admin", subject=owner_id, owner_id=owner_id,
                         details={"public_key": public_key}, ts=self.ctx.clock())

    def add_device(self, device_id: str, owner_id: str, lat: float, lon: float, public_key: str | None = None) -> None:
        """Enrol a device; ``public_key`` (its manifest key from device-keys.json) marks a device that seals."""
        if not re.match(p.ID_PATTERN, device_id or ""):
            raise Refused("invalid_field", f"device id must match {p.ID_PATTERN}")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise Refused("invalid_field", "latitude must be in [-90, 90] and longitude in [-180, 180]")
        if public_key is not None:
            try:
                parse_public_key(public_key)
            except SignatureError as exc:
                raise Refused("invalid_field", f"device key: {exc}") from None
        with self.ctx.db.write() as s:
            if s.get(Owner, owner_id) is None:
                raise NotFound("owner")
            if s.get(Device, device_id):
                raise Refused("exists", f"device {device_id} already exists", 409)
            s.add(Device(id=device_id, owner_id=owner_id, lat=round(lat, COORD_DECIMALS),
                         lon=round(lon, COORD_DECIMALS), created_at=self.ctx.clock(), public_key=public_key))

    def set_device_key(self, device_id: str, public_key: str) -> None:
        """Register (or rotate) a device's manifest key; audited under its owner."""
        try:
            parse_public_key(public_key)
        except SignatureError as exc:
            raise Refused("invalid_field", f"device key: {exc}") from None
        with self.ctx.db.write() as s:
            device = s.get(Device, device_id)
            if device is None:
                raise NotFound("device")
            device.public_key = public_key
            audit.append(s, kind="device_key", actor="admin", subject=device_id, owner_id=device.owner_id,
                         details={"public_key": public_key}, ts=self.ctx.clock())

    def add_agency(self, name: str, rate_per_min: int | None = None,
                   age_recipient: str | None = None) -> tuple[int, str]:
        """Enrol an agency; returns (id, API key). Only the key's SHA-256 is stored.

        ``age_recipient`` (from ``doorbell agency keys init``) is where approvals of
        sealed clips re-wrap their keys; without one, owners of sealed devices are not asked.
        """
        name = (name or "").strip()
        if not 1 <= len(name) <= 200:
            raise Refused("invalid_field", "agency name must be 1-200 characters")
        why = text_refusal(name)
        if why:  # owners read the name in every request
            raise Refused("invalid_field", f"agency name {why}")
        recipient = _check_recipient(age_recipient) if age_recipient is not None else None
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.ctx.db.write() as s:
            if s.execute(select(Agency).where(Agency.name == name)).scalar_one_or_none():
                raise Refused("exists", f"agency {name!r} already exists", 409)
            agency = Agency(name=name, key_id=key_id, key_hash=hash_secret(secret),
                            rate_per_min=rate_per_min, disabled=False, created_at=self.ctx.clock(),
                            age_recipient=recipient)
            s.add(agency)
            s.flush()
            agency_id = agency.id
        return agency_id, f"dbk_{key_id}_{secret}"

    def set_agency_recipient(self, name: str, age_recipient: str) -> None:
        """Register or rotate an agency's age recipient (later approvals are addressed to it); audited."""
        recipient = _check_recipient(age_recipient)
        with self.ctx.db.write() as s:
            agency = s.execute(select(Agency).where(Agency.name == name)).scalar_one_or_none()
            if agency is None:
                raise NotFound("agency")
            agency.age_recipient = recipient
            audit.append(s, kind="agency_key", actor="admin", subject=name, details={"age_recipient": recipient},
                         ts=self.ctx.clock())

    def set_agency_disabled(self, name: str, disabled: bool) -> None:
        with self.ctx.db.write() as s:
            agency = s.execute(select(Agency).where(Agency.name == name)).scalar_one_or_none()
            if agency is None:
                raise NotFound("agency")
            agency.disabled = disabled

    def list_owners(self) -> list[Row]:
        with self.ctx.db.read() as s:
            counts = dict(s.execute(select(Device.owner_id, func.count()).group_by(Device.owner_id)).all())
            return [{"id": o.id, "public_key": o.public_key, "devices": counts.get(o.id, 0),
                     "created_at": o.created_at}
                    for o in s.execute(select(Owner).order_by(Owner.id)).scalars()]

    def list_devices(self, owner_id: str | None = None) -> list[Row]:
        with self.ctx.db.read() as s:
            q = select(Device).order_by(Device.id)
            if owner_id:
                q = q.where(Device.owner_id == owner_id)
            return [{"id": d.id, "owner_id": d.owner_id, "lat": d.lat, "lon": d.lon, "public_key": d.public_key}
                    for d in s.execute(q).scalars()]

    def list_agencies(self) -> list[Row]:
        with self.ctx.db.read() as s:
            return [{"id": a.id, "name": a.name, "key_id": a.key_id, "rate_per_min": a.rate_per_min,
                     "disabled": a.disabled, "created_at": a.created_at, "age_recipient": a.age_recipient}
                    for a in s.execute(select(Agency).order_by(Agency.id)).scalars()]

    def verify_audit(self) -> dict[str, object]:
        """Recompute the whole chain (and, since 0003, every owner's own chain)."""
        with self.ctx.db.read() as s:
            return audit.verify_chain(s).as_dict()


def _check_recipient(text: str) -> str:
    try:
        return str(parse_recipient(text.strip()))
    except AgeError as exc:
        raise Refused("invalid_field", f"age recipient: {exc}") from None
