"""``doorbell verify``: a clip checked offline against its device-signed manifest.

The evidence path end to end: the device encrypts and signs, the owner
re-wraps the header for the agency, the stock ``age`` CLI decrypts, and
``doorbell verify`` (a real subprocess) accepts exactly the untouched clip.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from doorbell.cli import main
from doorbell.core import age, signing
from doorbell.core import manifest as mf

ROOT = Path(__file__).resolve().parents[2]
T0 = 1795469239.0


class Clip:
    """What a device leaves behind for one clip: video + snapshot, their age files, the signed manifest."""

    def __init__(self, tmp: Path, device_key: signing.Ed25519PrivateKey, owner: age.X25519Identity):
        self.video = tmp / "clip.mp4"
        self.snapshot = tmp / "clip.jpg"
        self.video.write_bytes(os.urandom(150_000))
        self.snapshot.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(5_000))
        results = {}
        for kind, path in (("video", self.video), ("snapshot", self.snapshot)):
            with open(path, "rb") as r, open(path.with_name(path.name + ".age"), "wb") as w:
                results[kind] = age.encrypt(r, w, [owner.recipient])
        m = mf.build_manifest(clip_id="20261123T212719000Z-00ff00", device_id="front-door", trigger="motion",
                              started_at=T0, ended_at=T0 + 20, trigger_at=T0 + 4, pre_roll_s=4, files=results)
        self.manifest = tmp / "clip.manifest.json"
        self.manifest.write_bytes(mf.manifest_json(mf.sign_manifest(m, device_key)))
        self.key_text = signing.public_key_text(device_key)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Clip, signing.Ed25519PrivateKey, age.X25519Identity]:
    key, owner = signing.generate_key(), age.generate_identity()
    return Clip(tmp_path, key, owner), key, owner


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["verify", *argv])
    return code, capsys.readouterr().out


def test_good_clip_verifies(setup, capsys) -> None:
    clip, _, _ = setup
    code, out = run(capsys, str(clip.video), str(clip.snapshot), "--manifest", str(clip.manifest),
                    "--device-key", clip.key_text)
    assert code == 0, out
    assert out.startswith("doorbell verify: OK")
    assert "front-door" in out and "video (plaintext)" in out and "snapshot (plaintext)" in out
    # the stored age files verify too (ciphertext hashes), and the manifest is found next to the file
    code, out = run(capsys, str(clip.video.with_name("clip.mp4.age")), "--device-key", clip.key_text,
                    "--manifest", str(clip.manifest))
    assert code == 0 and "video (ciphertext)" in out
    code, out = run(capsys, str(clip.video), "--device-key", clip.key_text)
    assert code == 0, out


def test_flipped_byte_fails(setup, capsys) -> None:
    clip, _, _ = setup
    data = bytearray(clip.video.read_bytes())
    data[len(data) // 2] ^= 0x01
    clip.video.write_bytes(data)
    code, out = run(capsys, str(clip.video), "-m", str(clip.manifest), "--device-key", clip.key_text)
    assert code == 1
    assert out.startswith("doorbell verify: FAILED") and "matches no file in the manifest" in out
    assert "signature  ok" in out  # the manifest itself is fine; the clip is not


def test_manifest_signed_by_another_device_fails(setup, capsys, tmp_path) -> None:
    clip, _, _ = setup
    other = signing.generate_key()
    doc = mf.load_manifest(clip.manifest.read_bytes())
    clip.manifest.write_bytes(mf.manifest_json(mf.sign_manifest(doc.model_copy(update={"signature": ""}), other)))
    code, out = run(capsys, str(clip.video), "-m", str(clip.manifest), "--device-key", clip.key_text)
    assert code == 1 and "signature  FAILED" in out and "not by the given device key" in out


def test_edited_manifest_fails(setup, capsys) -> None:
    clip, _, _ = setup
    doc = json.loads(clip.manifest.read_bytes())
    doc["started_at_ms"] -= 60_000  # claim the clip began a minute earlier
    clip.manifest.write_text(json.dumps(doc))
    code, out = run(capsys, str(clip.video), "-m", str(clip.manifest), "--device-key", clip.key_text, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["signature"]["ok"] is False and "altered" in report["signature"]["reason"]
    assert report["files"][0]["ok"] is True  # the file itself still matches its hash


def test_json_report_and_key_files(setup, capsys, tmp_path) -> None:
    clip, key, _ = setup
    pem = tmp_path / "device.pub.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    text = tmp_path / "device.pub"
    text.write_text(clip.key_text + "\n")
    for keyfile in (pem, text):
        code, out = run(capsys, str(clip.video), "-m", str(clip.manifest), "--device-key-file", str(keyfile),
                        "--json")
        report = json.loads(out)
        assert code == 0 and report["ok"] is True
        assert report["device_key"] == clip.key_text
        assert report["files"][0]["kind"] == "video" and report["files"][0]["form"] == "plaintext"
        assert report["manifest"]["clip_id"] == "20261123T212719000Z-00ff00"


@pytest.mark.parametrize("problem", ["no_manifest", "bad_manifest", "missing_file", "bad_key", "bad_key_file"])
def test_bad_input_is_a_clear_failure(setup, capsys, tmp_path, problem) -> None:
    clip, _, _ = setup
    args = [str(clip.video), "-m", str(clip.manifest), "--device-key", clip.key_text]
    if problem == "no_manifest":
        other = tmp_path / "elsewhere.mp4"
        shutil.copy(clip.video, other)
        args = [str(other), "--device-key", clip.key_text]
    elif problem == "bad_manifest":
        clip.manifest.write_text("{not json")
    elif problem == "missing_file":
        args[0] = str(tmp_path / "nope.mp4")
    elif problem == "bad_key":
        args[-1] = "ed25519:short"
    else:
        (tmp_path / "k").write_text("hello")
        args[-2:] = ["--device-key-file", str(tmp_path / "k")]
    code = main(["verify", *args])
    captured = capsys.readouterr()
    assert code == 1
    text = captured.out + captured.err
    assert {"no_manifest": "no --manifest given", "bad_manifest": "not JSON", "missing_file": "cannot read",
            "bad_key": "public key", "bad_key_file": "not an ed25519"}[problem] in text


def test_agency_path_with_age_cli_and_real_process(setup, tmp_path) -> None:
    """Owner re-wraps for the agency; `age -d` decrypts; `doorbell verify` (subprocess) accepts the output."""
    clip, _, owner = setup
    agency = age.generate_identity()
    stored = clip.video.with_name("clip.mp4.age").read_bytes()
    header, offset = age.header_and_payload_offset(io.BytesIO(stored))
    shared = tmp_path / "shared.age"
    shared.write_bytes(age.rewrap_header(header, [owner], [agency.recipient]) + stored[offset:])
    keyfile = tmp_path / "agency-key.txt"
    age.save_identity(agency, keyfile)
    received = tmp_path / "received.mp4"
    subprocess.run(["age", "-d", "-i", str(keyfile), "-o", str(received), str(shared)], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "doorbell.cli", "verify", "-m", str(clip.manifest), "--device-key", clip.key_text]
    ok = subprocess.run([*cmd, str(received)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the re-wrapped age file is not the stored one: verify says to decrypt it first
    bad = subprocess.run([*cmd, str(shared)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 1 and "decrypt it first" in bad.stdout
