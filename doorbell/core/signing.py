"""Owner consent as cryptography: Ed25519 signatures over a canonical encoding.

A decision or revoke is signed over ``DOMAIN + b"\\n" + canonical_json(fields)``
where ``fields`` is every field of the message except ``signature``, serialised
with sorted keys, no whitespace, UTF-8 and integers for times. The domain string
separates decisions from revokes, so one can never be replayed as the other.
Test vectors live in ``tests/vectors/signing_v1.json``.

Devices sign too (clip manifests, doorbell.core.manifest), with their own
Ed25519 key created at provisioning and their own domain strings
(``DEVICE_DOMAINS``): a device signature can never pass as an owner's consent,
nor the reverse. ``device_signing_bytes``, ``sign_device_fields`` and
``verify_device_fields`` are the device side; ``ensure_device_key`` creates or
loads the key file.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from doorbell.core.errors import DoorbellError
from doorbell.core.protocol import Decision, ReleasedObject, Revoke, ShareCreate, ShareRevoke, SignedMessage

DOMAINS = {"decision": b"doorbell/v1/decision", "revoke": b"doorbell/v1/revoke",
           # linked devices (doorbell.core.linking)
           "enrol": b"doorbell/v1/enrol", "unlink": b"doorbell/v1/unlink",
           # share links (sharing_service.shares)
           "share": b"doorbell/v1/share", "unshare": b"doorbell/v1/unshare"}
DEVICE_DOMAINS = {"clip_manifest": b"doorbell/v1/device/clip-manifest"}
PUBLIC_KEY_PREFIX = "ed25519:"
DEFAULT_VALIDITY_S = 600
UNSIGNED_WHEN_ABSENT = ("agency_recipient", "released", "share_recipient")

S = TypeVar("S", bound=SignedMessage)


class SignatureError(DoorbellError, ValueError):
    """The signature or its envelope (key, expiry) is not acceptable."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(fields: dict[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8; floats are refused."""
    def check(value: Any) -> None:
        if isinstance(value, float):
            raise TypeError("canonical encoding takes no floats (use integers)")
        if isinstance(value, dict):
            for v in value.values():
                check(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                check(v)
    check(fields)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signing_bytes(message: SignedMessage | dict[str, Any]) -> bytes:
    """The exact bytes that are signed for this message."""
    fields = message.model_dump(mode="json") if isinstance(message, SignedMessage) else dict(message)
    fields.pop("signature", None)
    # The released headers are bound by their signed SHA-256s in "released", not signed themselves.
    fields.pop("headers", None)
    for optional in UNSIGNED_WHEN_ABSENT:  # absent v1 fields: a v1 decision signs exactly as before
        if fields.get(optional) is None:
            fields.pop(optional, None)
    kind = fields.get("type")
    if kind not in DOMAINS:
        raise SignatureError(f"unknown signed message type {kind!r}")
    return DOMAINS[kind] + b"\n" + canonical_json(fields)


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """``ed25519:<base64url raw 32 bytes>``: the form owners give the service."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + b64u(raw)


def parse_public_key(text: str) -> Ed25519PublicKey:
    if not isinstance(text, str) or not text.startswith(PUBLIC_KEY_PREFIX):
        raise SignatureError("public key must look like 'ed25519:<base64url>'")
    try:
        raw = unb64u(text[len(PUBLIC_KEY_PREFIX):])
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SignatureError("public key is not 32 bytes of base64url") from None


def save_private_key(key: Ed25519PrivateKey, path: Path, overwrite: bool = False) -> None:
    """Write the key as PKCS#8 PEM, mode 0600 from the first byte (no window where it is readable)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    path = Path(path).expanduser()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SignatureError(f"{path}: private key is readable by others (mode {mode:o}); chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


def _sign(model: type[S], key: Ed25519PrivateKey, fields: dict[str, Any], validity_s: int, now: float | None) -> S:
    issued = int(time.time() if now is None else now)
    body = {**fields, "v": 1, "nonce": secrets.token_hex(16), "issued_at": issued,
            "expires_at": issued + int(validity_s)}
    sig = key.sign(signing_bytes(body))
    return model.model_validate({**body, "signature": b64u(sig)})


def sign_decision(key: Ed25519PrivateKey, *, owner_id: str, request_id: str, approve: bool,
                  clip_ids: list[str] | None = None, grant_days: int = 7,
                  validity_s: int = DEFAULT_VALIDITY_S, now: float | None = None,
                  release: Release | None = None) -> Decision:
    """A signed decision; ``release`` (sealed clips) adds the re-wrapped headers' digests to what is signed."""
    fields: dict[str, Any] = {"type": "decision", "owner_id": owner_id, "request_id": request_id,
                              "decision": "approve" if approve else "deny",
                              "clip_ids": sorted(set(clip_ids or [])) if approve else [],
                              "grant_days": int(grant_days) if approve else 0}
    if release is not None:
        fields["agency_recipient"] = release.agency_recipient
        fields["released"] = {c: {k: o.model_dump(mode="json") for k, o in objs.items()}
                              for c, objs in release.released.items()}
        fields["headers"] = release.headers  # not signed: bound by the signed digests in "released"
    return _sign(Decision, key, fields, validity_s, now)


@dataclass(frozen=True)
class Release:
    """What an approval of sealed clips releases (see doorbell.core.release): signed digests, unsigned headers."""

    agency_recipient: str
    released: dict[str, dict[str, ReleasedObject]]
    headers: dict[str, dict[str, str]]


def sign_revoke(key: Ed25519PrivateKey, *, owner_id: str, grant_id: str,
                validity_s: int = DEFAULT_VALIDITY_S, now: float | None = None) -> Revoke:
    return _sign(Revoke, key, {"type": "revoke", "owner_id": owner_id, "grant_id": grant_id}, validity_s, now)


def sign_share(key: Ed25519PrivateKey, *, owner_id: str, share_id: str, clip_id: str, days: int,
               share_recipient: str | None = None, released: dict[str, ReleasedObject] | None = None,
               headers: dict[str, str] | None = None, validity_s: int = DEFAULT_VALIDITY_S,
               now: float | None = None) -> ShareCreate:
    """A signed share link request; for a sealed clip, ``released`` signs the re-wrapped headers' digests."""
    fields: dict[str, Any] = {"type": "share", "owner_id": owner_id, "share_id": share_id, "clip_id": clip_id,
                              "days": int(days)}
    if released is not None:
        fields["share_recipient"] = share_recipient
        fields["released"] = {k: o.model_dump(mode="json") for k, o in released.items()}
        fields["headers"] = headers  # not signed: bound by the signed digests in "released"
    return _sign(ShareCreate, key, fields, validity_s, now)


def sign_unshare(key: Ed25519PrivateKey, *, owner_id: str, share_id: str,
                 validity_s: int = DEFAULT_VALIDITY_S, now: float | None = None) -> ShareRevoke:
    return _sign(ShareRevoke, key, {"type": "unshare", "owner_id": owner_id, "share_id": share_id}, validity_s, now)


def verify(message: S, public_key: Ed25519PublicKey | str, *, now: float | None = None,
           max_age_s: int = 3600, clock_skew_s: int = 120) -> S:
    """Check the signature and the validity window; the caller checks nonce replay.

    Raises SignatureError with a reason the service sends back to the owner.
    """
    pub = parse_public_key(public_key) if isinstance(public_key, str) else public_key
    try:
        pub.verify(unb64u(message.signature), signing_bytes(message))
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify against the owner's registered key") from None
    t = time.time() if now is None else now
    if message.issued_at > t + clock_skew_s:
        raise SignatureError("issued in the future (check the clock)")
    if message.expires_at < t:
        raise SignatureError("signed message has expired")
    if message.expires_at - message.issued_at > max_age_s:
        raise SignatureError(f"validity window longer than {max_age_s} s")
    return message


# ----------------------------------------------------------------------------- device keys


def device_signing_bytes(fields: dict[str, Any]) -> bytes:
    """The bytes a device signs: its domain for ``fields["type"]``, a newline, canonical JSON sans signature."""
    body = dict(fields)
    body.pop("signature", None)
    kind = body.get("type")
    if kind not in DEVICE_DOMAINS:
        raise SignatureError(f"unknown device-signed type {kind!r}")
    return DEVICE_DOMAINS[kind] + b"\n" + canonical_json(body)


def sign_device_fields(key: Ed25519PrivateKey, fields: dict[str, Any]) -> str:
    """Base64url Ed25519 signature over ``device_signing_bytes(fields)``."""
    return b64u(key.sign(device_signing_bytes(fields)))


def verify_device_fields(fields: dict[str, Any], signature: str, public_key: Ed25519PublicKey | str) -> None:
    """Raise SignatureError unless ``signature`` is the device key's signature over ``fields``."""
    pub = parse_public_key(public_key) if isinstance(public_key, str) else public_key
    try:
        pub.verify(unb64u(signature), device_signing_bytes(fields))
    except (InvalidSignature, ValueError, TypeError):
        raise SignatureError("signature does not verify against the device's key") from None


def ensure_device_key(path: Path) -> Ed25519PrivateKey:
    """The device's signing key at ``path``, created (mode 0600) on first use, as provisioning does."""
    path = Path(path).expanduser()
    if not path.exists():
        try:
            save_private_key(generate_key(), path)
        except FileExistsError:  # created concurrently: load the winner's key
            pass
    return load_private_key(path)
