"""`doorbell wipe`: local clips, events, state and keys are erased after confirmation,
and the owner is told how to erase the cloud copies (ETSI EN 303 645 5.11-1)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from doorbell.core.config import load_config
from doorbell.core.protocol import DeviceEvent
from doorbell.core.spool import Spool
from tests.support.ops import run_cli


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A device with two clips (one uploaded), events, state, a TLS key and secrets in its config."""
    spool = Spool(tmp_path / "spool")
    for i in range(2):
        with spool.stage_clip() as st:
            st.video_path.write_bytes(os.urandom(4096))
            st.write_snapshot(b"\xff\xd8fake-jpeg\xff\xd9")
            now = time.time()
            clip = st.publish(device_id="dev-a", trigger="ring", started_at=now - 10, ended_at=now,
                              trigger_at=now - 6, pre_roll_s=4.0, duration_s=10.0)
        if i == 0:
            spool.mark_uploaded(clip.clip_id)
    spool.publish_event(DeviceEvent(device_id="dev-a", type="ring"))
    (spool.root / "state" / "settings.json").write_text("{}")
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "uploads.db").write_bytes(b"bookkeeping")
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "client.key").write_text("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
    (tls / "client.crt").write_text("cert")
    (tls / "ca.crt").write_text("ca")
    cfg = {
        "device": {"id": "dev-a", "owner_id": "owner-a"},
        "spool": {"dir": str(spool.root)},
        "agent": {"state_dir": str(agent)},
        "mqtt": {"host": "mqtt.example.org", "port": 8883, "username": "dev-a", "password": "Zq8vK2mN5xR7tY1w",
                 "tls": {"enabled": True, "ca_file": str(tls / "ca.crt"), "cert_file": str(tls / "client.crt"),
                         "key_file": str(tls / "client.key")}},
        "s3": {"bucket": "doorbell-clips", "prefix": "devices/", "endpoint_url": "https://s3.example.org",
               "access_key_id": "AKDEVA0001", "secret_access_key": "s3-secret-for-dev-a-0001"},
    }
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(cfg))
    os.chmod(path, 0o600)
    return path


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_refused_without_confirmation(device: Path) -> None:
    spool = device.parent / "spool"
    before = files_under(spool)
    r = run_cli("wipe", "--config", str(device), input="no\n")
    assert r.returncode == 1 and "nothing erased" in r.stderr
    assert files_under(spool) == before and (device.parent / "tls" / "client.key").exists()
    r = run_cli("wipe", "--config", str(device), input="")  # EOF: no answer is not a yes
    assert r.returncode == 1 and files_under(spool) == before


def test_dry_run_lists_and_keeps_everything(device: Path) -> None:
    spool = device.parent / "spool"
    before = files_under(spool)
    r = run_cli("wipe", "--config", str(device), "--dry-run")
    assert r.returncode == 0
    assert f"erase everything in {spool}" in r.stdout and "overwrite and delete" in r.stdout
    assert "nothing erased" in r.stdout
    assert files_under(spool) == before


def test_typed_confirmation_erases_data_keys_and_secrets(device: Path) -> None:
    tmp = device.parent
    assert len(files_under(tmp / "spool")) >= 8
    r = run_cli("wipe", "--config", str(device), input="dev-a\n")
    assert r.returncode == 0, r.stderr
    assert files_under(tmp / "spool") == [] and files_under(tmp / "agent") == []
    assert (tmp / "spool").is_dir() and (tmp / "agent").is_dir()  # the services' directories stay
    assert not (tmp / "tls" / "client.key").exists() and not (tmp / "tls" / "client.crt").exists()
    assert (tmp / "tls" / "ca.crt").exists()  # public, needed again after re-provisioning
    text = device.read_text()
    for secret in ("Zq8vK2mN5xR7tY1w", "AKDEVA0001", "s3-secret-for-dev-a-0001"):
        assert secret not in text and secret not in r.stdout
    assert oct(device.stat().st_mode & 0o777) == "0o600"
    cfg = load_config(device, env={})
    assert cfg.mqtt.password is None and cfg.device.id == "dev-a"
    # How to erase what the device cannot reach.
    assert "aws s3 rm --recursive s3://doorbell-clips/devices/dev-a/ --endpoint-url https://s3.example.org" in r.stdout
    assert "-r -n -t doorbell/v1/devices/dev-a/snapshot" in r.stdout
    assert "doorbell provision remove" in r.stdout


def test_yes_with_keep_credentials_erases_only_user_data(device: Path) -> None:
    tmp = device.parent
    before = device.read_text()
    r = run_cli("wipe", "--config", str(device), "--yes", "--keep-credentials")
    assert r.returncode == 0, r.stderr
    assert files_under(tmp / "spool") == []
    assert (tmp / "tls" / "client.key").exists() and device.read_text() == before
