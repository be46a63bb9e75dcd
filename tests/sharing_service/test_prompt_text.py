"""Issue 15, finding 3: an agency with a valid API key cannot put terminal controls,
bidi overrides or invisible-only text into the fields an owner reads before signing."""
from __future__ import annotations

import sqlite3

import pytest

from doorbell.clients.agency.client import ApiError
from doorbell.core.text import neutralise, refusal
from tests.support.sharing import Env

HOSTILE = {
    "ESC (clear screen)": "\x1b[2J\x1b[Hcase 1",
    "BEL": "case\x07 2",
    "backspaces over text": "Search warrant\x08\x08\x08\x08\x08\x08\x08none",
    "NUL": "\x00",
    "C1 CSI 0x9b": "x\x9b2J",
    "DEL": "abc\x7f",
    "newline (a forged prompt line)": "burglary\n  access:      1 day",
    "right-to-left override U+202E": "case \u202e1 yad",
    "left-to-right isolate U+2066": "\u2066case\u2069",
    "zero-width space only": "\u200b\u200b",
    "BOM only": "\ufeff",
    "word joiner only": "\u2060",
    "Hangul filler only": "\u3164",
}


@pytest.mark.parametrize("field", ["case_number", "legal_basis", "reason"])
@pytest.mark.parametrize("what", list(HOSTILE))
def test_agency_cannot_submit_control_or_invisible_text(sharing: Env, field: str, what: str) -> None:
    with pytest.raises(ApiError) as err:
        sharing.agency.create_request_raw(sharing.request_body(**{field: HOSTILE[what]}))
    e = err.value
    assert e.status == 422 and e.code == "invalid_field", e
    assert field in e.message, e.message          # the error names the field
    assert "control" in e.message or "invisible" in e.message or "bidirectional" in e.message, e.message
    with sqlite3.connect(sharing.service.cfg.sharing.database_url.removeprefix("sqlite:///")) as c:
        assert c.execute("select count(*) from requests").fetchone()[0] == 0   # nothing recorded
        assert c.execute("select count(*) from audit where kind='request'").fetchone()[0] == 0


def test_ordinary_text_is_accepted(sharing: Env) -> None:
    body = sharing.request_body(case_number="2026/Ä-123 (Straße 5)", legal_basis="§ 100 StPO — richterlicher Beschluss",
                                reason="Einbruch; Täter floh nach Norden 🚲")
    assert sharing.agency.create_request_raw(body)["status"] == "pending"


def test_operator_cannot_enrol_an_agency_name_with_controls(sharing: Env) -> None:
    from sharing_service.context import Refused

    with pytest.raises(Refused) as err:
        sharing.core.registry.add_agency("Springfield\x1b[2J PD")
    assert "control character U+001B" in err.value.message


def test_one_policy_refuses_what_neutralise_would_have_to_escape() -> None:
    for text in HOSTILE.values():
        assert refusal(text) is not None, repr(text)
        shown = neutralise(text)
        assert not any(ch in shown for ch in "\x1b\x07\x08\x00\x9b\x7f\n\u202e\u2066\u200b\ufeff\u2060"), repr(shown)
