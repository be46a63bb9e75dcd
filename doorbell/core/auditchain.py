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

Each row about an owner is also on that owner's own chain:

    owner_seq  = 1, 2, 3 ... over the rows about this owner, in seq order
    owner_hash = sha256(bytes.fromhex(owner_prev) + bytes.fromhex(body_digest))

with ``owner_prev`` of the owner's first row :data:`GENESIS` and the owner's
head (last ``owner_seq``, ``owner_hash``) recorded apart. A row hidden from the
owner (``owner_id`` set NULL) or deleted leaves a gap in this chain even when the
global chain was recomputed around it. A service that rewrites *everything*
consistently is caught by the owner's pin (:class:`AuditPin`, :func:`check_pin`):
the global and the owner's head it verified last must still be in the new view,
unchanged, so any rewrite of history the owner has seen is detected.
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
    owner_seq: int = 0
    owner_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, reason: str) -> "ChainReport":
        if self.ok:
            self.ok, self.bad_seq, self.reason = False, seq, reason
        self.problems.append(f"seq {seq}: {reason}" if seq is not None else reason)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "bad_seq": self.bad_seq, "reason": self.reason}


def _check_owner_link(report: ChainReport, seq: int, row: Mapping[str, Any], digest: str,
                      last: tuple[int, str]) -> tuple[int, str]:
    """One step of an owner's chain; returns the new (owner_seq, owner_hash)."""
    n, prev = last
    owner_seq = row.get("owner_seq")
    if owner_seq is None:
        report.fail(seq, "row about the owner is not on the owner's chain")
        return last
    if int(owner_seq) != n + 1:
        why = "rows about the owner are missing (hidden or deleted)" if int(owner_seq) > n + 1 \
            else "rows reordered or repeated"
        report.fail(seq, f"the owner's chain jumps from entry {n} to {owner_seq}: {why}")
    if row.get("owner_prev") != prev:
        report.fail(seq, "owner_prev does not match the owner's previous entry (hidden, deleted or reordered row)")
    if chain_hash(str(row.get("owner_prev") or GENESIS), digest) != row.get("owner_hash"):
        report.fail(seq, "owner_hash does not match owner_prev + digest")
    return int(owner_seq), str(row.get("owner_hash"))


def verify_rows(rows: Iterable[Mapping[str, Any]], *, start_seq: int = 1, start_prev: str = GENESIS,
                head: tuple[int, str] | None = None,
                owner_heads: Mapping[str, tuple[int, str]] | None = None) -> ChainReport:
    """Verify full rows (service side): contiguous seqs, digests and links, every owner's
    chain (when ``owner_heads`` is given, from genesis), then the heads."""
    report = ChainReport(ok=True, head_seq=start_seq - 1, head_hash=start_prev)
    expect_seq, prev = start_seq, start_prev
    owners: dict[str, tuple[int, str]] = {}
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
        if owner_heads is not None and row["owner_id"]:
            owners[row["owner_id"]] = _check_owner_link(report, seq, row, row["body_digest"],
                                                        owners.get(row["owner_id"], (0, GENESIS)))
        prev = row["hash"]
        expect_seq = seq + 1
        report.checked += 1
        report.head_seq, report.head_hash = seq, prev
    if head is not None:
        if head[0] != report.head_seq:
            report.fail(head[0], f"chain ends at seq {report.head_seq} but the head says {head[0]} (rows deleted)")
        elif head[1] != report.head_hash:
            report.fail(head[0], "last row's hash differs from the recorded head")
    if owner_heads is not None:
        for owner in sorted(set(owners) | set(owner_heads)):
            if owners.get(owner, (0, GENESIS)) != tuple(owner_heads.get(owner, (0, GENESIS))):
                report.fail(None, f"owner {owner}'s chain does not end at its recorded head (rows deleted or hidden)")
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
    from_start = int(view.get("from_seq") or 1) == 1
    own: tuple[int, str] | None = (0, GENESIS) if from_start else None
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
            if own is None and row.get("owner_seq") is not None:  # a page: start from its first own row
                own = (int(row["owner_seq"]) - 1, str(row.get("owner_prev")))
            if own is not None:
                own = _check_owner_link(report, seq, row, digest, own)
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
    owner_head = view.get("owner_head")
    if from_start and view.get("complete") and own is not None:
        if owner_head is None:
            report.fail(None, "the service sent no head for your own chain")
        elif (int(owner_head["seq"]), owner_head["hash"]) != own:
            report.fail(None, f"your own chain ends at entry {own[0]} but the service's head for it says "
                              f"{owner_head['seq']} (rows about you are missing: hidden or deleted)")
    report.owner_seq, report.owner_hash = own if own is not None else (0, GENESIS)
    return report


@dataclass(frozen=True)
class AuditPin:
    """What an owner verified last: the global head and the head of its own chain.

    The owner's app stores it after every successful verification and checks
    the next view against it (:func:`check_pin`), so the service cannot rewrite
    any history the owner has already seen, even consistently.
    """

    owner_id: str
    seq: int
    hash: str
    owner_seq: int
    owner_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"owner_id": self.owner_id, "seq": self.seq, "hash": self.hash,
                "owner_seq": self.owner_seq, "owner_hash": self.owner_hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AuditPin":
        return cls(owner_id=str(data["owner_id"]), seq=int(data["seq"]), hash=str(data["hash"]),
                   owner_seq=int(data["owner_seq"]), owner_hash=str(data["owner_hash"]))


def pin_of(report: ChainReport, owner_id: str) -> AuditPin:
    """The pin to store after ``report`` verified a complete view from seq 1."""
    return AuditPin(owner_id, report.head_seq, report.head_hash, report.owner_seq, report.owner_hash)


def check_pin(view: Mapping[str, Any], pin: AuditPin, report: ChainReport) -> ChainReport:
    """The view (from seq 1) must extend what the owner verified last, unchanged."""
    if pin.seq == 0:
        return report
    rows = {int(r["seq"]): r for r in view.get("rows") or []}
    at = rows.get(pin.seq)
    if at is None:
        report.fail(pin.seq, f"history rewritten since you last verified: the log now ends before entry "
                             f"#{pin.seq}, which you verified (rows deleted)")
    elif at["hash"] != pin.hash:
        report.fail(pin.seq, f"history rewritten since you last verified: entry #{pin.seq} no longer has the "
                             "hash you verified (an earlier row was edited, hidden, deleted or reordered)")
    if pin.owner_seq:
        mine = next((r for r in rows.values() if r.get("owner_seq") == pin.owner_seq and "details" in r), None)
        if mine is None:
            report.fail(None, f"history rewritten since you last verified: entry {pin.owner_seq} of your own "
                              "chain is gone (rows about you hidden or deleted)")
        elif mine.get("owner_hash") != pin.owner_hash:
            report.fail(int(mine["seq"]), f"history rewritten since you last verified: entry {pin.owner_seq} "
                                          "of your own chain changed (rows about you edited, hidden or deleted)")
    return report
