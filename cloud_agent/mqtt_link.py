"""The agent's MQTT connection, built by :func:`doorbell.core.mqtt.make_client`.

- TLS, credentials and the client id (= the device's username) come from
  ``mqtt`` in the config, with the meanings documented in doorbell.core.mqtt.
- ``online``/``offline`` is retained on ``devices/{id}/status``; ``offline`` is
  also the Last Will, so a crash or a cut cable shows up within 1.5 x keepalive.
- The session is persistent (``clean_start=False`` plus a Session Expiry
  Interval), so command subscriptions and QoS 1 commands survive reconnects.
- paho reconnects by itself with a backoff bounded to 4 s, and re-sends QoS 1
  messages still waiting for PUBACK, so callers publish once and wait
  (:meth:`MqttLink.wait`) instead of publishing again, which is what keeps a
  broker restart from duplicating messages.
- Inbound messages (owner commands, Home Assistant's birth message) go to a
  handler; a handler error is logged, never allowed to kill paho's thread.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from doorbell.core import protocol
from doorbell.core.config import DoorbellConfig
from doorbell.core.errors import DoorbellError
from doorbell.core.mqtt import Handlers, MqttClient, Pending, Session, Will, make_client

log = logging.getLogger(__name__)

__all__ = ["MqttLink", "Pending", "PublishRefused"]


class PublishRefused(DoorbellError):
    """The broker answered PUBACK with a failure reason code (e.g. not authorized)."""


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
        self._subscriptions: list[tuple[str, int]] = []
        self._stopping = False
        self.client: MqttClient = make_client(
            cfg.mqtt,
            session=Session(clean_start=False, expiry_s=session_expiry_s),
            will=Will(self.status_topic, protocol.STATUS_OFFLINE.encode(), qos=1, retain=True),
            handlers=Handlers(connected=self._on_connected, disconnected=self._on_disconnected,
                              connect_failed=self._on_connect_fail, message=self._on_message),
            logger_name="cloud_agent.paho")
        self.client.max_inflight_messages_set(64)

    @property
    def last_error(self) -> str | None:
        """Why the link is down (or was last refused); None while all is well."""
        return self.client.last_error

    # ------------------------------------------------------------------ lifecycle
    def subscribe_on_connect(self, topic: str, qos: int = 1) -> None:
        """Topics (re)subscribed at every connect (a no-op for the broker if the session kept them)."""
        self._subscriptions.append((topic, qos))

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until :meth:`stop`."""
        self.client.start()

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
            self.client.close()
        finally:
            self.connected.clear()

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Pending:
        """Queue a publish; paho sends it now or right after the next connect.

        Raises MqttError if paho cannot even queue it (its queue is full).
        """
        return self.client.publish_tracked(topic, payload, qos=qos, retain=retain)

    def wait(self, pending: Pending, timeout: float) -> bool:
        """True once the broker acknowledged ``pending`` (PUBACK); False on timeout.

        Raises PublishRefused when the PUBACK carries a failure reason code.
        """
        reason = self.client.wait_ack(pending, timeout)
        if reason is None:
            return False
        if reason.is_failure:
            raise PublishRefused(f"{pending.what}: broker refused with reason code {reason.value:#x}")
        return True

    def publish_and_wait(self, topic: str, payload: bytes, timeout: float, retain: bool = False) -> bool:
        return self.wait(self.publish(topic, payload, retain=retain), timeout)

    # ------------------------------------------------------------------ hooks (paho's network thread)
    def _on_connected(self, client: MqttClient, _flags: paho.ConnectFlags, reason: ReasonCode) -> None:
        if reason.is_failure:
            return
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

    def _on_connect_fail(self, client: MqttClient) -> None:
        if self._on_state:
            self._on_state(False, client.last_error or "cannot connect")

    def _on_disconnected(self, _client: MqttClient, reason: ReasonCode) -> None:
        self.connected.clear()
        if self._stopping:
            log.info("MQTT disconnected")
        if self._on_state:
            self._on_state(False, str(reason))

    def _on_message(self, _client: MqttClient, msg: paho.MQTTMessage) -> None:
        if self._handler is None:
            return
        try:
            self._handler(msg.topic, bytes(msg.payload))
        except Exception:  # a bad message must never stop the network loop
            log.exception("error handling message on %s", msg.topic[:200])
