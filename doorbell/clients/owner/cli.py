"""``doorbell owner ...``: the owner's app, linked to the product over MQTT only.

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
* queries (audit, grants, requests, clips, clip links): RPC calls on
  ``owners/{o}/rpc/{call}`` answered on ``.../reply``.

Clip bytes come from short-lived presigned links the service issues (and
audits) per request, exactly like an agency's: the app holds no storage
credentials. :class:`OwnerApp` is the reusable part (``doorbell-demo`` drives
it); the ``_cmd_*`` functions are the command line around it. Heavy imports
(httpx) happen inside the handlers.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from doorbell.core.errors import DoorbellError

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "~/.config/doorbell/owner.yaml"
CONFIG_ENV = "DOORBELL_OWNER_CONFIG"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class OwnerError(DoorbellError):
    """Something the owner must be told about (connection, refusal, timeout, bad input)."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- formatting

def fmt_time(ts: float | None, with_date: bool = True) -> str:
    """Local time, the way an owner reads a clock."""
    if ts is None:
        return "-"
    dt = datetime.fromtimestamp(float(ts)).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z" if with_date else "%H:%M:%S")


def fmt_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds >= 86400:
        d = seconds / 86400
        return f"{d:.0f} day{'s' if round(d) != 1 else ''}" if abs(d - round(d)) < 0.05 else f"{d:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def table(rows: list[list[str]], headers: list[str], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


# --------------------------------------------------------------------------- the app

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

    def __init__(self, cfg: Any, *, connect_timeout: float = 10.0):
        self.cfg = cfg
        self.owner_id: str = cfg.owner.owner_id
        self.connect_timeout = connect_timeout
        self._inbox: "queue.Queue[Received]" = queue.Queue()
        self._backlog: "collections.deque[Received]" = collections.deque()
        self._acks: dict[int, Any] = {}
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._connect_reason: Any = None
        self._client: Any = None
        self._subs: set[str] = set()
        self._key: Any = None

    # ---------------------------------------------------------------- connection
    @property
    def prefix(self) -> str:
        from doorbell.core import protocol as p

        return f"{p.PREFIX}/owners/{self.owner_id}"

    def connect(self) -> "OwnerApp":
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        m = self.cfg.mqtt
        if not m.username or m.password is None or not m.password.get_secret_value():
            raise OwnerError(f"{self.cfg.source}: mqtt.username and mqtt.password are required "
                             "(from `doorbell provision owner`)", EXIT_USAGE)
        cid = f"{self.owner_id}-app-{secrets.token_hex(4)}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.username_pw_set(m.username, m.password.get_secret_value())
        if m.tls.enabled:
            try:
                c.tls_set(ca_certs=_path(m.tls.ca_file), certfile=_path(m.tls.cert_file),
                          keyfile=_path(m.tls.key_file))
            except (OSError, ValueError) as exc:
                raise OwnerError(f"TLS files unusable: {exc}", EXIT_USAGE) from None
            c.tls_insecure_set(m.tls.insecure_skip_verify)
        elif m.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("MQTT to %s without TLS: your password and decisions cross the network in clear", m.host)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_ack
        c.on_unsubscribe = self._on_ack
        c.on_publish = self._on_publish
        self._client = c
        try:
            c.connect(m.host, m.port, keepalive=m.keepalive_s)
        except (OSError, ValueError) as exc:
            raise OwnerError(f"cannot reach the MQTT broker at {m.host}:{m.port}: {exc}") from None
        c.loop_start()
        if not self._connected.wait(self.connect_timeout):
            self.close()
            raise OwnerError(f"no answer from the MQTT broker at {m.host}:{m.port} within {self.connect_timeout:g} s")
        if self._connect_reason is not None and self._connect_reason.is_failure:
            reason = self._connect_reason
            self.close()
            raise OwnerError(f"the broker refused {m.username!r}: {reason} (check mqtt.username/password)")
        return self

    def close(self) -> None:
        if self._client is None:
            return
        try:
            self._client.disconnect()
        except Exception:  # already gone
            pass
        self._client.loop_stop()
        self._client = None

    def __enter__(self) -> "OwnerApp":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paho callbacks (network thread)
    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connect_reason = reason
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self._inbox.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_ack(self, _c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        with self._cond:
            self._acks[mid] = reasons
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._cond:
            self._acks[mid] = reason
            self._cond.notify_all()

    def _wait_ack(self, mid: int, what: str, wait: float = 10.0) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acks, wait):
                raise OwnerError(f"the broker did not acknowledge the {what} within {wait:g} s")
            return self._acks.pop(mid)

    # ---------------------------------------------------------------- primitives
    def subscribe(self, topic: str, qos: int = 1) -> None:
        if topic in self._subs:
            return
        with self._cond:
            _rc, mid = self._client.subscribe(topic, qos)
        reasons = self._wait_ack(mid, f"subscription to {topic}")
        if any(getattr(r, "is_failure", False) for r in reasons):
            raise OwnerError(f"the broker refused the subscription to {topic}: {reasons[0]} (ACL)")
        self._subs.add(topic)

    def unsubscribe(self, topic: str) -> None:
        if topic not in self._subs:
            return
        with self._cond:
            _rc, mid = self._client.unsubscribe(topic)
        self._wait_ack(mid, f"unsubscription from {topic}")
        self._subs.discard(topic)

    def publish(self, topic: str, payload: bytes) -> None:
        with self._cond:
            info = self._client.publish(topic, payload, qos=1)
        reason = self._wait_ack(info.mid, f"message to {topic}")
        if getattr(reason, "is_failure", False):
            raise OwnerError(f"the broker refused the message to {topic}: {reason} (ACL)")

    def next_message(self, timeout: float) -> Received | None:
        """The next message: first those set aside while waiting for something else."""
        if self._backlog:
            return self._backlog.popleft()
        try:
            return self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
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
    def rpc(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0,
            keep: Callable[[Received], None] | None = None) -> Any:
        """Call the service (``owners/{o}/rpc/{call}``) and return ``result``; OwnerError if refused."""
        from doorbell.core import protocol as p

        call_id = p.new_token()
        reply_topic = p.rpc_reply_topic(self.owner_id, call_id)
        self.subscribe(reply_topic)
        self.publish(p.rpc_topic(self.owner_id, call_id), p.RpcCall(method=method, params=params or {}).to_json())
        msg = self.wait_for(reply_topic, timeout, keep)
        self.unsubscribe(reply_topic)
        try:
            reply = p.decode(p.RpcReply, msg.payload, "rpc_reply")
        except p.ProtocolError as exc:
            raise OwnerError(f"invalid reply from the service: {exc}") from None
        if not reply.ok:
            raise OwnerError(f"the service refused {method}: {reply.error}")
        return reply.result

    def retained(self, topic_filter: str, timeout: float = 10.0, marker: tuple[str, dict] | None = None
                 ) -> tuple[list[Received], Any]:
        """Retained messages on ``topic_filter``, plus the result of an RPC used as an end marker.

        The broker queues a subscription's retained messages before it even
        sees our next PUBLISH, so once the RPC's reply arrives every retained
        message has arrived too (one connection's deliveries are in order).
        """
        import paho.mqtt.client as mqtt

        got: list[Received] = []
        self.unsubscribe(topic_filter)  # a fresh subscription is what makes the broker resend retained state
        self.subscribe(topic_filter)
        method, params = marker or ("requests", {"limit": 1})
        try:
            result = self.rpc(method, params, timeout=timeout, keep=got.append)
        finally:
            self.unsubscribe(topic_filter)
        return [m for m in got if m.payload and mqtt.topic_matches_sub(topic_filter, m.topic)], result

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
        from doorbell.core import protocol as p

        msgs, listed = self.retained(f"{self.prefix}/requests/+", timeout,
                                     marker=("requests", {"state": "pending", "limit": 500}))
        by_id: dict[str, dict[str, Any]] = {}
        for m in msgs:
            try:
                req = p.decode(p.PoliceRequest, m.payload, "request")
            except p.ProtocolError:
                continue  # a RequestClosed placeholder or junk
            by_id[req.request_id] = req.model_dump(mode="json")
        out = []
        for row in listed or []:
            rid = row["request_id"]
            full = by_id.get(rid)
            if full is None:  # not retained (broker restarted without persistence): the RPC data
                full = {"request_id": rid, "owner_id": self.owner_id, "agency": row["agency"],
                        "case_number": row["case_number"], "legal_basis": row["legal_basis"],
                        "reason": row["reason"], "window_start": row["window_start"],
                        "window_end": row["window_end"], "created_at": row["created_at"],
                        "expires_at": row["expires_at"], "grant_days": row["grant_days"],
                        "clips": [{"clip_id": c} for c in row["clip_ids"]]}
            out.append(full)
        return sorted(out, key=lambda r: r["created_at"])

    def request(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        for r in self.pending_requests(timeout):
            if r["request_id"] == request_id:
                return r
        raise OwnerError(f"no pending request {request_id} (already decided, expired, or not yours); "
                         "see `doorbell owner requests`")

    def send_signed(self, topic: str, message: Any, timeout: float = 15.0) -> Any:
        """Publish a signed decision/revoke and wait for the service's :class:`Result`."""
        from doorbell.core import protocol as p

        result_topic = p.result_topic(self.owner_id, message.nonce)
        self.subscribe(result_topic)
        self.publish(topic, message.to_json())
        try:
            msg = self.wait_for(result_topic, timeout)
        except OwnerError:
            valid = max(0, int(message.expires_at - time.time()))
            raise OwnerError(f"no answer from the sharing service within {timeout:g} s. The signed message "
                             f"was delivered to the broker; if the service is only down it may still apply it "
                             f"when it is back (the signature is valid for {valid} s more): check "
                             "`doorbell owner grants --all` / `requests` before sending again") from None
        try:
            return p.decode(p.Result, msg.payload, "result")
        except p.ProtocolError as exc:
            raise OwnerError(f"invalid result from the service: {exc}") from None

    def decide(self, request_id: str, approve: bool, clip_ids: list[str] | None = None,
               grant_days: int = 7, timeout: float = 15.0) -> Any:
        from doorbell.core import protocol as p
        from doorbell.core.signing import sign_decision

        msg = sign_decision(self.key(), owner_id=self.owner_id, request_id=request_id, approve=approve,
                            clip_ids=clip_ids, grant_days=grant_days)
        return self.send_signed(p.decision_topic(self.owner_id, request_id), msg, timeout)

    def revoke(self, grant_id: str, timeout: float = 15.0) -> Any:
        from doorbell.core import protocol as p
        from doorbell.core.signing import sign_revoke

        msg = sign_revoke(self.key(), owner_id=self.owner_id, grant_id=grant_id)
        return self.send_signed(p.revoke_topic(self.owner_id, grant_id), msg, timeout)

    def grants(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Retained GrantState messages merged with the service's list (which knows time-based expiry)."""
        from doorbell.core import protocol as p

        msgs, listed = self.retained(f"{self.prefix}/grants/+", timeout, marker=("grants", {"limit": 500}))
        by_id: dict[str, dict[str, Any]] = {}
        for m in msgs:
            try:
                g = p.decode(p.GrantState, m.payload, "grant")
            except p.ProtocolError:
                continue
            by_id[g.grant_id] = g.model_dump(mode="json")
        for row in listed or []:
            by_id.setdefault(row["grant_id"], {}).update(row)
        now = time.time()
        for g in by_id.values():
            if g.get("state") == "active" and g.get("expires_at", now + 1) <= now:
                g["state"] = "expired"
        return sorted(by_id.values(), key=lambda g: g.get("created_at", 0), reverse=True)

    # ---------------------------------------------------------------- clips
    def clips(self, limit: int = 20, device: str | None = None, since: float | None = None,
              until: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if device:
            params["device_id"] = device
        if since is not None:
            params["since"] = since
        if until is not None:
            params["until"] = until
        return list(self.rpc("clips", params) or [])

    def clip_info(self, clip_id: str) -> dict[str, Any]:
        """One of the owner's clips (its id encodes its start time, so the search is narrow)."""
        t = clip_id_time(clip_id)
        rows = self.clips(limit=500, since=t - 700 if t else None, until=t + 700 if t else None)
        for r in rows:
            if r["clip_id"] == clip_id:
                return r
        raise OwnerError(f"no clip {clip_id} among your clips (see `doorbell owner clips`)")

    def fetch_clip(self, clip_id: str, dest: Path, what: str = "video") -> dict[str, Any]:
        """Download one own clip (or its snapshot) through a short-lived link; the video's
        SHA-256 is checked against the device's announcement before the file appears."""
        import httpx

        info = self.clip_info(clip_id)
        link = self.rpc("clip_link", {"clip_id": clip_id, "what": what})
        try:
            r = httpx.get(link["url"], timeout=60.0)
        except httpx.HTTPError as exc:
            raise OwnerError(f"download failed: {exc}") from None
        if r.status_code != 200:
            raise OwnerError(f"the storage server refused the link: HTTP {r.status_code}")
        data = r.content
        digest = hashlib.sha256(data).hexdigest()
        if what == "video" and digest != info["sha256"]:
            raise OwnerError(f"clip {clip_id}: SHA-256 mismatch (got {digest[:16]}…, expected "
                             f"{info['sha256'][:16]}…); the file was not saved")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        return {"clip_id": clip_id, "path": str(dest), "size": len(data), "sha256": digest,
                "verified": what == "video", "link_expires_at": link["expires_at"]}

    # ---------------------------------------------------------------- audit
    def audit(self, page: int = 500, timeout: float = 15.0) -> dict[str, Any]:
        """The whole audit view (own rows in full, others as digests), page by page."""
        rows: list[dict[str, Any]] = []
        since, first = 1, None
        while True:
            view = self.rpc("audit", {"since": since, "limit": page}, timeout=timeout)
            if first is None:
                first = view
            rows.extend(view.get("rows") or [])
            if view.get("complete") or not view.get("next_since"):
                break
            since = int(view["next_since"])
        return {"from_seq": 1, "start_prev": (first or {}).get("start_prev"), "rows": rows,
                "head": view.get("head"), "complete": bool(view.get("complete"))}

    def verify_audit(self, view: dict[str, Any]) -> Any:
        from doorbell.core.auditchain import verify_owner_view

        return verify_owner_view(view, self.owner_id)

    # ---------------------------------------------------------------- events
    def watch(self, devices: Iterable[str] = ()) -> None:
        """Subscribe to device events and status (the broker delivers only your own devices)."""
        from doorbell.core import protocol as p

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


def _path(p: Any) -> str | None:
    return str(Path(p).expanduser()) if p else None


def describe_event(topic: str, payload: bytes) -> dict[str, Any] | None:
    """A device event or status message as a flat dict for display; None if invalid."""
    from doorbell.core import protocol as p

    try:
        t = p.parse_topic(topic)
        if t.kind == "status":
            return {"kind": "status", "device_id": t.device_id, "status": p.decode_status(payload),
                    "ts": None}
        if t.kind == "events":
            ev = p.decode(p.DeviceEvent, payload, "events")
            if ev.device_id != t.device_id:
                return None
            return {"kind": "event", **ev.model_dump(mode="json", exclude_none=True)}
    except p.ProtocolError as exc:
        log.warning("dropped message on %s: %s", topic, exc)
    return None


EVENT_LABELS = {"ring": "RING", "motion_start": "motion started", "motion_end": "motion ended",
                "privacy_mode": "privacy mode", "storage_warning": "storage warning",
                "command_result": "command result", "snapshot": "snapshot"}


def format_event(e: dict[str, Any]) -> str:
    if e["kind"] == "status":
        return f"{'':19}  {e['device_id']:<16} is {e['status']}"
    label = EVENT_LABELS.get(e["type"], e["type"])
    if e["type"] == "privacy_mode":
        label += " ON" if e.get("enabled") else " off"
    extra = []
    if e.get("clip_id"):
        extra.append(f"clip {e['clip_id']}")
    if e.get("score") is not None and e["type"].startswith("motion"):
        extra.append(f"score {e['score']:.2f}")
    if e.get("detail"):
        extra.append(e["detail"])
    if e.get("late"):
        extra.append("late: delivered after a network outage")
    tail = f"  ({'; '.join(extra)})" if extra else ""
    return f"{fmt_time(e['ts'])[:19]}  {e['device_id']:<16} {label}{tail}"


# --------------------------------------------------------------------------- confirmation

def describe_approval(req: dict[str, Any], chosen: list[str], days: int) -> str:
    """Exactly what an approval shares, with whom and until when (the prompt's text)."""
    offered = req.get("clips") or []
    until = time.time() + days * 86400
    lines = [
        f"You are about to SHARE footage with {req['agency']}",
        f"  case:        {req['case_number']}",
        f"  legal basis: {req['legal_basis']}",
        f"  reason:      {req['reason']}",
        f"  window:      {fmt_time(req['window_start'])} .. {fmt_time(req['window_end'])}",
        f"  access:      {days} day{'s' if days != 1 else ''}, until about {fmt_time(until)}"
        " (revocable at any time)",
        f"Clips that WILL be shared ({len(chosen)}):",
    ]
    by_id = {c["clip_id"]: c for c in offered}
    for cid in chosen:
        c = by_id.get(cid, {"clip_id": cid})
        lines.append("  + " + _clip_line(c))
    rest = [c for c in offered if c["clip_id"] not in set(chosen)]
    if rest:
        lines.append(f"Clips that will NOT be shared ({len(rest)}):")
        lines += ["  - " + _clip_line(c) for c in rest]
    lines.append("The agency gets short-lived download links for these clips only; every link and "
                 "download is in your audit log.")
    return "\n".join(lines)


def _clip_line(c: dict[str, Any]) -> str:
    if "started_at" not in c:
        return c["clip_id"]
    return (f"{c['clip_id']}  {c.get('device_id', '')}  {c.get('trigger', '')}  "
            f"{fmt_time(c['started_at'])} ({fmt_duration(c['ended_at'] - c['started_at'])})")


def confirm(text: str, question: str, assume_yes: bool, out: TextIO, inp: TextIO) -> bool:
    """Show ``text`` and ask; only an explicit yes counts (EOF or anything else is no)."""
    out.write(text + "\n")
    if assume_yes:
        out.write(f"{question} yes (--yes)\n")
        return True
    out.write(f"{question} [y/N] ")
    out.flush()
    answer = inp.readline()
    if not answer:
        out.write("\n")
    return answer.strip().lower() in ("y", "yes")


# --------------------------------------------------------------------------- CLI

def register(subs: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", metavar="FILE",
                        help=f"owner config (owner + mqtt sections); default ${CONFIG_ENV} or {DEFAULT_CONFIG}")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--timeout", type=float, default=15.0, metavar="S",
                        help="seconds to wait for the broker/service (default 15)")
    p = subs.add_parser("owner", help="the owner's app: events, clips, police requests, consent, audit",
                        description="The owner's app over MQTT: see rings and clips, answer police "
                                    "requests with a signed yes/no, revoke grants, verify the audit log.")
    osub = p.add_subparsers(dest="owner_cmd", metavar="ACTION", required=True)

    keys = osub.add_parser("keys", help="your Ed25519 signing key").add_subparsers(dest="keys_cmd", required=True)
    k = keys.add_parser("init", parents=[common], help="create your signing key (0600) and print the public key")
    k.add_argument("--force", action="store_true", help="replace an existing key (old approvals stay valid)")
    k.set_defaults(func=_cmd_keys_init)
    k = keys.add_parser("show", parents=[common], help="print your public key (for enrolment)")
    k.set_defaults(func=_cmd_keys_show)

    e = osub.add_parser("events", parents=[common], help="rings and motion from your devices")
    e.add_argument("--follow", "-f", action="store_true", help="keep printing live events until Ctrl-C")
    e.add_argument("--seconds", type=float, default=3.0, metavar="S",
                   help="without --follow: listen this long, then exit (default 3)")
    e.add_argument("--device", action="append", default=[], metavar="ID", help="only this device (repeatable)")
    e.set_defaults(func=_cmd_events)

    c = osub.add_parser("clips", parents=[common], help="your recent clips; `clips fetch ID`, `clips open ID`")
    c.add_argument("action", nargs="?", choices=["list", "fetch", "open"], default="list")
    c.add_argument("clip_id", nargs="?", metavar="ID")
    c.add_argument("--limit", type=int, default=20, help="list: how many (default 20, max 500)")
    c.add_argument("--device", help="list: only this device")
    c.add_argument("--out", metavar="PATH", help="fetch: file or directory (default ./ID.mp4)")
    c.add_argument("--snapshot", action="store_true", help="fetch/open the snapshot JPEG instead of the video")
    c.set_defaults(func=_cmd_clips)

    r = osub.add_parser("requests", parents=[common], help="pending police requests for your footage")
    r.set_defaults(func=_cmd_requests)

    a = osub.add_parser("approve", parents=[common], help="share some clips with the requesting agency (signed)")
    a.add_argument("request_id", metavar="REQUEST")
    a.add_argument("--clip", action="append", default=[], metavar="ID",
                   help="share this clip (repeatable); default: every clip offered in the request")
    a.add_argument("--days", type=int, metavar="N", help="how long the agency may download (1-30; default: "
                                                         "the service's default, usually 7)")
    a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    a.set_defaults(func=_cmd_approve)

    d = osub.add_parser("deny", parents=[common], help="refuse a request (signed); nothing is shared")
    d.add_argument("request_id", metavar="REQUEST")
    d.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    d.set_defaults(func=_cmd_deny)

    g = osub.add_parser("grants", parents=[common], help="what you have shared, with whom, until when")
    g.add_argument("--all", action="store_true", help="include expired and revoked grants")
    g.set_defaults(func=_cmd_grants)

    v = osub.add_parser("revoke", parents=[common], help="end a grant now (signed)")
    v.add_argument("grant_id", metavar="GRANT")
    v.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (scripts)")
    v.set_defaults(func=_cmd_revoke)

    u = osub.add_parser("audit", parents=[common], help="every access to your footage (hash-chained log)")
    u.add_argument("--verify", action="store_true", help="recompute the hash chain locally; non-zero if broken")
    u.add_argument("--limit", type=int, default=50, help="show the last N of your entries (default 50; 0 = all)")
    u.set_defaults(func=_cmd_audit)


def load_owner_config(path: str | None) -> Any:
    from doorbell.core.config import load_config

    chosen = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    p = Path(chosen).expanduser()
    if not p.exists():
        raise OwnerError(f"no owner config at {p}: pass --config FILE (see config/owner.yaml)", EXIT_USAGE)
    return load_config(p)


def _run(args: argparse.Namespace, body: Callable[[OwnerApp, argparse.Namespace], int],
         connect: bool = True) -> int:
    """Load the config, connect, run ``body``; OwnerErrors become a message and an exit code."""
    from doorbell.core.config import ConfigError

    if not getattr(args, "verbose", False):  # request lines (with signed URLs) only with -v
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_owner_config(args.config)
        app = OwnerApp(cfg, connect_timeout=args.timeout)
        if not connect:
            return body(app, args)
        with app:
            return body(app, args)
    except OwnerError as exc:
        _err(str(exc), args)
        return exc.code
    except ConfigError as exc:
        _err(str(exc), args)
        return EXIT_USAGE


def _err(message: str, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": message}))
    print(f"doorbell owner: {message}", file=sys.stderr)


def _emit(args: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# ---- keys

def _cmd_keys_init(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        from doorbell.core.signing import generate_key, public_key_text, save_private_key

        path = Path(app.cfg.owner.key_file).expanduser()
        if path.exists() and not a.force:
            raise OwnerError(f"{path} already exists; `doorbell owner keys show` prints its public key "
                             "(--force replaces it, and the service must then be given the new key)", EXIT_USAGE)
        key = generate_key()
        try:
            save_private_key(key, path, overwrite=a.force)
        except OSError as exc:
            raise OwnerError(f"cannot write {path}: {exc}") from None
        pub = public_key_text(key)
        if a.json:
            _emit(a, {"owner_id": app.owner_id, "key_file": str(path), "public_key": pub})
        else:
            print(f"Signing key written to {path} (mode 0600; it never leaves this machine).")
            print(f"Public key for owner {app.owner_id}:")
            print(f"  {pub}")
            print("Give it to your sharing service operator, who enrols it with:")
            print(f"  doorbell sharing owner add {app.owner_id} --public-key {pub}")
        return EXIT_OK
    return _run(args, body, connect=False)


def _cmd_keys_show(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        from doorbell.core.signing import public_key_text

        pub = public_key_text(app.key())
        if a.json:
            _emit(a, {"owner_id": app.owner_id, "public_key": pub})
        else:
            print(pub)
        return EXIT_OK
    return _run(args, body, connect=False)


# ---- events

def _cmd_events(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        app.watch(a.device)
        deadline = None if a.follow else time.monotonic() + max(0.0, a.seconds)
        if not a.json:
            print(f"Listening for your devices' events{' (Ctrl-C to stop)' if a.follow else ''}…", flush=True)
        seen: set[tuple[str, str]] = set()
        events: list[dict[str, Any]] = []
        try:
            while deadline is None or time.monotonic() < deadline:
                wait = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
                msg = app.next_message(wait)
                if msg is None:
                    continue
                e = describe_event(msg.topic, msg.payload)
                if e is None:
                    continue
                key = (msg.topic, e.get("event_id") or e.get("status", ""))
                if key in seen:  # overlapping subscriptions may deliver twice
                    continue
                seen.add(key)
                e["retained"] = msg.retain
                if a.json:
                    if a.follow:
                        print(json.dumps(e, sort_keys=True), flush=True)
                    else:
                        events.append(e)
                else:
                    print(format_event(e), flush=True)
        except KeyboardInterrupt:
            pass
        if a.json and not a.follow:
            _emit(a, events)
        return EXIT_OK
    return _run(args, body)


# ---- clips

def _cmd_clips(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        if a.action == "list":
            if a.clip_id:
                raise OwnerError("`clips` takes no ID; use `clips fetch ID` or `clips open ID`", EXIT_USAGE)
            if not 1 <= a.limit <= 500:
                raise OwnerError("--limit must be between 1 and 500", EXIT_USAGE)
            rows = app.clips(limit=a.limit, device=a.device)
            if a.json:
                _emit(a, rows)
                return EXIT_OK
            if not rows:
                print("No clips yet.")
                return EXIT_OK
            table([[r["clip_id"], r["device_id"], r["trigger"], fmt_time(r["started_at"]),
                    fmt_duration(r["ended_at"] - r["started_at"]), fmt_size(r["size"]),
                    "yes" if r.get("has_snapshot") else "no"] for r in rows],
                  ["CLIP", "DEVICE", "TRIGGER", "STARTED", "LENGTH", "SIZE", "SNAPSHOT"], sys.stdout)
            print("Fetch one with: doorbell owner clips fetch CLIP (a short-lived link; checked by SHA-256)")
            return EXIT_OK
        if not a.clip_id:
            raise OwnerError(f"`clips {a.action}` needs a clip ID (see `doorbell owner clips`)", EXIT_USAGE)
        what = "snapshot" if a.snapshot else "video"
        ext = ".jpg" if a.snapshot else ".mp4"
        if a.action == "fetch":
            dest = Path(a.out or f"{a.clip_id}{ext}")
            if dest.is_dir():
                dest = dest / f"{a.clip_id}{ext}"
        else:
            cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "doorbell" / "clips"
            dest = cache / f"{a.clip_id}{ext}"
        info = app.fetch_clip(a.clip_id, dest, what)
        if a.action == "open":
            opener = shutil.which("xdg-open") or shutil.which("open")
            info["opened"] = bool(opener and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                              or sys.platform == "darwin"))
            if info["opened"]:
                subprocess.Popen([opener, str(dest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        if a.json:
            _emit(a, info)
        else:
            check = "SHA-256 verified" if info["verified"] else "snapshot"
            print(f"✓ {dest} ({fmt_size(info['size'])}, {check})")
            if a.action == "open" and not info.get("opened"):
                print("  (no desktop to open it on; the file is saved above)")
        return EXIT_OK
    return _run(args, body)


# ---- requests

def _cmd_requests(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        reqs = app.pending_requests(a.timeout)
        if a.json:
            _emit(a, reqs)
            return EXIT_OK
        if not reqs:
            print("No pending police requests.")
            return EXIT_OK
        for r in reqs:
            print(f"Request {r['request_id']}")
            print(f"  agency:      {r['agency']}")
            print(f"  case:        {r['case_number']}")
            print(f"  legal basis: {r['legal_basis']}")
            print(f"  reason:      {r['reason']}")
            print(f"  window:      {fmt_time(r['window_start'])} .. {fmt_time(r['window_end'])}")
            print(f"  answer by:   {fmt_time(r['expires_at'])} (no answer = no)")
            print(f"  your matching clips ({len(r['clips'])}):")
            for c in r["clips"]:
                print(f"    {_clip_line(c)}")
                if c.get("snapshot_url"):
                    print(f"      snapshot: {c['snapshot_url']}")
            print(f"  approve: doorbell owner approve {r['request_id']} [--clip ID ...] [--days N]")
            print(f"  deny:    doorbell owner deny {r['request_id']}")
            print()
        return EXIT_OK
    return _run(args, body)


def _report_result(a: argparse.Namespace, result: Any, what: str) -> int:
    data = result.model_dump(mode="json", exclude_none=True)
    if a.json:
        _emit(a, data)
    elif result.ok:
        print(f"✓ {what}" + (f": grant {result.grant_id}" if result.grant_id and what.startswith("approved") else "")
              + (f", until {fmt_time(result.expires_at)}" if result.expires_at else ""))
    else:
        print(f"✗ the sharing service refused: {result.reason}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _cmd_approve(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        import re

        from doorbell.core.protocol import CLIP_ID_PATTERN

        bad = [c for c in a.clip if not re.match(CLIP_ID_PATTERN, c)]
        if bad:
            raise OwnerError(f"not a clip id: {', '.join(bad)}", EXIT_USAGE)
        if a.days is not None and not 1 <= a.days <= 30:
            raise OwnerError("--days must be between 1 and 30", EXIT_USAGE)
        app.key()  # fail before asking if there is no key
        req = app.request(a.request_id, a.timeout)
        offered = [c["clip_id"] for c in req.get("clips") or []]
        chosen = sorted(set(a.clip)) if a.clip else sorted(offered)
        outside = [c for c in chosen if c not in offered]
        if outside:
            raise OwnerError(f"not offered in request {a.request_id}: {', '.join(outside)}", EXIT_USAGE)
        if not chosen:
            raise OwnerError("this request offers none of your clips; deny it instead", EXIT_USAGE)
        days = a.days if a.days is not None else max(1, min(30, int(round(req.get("grant_days") or 7))))
        out = sys.stderr if a.json else sys.stdout
        if not confirm(describe_approval(req, chosen, days), "Sign and send this approval?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = app.decide(a.request_id, True, chosen, days, a.timeout)
        return _report_result(a, result, f"approved: {len(chosen)} clip(s) shared with {req['agency']}")
    return _run(args, body)


def _cmd_deny(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        app.key()
        req = app.request(a.request_id, a.timeout)
        text = (f"You are about to DENY request {req['request_id']} from {req['agency']} "
                f"(case {req['case_number']}).\nNone of your {len(req.get('clips') or [])} matching clip(s) "
                "will be shared; the agency is not told that you were asked or that you said no.")
        out = sys.stderr if a.json else sys.stdout
        if not confirm(text, "Sign and send this denial?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = app.decide(a.request_id, False, timeout=a.timeout)
        return _report_result(a, result, "denied: nothing shared")
    return _run(args, body)


# ---- grants

def _cmd_grants(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        rows = app.grants(a.timeout)
        if not a.all:
            rows = [g for g in rows if g.get("state") == "active"]
        if a.json:
            _emit(a, rows)
            return EXIT_OK
        if not rows:
            print("No active grants: nothing of yours is shared." if not a.all else "No grants yet.")
            return EXIT_OK
        table([[g["grant_id"], g.get("state", "?"), g.get("agency", "?"), g.get("case_number", "?"),
                str(len(g.get("clip_ids") or [])), fmt_time(g.get("expires_at"))] for g in rows],
              ["GRANT", "STATE", "AGENCY", "CASE", "CLIPS", "UNTIL"], sys.stdout)
        return EXIT_OK
    return _run(args, body)


def _cmd_revoke(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        import re

        from doorbell.core.protocol import TOKEN_PATTERN

        if not re.match(TOKEN_PATTERN, a.grant_id):
            raise OwnerError(f"not a grant id: {a.grant_id!r}", EXIT_USAGE)
        app.key()
        grant = next((g for g in app.grants(a.timeout) if g.get("grant_id") == a.grant_id), None)
        if grant is None:
            raise OwnerError(f"no grant {a.grant_id} (see `doorbell owner grants --all`)")
        if grant.get("state") != "active":
            raise OwnerError(f"grant {a.grant_id} is already {grant.get('state')}")
        text = (f"You are about to REVOKE grant {a.grant_id}: {grant.get('agency')} (case "
                f"{grant.get('case_number')}) loses access to {len(grant.get('clip_ids') or [])} clip(s) "
                f"at once (it would have lasted until {fmt_time(grant.get('expires_at'))}).\n"
                "Copies the agency already downloaded are not erased by this.")
        out = sys.stderr if a.json else sys.stdout
        if not confirm(text, "Sign and send this revocation?", a.yes, out, sys.stdin):
            print("Nothing was sent.", file=out)
            return EXIT_FAILED
        result = app.revoke(a.grant_id, a.timeout)
        return _report_result(a, result, f"revoked: {grant.get('agency')} can no longer download these clips")
    return _run(args, body)


# ---- audit

def audit_summary(row: dict[str, Any]) -> str:
    try:
        d = json.loads(row.get("details") or "{}")
    except ValueError:
        d = {}
    kind = row["kind"]
    if kind == "delivery":
        return (f"request from {d.get('agency')} (case {d.get('case_number')}) "
                f"offered you {len(d.get('clip_ids') or [])} clip(s)")
    if kind == "decision":
        if d.get("decision") == "approve":
            return f"you approved {len(d.get('clip_ids') or [])} clip(s) for {d.get('grant_days')} day(s)"
        return "you denied the request"
    if kind == "grant":
        return (f"grant for {d.get('agency')}: {len(d.get('clip_ids') or [])} clip(s) "
                f"until {fmt_time(d.get('expires_at'))}")
    if kind == "link_issued":
        return f"{row['actor']} got a download link for clip {row['subject']}"
    if kind == "download":
        return f"{row['actor']} downloaded clip {row['subject']}"
    if kind == "revocation":
        return f"you revoked grant {row['subject']}"
    if kind == "refusal":
        return f"refused a message of yours: {d.get('reason')}"
    if kind == "expiry":
        return "request expired unanswered (counts as no)"
    if kind == "grant_expiry":
        return f"grant {row['subject']} expired"
    if kind == "owner_link":
        return f"you fetched {d.get('what', 'video')} of clip {row['subject']}"
    return f"{kind} {row['subject']}"


def _cmd_audit(args: argparse.Namespace) -> int:
    def body(app: OwnerApp, a: argparse.Namespace) -> int:
        view = app.audit(timeout=a.timeout)
        own = [r for r in view["rows"] if "details" in r]
        shown = own[-a.limit:] if a.limit else own
        report = app.verify_audit(view) if a.verify else None
        if a.json:
            out: dict[str, Any] = {"entries": [{**r, "details": json.loads(r["details"])} for r in shown],
                                   "total_rows": len(view["rows"]), "own_rows": len(own), "head": view["head"]}
            if report is not None:
                out["verification"] = report.as_dict()
            _emit(a, out)
        else:
            if not own:
                print("No entries about you yet.")
            for r in shown:
                print(f"#{r['seq']:<5} {fmt_time(r['ts'])[:19]}  {r['kind']:<12} {audit_summary(r)}")
            if report is not None:
                if report.ok:
                    print(f"✓ audit chain verified: {report.checked} entries ({len(own)} about you), "
                          f"head #{report.head_seq} {report.head_hash[:16]}…")
                else:
                    print(f"✗ audit chain BROKEN at entry #{report.bad_seq}: {report.reason}", file=sys.stderr)
        return EXIT_OK if report is None or report.ok else EXIT_FAILED
    return _run(args, body)
