"""Keys for end-to-end encryption (issue 12), through the real CLI: ``doorbell owner keys`` makes the
household's age keys, ``doorbell provision device`` makes the device's signing key, registers it, and writes
the recipients into the device's config; a clip the provisioned device records opens with the recovery key."""
from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import yaml

from doorbell.core import age, signing
from doorbell.core import manifest as mf
from doorbell.core.config import load_config
from doorbell.core.spool import SEALED_FILES
from doorbell.ops import provision
from firmware.service import sealing_from_config
from tests.support.firmware import record_clip
from tests.support.ops import run_cli


def owner_config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name / "owner.yaml"
    path.parent.mkdir(parents=True)
    key_file = str(path.parent / "owner_ed25519.pem")
    path.write_text(yaml.safe_dump({"owner": {"owner_id": "carol", "key_file": key_file}}))
    return path


def test_owner_keys_household_recipients_and_recovery(tmp_path: Path) -> None:
    carol, dave = owner_config(tmp_path, "carol"), owner_config(tmp_path, "dave")
    r = run_cli("owner", "keys", "init", "-c", str(carol), "--json", check=True)
    made = json.loads(r.stdout)
    ident_file = Path(made["identity_file"])
    assert ident_file.parent == carol.parent and stat.S_IMODE(ident_file.stat().st_mode) == 0o600
    assert made["public_key"].startswith("ed25519:") and made["recipient"].startswith("age1")
    # the identity file is age-keygen's format: the stock CLI derives the same recipient from it
    assert subprocess.run(["age-keygen", "-y", str(ident_file)], capture_output=True, text=True,
                          check=True).stdout.strip() == made["recipient"]
    # init again (--force renews the signing key only): the clip key is kept, never replaced
    r = run_cli("owner", "keys", "init", "-c", str(carol), "--json", "--force", check=True)
    assert json.loads(r.stdout)["recipient"] == made["recipient"]

    # a second member, and a recovery key printed once
    dave_made = json.loads(run_cli("owner", "keys", "init", "-c", str(dave), "--json", check=True).stdout)
    run_cli("owner", "keys", "recipients", "-c", str(carol), "--add", dave_made["recipient"], "--label", "dave",
            check=True)
    r = run_cli("owner", "keys", "recovery", "-c", str(carol), check=True)
    [secret] = re.findall(r"AGE-SECRET-KEY-1[0-9A-Z]+", r.stdout)
    recovery = age.parse_identity(secret)
    assert "shown this once" in r.stdout
    for f in carol.parent.iterdir():  # the recovery secret is stored nowhere
        assert secret not in f.read_text(errors="replace")
    rfile = Path(made["recipients_file"])
    listed = json.loads(run_cli("owner", "keys", "recipients", "-c", str(carol), "--json", check=True).stdout)
    assert [x["recipient"] for x in listed["recipients"]] == [made["recipient"], dave_made["recipient"],
                                                             str(recovery.recipient)]
    # what age -R reads: the stock CLI encrypts to the file, and each of the three opens the result
    enc = subprocess.run(["age", "-R", str(rfile)], input=b"household", capture_output=True, check=True).stdout
    for ident in (ident_file, Path(dave_made["identity_file"])):
        assert subprocess.run(["age", "-d", "-i", str(ident)], input=enc, capture_output=True,
                              check=True).stdout == b"household"
    # refusals: a secret key pasted as a member is refused and not echoed; an unknown member cannot be removed
    r = run_cli("owner", "keys", "recipients", "-c", str(carol), "--add", secret)
    assert r.returncode == 1 and secret not in r.stdout + r.stderr and "not an age recipient" in r.stderr
    r = run_cli("owner", "keys", "recipients", "-c", str(carol), "--remove", "age1nobody")
    assert r.returncode == 1 and "is not in" in r.stderr


def test_provision_device_key_registry_and_recipients_then_a_sealed_clip_opens(tmp_path: Path,
                                                                              sample_videos) -> None:
    bdir, _ = provision.create_broker(tmp_path / "b", hostnames=["localhost"], ips=["127.0.0.1"])
    provision.add_identity(bdir, "owner", "carol")
    carol = owner_config(tmp_path, "carol")
    member = json.loads(run_cli("owner", "keys", "init", "-c", str(carol), "--json", check=True).stdout)
    [secret] = re.findall(r"AGE-SECRET-KEY-1[0-9A-Z]+", run_cli("owner", "keys", "recovery", "-c", str(carol),
                                                                check=True).stdout)
    extra = age.generate_identity()
    out = tmp_path / "bundle"
    r = run_cli("provision", "device", "--broker-dir", str(bdir.root), "--id", "gate", "--owner", "carol",
                "--out", str(out), "--config-dir", str(out), "--recipients-file", member["recipients_file"],
                "--recipient", str(extra.recipient))  # encryption is on by default once recipients are known
    assert r.returncode == 0, r.stderr
    assert "encryption ON" in r.stderr and "--public-key ed25519:" in r.stderr
    key_file = out / "device_ed25519.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pub = (out / "device_ed25519.pub").read_text().strip()
    assert pub == signing.public_key_text(signing.load_private_key(key_file)) and pub in r.stderr
    assert json.loads((bdir.root / "device-keys.json").read_text()) == {"gate": pub}
    cfg = load_config(out / "device.yaml", env={})
    assert cfg.encryption.enabled and cfg.encryption.device_key_file == key_file
    assert len(cfg.encryption.recipients) == 3 and str(extra.recipient) in cfg.encryption.recipients
    assert cfg.encryption.snapshot_in_clear is False
    for f in out.rglob("*"):  # the bundle holds no identity that opens a clip
        if f.is_file():
            assert b"AGE-SECRET-KEY" not in f.read_bytes().upper()

    # the provisioned device records; the recovery key (age CLI) opens it and the registered key verifies it
    bikes = next(p for p in sample_videos if p.name == "bikes.mp4")
    clip = record_clip(tmp_path / "spool", bikes, sealing=sealing_from_config(cfg), frames=150, device_id="gate")
    rec_file = tmp_path / "recovery.txt"
    age.save_identity(age.parse_identity(secret), rec_file)
    video = subprocess.run(["age", "-d", "-i", str(rec_file), str(clip.video)], capture_output=True, check=True)
    assert video.stdout[4:8] == b"ftyp"
    man = subprocess.run(["age", "-d", "-i", member["identity_file"], str(clip.path / SEALED_FILES["manifest"])],
                         capture_output=True, check=True).stdout
    registered = json.loads((bdir.root / "device-keys.json").read_text())["gate"]
    assert mf.verify_manifest(mf.load_manifest(man), registered).device_id == "gate"

    # --rotate renews broker credentials but keeps the signing identity
    r = run_cli("provision", "device", "--broker-dir", str(bdir.root), "--id", "gate", "--owner", "carol",
                "--out", str(out), "--config-dir", str(out), "--rotate")
    assert r.returncode == 0, r.stderr
    assert (out / "device_ed25519.pub").read_text().strip() == pub
    assert load_config(out / "device.yaml", env={}).encryption.enabled is False  # no recipients this time
    assert "WARNING: encryption OFF" in r.stderr
    # recipients given, and still clear only when asked for explicitly
    r = run_cli("provision", "device", "--broker-dir", str(bdir.root), "--id", "gate", "--owner", "carol",
                "--out", str(out), "--config-dir", str(out), "--rotate", "--recipient", str(extra.recipient),
                "--no-encrypt")
    assert r.returncode == 0, r.stderr
    cfg = load_config(out / "device.yaml", env={})
    assert cfg.encryption.enabled is False and cfg.encryption.recipients == [str(extra.recipient)]


def test_provision_refuses_bad_recipients_without_echoing_them(tmp_path: Path) -> None:
    bdir, _ = provision.create_broker(tmp_path / "b", hostnames=["localhost"], ips=["127.0.0.1"])
    provision.add_identity(bdir, "owner", "carol")
    secret = str(age.generate_identity())
    before = bdir.registry_file.read_text()
    for args, why in ((["--recipient", secret], "not an age recipient"),
                      (["--encrypt"], "--encrypt needs the household's recipients"),
                      (["--recipients-file", str(tmp_path / "missing.txt")], "cannot read recipients file")):
        r = run_cli("provision", "device", "--broker-dir", str(bdir.root), "--id", "gate", "--owner", "carol",
                    *args)
        assert r.returncode == 2 and why in r.stderr, r.stderr
        assert secret not in r.stdout + r.stderr
        assert "Traceback" not in r.stderr
    assert bdir.registry_file.read_text() == before  # nothing was issued
    assert not (bdir.root / "device-keys.json").exists()
