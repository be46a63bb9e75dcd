"""Issue 15, finding 2: an owner detects any change to the rows about them.

Each attack is made directly on the service's database, as an operator (or an
intruder) with database access would, and ``doorbell owner audit --verify``
must then fail with a clear reason. The owner's app pins the heads it verified
last (under ``$XDG_STATE_HOME``, a temporary directory here), so even a
rewrite that recomputes every digest, link and head is caught.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import ClientEnv, rechain, sharing_db


@pytest.fixture
def history(clients: ClientEnv) -> dict[str, str]:
    """owner-a approved one clip and the agency downloaded it (rows: delivery, decision, grant,
    link_issued, download about owner-a); a second request owner-a has not answered."""
    c1 = clients.put_clip(time.time() - 1200)
    rid = clients.file_request()
    assert clients.owner("approve", rid, "--clip", c1, "--yes").code == 0
    out = clients.tmp / "dl"
    assert clients.agency("download", rid, "--out", str(out)).code == 0
    rid2 = clients.file_request(case="2026-000999")
    return {"clip": c1, "rid": rid, "rid2": rid2}


def verify(clients: ClientEnv) -> tuple[int, str]:
    r = clients.owner("audit", "--verify")
    return r.code, r.out + r.err


def seq_of(db: Path, kind: str, owner: str = "owner-a") -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("select max(seq) from audit where kind=? and owner_id=?", (kind, owner)).fetchone()[0])


def hide(db: Path, seq: int) -> None:
    with sqlite3.connect(db) as c:
        c.execute("update audit set owner_id=NULL where seq=?", (seq,))


def delete(db: Path, seq: int) -> None:
    with sqlite3.connect(db) as c:
        c.execute("delete from audit where seq=?", (seq,))


def edit(db: Path, seq: int) -> None:
    with sqlite3.connect(db) as c:
        (details,) = c.execute("select details from audit where seq=?", (seq,)).fetchone()
        d = json.loads(details)
        d["grant_days"] = 30
        c.execute("update audit set details=? where seq=?", (json.dumps(d, sort_keys=True, separators=(",", ":")),
                                                           seq))


def swap(db: Path, a: int, b: int) -> None:
    """Reorder: two of the owner's rows change places (content swapped between seqs)."""
    cols = "ts, kind, actor, subject, owner_id, details"
    with sqlite3.connect(db) as c:
        ra = c.execute(f"select {cols} from audit where seq=?", (a,)).fetchone()
        rb = c.execute(f"select {cols} from audit where seq=?", (b,)).fetchone()
        sets = ", ".join(f"{k.strip()}=?" for k in cols.split(","))
        c.execute(f"update audit set {sets} where seq=?", (*rb, a))
        c.execute(f"update audit set {sets} where seq=?", (*ra, b))


def test_hiding_a_download_without_recomputing_is_caught_even_on_first_verification(
        clients: ClientEnv, history: dict[str, str]) -> None:
    """owner_id set NULL on the agency's download: the owner's own chain has a hole."""
    db = sharing_db(clients)
    hide(db, seq_of(db, "download"))
    code, text = verify(clients)
    assert code == 1 and "BROKEN" in text, text
    assert "rows about you are missing" in text or "rows about the owner are missing" in text, text


def test_hiding_a_row_in_the_middle_breaks_the_owners_chain(clients: ClientEnv, history: dict[str, str]) -> None:
    db = sharing_db(clients)
    hide(db, seq_of(db, "grant"))  # later own rows (link, download) follow it
    code, text = verify(clients)
    assert code == 1 and "rows about the owner are missing (hidden or deleted)" in text, text


ATTACKS: dict[str, Callable[[Path], None]] = {
    "hide the download (owner_id NULL) and recompute everything":
        lambda db: (hide(db, seq_of(db, "download")), rechain(db)),
    "delete the download row and recompute every later digest and the head":
        lambda db: (delete(db, seq_of(db, "download")), rechain(db)),
    "delete the grant row (mid-chain) and recompute everything":
        lambda db: (delete(db, seq_of(db, "grant")), rechain(db)),
    "edit the approval (7 -> 30 days) and recompute everything":
        lambda db: (edit(db, seq_of(db, "decision")), rechain(db)),
    "reorder the owner's rows (link and download swapped) and recompute everything":
        lambda db: (swap(db, seq_of(db, "link_issued"), seq_of(db, "download")), rechain(db)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_rewrite_since_last_verification_is_caught(clients: ClientEnv, history: dict[str, str], attack: str) -> None:
    """The owner verified (and pinned) the log; a self-consistent rewrite of it is then refused."""
    ok, text = verify(clients)
    assert ok == 0 and "✓ audit chain verified" in text, text
    db = sharing_db(clients)
    ATTACKS[attack](db)
    code, text = verify(clients)
    assert code == 1, (attack, text)
    assert "history rewritten since you last verified" in text, text


def test_new_history_after_a_pin_verifies_and_the_pin_advances(clients: ClientEnv, history: dict[str, str]) -> None:
    """No false alarm: the log growing after a verification is an extension of the pinned one."""
    assert verify(clients)[0] == 0
    pin_file = clients.tmp / "state" / "doorbell" / "owner-owner-a-audit-head.json"
    first = json.loads(pin_file.read_text())
    assert clients.owner("deny", history["rid2"], "--yes").code == 0
    code, text = verify(clients)
    assert code == 0, text
    second = json.loads(pin_file.read_text())
    assert second["seq"] > first["seq"] and second["owner_seq"] > first["owner_seq"]


def test_an_unreadable_pin_is_an_error_not_a_silent_reset(clients: ClientEnv, history: dict[str, str]) -> None:
    assert verify(clients)[0] == 0
    pin_file = clients.tmp / "state" / "doorbell" / "owner-owner-a-audit-head.json"
    pin_file.write_text("{not json")
    code, text = verify(clients)
    assert code == 1 and "cannot read the audit head you verified last" in text, text


def test_service_side_verification_checks_every_owner_chain(clients: ClientEnv, history: dict[str, str]) -> None:
    """`doorbell sharing audit verify` (the operator's check) also sees a hidden row."""
    assert clients.core.registry.verify_audit()["ok"]
    db = sharing_db(clients)
    hide(db, seq_of(db, "download"))
    rechain(db)  # globally consistent again, owner chain recomputed too: only the owner's pin can tell
    assert clients.core.registry.verify_audit()["ok"]
    with sqlite3.connect(db) as c:  # hidden without recomputing the owner's chain: the service sees it
        seq = int(c.execute("select max(seq) from audit where owner_id='owner-a'").fetchone()[0])
        c.execute("update audit set owner_seq=NULL, owner_prev=NULL, owner_hash=NULL, owner_id=NULL where seq=?",
                  (seq,))
    rechain_global_only(db)
    report = clients.core.registry.verify_audit()
    assert not report["ok"] and "owner owner-a's chain does not end at its recorded head" in str(report["reason"])


def rechain_global_only(db: Path) -> None:
    """Recompute digests, links and the global head, but leave owner chains as they are."""
    from doorbell.core.auditchain import GENESIS, body_digest, chain_hash

    with sqlite3.connect(db) as c:
        rows = c.execute("select seq, ts, kind, actor, subject, owner_id, details from audit order by seq").fetchall()
        prev = GENESIS
        for seq, ts, kind, actor, subject, owner_id, details in rows:
            d = body_digest(seq=seq, ts=ts, kind=kind, actor=actor, subject=subject, owner_id=owner_id,
                            details_json=details)
            h = chain_hash(prev, d)
            c.execute("update audit set body_digest=?, prev_hash=?, hash=? where seq=?", (d, prev, h, seq))
            prev = h
        c.execute("update audit_head set seq=?, hash=? where id=1", (rows[-1][0], prev))
