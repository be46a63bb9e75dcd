"""The one MQTT client factory: every process, client and test probe connects through it.

Why one place: the agent, the sharing service's bridge, the owner's app,
``doorbell doctor`` and the sandbox's probes used to build their own paho
clients and disagreed (``insecure_skip_verify`` meant "no verification at all"
in one and "no hostname check" in others; ``~`` in ``ca_file`` was expanded by
some only). Here each ``mqtt`` config key has exactly one meaning:

- ``mqtt.username`` / ``mqtt.password``: the broker login. The client id is the
  username: the product's brokers run with ``use_username_as_clientid true``, so
  an identity can only ever hold (and take over) its own session, never another
  role's (issue 15, finding 1). ``mqtt.client_id`` may only repeat the username,
  or name the session on a broker without logins.
- ``mqtt.tls.enabled``: TLS 1.2 or newer, the broker's certificate chain always
  verified.
- ``mqtt.tls.ca_file``: the only CA trusted for the broker (``~`` expanded);
  unset means the system's CA store.
- ``mqtt.tls.cert_file`` / ``mqtt.tls.key_file``: the client certificate (and its
  key; the key may sit in the certificate file) for brokers with
  ``require_certificate true``.
- ``mqtt.tls.insecure_skip_verify``: skips the *hostname* check only. The chain
  is still verified against ``ca_file``, so a broker with a certificate from
  another CA is refused whatever this key says: it is for reaching your own
  broker by an address its certificate does not name (a LAN IP), never for
  trusting an unknown broker.

Reconnects: paho retries by itself with a doubling delay, bounded here to
:data:`RECONNECT_MAX_S` (4 s), so a ring flows within about 5 s of the broker
coming back (issue 16, finding 7). paho has no jitter, so each client draws its
own minimum delay in [0.5, 1.0) s: after a broker restart a fleet's retries
stay spread apart instead of arriving in lock step.

Acks: :meth:`MqttClient.publish_tracked` / :meth:`MqttClient.wait_ack` and the
blocking ``*_acked`` helpers return the broker's MQTT v5 reason code, so callers
see "not authorized" instead of assuming delivery.
"""
from __future__ import annotations

import itertools
import logging
import random
import secrets
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from doorbell.core.config import MqttSection, TlsSection
from doorbell.core.errors import DoorbellError

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
"""First reconnect delay (plus up to 0.5 s of per-client jitter)."""
RECONNECT_MAX_S = 4.0
"""Longest wait between reconnect attempts: bounds the outage a ring can wait out after the broker is back."""
_ACKS_KEPT = 1024


class MqttError(DoorbellError):
    """An MQTT operation failed; the message says what to check."""


class MqttConfigError(MqttError):
    """The ``mqtt`` section cannot be used as given (unreadable TLS files...)."""


class MqttConnectError(MqttError, ConnectionError):
    """No session: the broker refused the login, TLS failed, or nothing answered.

    ``kind`` is one of ``refused`` (CONNACK with a failure reason, in
    ``reason_code``), ``tls-untrusted`` (the broker's certificate did not verify),
    ``tls`` (other handshake failure, e.g. a required client certificate was not
    sent), ``unreachable`` or ``timeout``.
    """

    def __init__(self, message: str, kind: str, reason_code: ReasonCode | None = None):
        super().__init__(message)
        self.kind = kind
        self.reason_code = reason_code


class MqttAckTimeout(MqttError, TimeoutError):
    """The broker did not acknowledge in time (the message may still be delivered later)."""


class MqttRefused(MqttError):
    """The broker acknowledged with a failure reason code (e.g. 135, not authorized by the ACL)."""

    def __init__(self, message: str, reason_code: ReasonCode):
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True)
class Will:
    """The Last Will: published by the broker if the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class Session:
    """MQTT v5 session settings.

    ``clean_start=False`` with an ``expiry_s`` keeps subscriptions and queued
    QoS 1 messages across disconnects (daemons); the default is a session that
    ends with the connection (interactive clients, probes).
    """

    clean_start: bool = True
    expiry_s: int | None = None


@dataclass(frozen=True)
class Pending:
    """A request waiting for its ack; ``after`` orders it against acks of a reused mid."""

    mid: int
    what: str
    after: int


ConnectHook = Callable[["MqttClient", paho.ConnectFlags, ReasonCode], None]
DisconnectHook = Callable[["MqttClient", ReasonCode], None]
MessageHook = Callable[["MqttClient", paho.MQTTMessage], None]
SubscribeHook = Callable[["MqttClient", int, list[ReasonCode]], None]
FailHook = Callable[["MqttClient"], None]


@dataclass
class Handlers:
    """What the caller wants to hear about; each runs on paho's network thread.

    A hook that raises is logged and never stops the network loop.
    """

    connected: ConnectHook | None = None
    disconnected: DisconnectHook | None = None
    connect_failed: FailHook | None = None
    message: MessageHook | None = None
    subscribed: SubscribeHook | None = None


class _PahoNoise(logging.Filter):
    """Drops paho 2.2's ERROR "Client is not connected" logged on every failed reconnect.

    The client's own warning already says why and when it retries.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def _paho_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, _PahoNoise) for f in logger.filters):
        logger.addFilter(_PahoNoise())
    return logger


def _expand(path: Path | str | None) -> str | None:
    return str(Path(path).expanduser()) if path else None


def tls_context(tls: TlsSection) -> ssl.SSLContext:
    """The SSLContext for ``mqtt.tls``, with the meanings in this module's docstring.

    Raises MqttConfigError when a file is missing or unusable, naming the key.
    """
    ca = _expand(tls.ca_file)
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise MqttConfigError(f"mqtt.tls.ca_file {ca}: cannot load the CA certificate: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = not tls.insecure_skip_verify
    if tls.cert_file:
        cert, key = _expand(tls.cert_file), _expand(tls.key_file)
        try:
            ctx.load_cert_chain(cert or "", key)
        except (OSError, ssl.SSLError) as exc:
            raise MqttConfigError(f"mqtt.tls.cert_file {cert} / key_file {key}: cannot load the client "
                                  f"certificate and key: {exc}") from None
    return ctx


def client_id_for(cfg: MqttSection) -> str:
    """The client id to send: the username (the broker enforces that anyway).

    Without a username (an anonymous local broker) ``mqtt.client_id`` names the
    session, or a random id is used for a throwaway connection.
    """
    if cfg.username:
        return cfg.username
    return cfg.client_id or f"doorbell-{secrets.token_hex(4)}"


class MqttClient(paho.Client):
    """A paho-mqtt 2.x client (callback API v2, MQTT v5) configured from ``mqtt``.

    Build it with :func:`make_client`. It owns paho's callbacks and forwards
    them to :class:`Handlers`, so ack waiting and the reconnect policy work the
    same for every user.
    """

    def __init__(self, cfg: MqttSection, *, session: Session = Session(), will: Will | None = None,
                 handlers: Handlers | None = None, manual_ack: bool = False,
                 reconnect: bool = True, client_id: str | None = None,
                 logger_name: str | None = None):
        super().__init__(CallbackAPIVersion.VERSION2, client_id=client_id or client_id_for(cfg),
                         protocol=paho.MQTTv5, manual_ack=manual_ack, reconnect_on_failure=reconnect)
        self.cfg = cfg
        self.session = session
        self.handlers = handlers or Handlers()
        self._auto_reconnect = reconnect
        self.where = f"{cfg.host}:{cfg.port}{' (TLS)' if cfg.tls.enabled else ''}"
        self._settled = threading.Event()  # a CONNACK came, or the connection died before one (connect_and_wait)
        self._answered = False  # this connection attempt got a CONNACK
        self._socket_error: str | None = None
        self.connect_reason: ReasonCode | None = None
        self.session_present = False  # the last CONNACK resumed a stored session
        self.last_error: str | None = None
        self.failure_kind: str | None = None
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._acks: dict[int, tuple[int, ReasonCode | list[ReasonCode]]] = {}
        self.enable_logger(_paho_logger(logger_name or "doorbell.mqtt.paho"))
        if cfg.username:
            self.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls.enabled:
            self.tls_set_context(tls_context(cfg.tls))
            if cfg.tls.insecure_skip_verify:
                log.warning("mqtt.tls.insecure_skip_verify: the broker's hostname is not checked against "
                            "its certificate (the certificate must still be signed by the configured CA)")
        if will is not None:
            self.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.reconnect_delay_set(min_delay=RECONNECT_MIN_S + random.uniform(0, RECONNECT_MIN_S),  # type: ignore[arg-type]
                                 max_delay=RECONNECT_MAX_S)  # type: ignore[arg-type]
        self.on_connect = self._h_connect
        self.on_connect_fail = self._h_connect_fail
        self.on_disconnect = self._h_disconnect
        self.on_message = self._h_message
        self.on_publish = self._h_publish
        self.on_subscribe = self._h_subscribe
        self.on_unsubscribe = self._h_unsubscribe
        self.on_log = self._h_log

    # ------------------------------------------------------------------ connecting
    def _session_properties(self) -> Properties | None:
        if self.session.expiry_s is None:
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session.expiry_s
        return props

    def start(self) -> None:
        """Connect in the background and keep reconnecting (daemons): never blocks, never raises."""
        self.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                           clean_start=self.session.clean_start, properties=self._session_properties())
        self.loop_start()

    def reconnect(self) -> MQTTErrorCode:
        """paho's (re)connect, recording why TCP or TLS failed (paho's retry loop drops the reason)."""
        self._answered = False
        self._socket_error = None
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError included
            self.failure_kind, self.last_error = self._describe(exc)
            raise

    def _describe(self, exc: OSError) -> tuple[str, str]:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return "tls-untrusted", (f"TLS: the broker's certificate at {self.where} is not trusted: "
                                     f"{exc.verify_message}")
        if isinstance(exc, ssl.SSLError):
            return "tls", f"TLS handshake with {self.where} failed: {exc}"
        return "unreachable", f"cannot reach the broker at {self.where}: {exc}"

    def connect_and_wait(self, timeout: float = 10.0) -> None:
        """Connect, start the network loop and wait for a successful CONNACK (interactive clients).

        Raises MqttConnectError (closing the client) with a ``kind`` a caller can explain.
        """
        self._settled.clear()
        self.connect_reason = None
        try:
            self.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                         clean_start=self.session.clean_start, properties=self._session_properties())
        except OSError as exc:
            kind, message = self._describe(exc)
            raise MqttConnectError(message, kind) from None
        except ValueError as exc:  # e.g. an empty host
            raise MqttConnectError(f"cannot reach the broker at {self.where}: {exc}", "unreachable") from None
        self.loop_start()
        if not self._settled.wait(timeout):
            self.close()
            raise MqttConnectError(f"no answer from the broker at {self.where} within {timeout:g} s",
                                   "timeout")
        reason = self.connect_reason
        if reason is None:  # the connection closed before any CONNACK (e.g. client certificate refused)
            self.close()
            raise MqttConnectError(self.last_error or f"the broker at {self.where} closed the connection",
                                   self.failure_kind or "tls")
        if reason is not None and reason.is_failure:
            self.close()
            raise MqttConnectError(f"the broker at {self.where} refused {self.cfg.username!r}: {reason} "
                                   f"({reason.value})", "refused", reason)

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent, never raises)."""
        if self.is_connected():
            try:
                self.disconnect()
            except Exception:  # gone meanwhile
                log.debug("disconnect on a closed client", exc_info=True)
        self.loop_stop()  # also ends a reconnect loop that is between attempts

    # ------------------------------------------------------------------ acks
    def _mark(self) -> int:
        with self._cond:
            return next(self._seq)

    def _record(self, mid: int, reason: ReasonCode | list[ReasonCode]) -> None:
        with self._cond:
            seq = next(self._seq)
            self._acks[mid] = (seq, reason)
            if len(self._acks) > _ACKS_KEPT:  # acks nobody waits for (status, discovery): forget the oldest
                for old in sorted(self._acks, key=lambda m: self._acks[m][0])[: _ACKS_KEPT // 2]:
                    del self._acks[old]
            self._cond.notify_all()

    def _take(self, pending: Pending, timeout: float) -> ReasonCode | list[ReasonCode] | None:
        """The ack for ``pending``, or None after ``timeout``; an older ack of a reused mid is ignored."""
        with self._cond:
            def ready() -> bool:
                ack = self._acks.get(pending.mid)
                return ack is not None and ack[0] > pending.after

            if not self._cond.wait_for(ready, max(0.0, timeout)):
                return None
            return self._acks.pop(pending.mid)[1]

    def publish_tracked(self, topic: str, payload: bytes | str | None, qos: int = 1, retain: bool = False,
                        properties: Properties | None = None) -> Pending:
        """Queue a publish (sent now, or by paho right after the next connect) and return a handle to wait on."""
        after = self._mark()
        info = self.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise MqttError(f"publish to {topic}: paho's outgoing queue is full")
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise MqttError(f"publish to {topic} failed locally: {paho.error_string(info.rc)}")
        return Pending(info.mid, f"message to {topic}", after)

    def wait_ack(self, pending: Pending, timeout: float) -> ReasonCode | None:
        """The PUBACK's reason code for ``pending`` (check ``.is_failure``), or None after ``timeout``."""
        got = self._take(pending, timeout)
        return got if got is None or isinstance(got, ReasonCode) else got[0]

    def publish_acked(self, topic: str, payload: bytes | str | None, qos: int = 1, retain: bool = False,
                      timeout: float = 10.0, properties: Properties | None = None) -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code.

        Raises MqttAckTimeout if no PUBACK comes in ``timeout`` (the broker may be
        unreachable; paho still re-sends on reconnect). A refusal is returned, not
        raised, so callers can report it in their own words (see :meth:`check`).
        """
        pending = self.publish_tracked(topic, payload, qos=qos, retain=retain, properties=properties)
        reason = self.wait_ack(pending, timeout)
        if reason is None:
            raise MqttAckTimeout(f"the broker at {self.where} did not acknowledge the {pending.what} "
                                 f"within {timeout:g} s")
        return reason

    def subscribe_acked(self, topic: str | Sequence[tuple[str, int]], qos: int = 1,
                        timeout: float = 10.0) -> list[ReasonCode]:
        """Subscribe and return the SUBACK reason codes (e.g. 135 if the ACL forbids a filter)."""
        after = self._mark()
        if isinstance(topic, str):
            rc, mid = self.subscribe(topic, qos)
        else:
            rc, mid = self.subscribe(list(topic))
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe to {topic} failed locally: {paho.error_string(rc)}")
        got = self._take(Pending(mid, f"subscription to {topic}", after), timeout)
        if got is None:
            raise MqttAckTimeout(f"the broker at {self.where} did not acknowledge the subscription to "
                                 f"{topic} within {timeout:g} s")
        return got if isinstance(got, list) else [got]

    def unsubscribe_acked(self, topic: str, timeout: float = 10.0) -> list[ReasonCode]:
        """Unsubscribe and return the UNSUBACK reason codes."""
        after = self._mark()
        rc, mid = self.unsubscribe(topic)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"unsubscribe from {topic} failed locally: {paho.error_string(rc)}")
        got = self._take(Pending(mid, f"unsubscription from {topic}", after), timeout)
        if got is None:
            raise MqttAckTimeout(f"the broker at {self.where} did not acknowledge the unsubscription "
                                 f"from {topic} within {timeout:g} s")
        return got if isinstance(got, list) else [got]

    @staticmethod
    def check(reasons: ReasonCode | Sequence[ReasonCode], what: str) -> None:
        """Raise MqttRefused if any reason code is a failure (the ACL refused ``what``)."""
        for r in [reasons] if isinstance(reasons, ReasonCode) else reasons:
            if r.is_failure:
                raise MqttRefused(f"the broker refused the {what}: {r} ({r.value})", r)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _call(self, what: str, hook: Callable[..., None] | None, *args: object) -> None:
        if hook is None:
            return
        try:
            hook(self, *args)
        except Exception:  # a hook bug must never stop paho's network loop
            log.exception("error in MQTT %s handler", what)

    def _h_log(self, _c: paho.Client, _u: object, _level: int, buf: str) -> None:
        # paho reports a TLS alert that arrives after the handshake (TLS 1.3: "certificate
        # required") only in its log; keep it so the failure can be explained.
        if buf.startswith(("failed to receive on socket", "failed to send on socket")):
            self._socket_error = buf.split(": ", 1)[-1]

    def _h_connect(self, _c: paho.Client, _u: object, flags: paho.ConnectFlags, reason: ReasonCode,
                   _props: Properties | None) -> None:
        self._answered = True
        self.connect_reason = reason
        self.session_present = bool(flags.session_present)
        if reason.is_failure:
            self.failure_kind = "refused"
            self.last_error = f"the broker refused {self.cfg.username!r}: {reason}"
            log.error("MQTT connect to %s refused: %s", self.where, reason)
        else:
            self.failure_kind = self.last_error = None
            log.info("MQTT connected to %s as %s (session present: %s)", self.where, self.cfg.username,
                     flags.session_present)
        self._settled.set()
        self._call("connect", self.handlers.connected, flags, reason)

    def _h_connect_fail(self, _c: paho.Client, _u: object) -> None:
        """TCP or TLS failed before CONNACK (broker down, untrusted certificate): paho retries."""
        log.warning("MQTT: %s; retrying within %g s", self.last_error or f"cannot connect to {self.where}",
                    RECONNECT_MAX_S)
        self._call("connect-fail", self.handlers.connect_failed)

    def _h_disconnect(self, _c: paho.Client, _u: object, _flags: paho.DisconnectFlags, reason: ReasonCode,
                      _props: Properties | None) -> None:
        if not self._answered:
            # Closed before CONNACK: with TLS 1.3 this is how a refused client certificate shows.
            # The alert can lose the race against the socket's EOF, so a TLS connection
            # without a client certificate gets the hint either way.
            detail = self._socket_error or str(reason)
            if "CERTIFICATE_REQUIRED" in detail.upper() or (self.cfg.tls.enabled and not self.cfg.tls.cert_file):
                self.failure_kind = "tls-client-cert"
                self.last_error = (f"the broker at {self.where} closed the TLS connection before answering; it "
                                   f"requires a client certificate: set mqtt.tls.cert_file and "
                                   f"mqtt.tls.key_file ({detail})")
            elif self.cfg.tls.enabled:
                self.failure_kind = "tls-client-cert"
                self.last_error = (f"the broker at {self.where} closed the TLS connection before answering: "
                                   f"it did not accept the client certificate (mqtt.tls.cert_file) ({detail})")
            else:
                self.failure_kind = "unreachable"
                self.last_error = f"the broker at {self.where} closed the connection before answering ({detail})"
            log.warning("MQTT: %s", self.last_error)
            self._settled.set()
        elif self.connect_reason is not None and self.connect_reason.is_failure:
            pass  # the CONNACK already said why (last_error); this is the broker closing after it
        elif reason.is_failure or reason.value != 0:
            # Mosquitto 2.0 closes a taken-over connection without saying why, so the
            # hint names every cause: one login holds one connection at a time.
            self.last_error = (f"disconnected: {reason} (broker restart, network, or another connection "
                               f"logged in as {self.cfg.username!r})")
            log.warning("MQTT connection to %s lost: %s%s", self.where, self.last_error,
                        "; reconnecting" if self._auto_reconnect else "")
        self._answered = False
        self._call("disconnect", self.handlers.disconnected, reason)

    def _h_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        self._call("message", self.handlers.message, msg)

    def _h_publish(self, _c: paho.Client, _u: object, mid: int, reason: ReasonCode,
                   _props: Properties | None) -> None:
        self._record(mid, reason)

    def _h_subscribe(self, _c: paho.Client, _u: object, mid: int, reasons: list[ReasonCode],
                     _props: Properties | None) -> None:
        self._record(mid, list(reasons))
        self._call("subscribe", self.handlers.subscribed, mid, list(reasons))

    def _h_unsubscribe(self, _c: paho.Client, _u: object, mid: int, reasons: list[ReasonCode],
                       _props: Properties | None) -> None:
        self._record(mid, list(reasons))


def make_client(cfg: MqttSection, *, session: Session = Session(), will: Will | None = None,
                handlers: Handlers | None = None, manual_ack: bool = False, reconnect: bool = True,
                logger_name: str | None = None) -> MqttClient:
    """A configured, unconnected client; call :meth:`MqttClient.start` or :meth:`MqttClient.connect_and_wait`.

    ``reconnect=False`` is for one-shot clients (the owner's commands, doctor):
    after a lost connection they report it instead of coming back, because a
    second copy logged in as the same user would otherwise take the session
    over, be taken over in turn, and so on forever.
    Raises MqttConfigError when the TLS files are unusable.
    """
    return MqttClient(cfg, session=session, will=will, handlers=handlers, manual_ack=manual_ack,
                      reconnect=reconnect, logger_name=logger_name)
