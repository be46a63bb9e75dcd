"""The audit log's hash chain, as pure functions (no database, no third-party imports).

Each row ``n`` is hashed in two steps so an owner can verify the whole chain
without seeing other owners' rows:

    details_sha256 = sha256(details_json)            # details stored as canonical JSON text
    body_digest    = sha256(canonical({seq, ts_ms, kind, actor, subject, owner_id, details_sha256}))
    hash           = sha256(bytes.fromhex(prev_hash) + bytes.fromhex(body_digest))

``prev_hash`` of row 1 is :data:`GENESIS`. An owner receives its own rows in full
(and recomputes their ``body_digest``) and every other row reduced to
``{seq, body_digest, hash}``; it recomputes every ``hash`` from the previous one,
so an edited, inserted or deleted row anywhere breaks the chain it holds. The
owner CLI uses :func:`verify_owner_view`; the service uses :func:`verify_rows`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64


def canonical(data: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, UTF-8 characters kept."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def ts_ms(ts: float) -> int:
    return int(round(ts * 1000))


def body_digest(*, seq: int, ts: float, kind: str, actor: str, subject: str,
                owner_id: str | None, details_json: str) -> str:
    body = {"seq": int(seq), "ts_ms": ts_ms(ts), "kind": kind, "actor": actor, "subject": subject,
            "owner_id": owner_id, "details_sha256": sha256_hex(details_json)}
    return sha256_hex(canonical(body))


def chain_hash(prev_hash: str, digest: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(digest)).hexdigest()


@dataclass
class ChainReport:
    """Outcome of a verification: ``ok`` or the first bad seq and why."""

    ok: bool
    checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    bad_seq: int | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, reason: str) -> "ChainReport":
        if self.ok:
            self.ok, self.bad_seq, self.reason = False, seq, reason
        self.problems.append(f"seq {seq}: {reason}" if seq is not None else reason)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "bad_seq": self.bad_seq, "reason": self.reason}


def verify_rows(rows: Iterable[Mapping[str, Any]], *, start_seq: int = 1, start_prev: str = GENESIS,
                head: tuple[int, str] | None = None) -> ChainReport:
    """Verify full rows (service side): contiguous seqs, digests and links, then the head."""
    report = ChainReport(ok=True, head_seq=start_seq - 1, head_hash=start_prev)
    expect_seq, prev = start_seq, start_prev
    for row in rows:
        seq = int(row["seq"])
        if seq != expect_seq:
            report.fail(expect_seq, f"row missing (next row is seq {seq})")
            expect_seq = seq
        if row["prev_hash"] != prev:
            report.fail(seq, "prev_hash does not match the previous row's hash")
        digest = body_digest(seq=seq, ts=row["ts"], kind=row["kind"], actor=row["actor"],
                             subject=row["subject"], owner_id=row["owner_id"], details_json=row["details"])
        if digest != row["body_digest"]:
            report.fail(seq, "row content does not match its digest (edited)")
        if chain_hash(row["prev_hash"], row["body_digest"]) != row["hash"]:
            report.fail(seq, "hash does not match prev_hash + digest")
        prev = row["hash"]
        expect_seq = seq + 1
        report.checked += 1
        report.head_seq, report.head_hash = seq, prev
    if head is not None:
        if head[0] != report.head_seq:
            report.fail(head[0], f"chain ends at seq {report.head_seq} but the head says {head[0]} (rows deleted)")
        elif head[1] != report.head_hash:
            report.fail(head[0], "last row's hash differs from the recorded head")
    return report


def verify_owner_view(view: Mapping[str, Any], owner_id: str) -> ChainReport:
    """Verify an ``audit`` RPC result as an owner: own rows in full, others as digests.

    ``view`` is ``{"start_prev": hex, "rows": [...], "head": {"seq", "hash"}}``.
    Own rows carry ``ts, kind, actor, subject, owner_id, details`` and are
    re-digested; other rows carry only ``seq, body_digest, hash``. Every link is
    recomputed. If the view reaches the head, the head must match the last row.
    """
    report = ChainReport(ok=True)
    rows = list(view.get("rows") or [])
    prev = view.get("start_prev") or GENESIS
    expect_seq = int(rows[0]["seq"]) if rows else int(view.get("from_seq") or 1)
    report.head_seq, report.head_hash = expect_seq - 1, prev
    for row in rows:
        seq = int(row["seq"])
        if seq != expect_seq:
            report.fail(expect_seq, f"row missing (next row is seq {seq})")
        if "details" in row:
            if row.get("owner_id") != owner_id:
                report.fail(seq, "a full row of another owner was sent")
            digest = body_digest(seq=seq, ts=row["ts"], kind=row["kind"], actor=row["actor"],
                                 subject=row["subject"], owner_id=row["owner_id"], details_json=row["details"])
            if digest != row.get("body_digest", digest):
                report.fail(seq, "own row content does not match its digest (edited)")
        else:
            digest = row["body_digest"]
        if chain_hash(prev, digest) != row["hash"]:
            report.fail(seq, "hash does not chain from the previous row (edited or deleted row)")
        prev = row["hash"]
        expect_seq = seq + 1
        report.checked += 1
        report.head_seq, report.head_hash = seq, prev
    head = view.get("head")
    if head and view.get("complete") and (int(head["seq"]) != report.head_seq or head["hash"] != report.head_hash):
        report.fail(int(head["seq"]), "the view does not end at the service's head")
    return report
