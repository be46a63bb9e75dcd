"""The agent's MQTT connection: paho-mqtt 2.x, callback API v2, MQTT v5.

- TLS and per-device credentials come from ``mqtt`` in the config.
- ``online``/``offline`` is retained on ``devices/{id}/status``; ``offline`` is
  also the Last Will, so a crash or a cut cable shows up within the keepalive.
- The session is persistent (``clean_start=False`` plus a Session Expiry
  Interval), so command subscriptions and QoS 1 commands survive reconnects.
- paho reconnects by itself with exponential backoff (``retry_base_s`` to
  ``retry_max_s``) and re-sends QoS 1 messages still waiting for PUBACK, so
  callers publish once and wait (:meth:`MqttLink.wait`) instead of publishing
  again, which is what keeps a broker restart from duplicating messages.
- Inbound messages (owner commands, Home Assistant's birth message) go to a
  handler; a handler error is logged, never allowed to kill paho's thread.
"""
from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from doorbell.core import protocol
from doorbell.core.config import DoorbellConfig
from doorbell.core.errors import DoorbellError

log = logging.getLogger(__name__)


class PublishRefused(DoorbellError):
    """The broker answered PUBACK with a failure reason code (e.g. not authorized)."""


@dataclass(frozen=True)
class Pending:
    """A QoS 1 publish waiting for its PUBACK."""

    mid: int
    topic: str
    sent_at: float  # monotonic, taken before publish(), see MqttLink._on_publish


MessageHandler = Callable[[str, bytes], None]


class MqttLink:
    """One persistent MQTT v5 session for one device."""

    def __init__(self, cfg: DoorbellConfig, on_message: MessageHandler | None = None,
                 on_connect: Callable[[], None] | None = None,
                 on_state: Callable[[bool, str], None] | None = None,
                 session_expiry_s: int = 86400):
        self.cfg = cfg
        self.device_id = cfg.device.id
        self.status_topic = protocol.status_topic(self.device_id)
        self._handler = on_message
        self._on_connect_cb = on_connect
        self._on_state = on_state
        self.connected = threading.Event()
        self._acks: dict[int, tuple[float, int]] = {}  # mid -> (monotonic ack time, reason code)
        self._cond = threading.Condition()
        self._subscriptions: list[tuple[str, int]] = []
        self._stopping = False
        m = cfg.mqtt
        client_id = m.client_id or f"doorbell-agent-{self.device_id}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=True)
        self.client.enable_logger(logging.getLogger("cloud_agent.paho"))
        if m.username:
            self.client.username_pw_set(m.username, m.password.get_secret_value() if m.password else None)
        if m.tls.enabled:
            self.client.tls_set(
                ca_certs=str(m.tls.ca_file) if m.tls.ca_file else None,
                certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                keyfile=str(m.tls.key_file) if m.tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if m.tls.insecure_skip_verify else ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            if m.tls.insecure_skip_verify:
                log.warning("mqtt.tls.insecure_skip_verify is set: the broker's certificate is NOT checked")
                self.client.tls_insecure_set(True)
        self.client.will_set(self.status_topic, protocol.STATUS_OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=max(1, int(cfg.agent.retry_base_s)),
                                        max_delay=max(1, int(cfg.agent.retry_max_s)))
        self.client.max_inflight_messages_set(64)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._connect_props = Properties(PacketTypes.CONNECT)
        self._connect_props.SessionExpiryInterval = session_expiry_s
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def subscribe_on_connect(self, topic: str, qos: int = 1) -> None:
        """Topics (re)subscribed at every connect (a no-op for the broker if the session kept them)."""
        self._subscriptions.append((topic, qos))

    def start(self) -> None:
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s, clean_start=False,
                                  properties=self._connect_props)
        self.client.loop_start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline`` (retained), wait briefly for its PUBACK, disconnect cleanly."""
        self._stopping = True
        if self.connected.is_set():
            try:
                p = self.publish(self.status_topic, protocol.STATUS_OFFLINE.encode(), retain=True)
                self.wait(p, timeout)
            except Exception as exc:  # shutdown must finish even if the broker went away
                log.warning("could not publish offline status: %s", exc)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self.connected.clear()

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Pending:
        """Queue a publish; paho sends it now or right after the next connect."""
        t0 = time.monotonic()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise RuntimeError("paho outgoing queue is full")
        return Pending(info.mid, topic, t0)

    def wait(self, pending: Pending, timeout: float) -> bool:
        """True once the broker acknowledged ``pending`` (PUBACK); False on timeout.

        Raises PublishRefused when the PUBACK carries a failure reason code.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ack = self._acks.get(pending.mid)
                # An ack older than our publish belongs to an earlier message with the same mid.
                if ack is not None and ack[0] >= pending.sent_at:
                    del self._acks[pending.mid]
                    if ack[1] >= 0x80:
                        raise PublishRefused(f"{pending.topic}: broker refused with reason code {ack[1]:#x}")
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def publish_and_wait(self, topic: str, payload: bytes, timeout: float, retain: bool = False) -> bool:
        return self.wait(self.publish(topic, payload, retain=retain), timeout)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, _userdata: object, flags: mqtt.ConnectFlags,
                    reason_code: mqtt.ReasonCode, _props: Properties | None) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused connection: {reason_code}"
            log.error("MQTT connect to %s:%s refused: %s", self.cfg.mqtt.host, self.cfg.mqtt.port, reason_code)
            return
        log.info("MQTT connected to %s:%s (session present: %s)", self.cfg.mqtt.host, self.cfg.mqtt.port,
                 flags.session_present)
        try:
            client.publish(self.status_topic, protocol.STATUS_ONLINE, qos=1, retain=True)
            if self._subscriptions:
                client.subscribe(list(self._subscriptions))
            if self._on_connect_cb is not None:
                self._on_connect_cb()
        except Exception:
            log.exception("error in on-connect handling")
        self.connected.set()
        if self._on_state:
            self._on_state(True, "")

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        """TCP or TLS failed before CONNACK (broker down, bad certificate): paho retries with backoff."""
        self.last_error = f"cannot connect to {self.cfg.mqtt.host}:{self.cfg.mqtt.port}"
        log.warning("MQTT %s; retrying with backoff", self.last_error)
        if self._on_state:
            self._on_state(False, self.last_error)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: mqtt.DisconnectFlags,
                       reason_code: mqtt.ReasonCode, _props: Properties | None) -> None:
        self.connected.clear()
        if self._stopping:
            log.info("MQTT disconnected")
        else:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason_code)
        if self._on_state:
            self._on_state(False, str(reason_code))

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int, reason_code: mqtt.ReasonCode,
                    _props: Properties | None) -> None:
        with self._cond:
            now = time.monotonic()
            self._acks[mid] = (now, int(reason_code.value))
            if len(self._acks) > 1024:  # acks nobody waits for (status, discovery): forget old ones
                for old in [k for k, (t, _) in self._acks.items() if now - t > 60]:
                    del self._acks[old]
            self._cond.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._handler is None:
            return
        try:
            self._handler(msg.topic, bytes(msg.payload))
        except Exception:  # a bad message must never stop the network loop
            log.exception("error handling message on %s", msg.topic[:200])
