"""Config: defaults validate; each kind of bad input names file, key and reason."""
import subprocess
import sys

import pytest

from doorbell.core.config import ConfigError, load_config, parse_config


def write(tmp_path, text):
    f = tmp_path / "doorbell.yaml"
    f.write_text(text)
    return f


def test_defaults_are_valid():
    cfg = load_config(None)
    assert cfg.clips.pre_roll_s == 4 and cfg.camera.audio is False


@pytest.mark.parametrize("text, key, reason", [
    ("clips:\n  pre_roll_s: lots\n", "clips.pre_roll_s", "valid number"),
    ("clips:\n  pre_roll_s: 90\n", "clips.pre_roll_s", "less than or equal to 30"),
    ("camera:\n  fsp: 10\n", "camera.fsp", "unknown key"),
    ("camra: {}\n", "camra", "unknown key"),
    ("mqtt:\n  password: changeme\n", "mqtt.password", "placeholder"),
    ("s3:\n  secret_access_key: abc\n", "s3.secret_access_key", "too short"),
    ("device:\n  id: 'Front Door!'\n", "device.id", "pattern"),
    ("privacy:\n  masks:\n    - points: [[0, 0], [2, 0], [1, 1]]\n", "privacy.masks[0].points", "fractions"),
    ("sharing:\n  max_window_h: 24\n", "sharing.max_window_h", "less than or equal to 12"),
    ("camera:\n  backend: file\n", "camera", "file backend needs"),
    ("- just\n- a list\n", "<root>", "mapping"),
    ("clips: [unclosed\n", "<root>", "not valid YAML"),
])
def test_bad_input_names_file_key_reason(tmp_path, text, key, reason):
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(f, env={})
    msg = str(err.value)
    assert str(f) in msg and key in msg and reason in msg, msg


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config("/nonexistent/doorbell.yaml")


def test_env_overrides_secrets_and_require(tmp_path):
    f = write(tmp_path, "mqtt:\n  username: dev-a\n")
    cfg = load_config(f, env={})
    with pytest.raises(ConfigError, match=r"mqtt.password: required secret is missing .*DOORBELL__MQTT__PASSWORD"):
        cfg.require("mqtt.password")
    cfg = load_config(f, env={"DOORBELL__MQTT__PASSWORD": "s3cret-unique-pw"})
    cfg.require("mqtt.password")
    assert cfg.mqtt.password.get_secret_value() == "s3cret-unique-pw"
    with pytest.raises(ConfigError, match="placeholder"):
        load_config(f, env={"DOORBELL__MQTT__PASSWORD": "changeme"})


def test_secrets_are_never_printed(tmp_path):
    f = write(tmp_path, "mqtt:\n  password: hunter2-very-secret\ns3:\n  secret_access_key: aws-secret-value-1\n")
    cfg = load_config(f, env={})
    dumped = str(cfg.redacted()) + repr(cfg)
    assert "hunter2" not in dumped and "aws-secret" not in dumped
    out = subprocess.run([sys.executable, "-m", "doorbell.cli", "config", "check", "-c", str(f)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout and "**********" in out.stdout


def test_cli_rejects_with_exit_code(tmp_path):
    f = write(tmp_path, "gpio:\n  chime_pulse_s: -1\n")
    out = subprocess.run([sys.executable, "-m", "doorbell.cli", "config", "check", "-c", str(f)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{f}: gpio.chime_pulse_s: Input should be greater than 0" in out.stderr
    out = subprocess.run([sys.executable, "-m", "doorbell.cli", "config", "check", "-c", str(f.parent / "none.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "cannot read file" in out.stderr


def test_parse_config_from_mapping():
    cfg = parse_config({"device": {"id": "dev-a", "owner_id": "owner-a"}}, env={})
    assert cfg.device.id == "dev-a"
