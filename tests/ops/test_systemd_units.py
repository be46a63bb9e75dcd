"""The shipped units pass `systemd-analyze verify` and keep their hardening."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ops import REPO

UNITS = sorted((REPO / "systemd").glob("*.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")


def parse(unit: Path) -> dict[str, dict[str, list[str]]]:
    """Unit file -> {section: {key: [values...]}} (keys may repeat in systemd units)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def scratch_copy(unit: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this checkout's real `doorbell` (verify needs it to exist)."""
    exe = Path(sys.executable).parent / "doorbell"
    assert exe.exists(), "the doorbell console script is not installed in this venv"
    text = unit.read_text().replace("/opt/doorbell/venv/bin/doorbell", str(exe))
    out = tmp_path / unit.name
    out.write_text(text)
    return out


def test_the_three_units_exist() -> None:
    assert [u.name for u in UNITS] == ["doorbell-agent.service", "doorbell-firmware.service",
                                       "doorbell-sharing.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verify_passes(unit: Path, tmp_path: Path) -> None:
    copy = scratch_copy(unit, tmp_path)
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    complaints = [ln for ln in r.stderr.splitlines() if unit.name in ln or str(copy) in ln]
    assert complaints == [], r.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_hardening_baseline(unit: Path) -> None:
    s = parse(unit)["Service"]
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert re.fullmatch(r"\d+s", one["WatchdogSec"])
    assert one["Restart"] == "on-failure"
    assert "StartLimitBurst" in parse(unit)["Unit"] and "StartLimitIntervalSec" in parse(unit)["Unit"]
    assert one.get("User") and one["User"] != "root"
    for key, want in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                      "PrivateTmp": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
                      "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                      "ProtectControlGroups": "yes", "LockPersonality": "yes",
                      "SystemCallArchitectures": "native", "DevicePolicy": "closed"}.items():
        assert one.get(key) == want, f"{unit.name}: {key}={one.get(key)!r}, want {want!r}"
    assert s["SystemCallFilter"][0] == "@system-service"
    assert all(p.startswith("/var/lib/doorbell") for p in s.get("ReadWritePaths", []))
    # Secrets never in the unit itself.
    assert "Environment" not in s or not any("PASSWORD" in e.upper() for e in s["Environment"])


def test_firmware_never_touches_the_network_and_sees_only_camera_and_gpio() -> None:
    s = parse(REPO / "systemd" / "doorbell-firmware.service")["Service"]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert s["PrivateNetwork"] == ["yes"] and s["IPAddressDeny"] == ["any"]
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert allowed <= {"char-video4linux", "char-media", "char-dma_heap", "char-vchiq", "char-vcsm-cma",
                       "char-gpiochip", "char-bcm2835-gpiomem", "char-rpi-gpiomem"}
    assert s["SupplementaryGroups"] == ["gpio video"]


@pytest.mark.parametrize("name", ["doorbell-agent.service", "doorbell-sharing.service"])
def test_network_services_get_no_devices(name: str) -> None:
    s = parse(REPO / "systemd" / name)["Service"]
    assert s["PrivateDevices"] == ["yes"] and "DeviceAllow" not in s
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_security_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze security --offline` score; the figures are in docs/security.md."""
    copy = scratch_copy(unit, tmp_path)
    r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(copy)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0  # "OK" or "SAFE" on systemd's 0..10 scale


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_service_command_refuses_a_placeholder_secret(unit: Path, tmp_path: Path) -> None:
    """Run the unit's own ExecStart with a config whose password is 'changeme': it must exit
    non-zero at once, naming the key, before starting anything."""
    import shlex
    exec_start = parse(unit)["Service"]["ExecStart"][0]
    config = tmp_path / "placeholder.yaml"
    config.write_text("device:\n  id: dev-a\nmqtt:\n  username: dev-a\n  password: changeme\n"
                      f"spool:\n  dir: {tmp_path / 'spool'}\nagent:\n  state_dir: {tmp_path / 'agent'}\n")
    argv = shlex.split(exec_start.replace("${CREDENTIALS_DIRECTORY}/sharing.yaml", str(config)))
    argv = [str(Path(sys.executable).parent / "doorbell")] + argv[1:]
    argv = [str(config) if a.startswith("/etc/doorbell/") else a for a in argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0
    assert f"{config}: mqtt.password: placeholder secret" in r.stderr, r.stderr
    assert "changeme" not in r.stderr
