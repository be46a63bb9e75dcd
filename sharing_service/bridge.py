"""The owner bridge: the service's MQTT side (paho-mqtt 2.x, MQTT v5).

It subscribes to every device's clip index and every owner's decisions,
revokes and RPC calls, hands each message to :class:`SharingCore` on one worker
thread (so handling order matches arrival order and the network loop never
blocks on the database), and acknowledges a QoS 1 message only after it has
been handled, so a crash mid-way means the broker redelivers it.

One instance (``sharing.mqtt_shared`` false): the session is persistent, so
decisions sent while the service is down wait in the broker.

Several instances (``sharing.mqtt_shared`` true): each instance logs in as its
own user (``sharing-service-<n>``: the broker binds a session to its login) and
subscribes through the MQTT v5 shared subscription ``$share/<group>/<filter>``,
so the broker hands each message to exactly one member of the group. The
session then ends with the connection (expiry 0): Mosquitto keeps routing a
share of new messages to an *offline* member whose session it still stores
(eclipse-mosquitto/mosquitto#2662), so a dead instance with a stored session would
sit on decisions until it came back. With no session, a killed instance drops
out of the group at once; the messages it had received but not acknowledged are
lost at the broker, and the owner's app sends an unanswered signed message again
(same nonce), which the service answers with the outcome it stored for that
nonce (:mod:`sharing_service.consent`). Retained messages are never delivered
through a shared subscription (MQTT v5, 4.8.2), so a retained decision is never seen.

The group name is a secret shared by the instances (``sharing.mqtt_share_group``;
``doorbell provision`` writes a random one). Mosquitto 2.0 does not check a
SUBSCRIBE against the ACL's rules, only each delivery: any login may join
``$share/<group>/<filter>``, and a message the broker hands to a member that may
not read it is dropped for the whole group (tests/sharing_service/test_scale.py
shows both). Only a login that knows the group's name can join it.

:meth:`OwnerBridge.drain` (SIGTERM) unsubscribes first, so the broker hands the
stream to the other members, then finishes what was already received.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from doorbell.core import protocol as p
from doorbell.core.config import MqttSection
from doorbell.core.mqtt import Handlers, MqttClient, Session, make_client
from sharing_service.context import Outgoing
from sharing_service.core import SharingCore
from sharing_service.enrolment import Enrolment

log = logging.getLogger(__name__)

SUBSCRIPTIONS = [(p.ALL_DEVICE_CLIPS, 1), (p.ALL_DECISIONS, 1), (p.ALL_REVOKES, 1), (p.ALL_RPC, 1),
                 (p.ALL_ENROLS, 1), (p.ALL_UNLINKS, 1), (p.ALL_SHARE_CREATES, 1), (p.ALL_SHARE_REVOKES, 1)]
SESSION_EXPIRY_S = 86400
DEFAULT_SHARE_GROUP = "sharing"


def subscriptions(share_group: str | None = None) -> list[tuple[str, int]]:
    """The bridge's topic filters, as members of ``$share/<share_group>/`` when a group is given."""
    if not share_group:
        return list(SUBSCRIPTIONS)
    return [(f"$share/{share_group}/{topic}", qos) for topic, qos in SUBSCRIPTIONS]


class OwnerBridge:
    """The service's MQTT session; its client id is its username (``mqtt.username``).

    ``share_group``: join that shared subscription group (several instances; see the module docstring).
    """

    def __init__(self, core: SharingCore, mqtt_cfg: MqttSection, share_group: str | None = None):
        self.core = core
        self.enrolment = Enrolment(core.consent)
        self.cfg = mqtt_cfg
        self.share_group = share_group
        if share_group == DEFAULT_SHARE_GROUP:
            log.warning("sharing.mqtt_share_group is the default %r: any broker login that guesses it can join the "
                        "group and make the broker drop owners' messages; set a random name on every instance "
                        "(docs/sharing.md, 'Running several instances')", share_group)
        self.subscriptions = subscriptions(share_group)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10000)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._worker: threading.Thread | None = None
        self.connected = threading.Event()
        self.handled = 0
        self._sub_mid = -1
        self._client = self._make_client()

    def _make_client(self) -> MqttClient:
        # manual_ack: a QoS 1 message is acknowledged only once handled (see the module docstring).
        session = (Session(clean_start=True, expiry_s=0) if self.share_group
                   else Session(clean_start=False, expiry_s=SESSION_EXPIRY_S))
        return make_client(self.cfg, session=session,
                           handlers=Handlers(connected=self._on_connect, disconnected=self._on_disconnect,
                                             message=self._on_message, subscribed=self._on_subscribe),
                           manual_ack=True, logger_name="sharing_service.paho")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.core.outbox.attach(self.publish)
        self._worker = threading.Thread(target=self._work, name="sharing-bridge", daemon=True)
        self._worker.start()
        self._client.start()

    def stop(self) -> None:
        self.core.outbox.detach()
        self._stop.set()
        self._queue.put(None)
        if self._worker:
            self._worker.join(timeout=10)
        self._client.close()
        self.connected.clear()

    def drain(self, timeout: float = 20.0) -> bool:
        """Stop taking messages and finish those already received; True if all were handled in time.

        In a shared group the subscriptions are removed first (UNSUBSCRIBE, acknowledged by
        the broker), so the broker hands new messages to the other instances. A single
        instance keeps its persistent subscriptions: what arrives while it is down waits
        in its session, and what it received but did not handle is redelivered after it
        restarts (never acknowledged).
        """
        self._draining.set()
        if self.share_group and self._client.is_connected():
            for topic, _qos in self.subscriptions:
                try:
                    self._client.unsubscribe_acked(topic, timeout=min(5.0, max(timeout, 0.1)))
                except Exception as exc:  # the connection is gone: the broker ends the membership anyway
                    log.warning("unsubscribing %s while draining failed: %s", topic, exc)
                    break
        q = self._queue
        with q.all_tasks_done:
            done = q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)
        if not done:
            log.warning("bridge drain: %d message(s) still unhandled after %.0f s (left unacknowledged)",
                        q.unfinished_tasks, timeout)
        return done

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def wait_connected(self, timeout: float = 10) -> bool:
        return self.connected.wait(timeout)

    @property
    def last_error(self) -> str | None:
        """Why the bridge is not connected (refused login, untrusted broker...); None while all is well."""
        return self._client.last_error

    # ------------------------------------------------------------------ MQTT hooks (paho's network thread)

    def _on_connect(self, client: MqttClient, _flags: mqtt.ConnectFlags, reason: ReasonCode) -> None:
        if reason.is_failure:
            return
        if self._draining.is_set():  # a reconnect while draining must not rejoin the group
            return
        _rc, mid = client.subscribe(self.subscriptions)
        self._sub_mid = -1 if mid is None else mid  # None: not sent; paho retries after the next connect
        self._queue.put(("resync", None))

    def _on_subscribe(self, _c: MqttClient, mid: int, reasons: list[ReasonCode]) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused subscriptions (check the ACL for %s): %s", self.cfg.username, refused)
        self.connected.set()  # ready: connected and subscribed

    def _on_disconnect(self, _c: MqttClient, _reason: ReasonCode) -> None:
        self.connected.clear()

    def _on_message(self, _c: MqttClient, msg: mqtt.MQTTMessage) -> None:
        try:
            self._queue.put_nowait(("msg", msg))
        except queue.Full:
            log.error("bridge queue full; leaving %s unacknowledged for redelivery", msg.topic)

    # ------------------------------------------------------------------ work

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            try:
                self._work_one(item)
            finally:
                self._queue.task_done()

    def _work_one(self, item: tuple[str, Any]) -> None:
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
            link = p.parse_link_topic(msg.topic)
            if link is not None:  # linked devices: enrol / unlink
                self.enrolment.handle(*link, bytes(msg.payload))
                return
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
        elif t.kind == "share_create" and t.owner_id and t.name:
            self.core.shares.handle_create(t.owner_id, t.name, bytes(msg.payload))
        elif t.kind == "share_revoke" and t.owner_id and t.name:
            self.core.shares.handle_revoke(t.owner_id, t.name, bytes(msg.payload))
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
