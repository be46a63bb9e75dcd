"""The owner bridge: the service's MQTT side (paho-mqtt 2.x, MQTT v5).

It subscribes to every device's clip index and every owner's decisions,
revokes and RPC calls, hands each message to :class:`SharingCore` on one worker
thread (so handling order matches arrival order and the network loop never
blocks on the database), and acknowledges a QoS 1 message only after it has
been handled, so a crash mid-way means the broker redelivers it. The session is
persistent: decisions sent while the service is down wait in the broker.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from doorbell.core import protocol as p
from doorbell.core.config import MqttSection
from sharing_service.context import Outgoing
from sharing_service.core import SharingCore

log = logging.getLogger(__name__)

SUBSCRIPTIONS = [(p.ALL_DEVICE_CLIPS, 1), (p.ALL_DECISIONS, 1), (p.ALL_REVOKES, 1), (p.ALL_RPC, 1)]
SESSION_EXPIRY_S = 86400


class OwnerBridge:
    def __init__(self, core: SharingCore, mqtt_cfg: MqttSection, client_id: str | None = None):
        self.core = core
        self.cfg = mqtt_cfg
        self.client_id = client_id or mqtt_cfg.client_id or "sharing-service"
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10000)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.connected = threading.Event()
        self.handled = 0
        self._sub_mid = -1
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        if self.cfg.username:
            c.username_pw_set(self.cfg.username,
                              self.cfg.password.get_secret_value() if self.cfg.password else None)
        tls = self.cfg.tls
        if tls.enabled:
            c.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                      certfile=str(tls.cert_file) if tls.cert_file else None,
                      keyfile=str(tls.key_file) if tls.key_file else None)
            c.tls_insecure_set(tls.insecure_skip_verify)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.core.outbox.attach(self.publish)
        self._worker = threading.Thread(target=self._work, name="sharing-bridge", daemon=True)
        self._worker.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()

    def stop(self) -> None:
        self.core.outbox.detach()
        self._stop.set()
        self._queue.put(None)
        if self._worker:
            self._worker.join(timeout=10)
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        self.connected.clear()

    def wait_connected(self, timeout: float = 10) -> bool:
        return self.connected.wait(timeout)

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        _rc, self._sub_mid = client.subscribe(SUBSCRIPTIONS)
        log.info("MQTT connected to %s:%s as %s", self.cfg.host, self.cfg.port, self.cfg.username)
        self._queue.put(("resync", None))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reasons: Any, _props: Any) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error("broker refused subscriptions (check the ACL for %s): %s", self.cfg.username, refused)
        self.connected.set()  # ready: connected and subscribed

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._queue.put_nowait(("msg", msg))
        except queue.Full:
            log.error("bridge queue full; leaving %s unacknowledged for redelivery", msg.topic)

    # ------------------------------------------------------------------ work

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            kind, msg = item
            try:
                if kind == "resync":
                    self.publish(self.core.delivery.pending_messages())
                else:
                    self._handle(msg)
            except Exception:  # a bug must not kill the bridge; the message is logged and acknowledged
                log.exception("error handling %s", getattr(msg, "topic", kind))
            finally:
                if kind == "msg" and msg.qos > 0:
                    try:
                        self._client.ack(msg.mid, msg.qos)
                    except Exception:  # pragma: no cover - connection gone: broker redelivers
                        log.debug("ack of %s failed", msg.mid)
                self.handled += 1

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        if msg.retain and not msg.topic.endswith("/clips"):
            # a stale retained decision must not apply at every reconnect; its sender is told so
            self.core.consent.refuse_retained(msg.topic, bytes(msg.payload))
            return
        try:
            t = p.parse_topic(msg.topic)
        except p.ProtocolError as exc:
            log.warning("dropped message: %s", exc)
            return
        if t.kind == "clips" and t.device_id:
            self.core.clips.index_clip(t.device_id, bytes(msg.payload))
        elif t.kind == "decision" and t.owner_id and t.name:
            self.core.consent.handle_decision(t.owner_id, t.name, bytes(msg.payload))
        elif t.kind == "revoke" and t.owner_id and t.name:
            self.core.consent.handle_revoke(t.owner_id, t.name, bytes(msg.payload))
        elif t.kind == "rpc" and t.owner_id and t.name:
            self.core.rpc.handle(t.owner_id, t.name, bytes(msg.payload))
        else:
            log.debug("ignoring %s", msg.topic)

    def publish(self, messages: list[Outgoing]) -> None:
        """Queue messages to owners (paho keeps QoS 1 messages across a reconnect)."""
        for m in messages:
            info = self._client.publish(m.topic, m.payload, qos=1, retain=m.retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.error("publish to %s failed: %s", m.topic, mqtt.error_string(info.rc))
