"""`doorbell doctor` against real parts (Mosquitto, SeaweedFS, gpiozero MockFactory,
the synthetic camera): all green first, then one thing broken at a time."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from doorbell.ops.doctor import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Result,
    _camera_open_failure,
    check_clock,
    check_numpy,
    kernel_clock_synced,
    run_checks,
)
from doorbell.sandbox.embedded import free_port
from tests.support.ops import Fleet, run_cli


@pytest.fixture
def synced_flag(tmp_path: Path) -> Path:
    """systemd-timesyncd's flag file, as on a synchronised Pi."""
    flag = tmp_path / "synchronized"
    flag.touch()
    return flag


@pytest.fixture
def write_config(tmp_path: Path, broker, s3) -> Callable[..., Path]:
    """Write a device config wired to the real test broker and bucket, with one edit applied."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None, mode: int = 0o600) -> Path:
        data: dict[str, Any] = {
            "device": {"id": "dev-a", "owner_id": "owner-a"},
            "spool": {"dir": str(tmp_path / "spool")},
            "gpio": {"pin_factory": "mock"},
            "camera": {"backend": "synthetic", "width": 320, "height": 240},
            "mqtt": {"host": broker.host, "port": broker.port, "username": "dev-a",
                     "password": broker.users["dev-a"]},
            "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "access_key_id": s3.access_key,
                   "secret_access_key": s3.secret_key, "prefix": "devices/"},
            "retention": {"min_free_bytes": 1024 * 1024},
        }
        if edit:
            edit(data)
        path = tmp_path / "device.yaml"
        path.write_text(yaml.safe_dump(data))
        os.chmod(path, mode)
        return path

    return make


def doctor(path: Path, flag: Path, **kw: Any) -> dict[str, Result]:
    results = run_checks(path, firmware_running=False, timesync_flag=flag, **kw)
    by_name: dict[str, Result] = {}
    for r in results:  # keep the worst result per check
        prev = by_name.get(r.name)
        if prev is None or [OK, SKIP, WARN, FAIL].index(r.status) > [OK, SKIP, WARN, FAIL].index(prev.status):
            by_name[r.name] = r
    return by_name


def only_failure(results: dict[str, Result], name: str) -> Result:
    failed = sorted(n for n, r in results.items() if r.status == FAIL)
    assert failed == [name], {n: r.detail for n, r in results.items() if r.status != OK}
    assert results[name].fix, "every failure comes with a fix"
    return results[name]


def test_all_green(write_config, synced_flag) -> None:
    results = doctor(write_config(), synced_flag)
    assert {n: r.status for n, r in results.items()} == {n: OK for n in
        ("config", "secrets", "numpy", "camera", "gpio", "spool", "clock", "broker", "bucket")}
    assert "synthetic camera streaming" in results["camera"].detail
    assert "MiB/s with fsync" in results["spool"].detail


def test_invalid_config(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["mqtt"].update(prot=1)), synced_flag), "config")
    assert "mqtt.prot: unknown key" in r.detail


def test_world_readable_secrets(write_config, synced_flag) -> None:
    path = write_config(mode=0o644)
    r = only_failure(doctor(path, synced_flag), "secrets")
    assert "mode 0644" in r.detail and f"chmod 600 {path}" in r.fix


def test_camera_missing(write_config, synced_flag, tmp_path) -> None:
    missing = tmp_path / "no-such-video.mp4"
    r = only_failure(doctor(write_config(lambda d: d["camera"].update(backend="file", source=str(missing))),
                            synced_flag), "camera")
    assert "file camera" in r.detail


def test_picamera2_off_the_pi_is_explained(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["camera"].update(backend="picamera2")), synced_flag), "camera")
    assert "picamera2" in r.detail and "python3-picamera2" in r.fix


def test_gpio_pin_in_use(write_config, synced_flag, mock_pins) -> None:
    from gpiozero import Button
    holder = Button(17, pin_factory=mock_pins)  # another process/device has the button pin
    try:
        r = only_failure(doctor(write_config(), synced_flag, pin_factory=mock_pins), "gpio")
        assert "button pin 17" in r.detail and "systemctl stop doorbell-firmware" in r.fix
    finally:
        holder.close()


def test_spool_not_a_directory(write_config, synced_flag, tmp_path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    r = only_failure(doctor(write_config(lambda d: d["spool"].update(dir=str(blocker))), synced_flag), "spool")
    assert "cannot be created" in r.detail or "not a directory" in r.detail


def test_spool_disk_full(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["retention"].update(min_free_bytes=2**60)), synced_flag), "spool")
    assert "MiB free" in r.detail and "free space" in r.fix


def test_clock_not_synchronised(write_config, tmp_path) -> None:
    absent = tmp_path / "no-flag"
    r = only_failure(doctor(write_config(), absent, clock_probe=lambda: (False, "kernel: unsynchronised")), "clock")
    assert "timedatectl set-ntp true" in r.fix


def test_kernel_clock_probe_reads_adjtimex() -> None:
    synced, detail = kernel_clock_synced()
    assert synced in (True, False) and detail.startswith("kernel: ")
    assert check_clock(lambda: (None, "no adjtimex"), Path("/nonexistent")).status == WARN


def test_broker_wrong_password(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["mqtt"].update(password="wrong-password-123")),
                            synced_flag), "broker")
    assert "refused 'dev-a'" in r.detail


def test_broker_unreachable(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["mqtt"].update(port=free_port())), synced_flag), "broker")
    assert "cannot reach the broker" in r.detail


def test_broker_acl_refuses_foreign_device_topics(write_config, synced_flag) -> None:
    """Credentials of dev-a in a config claiming to be dev-b: the ACL says no."""
    r = only_failure(doctor(write_config(lambda d: d["device"].update(id="dev-b")), synced_flag), "broker")
    assert "differs from device.id" in r.detail


def test_bucket_wrong_secret(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["s3"].update(secret_access_key="not-the-secret-key")),
                            synced_flag), "bucket")
    assert "credentials rejected" in r.detail or "access denied" in r.detail


def test_bucket_missing(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["s3"].update(bucket="no-such-bucket-here")), synced_flag),
                     "bucket")
    assert "does not exist" in r.detail or "denied" in r.detail


def test_bucket_unreachable(write_config, synced_flag) -> None:
    r = only_failure(doctor(write_config(lambda d: d["s3"].update(endpoint_url=f"http://127.0.0.1:{free_port()}")),
                            synced_flag), "bucket")
    assert "cannot reach" in r.detail


def test_provisioned_tls_bundle_passes_and_wrong_ca_fails(fleet: Fleet, tmp_path, synced_flag) -> None:
    from doorbell.ops import provision
    cfg = fleet.config("dev-a")
    path = tmp_path / "tls-device.yaml"
    path.write_text(yaml.safe_dump(cfg))
    os.chmod(path, 0o600)
    results = run_checks(path, skip={"numpy", "camera", "gpio", "spool", "bucket"}, firmware_running=False,
                         timesync_flag=synced_flag)
    assert {r.name: r.status for r in results} == {"config": OK, "secrets": OK, "clock": OK, "broker": OK}
    _k, other = provision.make_ca("Impostor CA")
    bad_ca = tmp_path / "impostor.crt"
    bad_ca.write_bytes(provision.cert_pem(other))
    cfg["mqtt"]["tls"]["ca_file"] = str(bad_ca)
    path.write_text(yaml.safe_dump(cfg))
    broker = [r for r in run_checks(path, skip={"camera", "gpio", "spool", "bucket", "clock"},
                                    firmware_running=False) if r.name == "broker"][0]
    assert broker.status == FAIL and "not trusted" in broker.detail


def test_cli_report_json_and_exit_codes(write_config) -> None:
    path = write_config()
    ok = run_cli("doctor", "--config", str(path), "--skip", "clock", "--skip", "camera", "--skip", "gpio")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all checks passed" in ok.stdout
    os.chmod(path, 0o640)
    bad = run_cli("doctor", "--config", str(path), "--skip", "clock", "--skip", "camera", "--skip", "gpio", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["secrets"] and "chmod 600" in failed[0]["fix"]
    text = run_cli("doctor", "--config", str(path), "--skip", "clock", "--skip", "camera", "--skip", "gpio")
    assert "[FAIL] secrets" in text.stdout and "fix: chmod 600" in text.stdout and "1 problem(s) found" in text.stdout


def test_prefix_scoped_device_key_on_real_seaweedfs(write_config, synced_flag, s3) -> None:
    """The provisioned SeaweedFS scope lets the device write its own prefix only; doctor accepts
    such a key (HEAD on the bucket is refused, the write probe under the prefix works)."""
    import secrets as _secrets

    from botocore.exceptions import ClientError

    from doorbell.ops.provision import seaweedfs_device_actions
    access, secret = "DEVA" + _secrets.token_hex(8).upper(), _secrets.token_urlsafe(30)
    s3.add_identity("dev-a-scoped", access, secret, seaweedfs_device_actions(s3.bucket, "devices/dev-a/"))
    path = write_config(lambda d: d["s3"].update(access_key_id=access, secret_access_key=secret))
    results = doctor(path, synced_flag)
    assert results["bucket"].status == OK, results["bucket"].detail
    assert "may write its prefix" in results["bucket"].detail  # HEAD refused, write probe accepted
    import boto3
    c = boto3.client("s3", endpoint_url=s3.endpoint_url, aws_access_key_id=access,
                     aws_secret_access_key=secret, region_name="us-east-1")
    c.put_object(Bucket=s3.bucket, Key="devices/dev-a/clip.mp4", Body=b"mine")
    with pytest.raises(ClientError) as denied:
        c.put_object(Bucket=s3.bucket, Key="devices/dev-b/clip.mp4", Body=b"not mine")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_doctor_keeps_stderr_quiet_off_the_pi(write_config) -> None:
    """No "System has not been booted with systemd" and no gpiozero PinFactoryFallback
    warnings on the terminal: what gpiozero tried goes into the gpio finding instead."""
    path = write_config(lambda d: d["gpio"].update(pin_factory="auto"))
    r = run_cli("doctor", "--config", str(path), "--skip", "clock", "--skip", "camera", "--skip", "broker",
                "--skip", "bucket", "--skip", "spool")
    assert r.stderr == ""
    if "[FAIL] gpio" in r.stdout:  # not a Pi: the finding names the drivers gpiozero tried
        assert "no GPIO driver available" in r.stdout and "tried lgpio" in r.stdout


def _apt_dist(root: Path, version: str) -> Path:
    """A Debian dist-packages holding numpy ``version`` as apt installs it (package + egg-info)."""
    (root / "numpy").mkdir(parents=True)
    (root / "numpy" / "__init__.py").write_text(f"__version__ = '{version}'\n")
    info = root / f"numpy-{version}.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: numpy\nVersion: {version}\n")
    return root


def test_numpy_shadowing_apt_numpy_is_named(tmp_path: Path) -> None:
    """The venv's numpy 2 ahead of apt's 1.24 (what picamera2's simplejpeg was built against)."""
    import numpy
    major = int(numpy.__version__.split(".")[0])
    other = "1.24.2" if major >= 2 else "2.2.4"
    r = check_numpy(_apt_dist(tmp_path / "clash", other))
    assert r.status == FAIL
    assert "numpy ABI mismatch" in r.detail and other in r.detail and numpy.__version__ in r.detail
    assert "install-pi.sh" in r.fix and "pip uninstall numpy" in r.fix
    same = check_numpy(_apt_dist(tmp_path / "same", f"{major}.0.0"))
    assert same.status == WARN and "still load" in same.detail
    assert check_numpy(tmp_path / "no-apt").status == OK


@pytest.mark.parametrize("exc", [
    ValueError("numpy.dtype size changed, may indicate binary incompatibility. "
               "Expected 96 from C header, got 88 from PyObject"),
    ImportError("numpy.core.multiarray failed to import"),
], ids=["numpy1-module-under-numpy2", "numpy2-module-under-numpy1"])
def test_camera_numpy_abi_failure_is_not_blamed_on_the_ribbon_cable(exc: Exception) -> None:
    """The two ways an apt extension built against another numpy fails at import (picamera2 #1088, #1211)."""
    from firmware.camera import CameraError
    try:  # raised the way picamera2's import raises it: from inside its own import
        try:
            raise exc
        except Exception as inner:
            raise CameraError("picamera2 failed to load") from inner
    except CameraError as outer:
        r = _camera_open_failure("picamera2", outer, CameraError)
    assert r.status == FAIL and "numpy ABI mismatch" in r.detail
    assert "ribbon" not in r.detail + r.fix and "install-pi.sh" in r.fix
    plain = _camera_open_failure("picamera2", RuntimeError("Camera __init__ sequence did not complete"), CameraError)
    assert "ribbon cable" in plain.fix  # a real camera fault keeps its hint
