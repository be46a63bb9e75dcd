"""scripts/install-pi.sh run for real against a scratch root: files, modes, owners,
enabled units; a second run is a no-op (same manifest of paths, modes, owners, hashes)."""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from doorbell.ops import provision
from tests.support.ops import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to the service user needs root")

SERVICE_USER = "nobody"  # an existing unprivileged account stands in for `doorbell` in a scratch root
SOURCES = ["setup.py", "README.md", "doorbell", "firmware", "cloud_agent", "sharing_service",
           "config", "systemd", "scripts", "docs", "SECURITY.md"]


def snapshot_source(dst: Path) -> Path:
    """A frozen copy of the checkout (other work in the tree must not change what we install)."""
    dst.mkdir(parents=True)
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dst / name)
    return dst


def manifest(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner, group and content hash / link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir",)
            else:
                what = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            out[str(p.relative_to(root))] = (*what, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def base_python() -> str:
    """The interpreter the script makes its venv with: the Pi's /usr/bin/python3 if it can
    make venvs here, else the one under this test run's venv."""
    import sys
    probe = subprocess.run(["/usr/bin/python3", "-c", "import venv, ensurepip"], capture_output=True)
    return "/usr/bin/python3" if probe.returncode == 0 else getattr(sys, "_base_executable", sys.executable)


def run(src: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORBELL_", "VIRTUAL_ENV"))}
    env["PYTHON"] = base_python()
    r = subprocess.run(["bash", str(src / "scripts" / "install-pi.sh"), "--root", str(root),
                        "--user", SERVICE_USER, "--extras", "", *args],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, f"install-pi.sh failed:\n{r.stdout}\n{r.stderr}"
    return r


def owner(p: Path) -> tuple[int, str, str]:
    st = p.stat()
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("prov")
    bdir, _ = provision.create_broker(base / "broker", hostnames=["mqtt.example.org"], ips=[])
    provision.add_identity(bdir, "owner", "owner-a")
    ident = provision.add_identity(bdir, "device", "frontdoor", owner="owner-a")
    out = base / "bundle"
    provision.device_bundle(bdir, ident, owner="owner-a", out=out)
    return out


def test_dry_run_prints_every_action_and_changes_nothing(tmp_path: Path, bundle: Path) -> None:
    src = snapshot_source(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    r = run(src, root, "--dry-run", "--bundle", str(bundle))
    assert list(root.iterdir()) == []
    out = r.stdout
    for action in ("would: create venv", "would: pip install", f"would: install {root}/etc/doorbell/device.yaml (600",
                   f"would: create {root}/var/lib/doorbell/spool (750", "would: systemctl --root",
                   f"would: install {root}/etc/systemd/system/doorbell-firmware.service (644 root:root)"):
        assert action in out, out
    assert "dry run:" in out and "nothing was changed" in out


def test_install_for_real_then_second_run_is_a_no_op(tmp_path: Path, bundle: Path) -> None:
    src = snapshot_source(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    group = grp.getgrgid(pwd.getpwnam(SERVICE_USER).pw_gid).gr_name

    # 0. A dry run announces each action once, and as many as the real run then takes.
    dry = run(src, root, "--dry-run")
    would = [ln for ln in dry.stdout.splitlines() if "would: " in ln]
    assert len(would) == len(set(would)), "an action announced twice"
    planned = int(re.search(r"dry run: (\d+) action", dry.stdout).group(1))
    assert planned == len(would)

    # 1. Without a bundle: the commented default config, firmware enabled, agent left off.
    first = run(src, root)
    assert f"done: {planned} change(s)" in first.stdout, (planned, first.stdout)
    etc = root / "etc" / "doorbell"
    assert (etc / "device.yaml").read_text() == (REPO / "config" / "device.yaml").read_text()
    assert owner(etc / "device.yaml") == (0o600, SERVICE_USER, group)
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["doorbell-firmware.service"]
    assert "agent stays off" in first.stderr

    # 2. The maker tunes a setting, then installs the provisioned bundle: secrets installed
    #    privately and laid over the maker's file (the tuning survives), agent enabled, no reinstall.
    (etc / "device.yaml").write_text((etc / "device.yaml").read_text().replace("button_pin: 17", "button_pin: 5"))
    second = run(src, root, "--bundle", str(bundle))
    assert "pip install" not in second.stdout
    installed = yaml.safe_load((etc / "device.yaml").read_text())
    provisioned = yaml.safe_load((bundle / "device.yaml").read_text())
    assert installed["gpio"]["button_pin"] == 5 and installed["camera"]["backend"] == "picamera2"
    for section in ("device", "mqtt"):
        assert {k: installed[section][k] for k in provisioned[section]} == provisioned[section]
    assert installed["s3"]["prefix"] == provisioned["s3"]["prefix"]
    assert "button_pin: 5" in (etc / "device.yaml.bak").read_text()
    assert owner(etc / "device.yaml") == (0o600, SERVICE_USER, group)
    assert owner(etc / "device.yaml.bak") == (0o600, SERVICE_USER, group)
    assert owner(etc / "tls" / "client.key") == (0o600, SERVICE_USER, group)
    assert owner(etc / "tls" / "ca.crt") == (0o644, "root", "root")
    assert owner(etc) == (0o750, "root", group)
    assert sorted(p.name for p in wants.iterdir()) == ["doorbell-agent.service", "doorbell-firmware.service"]
    for unit in ("doorbell-firmware.service", "doorbell-agent.service"):
        installed = root / "etc" / "systemd" / "system" / unit
        assert owner(installed) == (0o644, "root", "root")
        assert installed.read_text() == (REPO / "systemd" / unit).read_text()
    assert not (root / "etc" / "systemd" / "system" / "doorbell-sharing.service").exists()  # cloud only
    state = root / "var" / "lib" / "doorbell"
    for d in (state, state / "spool", state / "agent"):
        assert owner(d) == (0o750, SERVICE_USER, group)
    venv = root / "opt" / "doorbell" / "venv"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    r = subprocess.run([str(venv / "bin" / "doorbell"), "config", "check", "-q", "-c", str(etc / "device.yaml"),
                        "--require", "mqtt.password"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr  # the installed package runs and accepts the installed config

    # 3. Once more: nothing changes, and it says so.
    before = manifest(root)
    third = run(src, root, "--bundle", str(bundle))
    assert "nothing to do" in third.stdout, third.stdout
    assert manifest(root) == before

    # 4. Drift is repaired: a secret made world-readable goes back to 0600.
    os.chmod(etc / "device.yaml", 0o644)
    fourth = run(src, root, "--bundle", str(bundle))
    assert f"fix {etc}/device.yaml to 600" in fourth.stdout
    assert manifest(root) == before


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs a Debian-family system (dpkg)")
def test_apt_lists_are_refreshed_before_packages_are_judged(tmp_path: Path) -> None:
    """With empty (or day-old) package lists, apt-cache cannot find python3-picamera2 even on
    Raspberry Pi OS: the installer updates the lists first instead of blaming the OS."""
    lists = tmp_path / "lists"
    lists.mkdir()

    def dry_run() -> tuple[list[str], str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORBELL_", "VIRTUAL_ENV"))}
        r = subprocess.run(["bash", str(REPO / "scripts" / "install-pi.sh"), "--dry-run"], capture_output=True,
                           text=True, timeout=120, env={**env, "DOORBELL_APT_LISTS": str(lists)})
        assert r.returncode == 0, r.stderr
        return [ln for ln in r.stdout.splitlines() if "would: " in ln], r.stderr

    empty, err = dry_run()
    assert "apt-get update" in empty[0]
    assert "not in this system's apt sources" not in err  # judged after the update, not before
    fresh = lists / "deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages"
    fresh.write_text("")
    assert not any("apt-get update" in ln for ln in dry_run()[0])
    day_old = time.time() - 2 * 86400
    os.utime(fresh, (day_old, day_old))
    assert "apt-get update" in dry_run()[0][0]
