"""Owner-consent signatures: checked-in vectors, tampering, expiry, key handling."""
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorbell.core import signing
from doorbell.core.protocol import Decision, ProtocolError, Revoke, decode

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "signing_v1.json").read_text())
KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["private_key_seed_hex"]))


@pytest.mark.parametrize("vec", VECTORS["vectors"],
                         ids=lambda v: v["message"]["type"] + "-" + v["message"].get("decision", ""))
def test_vectors_reproduce_exactly(vec):
    model = Decision if vec["message"]["type"] == "decision" else Revoke
    msg = model.model_validate(vec["message"])
    assert signing.signing_bytes(msg) == vec["signing_bytes_utf8"].encode()
    assert signing.b64u(KEY.sign(signing.signing_bytes(msg))) == vec["signature"]
    assert signing.public_key_text(KEY) == VECTORS["public_key"]
    signing.verify(msg, VECTORS["public_key"], now=msg.issued_at + 1)


def test_vector_payload_survives_the_wire():
    vec = VECTORS["vectors"][0]
    msg = decode(Decision, json.dumps(vec["message"]).encode(), "decision")
    signing.verify(msg, VECTORS["public_key"], now=msg.issued_at)


def test_sign_and_verify_roundtrip_and_tampering():
    key = signing.generate_key()
    d = signing.sign_decision(key, owner_id="owner-a", request_id="req123456", approve=True,
                              clip_ids=["20261123T212719123Z-1a2b3c"], grant_days=7)
    signing.verify(d, signing.public_key_text(key))
    # any field change breaks the signature
    for change in ({"clip_ids": ["20261123T212719123Z-ffffff"]}, {"grant_days": 30},
                   {"request_id": "req999999"}, {"owner_id": "owner-b"}):
        forged = Decision.model_validate({**d.model_dump(), **change})
        with pytest.raises(signing.SignatureError, match="does not verify"):
            signing.verify(forged, signing.public_key_text(key))
    other = signing.generate_key()
    with pytest.raises(signing.SignatureError):
        signing.verify(d, signing.public_key_text(other))


def test_decision_cannot_be_replayed_as_revoke():
    """Domain separation: the same signature bytes never validate as another message type."""
    key = signing.generate_key()
    r = signing.sign_revoke(key, owner_id="owner-a", grant_id="grant12345")
    assert signing.signing_bytes(r).startswith(b"doorbell/v1/revoke\n")
    d = signing.sign_decision(key, owner_id="owner-a", request_id="grant12345", approve=False)
    assert signing.signing_bytes(d).startswith(b"doorbell/v1/decision\n")
    assert r.signature != d.signature


def test_expiry_and_clock_checks():
    key = signing.generate_key()
    d = signing.sign_decision(key, owner_id="owner-a", request_id="req123456", approve=False,
                              validity_s=60, now=1_800_000_000)
    pub = signing.public_key_text(key)
    signing.verify(d, pub, now=1_800_000_030)
    with pytest.raises(signing.SignatureError, match="expired"):
        signing.verify(d, pub, now=1_800_000_061)
    with pytest.raises(signing.SignatureError, match="future"):
        signing.verify(d, pub, now=1_799_999_000)
    long = signing.sign_decision(key, owner_id="owner-a", request_id="req123456", approve=False,
                                 validity_s=10 * 86400, now=1_800_000_000)
    with pytest.raises(signing.SignatureError, match="validity window"):
        signing.verify(long, pub, now=1_800_000_001)


def test_decision_shape_rules():
    key = signing.generate_key()
    with pytest.raises(Exception, match="at least one clip"):
        signing.sign_decision(key, owner_id="owner-a", request_id="req123456", approve=True, clip_ids=[])
    body = signing.sign_decision(key, owner_id="owner-a", request_id="req123456", approve=True,
                                 clip_ids=["20261123T212719123Z-1a2b3c", "20261123T212719000Z-1a2b3c"]).model_dump()
    body["clip_ids"] = list(reversed(body["clip_ids"]))
    with pytest.raises(ProtocolError, match="sorted"):
        decode(Decision, json.dumps(body), "decision")


def test_private_key_file_is_private(tmp_path):
    key = signing.generate_key()
    path = tmp_path / "k" / "owner.pem"
    signing.save_private_key(key, path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert signing.public_key_text(signing.load_private_key(path)) == signing.public_key_text(key)
    with pytest.raises(FileExistsError):
        signing.save_private_key(key, path)
    os.chmod(path, 0o644)
    with pytest.raises(signing.SignatureError, match="readable by others"):
        signing.load_private_key(path)


@pytest.mark.parametrize("text", ["", "ed25519:", "ed25519:AAAA", "rsa:abc", 42])
def test_bad_public_keys(text):
    with pytest.raises(signing.SignatureError):
        signing.parse_public_key(text)


def test_canonical_json_refuses_floats():
    with pytest.raises(TypeError):
        signing.canonical_json({"a": 1.5})
