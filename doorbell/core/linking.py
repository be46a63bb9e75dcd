"""Linked devices: more than one key may sign an owner's consent.

A browser (or a second computer) becomes one of the owner's keys by pairing
with a device that is already linked:

1. The linked device (``doorbell owner link``) shows a one-time code (10
   Crockford base32 characters, 50 bits). Both sides derive from it, with
   PBKDF2-SHA256 (200 000 rounds, salted by the owner id), a pairing topic
   name and an HMAC key (:func:`pair_secrets`). The code never crosses the
   network.
2. The new device generates its Ed25519 and X25519 keys (in a browser:
   WebCrypto, non-extractable, in IndexedDB) and publishes an offer with its
   public keys on ``owners/{o}/pair/{pair_id}``, MACed with the code's key
   (:func:`offer_mac`). Anyone on the broker without the code cannot produce an
   offer the linked device accepts, and has to guess the code within the
   pairing window to try.
3. The linked device checks the MAC, shows the new key's fingerprint for the
   owner to compare, and signs an :class:`Enrol` with its own key to
   ``owners/{o}/keys/{key_id}/enrol``. The service accepts it if it verifies
   under any active key of that owner, stores the key and publishes the
   retained :class:`KeyState` on ``owners/{o}/keys/{key_id}``.

From then on the service accepts decisions and revokes signed by any of the
owner's active keys. An :class:`Unlink` signed by any active key (the key
itself included) revokes one. The wire formats and the signed bytes are the
ones in doorbell.core.signing (domains ``doorbell/v1/enrol`` and
``doorbell/v1/unlink``); the topics are in doorbell.core.protocol (one module for topics).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Annotated, Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field

from doorbell.core import protocol as p
from doorbell.core.signing import DEFAULT_VALIDITY_S, b64u, canonical_json, signing_bytes

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH = 10
PBKDF2_ITERATIONS = 200_000
PAIR_WINDOW_S = 180
PUBLIC_KEY_PATTERN = r"^ed25519:[A-Za-z0-9_-]{43}$"
RECIPIENT_PATTERN = r"^age1[02-9ac-hj-np-z]{58}$"

MAX_PAYLOAD = {"pair": 4 * 1024, "enrol": 4 * 1024, "unlink": 4 * 1024, "key": 4 * 1024}

Label = Annotated[str, Field(min_length=1, max_length=60)]


SM = TypeVar("SM", bound=p.SignedMessage)


class LinkError(p.ProtocolError):
    """A pairing code, offer or linking message that must be refused."""


def key_id(public_key: str) -> str:
    """The id of a key: hex of the first 16 bytes of SHA-256 over its ``ed25519:…`` text."""
    return hashlib.sha256(public_key.encode()).hexdigest()[:32]


def fingerprint(kid: str) -> str:
    """What a person compares on two screens: the first 16 hex digits in groups of four."""
    return " ".join(kid[i:i + 4] for i in range(0, 16, 4))


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def normalise_code(text: str) -> str:
    """Upper-case, without spaces and dashes, O read as 0 and I/L as 1; LinkError if not a code."""
    s = re.sub(r"[\s-]", "", str(text or "")).upper().replace("O", "0").replace("I", "1").replace("L", "1")
    if len(s) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in s):
        raise LinkError("a pairing code is 10 letters and digits, like 7K3QD-M9XAB")
    return s


def pair_secrets(code: str, owner_id: str) -> tuple[str, bytes]:
    """``(pair_id, mac_key)`` derived from the code; the browser derives the same with WebCrypto."""
    bits = hashlib.pbkdf2_hmac("sha256", normalise_code(code).encode(), f"doorbell/v1/pair\n{owner_id}".encode(),
                               PBKDF2_ITERATIONS, 48)
    return bits[:16].hex(), bits[16:48]


class PairOffer(p.Message):
    """``owners/{o}/pair/{pair_id}``: the new device's public keys, MACed with the code."""

    kind: Literal["offer"] = "offer"
    public_key: Annotated[str, Field(pattern=PUBLIC_KEY_PATTERN)]
    x25519: Annotated[str, Field(pattern=RECIPIENT_PATTERN)]
    label: Label
    mac: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]


def offer_mac(mac_key: bytes, public_key: str, x25519: str, label: str) -> str:
    body = {"v": 1, "kind": "offer", "public_key": public_key, "x25519": x25519, "label": label}
    return b64u(hmac.new(mac_key, b"doorbell/v1/pair-offer\n" + canonical_json(body), hashlib.sha256).digest())


def check_offer(offer: PairOffer, mac_key: bytes) -> None:
    if not hmac.compare_digest(offer.mac, offer_mac(mac_key, offer.public_key, offer.x25519, offer.label)):
        raise LinkError("the offer's code check fails: not made with this pairing code")


class Enrol(p.SignedMessage):
    """``owners/{o}/keys/{key_id}/enrol``: an active key vouches for a new one (Ed25519-signed)."""

    type: Literal["enrol"] = "enrol"
    key_id: Annotated[str, Field(pattern=p.KEY_ID_PATTERN)]
    public_key: Annotated[str, Field(pattern=PUBLIC_KEY_PATTERN)]
    x25519: Annotated[str, Field(pattern=RECIPIENT_PATTERN)]
    label: Label


class Unlink(p.SignedMessage):
    """``owners/{o}/keys/{key_id}/unlink``: revoke one linked key (signed by any active key)."""

    type: Literal["unlink"] = "unlink"
    key_id: Annotated[str, Field(pattern=p.KEY_ID_PATTERN)]


class KeyState(p.Message):
    """``owners/{o}/keys/{key_id}`` (retained, service to owner): a linked key and its state."""

    key_id: Annotated[str, Field(pattern=p.KEY_ID_PATTERN)]
    owner_id: p.OwnerId
    public_key: Annotated[str, Field(pattern=PUBLIC_KEY_PATTERN)]
    x25519: Annotated[str, Field(pattern=RECIPIENT_PATTERN)]
    label: Label
    created_at: p.Timestamp
    enrolled_by: Annotated[str, Field(max_length=64)]
    state: Literal["active", "revoked"]
    revoked_at: p.Timestamp | None = None


def _sign(model: type[SM], key: Ed25519PrivateKey, fields: dict[str, object], validity_s: int) -> SM:
    issued = int(time.time())
    body = {**fields, "v": 1, "nonce": secrets.token_hex(16), "issued_at": issued, "expires_at": issued + validity_s}
    return model.model_validate({**body, "signature": b64u(key.sign(signing_bytes(body)))})


def sign_enrol(key: Ed25519PrivateKey, *, owner_id: str, public_key: str, x25519: str, label: str,
               validity_s: int = DEFAULT_VALIDITY_S) -> Enrol:
    """The linked device's signed statement that ``public_key`` may sign for ``owner_id``."""
    return _sign(Enrol, key, {"type": "enrol", "owner_id": owner_id, "key_id": key_id(public_key),
                              "public_key": public_key, "x25519": x25519, "label": label}, validity_s)


def sign_unlink(key: Ed25519PrivateKey, *, owner_id: str, kid: str, validity_s: int = DEFAULT_VALIDITY_S) -> Unlink:
    return _sign(Unlink, key, {"type": "unlink", "owner_id": owner_id, "key_id": kid}, validity_s)
