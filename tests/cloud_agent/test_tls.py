"""The whole agent over TLS to a real Mosquitto TLS listener (certificate checked against the configured CA).

Each TLS key against every MQTT client in the product: tests/core/test_mqtt_tls.py.
"""
from __future__ import annotations

from pathlib import Path

from doorbell.core import protocol
from doorbell.core.protocol import DeviceEvent
from doorbell.sandbox.embedded import DoorbellBroker, TlsFiles, mqtt_client
from tests.support.agent import wait_for
from tests.support.tls_certs import self_signed as _self_signed


def test_agent_publishes_over_tls_and_refuses_an_unknown_ca(agent_config, tmp_path):
    from cloud_agent.agent import Agent

    cert, key = _self_signed(tmp_path / "tls")
    broker = DoorbellBroker(tmp_path / "mqtt-tls", {"dev-a": "owner-a"}, ["owner-a"], admins=["admin"],
                            tls=TlsFiles(cafile=cert, certfile=cert, keyfile=key))
    broker.start()
    try:
        def cfg(ca: Path):
            return agent_config("dev-a", mqtt={"host": broker.host, "port": broker.tls_port, "username": "dev-a",
                                               "password": broker.users["dev-a"],
                                               "tls": {"enabled": True, "ca_file": str(ca)}})

        obs = mqtt_client(broker.host, broker.tls_port, "admin", broker.users["admin"], tls_ca=cert)
        try:
            obs.sub(protocol.events_topic("dev-a"))
            agent = Agent(cfg(cert))
            agent.start()
            try:
                assert agent.link.connected.wait(10)
                ev = DeviceEvent(device_id="dev-a", type="ring")
                agent.spool.publish_event(ev)
                got = protocol.decode(DeviceEvent, obs.expect(protocol.events_topic("dev-a"), wait=10).payload)
                assert got.event_id == ev.event_id
            finally:
                agent.shutdown()
        finally:
            obs.close()

        other_ca, _ = _self_signed(tmp_path / "other")
        impostor_check = Agent(cfg(other_ca))
        impostor_check.start()
        try:
            wait_for(lambda: impostor_check.link.last_error, what="TLS failure reported")
            assert "not trusted" in impostor_check.link.last_error
            assert not impostor_check.link.connected.is_set()
        finally:
            impostor_check.shutdown()
    finally:
        broker.stop()
