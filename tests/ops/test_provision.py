"""Provisioning end to end: generated CA/certs/conf/passwd/ACL served by the real
Mosquitto, unique credentials per identity, TLS enforced, ACL enforced."""
from __future__ import annotations

import json
import ssl
import stat
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from doorbell.core.broker_acl import verify_password
from doorbell.core.config import load_config
from doorbell.core.mqtt import MqttConnectError
from doorbell.ops import provision
from tests.support.ops import Fleet, run_cli


def test_device_connects_over_tls_with_its_provisioned_credentials(fleet: Fleet) -> None:
    c = fleet.client("dev-a")
    try:
        sock = c.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        rc = c.pub("doorbell/v1/devices/dev-a/status", b"online", qos=1)
        assert not rc.is_failure
    finally:
        c.close()


def test_device_cannot_read_another_devices_commands(fleet: Fleet) -> None:
    spy = fleet.client("dev-a")
    victim = fleet.client("dev-b")
    owner_b = fleet.client("owner-b")
    try:
        spy.sub("doorbell/v1/devices/dev-b/commands/#")
        victim.sub("doorbell/v1/devices/dev-b/commands/#")
        rc = owner_b.pub("doorbell/v1/devices/dev-b/commands/snapshot", b'{"v":1}', qos=1)
        assert not rc.is_failure
        got = victim.expect("doorbell/v1/devices/dev-b/commands/#", wait=5)
        assert got.payload == b'{"v":1}'  # the owner's command reaches its own device ...
        assert spy.drain(settle=0.5) == []  # ... and never the other device
    finally:
        for c in (spy, victim, owner_b):
            c.close()


def test_owner_cannot_command_someone_elses_device(fleet: Fleet) -> None:
    victim = fleet.client("dev-b")
    intruder = fleet.client("owner-a")
    try:
        victim.sub("doorbell/v1/devices/dev-b/commands/#")
        rc = intruder.pub("doorbell/v1/devices/dev-b/commands/privacy", b'{"v":1}', qos=1)
        assert rc.is_failure  # Mosquitto answers "Not authorized" (135)
        assert victim.drain(settle=0.5) == []
    finally:
        victim.close()
        intruder.close()


def test_plain_mqtt_to_the_tls_port_fails(fleet: Fleet) -> None:
    with pytest.raises((ConnectionError, OSError)):
        fleet.client("dev-a", tls=False, timeout=2)


def test_wrong_ca_fails(fleet: Fleet, tmp_path) -> None:
    _key, other_ca = provision.make_ca("Some other CA")
    bad = tmp_path / "other-ca.crt"
    bad.write_bytes(provision.cert_pem(other_ca))
    with pytest.raises(MqttConnectError) as refused:
        fleet.client("dev-a", ca=bad)
    assert refused.value.kind == "tls-untrusted"


def test_client_certificate_is_required(fleet: Fleet) -> None:
    with pytest.raises((ConnectionError, OSError)):
        fleet.client("dev-a", cert=False, timeout=2)


def test_wrong_password_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ConnectionError):
        fleet.client("dev-a", password=fleet.config("dev-b")["mqtt"]["password"])


def test_credentials_are_unique_and_only_hashes_stay_on_the_broker(fleet: Fleet) -> None:
    names = ["dev-a", "dev-b", "owner-a", "owner-b", "sharing-service"]
    passwords = {n: fleet.config(n)["mqtt"]["password"] for n in names}
    assert len(set(passwords.values())) == len(names)
    assert all(len(p) >= 32 for p in passwords.values())
    passwd = fleet.bdir.passwd.read_text()
    lines = dict(ln.split(":", 1) for ln in passwd.splitlines())
    assert set(lines) == set(names)
    for n, p in passwords.items():
        assert p not in passwd
        assert verify_password(p, lines[n])
    serials = set()
    for n in names:
        cert = x509.load_pem_x509_certificate((fleet.bundle(n) / "tls" / "client.crt").read_bytes())
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == n
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        serials.add(cert.serial_number)
    assert len(serials) == len(names)


def test_bundle_files_are_private_and_config_is_valid(fleet: Fleet) -> None:
    b = fleet.bundle("dev-a")
    for secret in (b / "device.yaml", b / "tls" / "client.key", fleet.bdir.ca_key, fleet.bdir.passwd):
        mode = stat.S_IMODE(secret.stat().st_mode)
        assert mode & 0o027 == 0, f"{secret} is mode {mode:o}"
    assert stat.S_IMODE(fleet.bdir.ca_key.stat().st_mode) == 0o600
    cfg = load_config(b / "device.yaml", env={})
    cfg.require("mqtt.password", "mqtt.username")
    assert cfg.device.id == "dev-a" and cfg.device.owner_id == "owner-a"
    assert cfg.mqtt.tls.enabled and cfg.mqtt.port == fleet.port
    assert cfg.s3.prefix == "devices/"  # the fleet prefix; the policy scopes devices/dev-a/
    r = run_cli("config", "check", "-q", "-c", str(b / "device.yaml"), "--require", "mqtt.password")
    assert r.returncode == 0, r.stderr


def test_device_s3_policy_is_limited_to_its_prefix(fleet: Fleet) -> None:
    policy = json.loads((fleet.bundle("dev-b") / "s3-policy.json").read_text())
    objects, listing = policy["Statement"]
    assert objects["Resource"] == ["arn:aws:s3:::doorbell-clips/devices/dev-b/*"]
    assert "s3:DeleteObject" not in objects["Action"] and "s3:PutObject" in objects["Action"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["devices/dev-b/*"]}}


def test_duplicate_and_unknown_owner_are_refused(fleet: Fleet) -> None:
    bdir = str(fleet.bdir.root)
    r = run_cli("provision", "device", "--broker-dir", bdir, "--id", "dev-a", "--owner", "owner-a")
    assert r.returncode != 0 and "already exists" in r.stderr
    r = run_cli("provision", "device", "--broker-dir", bdir, "--id", "owner-a", "--owner", "owner-a")
    assert r.returncode != 0 and "already used by a owner" in r.stderr
    r = run_cli("provision", "device", "--broker-dir", bdir, "--id", "dev-z", "--owner", "nobody")
    assert r.returncode != 0 and "not provisioned" in r.stderr
    r = run_cli("provision", "broker", "--out", bdir)
    assert r.returncode != 0 and "refusing to overwrite" in r.stderr


def test_rotation_revokes_the_old_password_after_reload(fleet: Fleet) -> None:
    old = fleet.config("dev-a")["mqtt"]["password"]
    r = run_cli("provision", "device", "--broker-dir", str(fleet.bdir.root), "--id", "dev-a",
                "--owner", "owner-a", "--rotate", "--config-dir", str(fleet.bundle("dev-a")))
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout is exactly the policy JSON, pipeable into a file
    import os
    import signal
    os.kill(fleet.server.pid, signal.SIGHUP)  # what `systemctl reload mosquitto` does
    deadline = time.monotonic() + 15
    while True:
        try:
            fleet.client("dev-a", password=old, timeout=2).close()
        except ConnectionError:
            break
        assert time.monotonic() < deadline, "old password still accepted after reload"
        time.sleep(0.1)
    fleet.client("dev-a").close()  # the new bundle works


def test_acl_is_rendered_by_broker_acl_from_the_registry(fleet: Fleet) -> None:
    from doorbell.core.broker_acl import render_acl
    reg = yaml.safe_load(fleet.bdir.registry_file.read_text())
    devices = {d: i["owner"] for d, i in reg["devices"].items()}
    assert fleet.bdir.acl.read_text() == render_acl(devices, owners=list(reg["owners"]))
    registry_text = fleet.bdir.registry_file.read_text()
    for name in ("dev-a", "dev-b", "owner-a", "sharing-service"):
        assert fleet.config(name)["mqtt"]["password"] not in registry_text


def test_shipped_broker_examples_match_the_generator() -> None:
    """config/mosquitto/*.example are what provisioning renders (regenerate: python -m doorbell.ops.provision)."""
    from tests.support.ops import REPO
    for name, text in provision.render_examples().items():
        assert (REPO / "config" / "mosquitto" / name).read_text() == text, f"{name} is stale"


def test_s3_secret_comes_from_the_environment_never_argv(tmp_path) -> None:
    bdir, _ = provision.create_broker(tmp_path / "b", hostnames=["mqtt.example.org"], ips=[])
    provision.add_identity(bdir, "owner", "carol")
    secret = "s3-secret-value-for-gate-01"
    r = run_cli("provision", "device", "--broker-dir", str(bdir.root), "--id", "gate", "--owner", "carol",
                "--s3-access-key-id", "AKGATE01", "--s3-endpoint", "https://s3.example.org",
                "--s3-prefix-base", "site-7", env={"DOORBELL_S3_SECRET": secret})
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    cfg = load_config(bdir.client_dir("gate") / "device.yaml", env={})
    assert cfg.s3.access_key_id == "AKGATE01" and cfg.s3.secret_access_key.get_secret_value() == secret
    assert cfg.s3.prefix == "site-7/devices/" and cfg.mqtt.host == "mqtt.example.org"
    policy = json.loads(r.stdout)
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::doorbell-clips/site-7/devices/gate/*"]
    seaweed = json.loads((bdir.client_dir("gate") / "seaweedfs-identity.json").read_text())
    assert seaweed["actions"][0] == "Write:doorbell-clips/site-7/devices/gate/*"


def test_service_users_and_removal(tmp_path) -> None:
    bdir, _svc = provision.create_broker(tmp_path / "b", hostnames=["localhost"], ips=["127.0.0.1"])
    cfg = yaml.safe_load((bdir.client_dir("sharing-service") / "sharing.yaml").read_text())
    assert cfg["mqtt"]["tls"]["key_file"] == "/run/credentials/doorbell-sharing.service/client.key"
    r = run_cli("provision", "service", "--broker-dir", str(bdir.root), "--id", "homeassistant", "--role", "ha")
    assert r.returncode == 0, r.stderr
    provision.add_identity(bdir, "owner", "dave")
    provision.add_identity(bdir, "device", "porch", owner="dave")
    acl = bdir.acl.read_text()
    assert "user homeassistant" in acl and "user porch" in acl
    with pytest.raises(provision.ProvisionError, match="still owns porch"):
        provision.remove_identity(bdir, "dave")
    provision.remove_identity(bdir, "porch")
    assert "user porch" not in bdir.acl.read_text()
    assert "porch:" not in bdir.passwd.read_text()
    assert "homeassistant:" in bdir.passwd.read_text() and "sharing-service:" in bdir.passwd.read_text()


def test_broker_refuses_a_non_empty_directory(tmp_path) -> None:
    (tmp_path / "mosquitto.conf").write_text("# someone else's file\n")
    before = tmp_path.stat().st_mode
    with pytest.raises(provision.ProvisionError, match="not empty"):
        provision.create_broker(tmp_path, hostnames=["localhost"], ips=[])
    assert tmp_path.stat().st_mode == before and sorted(p.name for p in tmp_path.iterdir()) == ["mosquitto.conf"]


def test_home_assistant_bundle_is_named_and_explained_for_home_assistant(tmp_path) -> None:
    """HA reads no sharing.yaml: its bundle says what goes into HA's MQTT form, client certificate included."""
    bdir, _svc = provision.create_broker(tmp_path / "b", hostnames=["mqtt.home.lan"], ips=["127.0.0.1"])
    r = run_cli("provision", "service", "--broker-dir", str(bdir.root), "--id", "homeassistant", "--role", "ha")
    assert r.returncode == 0, r.stderr
    out = bdir.client_dir("homeassistant")
    assert not (out / "sharing.yaml").exists()
    bundle = out / "home-assistant.yaml"
    text = bundle.read_text()
    assert "sharing" not in text.lower()
    assert "Home Assistant does not read this file" in text
    assert "tls/client.crt" in text and "tls/client.key" in text and "tls/ca.crt" in text
    assert "Broker: mqtt.home.lan   Port: 8883   Username: homeassistant" in text
    cfg = yaml.safe_load(text)["mqtt"]
    assert cfg["username"] == "homeassistant" and len(cfg["password"]) >= 16
    for key in ("ca_file", "cert_file", "key_file"):  # absolute paths to the files in the bundle
        assert Path(cfg["tls"][key]).is_file() and Path(cfg["tls"][key]).parent == out / "tls"
    assert str(bundle.parent) in r.stdout and "home-assistant" in r.stdout
    assert "sharing.yaml" not in r.stdout


def test_service_instance_logins_get_the_services_rules_and_one_secret_group(tmp_path) -> None:
    """Several sharing-service instances: `provision service --id sharing-service-N` (no --role needed)
    gives each its own login with exactly the service's ACL, and every bundle the same random group."""
    from doorbell.core.broker_acl import acl_rules, service_rules

    bdir, _svc = provision.create_broker(tmp_path / "b", hostnames=["localhost"], ips=["127.0.0.1"])
    groups = []
    for n in (1, 2):
        r = run_cli("provision", "service", "--broker-dir", str(bdir.root), "--id", f"sharing-service-{n}")
        assert r.returncode == 0, r.stderr
        cfg = yaml.safe_load((bdir.client_dir(f"sharing-service-{n}") / "sharing.yaml").read_text())
        assert cfg["mqtt"]["username"] == f"sharing-service-{n}" and cfg["sharing"]["mqtt_shared"] is True
        groups.append(cfg["sharing"]["mqtt_share_group"])
    assert groups[0] == groups[1] and groups[0].startswith("sharing-") and len(groups[0]) == 40
    acl = bdir.acl.read_text()
    block = acl.split("user sharing-service-2\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == [f"topic {a} {t}" for a, t in service_rules()]
    rules = acl_rules({"porch": "dave"}, service_logins=["sharing-service-1"])
    assert rules["sharing-service-1"] == rules["sharing-service"]
    with pytest.raises(ValueError, match="two roles"):   # a device cannot be rendered as an instance login
        acl_rules({"sharing-service-3": "dave"}, service_logins=["sharing-service-3"])
