"""The shipped configs are valid, and `doorbell config check` refuses each kind of
bad input naming the file, the key and the reason (ETSI 5.13-1, 5.1-1)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.ops import REPO

SHIPPED = sorted((REPO / "config").glob("*.yaml"))


def _clean_env() -> dict[str, str]:
    """The user's environment without DOORBELL__ overrides (they would change the result)."""
    import os
    return {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL__")}


def check(path: Path, *require: str, env: dict[str, str] | None = None):
    import subprocess
    import sys
    args = [sys.executable, "-m", "doorbell.cli", "config", "check", "-q", "-c", str(path)]
    for key in require:
        args += ["--require", key]
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**_clean_env(), **(env or {})})


def test_every_host_has_a_shipped_config() -> None:
    assert {p.name for p in SHIPPED} >= {"device.yaml", "sharing.yaml", "owner.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_passes_check_and_holds_no_secret(path: Path) -> None:
    r = check(path)
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(path.read_text())
    for section in data.values():
        if isinstance(section, dict):
            assert "password" not in section and "secret_access_key" not in section
    # It is commented: a maker reads it as documentation.
    assert sum(1 for ln in path.read_text().splitlines() if "#" in ln) >= 10


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_needs_a_real_secret_to_run(path: Path) -> None:
    r = check(path, "mqtt.password")
    assert r.returncode != 0
    assert f"{path}: mqtt.password: required secret is missing" in r.stderr
    assert "DOORBELL__MQTT__PASSWORD" in r.stderr
    ok = check(path, "mqtt.password", env={"DOORBELL__MQTT__PASSWORD": "x7Rk2pQ9vLm4Zt8w"})
    assert ok.returncode == 0, ok.stderr


def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((REPO / "config" / "device.yaml").read_text())
    edit(data)
    out = tmp_path / "device.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


BAD = {
    "wrong type": (lambda d: d["camera"].update(fps="fast"), "camera.fps", "valid number"),
    "unknown key": (lambda d: d["mqtt"].update(hots="x"), "mqtt.hots", "unknown key"),
    "out of range": (lambda d: d["mqtt"].update(port=70000), "mqtt.port", "less than or equal to 65535"),
    "bad id": (lambda d: d["device"].update(id="Front Door!"), "device.id", "should match pattern"),
    "placeholder secret": (lambda d: d["mqtt"].update(password="changeme"), "mqtt.password", "placeholder secret"),
    "short secret": (lambda d: d["s3"].update(secret_access_key="abc"), "s3.secret_access_key", "too short"),
    "pin name": (lambda d: d["gpio"].update(button_pin="banana"), "gpio.button_pin", "not a GPIO pin name"),
    "power pin": (lambda d: d["gpio"].update(chime_pin="BOARD6"), "gpio.chime_pin", "physical pin 6 is GND"),
    "pin off header": (lambda d: d["gpio"].update(led_pin=40), "gpio.led_pin", "not on the 40-pin header"),
    "pin twice": (lambda d: d["gpio"].update(led_pin="GPIO27"), "gpio", "already used as chime_pin"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_check_rejects_bad_input_naming_file_key_and_reason(tmp_path: Path, kind: str) -> None:
    edit, key, reason = BAD[kind]
    path = _variant(tmp_path, edit)
    r = check(path)
    assert r.returncode != 0
    line = next((ln for ln in r.stderr.splitlines() if f"{path}: {key}:" in ln), None)
    assert line is not None, r.stderr
    assert reason in line
    assert "changeme" not in r.stderr  # a secret is never echoed, not even a placeholder


def test_placeholder_secret_from_environment_is_refused(tmp_path: Path) -> None:
    """A service started with a placeholder in its unit's Environment= refuses to start."""
    r = check(REPO / "config" / "device.yaml", "mqtt.password", env={"DOORBELL__MQTT__PASSWORD": "changeme"})
    assert r.returncode != 0
    assert "mqtt.password: placeholder secret" in r.stderr


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("mqtt:\n  host: [unclosed\n")
    r = check(bad)
    assert r.returncode != 0 and f"{bad}" in r.stderr and "not valid YAML" in r.stderr
    r = check(tmp_path / "absent.yaml")
    assert r.returncode != 0 and "cannot read file" in r.stderr


def test_shipped_device_config_uses_the_fleet_prefix() -> None:
    """s3.prefix is the fleet prefix: the device id is added once, by the key layout."""
    import datetime as dt

    from doorbell.core.bucket import clip_keys, device_prefix
    from doorbell.core.config import load_config
    from doorbell.core.spool import new_clip_id

    cfg = load_config(REPO / "config" / "device.yaml", env={})
    started = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC).timestamp()
    keys = clip_keys(cfg.s3.prefix, cfg.device.id, new_clip_id(started), started)
    assert device_prefix(cfg.s3.prefix, cfg.device.id) == f"devices/{cfg.device.id}/"
    assert keys.video.startswith(f"devices/{cfg.device.id}/2026/11/")
    assert keys.video.count(cfg.device.id) == 1


def test_pin_names_are_the_ones_gpiozero_accepts() -> None:
    """Every name gpiozero gives a pin of the 40-pin header, checked against our grammar:
    GPIO pins map to the same BCM number, power/ground pins and other strings are refused."""
    from gpiozero.pins.mock import MockFactory

    from doorbell.core.config import gpio_of_pin
    board = MockFactory().board_info  # the same header table gpiozero uses on a real Pi
    header = board.headers["J8"]
    checked = 0
    for pin in header.pins.values():
        for name in pin.names:
            if isinstance(name, str) and name.startswith("P1:"):
                continue  # only boards with a P1 header (Pi 1) have these names
            if "gpio" in pin.interfaces:
                assert gpio_of_pin(name) == int(pin.name[4:]), name
            else:
                with pytest.raises(ValueError):
                    gpio_of_pin(name)
            checked += 1
    assert checked > 150
    for name in ("banana", "gpio17", "GPIO 17", "J8:41", "BOARD0", "WPI32", "", "17.0"):
        with pytest.raises(ValueError):
            gpio_of_pin(name)
        assert not list(board.find_pin(name)), f"gpiozero accepts {name!r} after all"
