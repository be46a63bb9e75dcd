"""The client factory's contract, short of a broker: config meanings and who builds clients.

(What each TLS key does against a real broker: tests/core/test_mqtt_tls.py.)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from doorbell.core.config import ConfigError, parse_config
from doorbell.core.mqtt import MqttConfigError, client_id_for, make_client, tls_context

REPO = Path(__file__).resolve().parents[2]


def mqtt_section(**mqtt):  # type: ignore[no-untyped-def]
    return parse_config({"mqtt": mqtt}, source="<test>", env={}).mqtt


def test_client_id_is_the_username() -> None:
    assert client_id_for(mqtt_section(username="dev-a")) == "dev-a"
    assert client_id_for(mqtt_section(username="dev-a", client_id="dev-a")) == "dev-a"
    assert make_client(mqtt_section(username="dev-a", password="pw-123456789"))._client_id == b"dev-a"


def test_a_client_id_other_than_the_username_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must equal mqtt.username"):
        mqtt_section(username="dev-a", client_id="sharing-service")


def test_without_a_login_the_configured_id_names_the_session() -> None:
    assert client_id_for(mqtt_section(client_id="bench")) == "bench"
    assert client_id_for(mqtt_section()).startswith("doorbell-")


def test_tls_paths_expand_the_home_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    tls = mqtt_section(tls={"enabled": True, "ca_file": "~/ca.crt", "cert_file": "~/c.crt",
                            "key_file": "~/c.key"}).tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (tmp_path / "ca.crt", tmp_path / "c.crt",
                                                          tmp_path / "c.key")


def test_a_key_without_a_certificate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="key_file is set without"):
        mqtt_section(tls={"enabled": True, "key_file": "/k.pem"})


def test_insecure_skip_verify_keeps_chain_verification() -> None:
    import ssl

    strict = tls_context(mqtt_section(tls={"enabled": True}).tls)
    lax = tls_context(mqtt_section(tls={"enabled": True, "insecure_skip_verify": True}).tls)
    assert strict.verify_mode == lax.verify_mode == ssl.CERT_REQUIRED
    assert strict.check_hostname and not lax.check_hostname
    assert lax.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_unreadable_tls_files_name_the_key(tmp_path) -> None:
    with pytest.raises(MqttConfigError, match="mqtt.tls.ca_file"):
        tls_context(mqtt_section(tls={"enabled": True, "ca_file": str(tmp_path / "missing.crt")}).tls)
    (tmp_path / "junk.crt").write_text("not a certificate")
    with pytest.raises(MqttConfigError, match="mqtt.tls.cert_file"):
        tls_context(mqtt_section(tls={"enabled": True, "cert_file": str(tmp_path / "junk.crt")}).tls)


def _builders(path: Path) -> list[str]:
    """Calls in ``path`` that build an MQTT client, or its TLS, by hand."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            builds_client = name.endswith(("mqtt.Client", "paho.Client", ".tls_set", ".tls_set_context",
                                           ".username_pw_set", ".will_set")) or name == "Client"
            builds_tls = "paho" in source and name.endswith(("create_default_context", "SSLContext"))
            if builds_client or builds_tls:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    return found


def test_only_the_factory_builds_mqtt_clients() -> None:
    """Every process, client and probe goes through doorbell.core.mqtt (one meaning per TLS key)."""
    factory = REPO / "doorbell" / "core" / "mqtt.py"
    product = [p for d in ("doorbell", "cloud_agent", "sharing_service", "firmware", "benchmarks")
               for p in (REPO / d).rglob("*.py") if p != factory]
    assert [hit for p in product for hit in _builders(p)] == []
    assert _builders(factory)  # the scan does see a client being built
