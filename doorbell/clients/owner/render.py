"""Pure text rendering for the owner's app: times, sizes, tables, events, requests,
the consent prompts and audit lines. No I/O except :func:`confirm`'s given streams.

Every string that another party wrote (an agency's case number, legal basis and
reason, its name, a device's event detail, an audit row) goes through
:func:`safe`, i.e. :func:`doorbell.core.text.neutralise`: a control, bidi or
format character is shown as ``\\u{XXXX}`` and cannot redraw what the owner
reads before signing.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TextIO

from doorbell.core import protocol as p
from doorbell.core.text import neutralise

log = logging.getLogger(__name__)


def safe(value: object) -> str:
    """Text from someone else, made inert for a terminal."""
    return neutralise("" if value is None else str(value))


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
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def table(rows: Sequence[Sequence[object]], headers: list[str], out: TextIO) -> None:
    """A plain column table; every cell is made safe first."""
    cells = [[safe(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


# --------------------------------------------------------------------------- events

def describe_event(topic: str, payload: bytes) -> dict[str, Any] | None:
    """A device event or status message as a flat dict for display; None if invalid."""
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


def format_event(e: Mapping[str, Any]) -> str:
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
        extra.append(safe(e["detail"]))
    if e.get("late"):
        extra.append("late: delivered after a network outage")
    tail = f"  ({'; '.join(extra)})" if extra else ""
    return f"{fmt_time(e['ts'])[:19]}  {e['device_id']:<16} {label}{tail}"


# --------------------------------------------------------------------------- requests and consent

def clip_line(c: Mapping[str, Any]) -> str:
    if "started_at" not in c:
        return safe(c["clip_id"])
    return (f"{safe(c['clip_id'])}  {safe(c.get('device_id', ''))}  {safe(c.get('trigger', ''))}  "
            f"{fmt_time(c['started_at'])} ({fmt_duration(c['ended_at'] - c['started_at'])})")


def describe_request(r: Mapping[str, Any]) -> str:
    """One pending request as the `requests` command lists it."""
    lines = [f"Request {safe(r['request_id'])}",
             f"  agency:      {safe(r['agency'])}",
             f"  case:        {safe(r['case_number'])}",
             f"  legal basis: {safe(r['legal_basis'])}",
             f"  reason:      {safe(r['reason'])}",
             f"  window:      {fmt_time(r['window_start'])} .. {fmt_time(r['window_end'])}",
             f"  answer by:   {fmt_time(r['expires_at'])} (no answer = no)",
             f"  your matching clips ({len(r['clips'])}):"]
    for c in r["clips"]:
        lines.append(f"    {clip_line(c)}")
        if c.get("snapshot_url"):
            lines.append(f"      snapshot: {safe(c['snapshot_url'])}")
    lines.append(f"  approve: doorbell owner approve {safe(r['request_id'])} [--clip ID ...] [--days N]")
    lines.append(f"  deny:    doorbell owner deny {safe(r['request_id'])}")
    return "\n".join(lines)


def describe_approval(req: Mapping[str, Any], chosen: list[str], days: int) -> str:
    """Exactly what an approval shares, with whom and until when (the prompt's text)."""
    offered = req.get("clips") or []
    until = time.time() + days * 86400
    lines = [
        f"You are about to SHARE footage with {safe(req['agency'])}",
        f"  case:        {safe(req['case_number'])}",
        f"  legal basis: {safe(req['legal_basis'])}",
        f"  reason:      {safe(req['reason'])}",
        f"  window:      {fmt_time(req['window_start'])} .. {fmt_time(req['window_end'])}",
        f"  access:      {days} day{'s' if days != 1 else ''}, until about {fmt_time(until)}"
        " (revocable at any time)",
        f"Clips that WILL be shared ({len(chosen)}):",
    ]
    by_id = {c["clip_id"]: c for c in offered}
    for cid in chosen:
        lines.append("  + " + clip_line(by_id.get(cid, {"clip_id": cid})))
    rest = [c for c in offered if c["clip_id"] not in set(chosen)]
    if rest:
        lines.append(f"Clips that will NOT be shared ({len(rest)}):")
        lines += ["  - " + clip_line(c) for c in rest]
    lines.append("The agency gets short-lived download links for these clips only; every link and "
                 "download is in your audit log.")
    if any(by_id.get(cid, {}).get("sealed") for cid in chosen):
        lines.append("These clips are end-to-end encrypted: approving hands their decryption keys to the "
                     "agency. A key once delivered cannot be recalled: revoking stops new links, but "
                     "whatever the agency already downloaded stays readable to it. Each clip carries "
                     "your camera's signature, so the agency can tell that clips you share came from "
                     "the same camera (not which home it is).")
    return "\n".join(lines)


def describe_denial(req: Mapping[str, Any]) -> str:
    return (f"You are about to DENY request {safe(req['request_id'])} from {safe(req['agency'])} "
            f"(case {safe(req['case_number'])}).\nNone of your {len(req.get('clips') or [])} matching clip(s) "
            "will be shared; the agency is not told that you were asked or that you said no.")


def describe_revoke(grant: p.GrantInfo) -> str:
    return (f"You are about to REVOKE grant {safe(grant.grant_id)}: {safe(grant.agency)} (case "
            f"{safe(grant.case_number)}) loses access to {len(grant.clip_ids)} clip(s) "
            f"at once (it would have lasted until {fmt_time(grant.expires_at)}).\n"
            "Copies the agency already downloaded are not erased by this.")


def describe_result(result: p.Result, what: str) -> str:
    """The service's verdict on a decision or revoke, for the owner."""
    if not result.ok:
        return f"✗ the sharing service refused: {safe(result.reason)}"
    return (f"✓ {what}" + (f": grant {result.grant_id}" if result.grant_id and what.startswith("approved") else "")
            + (f", until {fmt_time(result.expires_at)}" if result.expires_at else ""))


class Writer(Protocol):
    """Where a prompt is written: a text stream, or a wrapper around one (the demo indents it)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def confirm(text: str, question: str, assume_yes: bool, out: Writer, inp: TextIO) -> bool:
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


# --------------------------------------------------------------------------- audit

def audit_details(row: p.AuditRow) -> dict[str, Any]:
    try:
        d = json.loads(row.details or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def audit_summary(row: p.AuditRow) -> str:
    """One of the owner's audit rows in words (every foreign string made safe)."""
    d = audit_details(row)
    kind, subject, actor = safe(row.kind), safe(row.subject), safe(row.actor)
    if kind == "delivery":
        n = len(d.get("clip_ids") or [])
        what = (f"offered you {n} clip(s)" if n else
                "asked you (your device is in its area; your app matches your own clips)")
        return f"request from {safe(d.get('agency'))} (case {safe(d.get('case_number'))}) {what}"
    if kind == "decision":
        if d.get("decision") == "approve":
            keys = (f"; keys released to {safe(str(d.get('agency_recipient'))[:20])}…"
                    if d.get("agency_recipient") else "")
            return (f"you approved {len(d.get('clip_ids') or [])} clip(s) for {safe(d.get('grant_days'))} day(s)"
                    + keys)
        return "you denied the request"
    if kind == "grant":
        expires = d.get("expires_at")
        return (f"grant for {safe(d.get('agency'))}: {len(d.get('clip_ids') or [])} clip(s) "
                f"until {fmt_time(expires if isinstance(expires, (int, float)) else None)}")
    if kind == "link_issued":
        return f"{actor} got a download link for clip {subject}"
    if kind == "download":
        return f"{actor} downloaded clip {subject}"
    if kind == "revocation":
        return f"you revoked grant {subject}"
    if kind == "refusal":
        return f"refused a message of yours: {safe(d.get('reason'))}"
    if kind == "expiry":
        return "request expired unanswered (counts as no)"
    if kind == "grant_expiry":
        return f"grant {subject} expired"
    if kind == "owner_link":
        return f"you fetched {safe(d.get('what', 'video'))} of clip {subject}"
    clip = safe(d.get("clip_id"))
    if kind == "share":
        expires = d.get("expires_at")
        return (f"you shared clip {clip} by link {subject} until "
                f"{fmt_time(expires if isinstance(expires, (int, float)) else None)}"
                + ("" if d.get("sealed") else " (stored unencrypted)"))
    if kind == "share_view":
        return f"share link {subject} opened (view {safe(d.get('view'))}, clip {clip})"
    if kind == "share_revocation":
        return f"you revoked share link {subject} (clip {clip})"
    if kind == "share_expiry":
        return f"share link {subject} expired (clip {clip})"
    return f"{kind} {subject}"


def audit_line(row: p.AuditRow) -> str:
    return f"#{row.seq:<5} {fmt_time(row.ts)[:19]}  {safe(row.kind):<12} {audit_summary(row)}"
