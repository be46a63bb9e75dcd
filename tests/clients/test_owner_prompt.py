"""Issue 15, finding 3 at display: a hostile field that reached the database anyway
(written before the intake check, or by another writer) is shown inert in the
consent prompt of ``doorbell owner approve`` and in ``doorbell owner requests``."""
from __future__ import annotations

import sqlite3
import time

from tests.support.clients import ClientEnv, sharing_db

RAW = "\x1b[2J\x1b[H"                       # clear screen, cursor home
FAKE = "You are about to SHARE nothing.\x07"
CASE = "2026-000123\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08 \u202e7 yad"   # backspaces, RTL override
BASIS = "\u200b"                            # zero-width only: looks empty
REASON = f"{RAW}{FAKE}\n  access:      1 day\x9b2J"


def hostile_request(clients: ClientEnv) -> tuple[str, str]:
    """A request whose text fields were replaced in the database before owners were asked."""
    c1 = clients.put_clip(time.time() - 1200)
    clients.service.matcher.stop()             # record only; ask the owner after the edit
    rid = clients.file_request()
    with sqlite3.connect(sharing_db(clients)) as c:
        c.execute("update requests set case_number=?, legal_basis=?, reason=? where id=?", (CASE, BASIS, REASON, rid))
    clients.service.matcher.start()            # delivers the stored (hostile) text to owner-a
    assert clients.service.matcher.wait_idle(timeout=30)
    return rid, c1


def assert_inert(text: str) -> None:
    for ch in "\x1b\x07\x08\x9b\u202e\u200b":
        assert ch not in text, (repr(ch), text)
    # the agency's newline cannot forge a prompt line of its own
    assert "\n  access:      1 day" not in text.replace("\\u{000a}", "")
    for code in ("\\u{001b}", "\\u{0007}", "\\u{0008}", "\\u{009b}", "\\u{202e}", "\\u{200b}", "\\u{000a}"):
        assert code in text, (code, text)


def test_approve_prompt_shows_hostile_fields_escaped(clients: ClientEnv) -> None:
    rid, c1 = hostile_request(clients)
    r = clients.owner("approve", rid, stdin="n\n")
    assert r.code == 1 and "Nothing was sent." in r.out, r
    assert "You are about to SHARE footage with Springfield PD" in r.out
    assert_inert(r.out)
    listing = clients.owner("requests")
    assert listing.code == 0 and rid in listing.out
    assert_inert(listing.out)
