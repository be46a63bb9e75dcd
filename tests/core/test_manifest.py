"""Device-signed clip manifests: build, sign, verify, and the attacks they must stop."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorbell.core import age, signing
from doorbell.core import manifest as mf

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "manifest_v1.json").read_text())
T0 = 1795469239.123


def encrypted_clip(recipients: list[age.X25519Recipient]) -> tuple[bytes, bytes, mf.ClipManifest]:
    """A clip as the firmware will make it: plaintext, its age file, and the unsigned manifest."""
    video = os.urandom(200_000)
    out = io.BytesIO()
    result = age.encrypt(io.BytesIO(video), out, recipients)
    snap = io.BytesIO()
    snap_result = age.encrypt(io.BytesIO(b"\xff\xd8jpeg"), snap, recipients)
    m = mf.build_manifest(clip_id="20261123T212719123Z-1a2b3c", device_id="front-door", trigger="ring",
                          started_at=T0, ended_at=T0 + 30.5, trigger_at=T0 + 5, pre_roll_s=5.0,
                          files={"video": result, "snapshot": snap_result})
    return video, out.getvalue(), m


def test_vector_signature_is_stable() -> None:
    """The frozen v1 vector: same key and fields give the same bytes and signature (other verifiers rely on it)."""
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["private_key_seed_hex"]))
    assert signing.public_key_text(key) == VECTORS["public_key"]
    loaded = mf.load_manifest(VECTORS["manifest_json"])
    assert signing.device_signing_bytes(loaded.fields()).decode() == VECTORS["signing_bytes"]
    unsigned = loaded.model_copy(update={"signature": "", "device_key": ""})
    assert mf.sign_manifest(unsigned, key).signature == VECTORS["manifest"]["signature"]
    assert mf.manifest_json(loaded).decode() == VECTORS["manifest_json"]
    mf.verify_manifest(loaded, VECTORS["public_key"])


def test_build_sign_verify_and_match() -> None:
    owner = age.generate_identity()
    key = signing.generate_key()
    video, blob, m = encrypted_clip([owner.recipient])
    assert m.started_at_ms == 1795469239123 and m.ended_at_ms == 1795469269623 and m.pre_roll_ms == 5000
    signed = mf.sign_manifest(m, key)
    data = mf.manifest_json(signed)
    back = mf.verify_manifest(mf.load_manifest(data), signing.public_key_text(key))
    assert back == signed
    hit = mf.match_file(back, io.BytesIO(video))
    assert hit.ok and (hit.kind, hit.form) == ("video", "plaintext")
    hit = mf.match_file(back, io.BytesIO(blob))
    assert hit.ok and (hit.kind, hit.form) == ("video", "ciphertext")
    assert not mf.match_file(back, io.BytesIO(video), kind="snapshot").ok
    flipped = bytearray(video)
    flipped[1234] ^= 0x80
    assert not mf.match_file(back, io.BytesIO(bytes(flipped))).ok


def test_other_device_key_fails() -> None:
    ours, theirs = signing.generate_key(), signing.generate_key()
    _, _, m = encrypted_clip([age.generate_identity().recipient])
    signed_by_other = mf.sign_manifest(m, theirs)
    with pytest.raises(signing.SignatureError, match="signed by ed25519:.*not by the given device key"):
        mf.verify_manifest(signed_by_other, signing.public_key_text(ours))
    # another device's key pasted into device_key does not help: it is covered by the signature
    forged = signed_by_other.model_copy(update={"device_key": signing.public_key_text(ours)})
    with pytest.raises(signing.SignatureError, match="altered after signing"):
        mf.verify_manifest(forged, signing.public_key_text(ours))


@pytest.mark.parametrize("field,value", [
    ("ended_at_ms", 1795469299623), ("trigger", "motion"), ("device_id", "back-door"), ("pre_roll_ms", 0),
    ("clip_id", "20261123T212719123Z-1a2b3d")])
def test_edited_manifest_fails(field: str, value: object) -> None:
    key = signing.generate_key()
    _, _, m = encrypted_clip([age.generate_identity().recipient])
    doc = json.loads(mf.manifest_json(mf.sign_manifest(m, key)))
    doc[field] = value
    with pytest.raises(signing.SignatureError):
        mf.verify_manifest(mf.load_manifest(json.dumps(doc)), signing.public_key_text(key))


def test_swapped_file_hash_fails() -> None:
    key = signing.generate_key()
    _, _, m = encrypted_clip([age.generate_identity().recipient])
    doc = json.loads(mf.manifest_json(mf.sign_manifest(m, key)))
    doc["files"]["video"]["plaintext_sha256"] = "0" * 64
    with pytest.raises(signing.SignatureError):
        mf.verify_manifest(mf.load_manifest(json.dumps(doc)), signing.public_key_text(key))


def test_device_signature_is_not_owner_consent() -> None:
    """Domain separation: the bytes a device signs never parse as a decision, and the reverse."""
    key = signing.generate_key()
    _, _, m = encrypted_clip([age.generate_identity().recipient])
    fields = mf.sign_manifest(m, key).fields()
    with pytest.raises(signing.SignatureError, match="unknown signed message type"):
        signing.signing_bytes(fields)
    decision = signing.sign_decision(key, owner_id="owner-a", request_id="request-1", approve=True,
                                     clip_ids=["20261123T212719123Z-1a2b3c"])
    with pytest.raises(signing.SignatureError, match="unknown device-signed type"):
        signing.device_signing_bytes(decision.model_dump(mode="json"))


@pytest.mark.parametrize("data,reason", [
    (b"not json", "not JSON"), (b"[]", "not a doorbell clip manifest"),
    (b'{"type": "decision"}', "not a doorbell clip manifest"),
    (b'{"type": "clip_manifest", "clip_id": "x"}', "invalid manifest"),
    (b" " * (mf.MAX_MANIFEST_BYTES + 1), "larger than")])
def test_malformed_manifests_refused(data: bytes, reason: str) -> None:
    with pytest.raises(mf.ManifestError, match=reason):
        mf.load_manifest(data)


def test_build_refuses_bad_fields() -> None:
    digest = mf.FileDigest(plaintext_sha256="a" * 64, plaintext_size=1)
    with pytest.raises(mf.ManifestError, match="before"):
        mf.build_manifest(clip_id="20261123T212719123Z-1a2b3c", device_id="d1", trigger="ring", started_at=T0,
                          ended_at=T0 - 1, trigger_at=T0, pre_roll_s=0, files={"video": digest})
    with pytest.raises(mf.ManifestError, match="video"):
        mf.build_manifest(clip_id="20261123T212719123Z-1a2b3c", device_id="d1", trigger="ring", started_at=T0,
                          ended_at=T0, trigger_at=T0, pre_roll_s=0, files={"snapshot": digest})


def test_ensure_device_key_creates_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "device_ed25519.pem"
    first = signing.ensure_device_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    again = signing.ensure_device_key(path)
    assert signing.public_key_text(first) == signing.public_key_text(again)
