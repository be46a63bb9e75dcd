"""Clips encrypted and signed at the source (issue 12, ``encryption.enabled``), on real footage and a real spool.

Recorded through the real recorder (PyAV, fragmented MP4 streamed into the
age encryptor), opened with our decrypt and with the stock ``age`` CLI,
decoded with PyAV/OpenCV, checked with ``doorbell verify``; attacked with
everything a stolen device holds, a removed household member's key and a
tampered chunk.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from doorbell.core import age, signing
from doorbell.core import manifest as mf
from doorbell.core.config import ConfigError, parse_config
from doorbell.core.spool import SEALED_FILES, Sealing, Spool
from firmware.service import sealing_from_config
from tests.support.firmware import assert_opaque, decode_frames, record_clip

DOORBELL = [sys.executable, "-m", "doorbell.cli"]


@pytest.fixture
def household(tmp_path: Path) -> dict[str, object]:
    """Two members and a recovery key (identity files as age-keygen writes them), and the device's key."""
    out: dict[str, object] = {}
    for name in ("alice", "bob", "recovery"):
        ident = age.generate_identity()
        path = tmp_path / "keys" / f"{name}.txt"
        age.save_identity(ident, path)
        out[name] = ident
        out[name + "_file"] = path
    key_file = tmp_path / "device" / "device_ed25519.pem"
    out["device_key"] = signing.ensure_device_key(key_file)
    out["device_key_file"] = key_file
    return out


def sealing_for(h: dict[str, object], *names: str) -> Sealing:
    return Sealing(tuple(h[n].recipient for n in names), h["device_key"])  # type: ignore[union-attr]


def open_with(path: Path, *identities: age.X25519Identity) -> bytes:
    out = io.BytesIO()
    with open(path, "rb") as fh:
        age.decrypt(fh, out, list(identities))
    return out.getvalue()


def age_cli(path: Path, identity_file: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["age", "-d", "-i", str(identity_file), str(path)], capture_output=True, timeout=60)


def test_sealed_clip_holds_no_plaintext_and_opens_for_the_household(tmp_path, bikes_video, household, capsys):
    spool_dir = tmp_path / "spool"
    clip = record_clip(spool_dir, bikes_video, sealing=sealing_for(household, "alice", "bob", "recovery"))
    sealed = clip.sealed
    assert sealed is not None
    # what is on the card: only age files and a clear index with ids, names, sizes and ciphertext hashes
    assert sorted(p.name for p in clip.path.iterdir()) == sorted([*SEALED_FILES.values(), "meta.json"])
    index = json.loads((clip.path / "meta.json").read_bytes())
    assert set(index) == {"v", "sealed", "clip_id", "object_id", "files"}
    assert all(set(f) == {"name", "sha256", "size"} for f in index["files"].values())
    for kind, f in sealed.files.items():
        data = (clip.path / f.name).read_bytes()
        assert data.startswith(b"age-encryption.org/v1\n"), kind
        assert hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.size
        assert_opaque(data, what=kind)
        with pytest.raises(av.FFmpegError):  # nothing decodes
            with av.open(str(clip.path / f.name)) as c:
                next(c.decode(video=0))
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None
    # no JPEG or MP4 left in tmp/ either (plaintext lived in RAM only)
    for p in (spool_dir / "tmp").rglob("*"):
        assert not p.is_file()

    out = tmp_path / "opened"
    out.mkdir()
    # alice with our decrypt, bob with the stock age CLI: the same plaintext
    video = open_with(clip.video, household["alice"])
    r = age_cli(clip.video, household["bob_file"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == video
    with pytest.raises(AssertionError):  # the check would see the plaintext
        assert_opaque(video)
    assert_opaque(clip.video.read_bytes(), video)
    (out / "clip.mp4").write_bytes(video)
    frames = decode_frames(out / "clip.mp4")
    assert len(frames) >= 25 * 4  # pre-roll 2 s + post-roll 2 s at 25 fps, at least
    assert frames[0][0] == 0.0 and np.allclose(np.diff([t for t, _ in frames]), 1 / 25, atol=1e-3)
    snapshot = open_with(clip.snapshot, household["recovery"])
    assert cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (272, 640)
    with pytest.raises(AssertionError):
        assert_opaque(snapshot[1:])  # (past the start, too)
    assert_opaque(clip.snapshot.read_bytes(), snapshot)
    (out / "snapshot.jpg").write_bytes(snapshot)
    metadata = open_with(clip.path / SEALED_FILES["metadata"], household["alice"])
    (out / "meta.json").write_bytes(metadata)
    meta = json.loads(metadata)
    assert meta["clip_id"] == clip.clip_id and meta["trigger"] == "ring" and len(meta["rings"]) == 1
    assert meta["sha256"] == hashlib.sha256(video).hexdigest() and meta["size"] == len(video)
    assert meta["snapshot_sha256"] == hashlib.sha256(snapshot).hexdigest()
    manifest_bytes = age_cli(clip.path / SEALED_FILES["manifest"], household["alice_file"]).stdout
    (out / "clip.manifest.json").write_bytes(manifest_bytes)
    m = mf.verify_manifest(mf.load_manifest(manifest_bytes), signing.public_key_text(household["device_key"]))
    assert m.clip_id == clip.clip_id and m.device_id == "dev-a" and m.trigger == "ring"
    assert m.started_at_ms == round(meta["started_at"] * 1000)
    assert m.files["video"].ciphertext_sha256 == sealed.files["video"].sha256
    assert m.files["metadata"].plaintext_sha256 == hashlib.sha256(metadata).hexdigest()

    # doorbell verify: the decrypted clip, snapshot and metadata against the device's key
    from doorbell.cli import main
    pub = signing.public_key_text(household["device_key"])
    code = main(["verify", str(out / "clip.mp4"), str(out / "snapshot.jpg"), str(out / "meta.json"),
                 "--manifest", str(out / "clip.manifest.json"), "--device-key", pub])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "video (plaintext)" in text and "snapshot (plaintext)" in text and "metadata (plaintext)" in text
    # and another device's key refuses it
    code = main(["verify", str(out / "clip.mp4"), "--manifest", str(out / "clip.manifest.json"),
                 "--device-key", signing.public_key_text(signing.generate_key())])
    assert code == 1
    capsys.readouterr()


def test_a_stolen_device_cannot_open_what_it_recorded(tmp_path, bikes_video, household):
    """The thief holds the SD card: config, device key, spool. None of it opens a clip."""
    device = tmp_path / "device"
    cfg = {"device": {"id": "dev-a"}, "spool": {"dir": str(device / "spool")},
           "mqtt": {"password": "mqtt-secret-of-dev-a"}, "s3": {"secret_access_key": "s3-secret-of-dev-a-xyz"},
           "encryption": {"enabled": True, "device_key_file": str(household["device_key_file"]),
                          "recipients": [str(household[n].recipient) for n in ("alice", "bob")]}}
    (device / "device.yaml").write_text(yaml.safe_dump(cfg))
    parsed = parse_config(cfg, env={})
    clip = record_clip(device / "spool", bikes_video, sealing=sealing_from_config(parsed))

    # nothing on the device is an age identity
    files = [p for p in device.rglob("*") if p.is_file()]
    assert any(p.suffix == ".age" for p in files)
    for p in files:
        assert b"AGE-SECRET-KEY-" not in p.read_bytes().upper(), p
    # every key-like secret on the device, tried as an X25519 identity: the Ed25519 seed as is, the
    # seed converted as age does for ssh-ed25519 keys, and the SHA-256 of every secret string
    seed = household["device_key"].private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                 serialization.NoEncryption())
    candidates = [seed, hashlib.sha512(seed).digest()[:32]]
    candidates += [hashlib.sha256(s.encode()).digest() for s in ("mqtt-secret-of-dev-a", "s3-secret-of-dev-a-xyz")]
    attempts = [age.X25519Identity(X25519PrivateKey.from_private_bytes(c)) for c in candidates]
    for f in clip.sealed.files.values():
        with pytest.raises(age.NoIdentityMatchError):
            open_with(clip.path / f.name, *attempts)
    # and the age CLI, handed the device's key file and the config, opens nothing either
    for key in (household["device_key_file"], device / "device.yaml"):
        r = age_cli(clip.video, key)
        assert r.returncode != 0 and not r.stdout
    # the rightful owner still opens it
    assert open_with(clip.video, household["alice"])[4:8] == b"ftyp"


def test_a_removed_member_cannot_open_clips_recorded_after_removal(tmp_path, bikes_video, household):
    spool = tmp_path / "spool"
    before = record_clip(spool, bikes_video, sealing=sealing_for(household, "alice", "bob"), frames=150)
    # bob leaves the household: provisioning rewrites the recipients; the next clip is sealed to alice alone
    after = record_clip(spool, bikes_video, sealing=sealing_for(household, "alice"), frames=150)
    assert open_with(before.video, household["bob"])[4:8] == b"ftyp"        # what bob could already see
    assert age_cli(before.video, household["bob_file"]).returncode == 0
    for f in after.sealed.files.values():
        with pytest.raises(age.NoIdentityMatchError):
            open_with(after.path / f.name, household["bob"])
        r = age_cli(after.path / f.name, household["bob_file"])
        assert r.returncode != 0 and not r.stdout
    assert open_with(after.video, household["alice"])[4:8] == b"ftyp"
    assert age_cli(after.video, household["alice_file"]).returncode == 0


def test_a_tampered_chunk_is_refused(tmp_path, bikes_video, household):
    clip = record_clip(tmp_path / "spool", bikes_video, sealing=sealing_for(household, "alice"), frames=150)
    data = bytearray(clip.video.read_bytes())
    with open(clip.video, "rb") as fh:
        _header, offset = age.header_and_payload_offset(fh)
    second_chunk = offset + age.PAYLOAD_NONCE_SIZE + age.CIPHERTEXT_CHUNK_SIZE + 100
    assert len(data) > second_chunk + age.CIPHERTEXT_CHUNK_SIZE  # the clip spans several chunks
    data[second_chunk] ^= 0x01
    tampered = tmp_path / "tampered.age"
    tampered.write_bytes(bytes(data))
    with pytest.raises(age.PayloadError):
        open_with(tampered, household["alice"])
    r = age_cli(tampered, household["alice_file"])
    assert r.returncode != 0
    # the untouched file still opens: the refusal is about the flipped byte
    assert open_with(clip.video, household["alice"])[4:8] == b"ftyp"


def test_clear_ha_snapshot_only_when_allowed(tmp_path, bikes_video, household):
    """Sealed clips leave a clear JPEG for Home Assistant only with ha_snapshot_plaintext."""
    spool = Spool(tmp_path / "spool")
    record_clip(spool.root, bikes_video, sealing=sealing_for(household, "alice"), frames=120)
    assert spool.pending_snapshots() == []
    record_clip(spool.root, bikes_video, sealing=sealing_for(household, "alice"), frames=120, clear_snapshot=True)
    [snap] = spool.pending_snapshots()
    assert snap.read_bytes()[:3] == b"\xff\xd8\xff"
    enc = parse_config({"encryption": {"enabled": True, "recipients": [str(household["alice"].recipient)]}},
                       env={}).encryption
    assert enc.snapshot_in_clear is False  # the default once encryption is on
    assert parse_config({}, env={}).encryption.snapshot_in_clear is True  # and while it is off
    assert enc.model_copy(update={"ha_snapshot_plaintext": True}).snapshot_in_clear is True


def test_encryption_config_errors_name_the_key(tmp_path, household):
    alice = str(household["alice"].recipient)
    with pytest.raises(ConfigError) as e:
        parse_config({"encryption": {"enabled": True}}, "device.yaml", env={})
    assert "device.yaml: encryption" in str(e.value) and "at least one recipient" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({"encryption": {"recipients": [alice, alice[:-3] + "qqq"]}}, "device.yaml", env={})
    assert "encryption.recipients" in str(e.value) and "recipients[1]" in str(e.value)
    with pytest.raises(ConfigError) as e:  # an identity pasted where a recipient belongs: refused, never echoed
        parse_config({"encryption": {"recipients": [str(household["alice"])]}}, "device.yaml", env={})
    assert "AGE-SECRET-KEY" not in str(e.value).upper()
    cfg = parse_config({"encryption": {"enabled": True, "recipients": [alice],
                                       "device_key_file": str(tmp_path / "missing.pem")}}, "device.yaml", env={})
    with pytest.raises(ConfigError) as e:
        sealing_from_config(cfg)
    assert "encryption.device_key_file" in str(e.value) and "doorbell provision device" in str(e.value)


def test_firmware_simulate_with_encryption_on(tmp_path, bikes_video, household):
    """The whole firmware service (doorbell firmware simulate, a real process) seals what it records."""
    config = tmp_path / "device.yaml"
    config.write_text(yaml.safe_dump({"encryption": {
        "enabled": True, "device_key_file": str(household["device_key_file"]),
        "recipients": [str(household["alice"].recipient)]}}))
    out = subprocess.run([*DOORBELL, "firmware", "simulate", "--video", str(bikes_video), "--ring-at", "5",
                          "--spool", str(tmp_path / "sim"), "--fast", "--config", str(config)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    clips = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert clips and all(c["sealed"] for c in clips)
    video = Path(clips[0]["path"])
    assert video.name == SEALED_FILES["video"]
    assert open_with(video, household["alice"])[4:8] == b"ftyp"
