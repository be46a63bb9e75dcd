"""The owner's app as a library (:class:`OwnerApp`): one MQTT connection as the owner,
signing with the owner's Ed25519 key, typed calls to the sharing service.

The owner's laptop or phone holds two secrets: its MQTT credentials (the
broker's ACL lets it read only its own owner tree and its own devices) and its
Ed25519 signing key (mode 0600, never sent anywhere). Everything the app does
goes through the broker:

* live data: ``devices/+/events`` and the retained ``devices/+/status``
  (the broker only delivers the owner's own devices);
* police requests and grants: retained ``owners/{o}/requests/+`` and
  ``owners/{o}/grants/+`` published by the sharing service;
* decisions and revokes: signed messages on ``owners/{o}/decisions/{rid}`` and
  ``owners/{o}/grants/{gid}/revoke``; the verdict comes back on
  ``owners/{o}/results/{nonce}``;
* queries (audit, grants, requests, clips, clip links): typed RPC calls
  (:mod:`doorbell.core.protocol`) on ``owners/{o}/rpc/{call}`` answered on ``.../reply``.

Clip bytes come from short-lived presigned links the service issues (and
audits) per request, exactly like an agency's: the app holds no storage
credentials. The audit chain is verified with :mod:`doorbell.core.auditchain`
only. ``doorbell-demo`` drives this class; :mod:`.cli` is the command line
around it and :mod:`.render` turns its results into text.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from doorbell.clients.owner.sealed_index import SealedIndex, default_path
from doorbell.core import protocol as p
from doorbell.core.auditchain import AuditPin, ChainReport, check_pin, pin_of, verify_owner_view
from doorbell.core.config import DoorbellConfig
from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "~/.config/doorbell/owner.yaml"
CONFIG_ENV = "DOORBELL_OWNER_CONFIG"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
R = TypeVar("R", bound=p.RpcResult)


CLIP_SUBSCRIPTION = f"{p.PREFIX}/devices/+/clips"  # the broker's ACL narrows it to the owner's devices
CLIP_SESSION_EXPIRY_S = 30 * 86400
RESEND_S = 5.0  # an unanswered signed message is sent again (same nonce) after this long


@dataclass(frozen=True)
class FetchedClip:
    """A clip (or snapshot) saved by :meth:`OwnerApp.fetch_clip`."""

    clip_id: str
    path: str
    size: int
    sha256: str
    verified: bool  # the video's SHA-256 matched the device's announcement
    link_expires_at: float


class OwnerError(DoorbellError):
    """Something the owner must be told about (connection, refusal, timeout, bad input)."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


class OwnerApp:
    """One MQTT v5 connection as the owner, with blocking helpers.

    ``cfg`` is a :class:`doorbell.core.config.DoorbellConfig` with ``owner`` and
    ``mqtt`` sections (TLS from ``mqtt.tls``). Use as a context manager.
    """

    def __init__(self, cfg: DoorbellConfig, *, connect_timeout: float = 10.0, state_dir: Path | None = None):
        self.cfg = cfg
        self.owner_id: str = cfg.owner.owner_id
        self.connect_timeout = connect_timeout
        # where the audit heads verified last are pinned; default $XDG_STATE_HOME/doorbell
        self.state_dir = state_dir
        self._inbox: "queue.Queue[Received]" = queue.Queue()
        self._backlog: "collections.deque[Received]" = collections.deque()
        self._client: Any = None  # a doorbell.core.mqtt.MqttClient while connected
        self._subs: set[str] = set()
        self._key: Any = None
        self._clips: "queue.Queue[Received]" = queue.Queue()  # signals a sealed-clip announcement arrived
        self._pending_lock = threading.Lock()  # the on-disk announcements (paho's thread appends)

    # ---------------------------------------------------------------- connection
    @property
    def prefix(self) -> str:
        return f"{p.PREFIX}/owners/{self.owner_id}"

    def connect(self) -> "OwnerApp":
        """Connect as the owner through the one client factory (doorbell.core.mqtt).

        The client id is the owner's username, so a second app logged in as the
        same owner takes the session over. This one does not reconnect (the two
        would evict each other forever): its next call fails with a clear error.
        """
        from doorbell.core.mqtt import Handlers, MqttConnectError, MqttError, Session, make_client

        m = self.cfg.mqtt
        if not m.username or m.password is None or not m.password.get_secret_value():
            raise OwnerError(f"{self.cfg.source}: mqtt.username and mqtt.password are required "
                             "(from `doorbell provision owner`)", EXIT_USAGE)
        if not m.tls.enabled and m.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("MQTT to %s without TLS: your password and decisions cross the network in clear", m.host)
        try:
            # A persistent session whose only lasting subscription is the devices' clip announcements
            # (CLIP_SUBSCRIPTION): the broker queues them while the app is closed, for the owner's own
            # clip index (the cloud keeps none). Every other subscription ends with close().
            c = make_client(m, session=Session(clean_start=False, expiry_s=CLIP_SESSION_EXPIRY_S),
                            handlers=Handlers(message=self._on_message), reconnect=False,
                            logger_name="doorbell.owner.paho")
        except MqttError as exc:
            raise OwnerError(f"TLS files unusable: {exc}", EXIT_USAGE) from None
        self._client = c
        try:
            c.connect_and_wait(self.connect_timeout)
        except MqttConnectError as exc:
            self._client = None
            if exc.kind == "refused":
                raise OwnerError(f"the broker refused {m.username!r}: {exc.reason_code} "
                                 "(check mqtt.username/password)") from None
            raise OwnerError(str(exc)) from None
        try:
            self.subscribe(CLIP_SUBSCRIPTION)
        except OwnerError as exc:  # e.g. no device enrolled yet: everything but the clip index still works
            log.warning("no clip announcements for your own clip index: %s", exc)
        return self

    def close(self) -> None:
        if self._client is None:
            return
        for topic in sorted(self._subs - {CLIP_SUBSCRIPTION}):  # the session keeps only the clip subscription
            try:
                self.unsubscribe(topic)
            except OwnerError:
                break  # connection gone: the broker drops nothing we could still undo
        self._client.close()
        self._client = None

    def __enter__(self) -> "OwnerApp":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paho's network thread
    def _on_message(self, _c: Any, msg: Any) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain))
        if msg.topic.endswith("/clips") and msg.topic.startswith(f"{p.PREFIX}/devices/"):
            # Any command's connection receives the queued announcements (and acknowledges them), so each
            # is kept on disk until a sync indexes it: `events` or `grants` must not lose one.
            self._keep_announcement(received)
            self._clips.put(received)
        else:
            self._inbox.put(received)

    def pending_clips_path(self) -> Path:
        """Announcements received but not yet indexed (JSON lines), next to the clip index."""
        return default_path(self.owner_id, self.state_dir).with_suffix(".pending")

    def _keep_announcement(self, m: Received) -> None:
        line = json.dumps({"topic": m.topic, "payload": base64.b64encode(m.payload).decode()}) + "\n"
        path = self.pending_clips_path()
        try:
            with self._pending_lock:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "a") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:  # the in-memory copy still reaches a sync in this process
            log.warning("cannot keep a clip announcement in %s: %s", path, exc)

    def _take_pending(self) -> list[Received]:
        path = self.pending_clips_path()
        with self._pending_lock:
            try:
                lines = path.read_text().splitlines()
            except FileNotFoundError:
                return []
            path.unlink()
        out = []
        for line in lines:
            try:
                doc = json.loads(line)
                out.append(Received(str(doc["topic"]), base64.b64decode(doc["payload"]), False))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping a damaged line in %s", path)
        return out

    def _acked(self, call: Callable[[], Any], what: str) -> Any:
        """Run one of the client's ``*_acked`` calls, turning its errors into OwnerError."""
        from doorbell.core.mqtt import MqttAckTimeout, MqttError

        if self._client is None:
            raise OwnerError("not connected to the MQTT broker")
        try:
            return call()
        except MqttAckTimeout:
            reason = self._client.last_error
            raise OwnerError(f"the broker did not acknowledge the {what}"
                             + (f" ({reason})" if reason else "")) from None
        except MqttError as exc:
            raise OwnerError(str(exc)) from None

    # ---------------------------------------------------------------- primitives
    def subscribe(self, topic: str, qos: int = 1) -> None:
        if topic in self._subs:
            return
        reasons = self._acked(lambda: self._client.subscribe_acked(topic, qos), f"subscription to {topic}")
        if any(r.is_failure for r in reasons):
            raise OwnerError(f"the broker refused the subscription to {topic}: {reasons[0]} (ACL)")
        self._subs.add(topic)

    def unsubscribe(self, topic: str) -> None:
        if topic not in self._subs:
            return
        self._acked(lambda: self._client.unsubscribe_acked(topic), f"unsubscription from {topic}")
        self._subs.discard(topic)

    def publish(self, topic: str, payload: bytes) -> None:
        reason = self._acked(lambda: self._client.publish_acked(topic, payload, qos=1), f"message to {topic}")
        if reason.is_failure:
            raise OwnerError(f"the broker refused the message to {topic}: {reason} (ACL)")

    def next_message(self, timeout: float) -> Received | None:
        """The next message: first those set aside while waiting for something else."""
        if self._backlog:
            return self._backlog.popleft()
        try:
            return self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            if self._client is not None and not self._client.is_connected():
                # one-shot client: no reconnect (see connect), so say so instead of waiting forever
                raise OwnerError(f"lost the connection to the broker: {self._client.last_error}") from None
            return None

    def wait_for(self, topic_filter: str, timeout: float,
                 keep: Callable[[Received], None] | None = None) -> Received:
        """The next message on ``topic_filter``; others go to ``keep``, or are set aside
        for :meth:`next_message` (an event arriving during an RPC call is not lost)."""
        import paho.mqtt.client as mqtt

        deadline = time.monotonic() + timeout
        aside: list[Received] = []
        try:
            while True:
                try:
                    msg = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise OwnerError(f"timed out after {timeout:g} s waiting for the sharing service "
                                     "(is it running and connected to the broker?)") from None
                if mqtt.topic_matches_sub(topic_filter, msg.topic):
                    return msg
                if keep is not None:
                    keep(msg)
                elif len(self._backlog) + len(aside) < 10000:
                    aside.append(msg)
        finally:
            self._backlog.extend(aside)

    # ---------------------------------------------------------------- RPC
    def call(self, params: p.RpcParams, result: type[R], timeout: float = 10.0,
             keep: Callable[[Received], None] | None = None) -> R:
        """Call the service (``owners/{o}/rpc/{call}``) and return its typed result; OwnerError if refused."""
        call_id = p.new_token()
        reply_topic = p.rpc_reply_topic(self.owner_id, call_id)
        self.subscribe(reply_topic)
        self.publish(p.rpc_topic(self.owner_id, call_id), p.RpcCall.of(params).to_json())
        msg = self.wait_for(reply_topic, timeout, keep)
        self.unsubscribe(reply_topic)
        try:
            reply = p.decode(p.RpcReply, msg.payload, "rpc_reply")
        except p.ProtocolError as exc:
            raise OwnerError(f"invalid reply from the service: {exc}") from None
        if not reply.ok:
            raise OwnerError(f"the service refused {params.method}: {reply.error}")
        try:
            return reply.parse_result(result)
        except p.ProtocolError as exc:
            raise OwnerError(f"invalid {params.method} result from the service: {exc}") from None

    def retained(self, topic_filter: str, marker: p.RpcParams, result: type[R],
                 timeout: float = 10.0) -> tuple[list[Received], R]:
        """Retained messages on ``topic_filter``, plus the result of an RPC used as an end marker.

        The broker queues a subscription's retained messages before it even
        sees our next PUBLISH, so once the RPC's reply arrives every retained
        message has arrived too (one connection's deliveries are in order).
        """
        import paho.mqtt.client as mqtt

        got: list[Received] = []
        self.unsubscribe(topic_filter)  # a fresh subscription is what makes the broker resend retained state
        self.subscribe(topic_filter)
        try:
            answer = self.call(marker, result, timeout=timeout, keep=got.append)
        finally:
            self.unsubscribe(topic_filter)
        return [m for m in got if m.payload and mqtt.topic_matches_sub(topic_filter, m.topic)], answer

    # ---------------------------------------------------------------- keys
    def key(self) -> Any:
        from doorbell.core.signing import SignatureError, load_private_key

        if self._key is None:
            path = Path(self.cfg.owner.key_file).expanduser()
            if not path.exists():
                raise OwnerError(f"no signing key at {path}: run `doorbell owner keys init` and enrol "
                                 "the public key it prints", EXIT_USAGE)
            try:
                self._key = load_private_key(path)
            except (SignatureError, ValueError, OSError) as exc:
                raise OwnerError(str(exc), EXIT_USAGE) from None
        return self._key

    # ---------------------------------------------------------------- requests
    def pending_requests(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Pending police requests: the retained message (with snapshot links) merged with
        the service's own list (which also covers a broker that lost retained state)."""
        msgs, listed = self.retained(f"{self.prefix}/requests/+", p.RequestsParams(state="pending", limit=500),
                                     p.RequestList, timeout)
        by_id: dict[str, dict[str, Any]] = {}
        for m in msgs:
            try:
                req = p.decode(p.PoliceRequest, m.payload, "request")
            except p.ProtocolError:
                continue  # a RequestClosed placeholder or junk
            by_id[req.request_id] = req.model_dump(mode="json")
        out = []
        for row in listed.requests:
            full = by_id.get(row.request_id)
            if full is None:  # not retained (broker restarted without persistence): the RPC data
                full = {"request_id": row.request_id, "owner_id": self.owner_id, "agency": row.agency,
                        "case_number": row.case_number, "legal_basis": row.legal_basis,
                        "reason": row.reason, "window_start": row.window_start,
                        "window_end": row.window_end, "created_at": row.created_at,
                        "expires_at": row.expires_at, "grant_days": row.grant_days,
                        "clips": [{"clip_id": c} for c in row.clip_ids]}
                if row.agency_recipient:
                    full["agency_recipient"] = row.agency_recipient
            out.append(full)
        return sorted(out, key=lambda r: r["created_at"])

    def request(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        for r in self.pending_requests(timeout):
            if r["request_id"] == request_id:
                return r
        raise OwnerError(f"no pending request {request_id} (already decided, expired, or not yours); "
                         "see `doorbell owner requests`")

    def send_signed(self, topic: str, message: p.SignedMessage, timeout: float = 15.0,
                    resend_s: float = RESEND_S) -> p.Result:
        """Publish a signed decision/revoke and wait for the service's :class:`~doorbell.core.protocol.Result`.

        Unanswered after ``resend_s``, the same message (same nonce) is sent again: with several
        service instances, the one that took it may have died before answering. The service applies
        a nonce once and answers a repeat with the verdict it stored, so resending is always safe.
        """
        result_topic = p.result_topic(self.owner_id, message.nonce)
        self.subscribe(result_topic)
        payload = message.to_json()
        deadline = time.monotonic() + timeout
        msg = None
        try:
            while msg is None:
                self.publish(topic, payload)
                left = deadline - time.monotonic()
                try:
                    msg = self.wait_for(result_topic, max(0.0, min(resend_s, left)))
                except OwnerError:
                    if time.monotonic() >= deadline:
                        raise
                    log.info("no answer to %s after %.0f s; sending it again (same nonce)", message.nonce, resend_s)
        except OwnerError:
            valid = max(0, int(message.expires_at - time.time()))
            raise OwnerError(f"no answer from the sharing service within {timeout:g} s: NOT known to be applied. "
                             f"The signed message was delivered to the broker; if the service is only down it may "
                             f"still apply it when it is back (the signature is valid for {valid} s more): check "
                             "`doorbell owner grants --all` / `requests` before sending again") from None
        try:
            return p.decode(p.Result, msg.payload, "result")
        except p.ProtocolError as exc:
            raise OwnerError(f"invalid result from the service: {exc}") from None

    def decide(self, request_id: str, approve: bool, clip_ids: list[str] | None = None,
               grant_days: int = 7, timeout: float = 15.0, release: Any = None) -> p.Result:
        """Sign and send; ``release`` (from :meth:`release_for`) releases sealed clips' keys to the agency."""
        from doorbell.core.signing import sign_decision

        msg = sign_decision(self.key(), owner_id=self.owner_id, request_id=request_id, approve=approve,
                            clip_ids=clip_ids, grant_days=grant_days, release=release)
        return self.send_signed(p.decision_topic(self.owner_id, request_id), msg, timeout)

    def revoke(self, grant_id: str, timeout: float = 15.0) -> p.Result:
        from doorbell.core.signing import sign_revoke

        msg = sign_revoke(self.key(), owner_id=self.owner_id, grant_id=grant_id)
        return self.send_signed(p.revoke_topic(self.owner_id, grant_id), msg, timeout)

    def grants(self, timeout: float = 10.0) -> list[p.GrantInfo]:
        """The service's list (which knows time-based expiry) plus grants only seen retained."""
        msgs, listed = self.retained(f"{self.prefix}/grants/+", p.GrantsParams(limit=500), p.GrantList, timeout)
        by_id = {g.grant_id: g for g in listed.grants}
        for m in msgs:
            try:
                g = p.decode(p.GrantState, m.payload, "grant")
            except p.ProtocolError:
                continue
            if g.grant_id not in by_id:
                by_id[g.grant_id] = p.GrantInfo(grant_id=g.grant_id, request_id=g.request_id, agency=g.agency,
                                                case_number=g.case_number, clip_ids=g.clip_ids,
                                                created_at=g.created_at, expires_at=g.expires_at, state=g.state)
        now = time.time()
        rows = [g.model_copy(update={"state": "expired"}) if g.state == "active" and g.expires_at <= now else g
                for g in by_id.values()]
        return sorted(rows, key=lambda g: g.created_at, reverse=True)

    # ---------------------------------------------------------------- clips
    def clips(self, limit: int = 20, device: str | None = None, since: float | None = None,
              until: float | None = None, timeout: float = 10.0) -> list[p.ClipInfo]:
        try:
            params = p.ClipsParams(limit=limit, device_id=device, since=since, until=until)
        except ValueError as exc:
            raise OwnerError(f"invalid clip query: {exc}", EXIT_USAGE) from None
        return self.call(params, p.ClipList, timeout).clips

    def clip_info(self, clip_id: str) -> p.ClipInfo:
        """One of the owner's clips (its id encodes its start time, so the search is narrow)."""
        t = clip_id_time(clip_id)
        for r in self.clips(limit=500, since=t - 700 if t else None, until=t + 700 if t else None):
            if r.clip_id == clip_id:
                return r
        raise OwnerError(f"no clip {clip_id} among your clips (see `doorbell owner clips`)")

    def fetch_clip(self, clip_id: str, dest: Path, what: str = "video") -> FetchedClip:
        """Download one own clip (or its snapshot) through a short-lived link; the video's
        SHA-256 is checked against the device's announcement before the file appears."""
        import httpx

        info = self.clip_info(clip_id)
        link = self.call(p.ClipLinkParams(clip_id=clip_id, what="snapshot" if what == "snapshot" else "video"),
                         p.ClipLink)
        try:
            r = httpx.get(link.url, timeout=60.0)
        except httpx.HTTPError as exc:
            raise OwnerError(f"download failed: {exc}") from None
        if r.status_code != 200:
            raise OwnerError(f"the storage server refused the link: HTTP {r.status_code}")
        data = r.content
        digest = hashlib.sha256(data).hexdigest()
        if what == "video" and digest != info.sha256:
            raise OwnerError(f"clip {clip_id}: SHA-256 mismatch (got {digest[:16]}…, expected "
                             f"{info.sha256[:16]}…); the file was not saved")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        return FetchedClip(clip_id=clip_id, path=str(dest), size=len(data), sha256=digest,
                           verified=what == "video", link_expires_at=link.expires_at)

    # ---------------------------------------------------------------- sealed clips (issue 12)
    def identities(self) -> list[Any]:
        """The owner's age identities (``doorbell owner keys init``): they open the household's clips."""
        from doorbell.clients.owner.keys import identity_path
        from doorbell.core.age import AgeError, load_identities

        path = identity_path(Path(self.cfg.owner.key_file))
        try:
            return load_identities(path)
        except FileNotFoundError:
            raise OwnerError(f"no age identity at {path}: run `doorbell owner keys init`", EXIT_USAGE) from None
        except (OSError, AgeError) as exc:
            raise OwnerError(f"{path}: {exc}", EXIT_USAGE) from None

    def clip_index(self) -> SealedIndex:
        """This owner's own index of sealed clips (the cloud keeps none)."""
        return SealedIndex(default_path(self.owner_id, self.state_dir), self.identities())

    def sync_clips(self, index: SealedIndex, idle_s: float = 1.0, max_s: float = 30.0) -> int:
        """Index the sealed clips announced since the last sync; returns how many were new.

        The app's session is persistent with one lasting subscription, the
        devices' ``clips`` topics (see :meth:`connect`), so the broker keeps
        what is announced while the app is closed (up to its per-session
        queue limit, Mosquitto's ``max_queued_messages``: 1000 by default).
        Waits until no announcement came for ``idle_s``.
        """
        if self._client is None:
            raise OwnerError("not connected to the MQTT broker")
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:  # wait until the broker's queue for us has drained
            try:
                self._clips.get(timeout=idle_s)
            except queue.Empty:
                break
        before = index.count()
        for msg in self._take_pending():  # everything kept on disk, by this or an earlier command
            try:
                t = p.parse_topic(msg.topic)
            except p.ProtocolError:
                continue
            if t.kind == "clips" and t.device_id and b'"sealed"' in msg.payload:
                index.ingest(t.device_id, msg.payload)
        return index.count() - before

    def sealed_candidates(self, req: dict[str, Any], index: SealedIndex) -> list[dict[str, Any]]:
        """The owner's own clips in a request's window (what the app offers; the service knows none)."""
        return [{"clip_id": c.clip_id, "device_id": c.device_id, "trigger": c.trigger, "started_at": c.started_at,
                 "ended_at": c.ended_at, "sealed": True}
                for c in index.match(float(req["window_start"]), float(req["window_end"]))]

    def _object_header(self, key: str) -> bytes:
        import io

        import httpx

        from doorbell.core.age import AgeError, header_and_payload_offset

        link = self.call(p.ObjectLinkParams(key=key), p.ObjectLink)
        try:
            r = httpx.get(link.url, headers={"Range": "bytes=0-65535"}, timeout=60.0)
        except httpx.HTTPError as exc:
            raise OwnerError(f"cannot read {key}: {exc}") from None
        if r.status_code not in (200, 206):
            raise OwnerError(f"the storage server refused the link for {key}: HTTP {r.status_code}")
        try:
            return header_and_payload_offset(io.BytesIO(r.content))[0]
        except AgeError as exc:
            raise OwnerError(f"{key} is not an age file: {exc}") from None

    def release_for(self, req: dict[str, Any], clip_ids: list[str], index: SealedIndex) -> Any:
        """Re-wrap the chosen sealed clips' keys (video, snapshot, manifest) to the request's agency recipient."""
        from doorbell.core.age import AgeError
        from doorbell.core.release import RELEASED_KINDS, ReleaseError, SealedSource, build_release

        recipient = req.get("agency_recipient")
        if not recipient:
            raise OwnerError("this request carries no agency key: sealed clips cannot be shared under it")
        sources: dict[str, dict[str, SealedSource]] = {}
        for cid in clip_ids:
            clip = index.get(cid)
            if clip is None:
                raise OwnerError(f"clip {cid} is not in your clip index (`doorbell owner clips --sync`)")
            sources[cid] = {kind: SealedSource(key=str(obj["key"]), header=self._object_header(str(obj["key"])))
                            for kind, obj in clip.objects.items() if kind in RELEASED_KINDS}
        try:
            return build_release(sources, self.identities(), recipient)
        except (AgeError, ReleaseError) as exc:
            raise OwnerError(f"cannot release the keys: {exc}") from None

    # ---------------------------------------------------------------- audit
    def audit(self, page: int = 500, timeout: float = 15.0) -> p.AuditView:
        """The whole audit view (own rows in full, others as digests), page by page."""
        rows: list[p.AuditRow] = []
        since = 1
        first: p.AuditView | None = None
        while True:
            view = self.call(p.AuditParams(since=since, limit=page), p.AuditView, timeout=timeout)
            first = first or view
            rows.extend(view.rows)
            if view.complete or not view.next_since:
                break
            since = view.next_since
        return p.AuditView(from_seq=1, start_prev=first.start_prev, rows=rows, head=view.head,
                           owner_head=view.owner_head, complete=view.complete)

    def audit_pin_path(self) -> Path:
        """Where the last verified heads are kept (default ``$XDG_STATE_HOME/doorbell``)."""
        state = self.state_dir or Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "doorbell"
        return state / f"owner-{self.owner_id}-audit-head.json"

    def audit_pin(self) -> AuditPin | None:
        """The heads this owner verified last, or None before the first verification."""
        path = self.audit_pin_path()
        try:
            data = json.loads(path.read_text())
            pin = AuditPin.from_dict(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OwnerError(f"cannot read the audit head you verified last ({path}): {exc}. Without it a "
                             "rewrite of your history cannot be detected; restore it, or delete it to trust "
                             "the current log from now on") from None
        if pin.owner_id != self.owner_id:
            raise OwnerError(f"{path} belongs to owner {pin.owner_id}, not {self.owner_id}")
        return pin

    def verify_audit(self, view: p.AuditView, pin: bool = True) -> ChainReport:
        """Verify the view (global chain, own chain, heads) and that it extends the heads
        verified last; on success the new heads are pinned for next time."""
        data = view.model_dump(mode="json", exclude_none=True)
        report = verify_owner_view(data, self.owner_id)
        if not pin:
            return report
        last = self.audit_pin()
        if last is not None:
            check_pin(data, last, report)
        if report.ok and view.complete and view.from_seq == 1:
            new = pin_of(report, self.owner_id)
            path = self.audit_pin_path()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, json.dumps({**new.as_dict(), "verified_at": time.time()}, indent=2))
            except OSError as exc:
                raise OwnerError(f"verified, but cannot record the verified head in {path}: {exc}") from None
        return report

    # ---------------------------------------------------------------- events
    def watch(self, devices: Iterable[str] = ()) -> None:
        """Subscribe to device events and status (the broker delivers only your own devices)."""
        devs = list(devices)
        if devs:
            for d in devs:
                self.subscribe(p.events_topic(d))
                self.subscribe(p.status_topic(d))
        else:
            self.subscribe(f"{p.PREFIX}/devices/+/events")
            self.subscribe(f"{p.PREFIX}/devices/+/status")


def clip_id_time(clip_id: str) -> float | None:
    """Start time encoded in a clip id (``20261123T212719123Z-1a2b3c``), or None."""
    try:
        dt = datetime.strptime(clip_id[:18], "%Y%m%dT%H%M%S%f")

        return dt.replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None



def load_owner_config(path: str | None) -> DoorbellConfig:
    from doorbell.core.config import load_config

    chosen = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    p = Path(chosen).expanduser()
    if not p.exists():
        raise OwnerError(f"no owner config at {p}: pass --config FILE (see config/owner.yaml)", EXIT_USAGE)
    return load_config(p)

