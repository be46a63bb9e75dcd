"""The owner's web app in real headless Chromium against the real stack: pairing, a ring,
approve a subset (the agency then downloads exactly those), deny, revoke, a tampered audit
row, a second owner's isolation, hostile agency text, and signature interop with Python."""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import httpx
import pytest

from doorbell.core import linking
from doorbell.core import protocol as p
from doorbell.core.signing import signing_bytes, verify
from tests.support.polling import wait_for
from tests.support.web import WebEnv, pair_browser, sign_in

pytestmark = pytest.mark.timeout(180)


def decisions_seen(env: WebEnv) -> Any:
    """An admin subscriber on every owner's decisions and revokes (to check the exact signed bytes)."""
    admin = env.broker.client("admin")
    env._clients.append(admin)
    admin.sub(f"{p.PREFIX}/owners/+/decisions/+")
    admin.sub(f"{p.PREFIX}/owners/+/grants/+/revoke")
    return admin


def open_request(page: Any, env: WebEnv, rid: str) -> None:
    page.goto(f"{env.app_url}#/requests/{rid}")
    page.wait_for_selector("#rq-title")


def agency_clips(env: WebEnv, rid: str) -> dict[str, bytes]:
    with env.agency_http() as c:
        r = c.get(f"/v1/requests/{rid}/clips")
        assert r.status_code == 200, r.text
        out = {}
        for item in r.json()["clips"]:
            out[item["clip_id"]] = httpx.get(item["url"], timeout=30).content
        return out


def test_pairing_links_this_browser_with_non_extractable_keys(web: WebEnv, page: Any) -> None:
    sign_in(page, web, web.a)
    kid = pair_browser(page, web, web.a)
    from sharing_service.enrolment import OwnerKey

    with web.core.db.read() as s:
        row = s.get(OwnerKey, kid)
        assert row is not None and row.owner_id == web.a.owner_id and row.state == "active"
        assert linking.key_id(row.public_key) == kid and row.x25519.startswith("age1")
    # the private keys cannot be read out by any script, and survive a reload (IndexedDB)
    err = page.evaluate("crypto.subtle.exportKey('pkcs8', window.__doorbell.state.keys.signing)"
                        ".then(() => 'exported', e => e.name)")
    assert err == "InvalidAccessError"
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    page.goto(web.app_url + "#/devices")
    page.wait_for_selector(f"[data-key-id='{kid}'] >> text=active")
    assert page.is_visible("#this-key")
    listed = web.owner(web.a, "linked", "--json")
    assert listed.code == 0 and [k["key_id"] for k in json.loads(listed.out)] == [kid]


def test_pairing_with_a_wrong_code_links_nothing(web: WebEnv, page: Any) -> None:
    from tests.support.web import LinkRun

    sign_in(page, web, web.a)
    code = linking.new_code()
    run = LinkRun(web.a, code, wait_s=8)
    page.goto(web.app_url + "#/devices")
    page.fill("#pair-code", linking.format_code(linking.new_code()))
    page.get_by_role("button", name="Link", exact=True).click()
    # someone on the broker with the owner's password, on the right topic but without the code
    from doorbell.core.signing import generate_key, public_key_text

    pair_id, _ = linking.pair_secrets(code, web.a.owner_id)
    forged = linking.PairOffer(public_key=public_key_text(generate_key()), x25519="age1" + "q" * 58, label="evil",
                               mac=linking.offer_mac(b"x" * 32, "a", "b", "c"))
    intruder = web.broker.client(web.broker.add_owner_login(web.a.owner_id, "intruder"))
    web._clients.append(intruder)
    intruder.pub(p.pair_topic(web.a.owner_id, pair_id), forged.to_json(), qos=1)
    res = run.finish()
    assert res.code == 1 and "nothing was linked" in res.err
    assert "ignored an offer: the offer's code check fails" in res.err
    from sharing_service.enrolment import OwnerKey

    with web.core.db.read() as s:
        assert s.query(OwnerKey).count() == 0


def test_ring_is_shown_live(web: WebEnv, page: Any) -> None:
    sign_in(page, web, web.a)
    dev = web.device(web.a)
    dev.pub(p.status_topic(web.a.device_id), b"online", qos=1, retain=True)
    page.wait_for_selector(f"article[aria-label='Device {web.a.device_id}'] >> text=online")
    ev = p.DeviceEvent(device_id=web.a.device_id, type="ring")
    dev.pub(p.events_topic(web.a.device_id), ev.to_json(), qos=1)
    page.wait_for_selector(f".ring-banner[data-event-id='{ev.event_id}']")
    assert page.is_visible(f"li.ev-ring[data-event-id='{ev.event_id}']")


def test_approve_a_subset_signed_in_the_browser(web: WebEnv, page: Any) -> None:
    now = time.time()
    clips = [web.put_clip(web.a, now - 1800 + i * 60) for i in range(3)]
    rid = web.file_request()
    admin = decisions_seen(web)
    sign_in(page, web, web.a)
    pair_browser(page, web, web.a)
    open_request(page, web, rid)
    assert page.is_visible("svg.area >> circle.area-circle")
    chosen = sorted(clips[:2])
    for cid in chosen:
        page.check(f"input[value='{cid}']")
    page.fill("#days", "3")
    page.click("text=Review approval…")
    text = page.inner_text("#confirm pre")
    assert "You are about to SHARE footage with Springfield PD" in text
    assert "Clips that WILL be shared (2)" in text and "Clips that will NOT be shared (1)" in text
    assert "3 days, until about" in text and "cannot be recalled" in text
    page.click("#confirm-send")
    page.wait_for_selector(".toast.ok >> text=Approved: 2 clip(s)")
    # the browser's signature verifies with the Python verifier, byte for byte
    msg = admin.expect(f"{p.PREFIX}/owners/{web.a.owner_id}/decisions/{rid}", wait=10)
    decision = p.decode(p.Decision, msg.payload, "decision")
    from sharing_service.enrolment import OwnerKey

    with web.core.db.read() as s:
        pub = s.query(OwnerKey).one().public_key
    verify(decision, pub)
    js_bytes = page.evaluate("(m) => Array.from(window.__doorbell.signingBytes(m))", json.loads(msg.payload))
    assert bytes(js_bytes) == signing_bytes(decision)
    assert decision.clip_ids == chosen and decision.grant_days == 3
    # the agency downloads exactly those, byte for byte
    got = agency_clips(web, rid)
    assert sorted(got) == chosen
    assert all(got[c] == web.clips[c] for c in chosen)


def test_deny_shares_nothing(web: WebEnv, page: Any) -> None:
    web.put_clip(web.a, time.time() - 900)
    rid = web.file_request()
    sign_in(page, web, web.a)
    pair_browser(page, web, web.a)
    open_request(page, web, rid)
    page.click("text=Review denial…")
    assert "the agency is not told that you were asked or that you said no" in page.inner_text("#confirm pre")
    page.click("#confirm-send")
    page.wait_for_selector(".toast.ok >> text=Denied: nothing shared")
    from sharing_service.models import RequestTarget

    with web.core.db.read() as s:
        assert s.get(RequestTarget, (rid, web.a.owner_id)).state == "denied"
    assert agency_clips(web, rid) == {}


def test_revoke_stops_the_agency(web: WebEnv, page: Any) -> None:
    cid = web.put_clip(web.a, time.time() - 900)
    rid = web.file_request()
    sign_in(page, web, web.a)
    pair_browser(page, web, web.a)
    open_request(page, web, rid)
    page.check(f"input[value='{cid}']")
    page.click("text=Review approval…")
    page.click("#confirm-send")
    page.wait_for_selector(".toast.ok >> text=Approved")
    assert list(agency_clips(web, rid)) == [cid]
    page.goto(web.app_url + "#/grants")
    page.click("tr >> text=Revoke…")
    assert "keys already delivered, are not erased" in page.inner_text("#confirm pre")
    page.click("#confirm-send")
    page.wait_for_selector(".toast.ok >> text=Revoked")
    page.wait_for_selector("tr >> .pill.revoked")
    assert agency_clips(web, rid) == {}


def test_unlinked_browser_can_no_longer_consent(web: WebEnv, page: Any) -> None:
    web.put_clip(web.a, time.time() - 900)
    rid = web.file_request()
    sign_in(page, web, web.a)
    kid = pair_browser(page, web, web.a)
    r = web.owner(web.a, "unlink", kid, "--yes")
    assert r.code == 0, r
    page.goto(web.app_url + "#/devices")
    page.wait_for_selector(f"[data-key-id='{kid}'] >> text=revoked")
    # a decision signed by the unlinked key, sent by hand, is refused by the service
    page.evaluate("window.__doorbell.state.keys.enrolled = true")
    open_request(page, web, rid)
    page.click("text=Review denial…")
    page.click("#confirm-send")
    page.wait_for_selector(".toast.bad >> text=refused: signature does not verify")


def test_tampered_audit_row_is_flagged(web: WebEnv, page: Any) -> None:
    web.put_clip(web.a, time.time() - 900)
    web.file_request()
    web.file_request()
    sign_in(page, web, web.a)
    page.goto(web.app_url + "#/audit")
    page.wait_for_selector("#audit-status.ok >> text=Audit chain verified")
    db = web.tmp / "sharing.db"
    with sqlite3.connect(db) as c:
        seq = c.execute("select min(seq) from audit where owner_id = ? and kind = 'delivery'",
                        (web.a.owner_id,)).fetchone()[0]
        c.execute("update audit set details = replace(details, 'Springfield', 'Shelbyville') where seq = ?", (seq,))
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    page.goto(web.app_url + "#/audit")
    page.wait_for_selector("#audit-status.bad")
    assert f"BROKEN at entry #{seq}" in page.inner_text("#audit-status")
    assert "TAMPERED" in page.inner_text(f"li.tampered[data-seq='{seq}']")


def test_audit_row_hidden_from_the_owner_is_detected(web: WebEnv, page: Any) -> None:
    """An operator who sets a row's owner to NULL (so the owner never sees it) leaves a hole in the
    owner's own chain, which the browser finds even though the global chain still verifies."""
    web.put_clip(web.a, time.time() - 900)
    web.file_request()
    web.file_request()
    web.file_request()
    sign_in(page, web, web.a)
    with sqlite3.connect(web.tmp / "sharing.db") as c:
        seqs = [r[0] for r in c.execute("select seq from audit where owner_id = ? order by seq", (web.a.owner_id,))]
        c.execute("update audit set owner_id = NULL where seq = ?", (seqs[1],))
    page.goto(web.app_url + "#/audit")
    page.wait_for_selector("#audit-status.bad")
    assert "BROKEN" in page.inner_text("#audit-status")
    assert "hidden or deleted" in page.inner_text("section")


def test_second_owner_sees_none_of_the_first_owners_data(web: WebEnv, chromium: Any) -> None:
    web.put_clip(web.a, time.time() - 900)
    web.file_request()  # reaches owner A only (owner B's home is outside the 200 m circle)
    dev = web.device(web.a)
    dev.pub(p.status_topic(web.a.device_id), b"online", qos=1, retain=True)
    ctx_a, ctx_b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = ctx_a.new_page(), ctx_b.new_page()
        sign_in(pa, web, web.a)
        sign_in(pb, web, web.b)
        pa.wait_for_selector(f"article[aria-label='Device {web.a.device_id}']")
        # B also tries to subscribe to A's trees; whatever the broker answers, nothing may arrive
        pb.evaluate("""([o, d]) => { const t = window.__doorbell.state.t; window.__leaked = [];
            t.addEventListener('message', (e) => { if (e.detail.topic.includes(o) || e.detail.topic.includes(d))
                window.__leaked.push(e.detail.topic); });
            return Promise.allSettled([t.subscribe(`doorbell/v1/owners/${o}/#`),
                                       t.subscribe(`doorbell/v1/devices/${d}/#`),
                                       t.subscribe('doorbell/v1/owners/+/requests/+')]); }""",
                    [web.a.owner_id, web.a.device_id])
        ev = p.DeviceEvent(device_id=web.a.device_id, type="ring")
        dev.pub(p.events_topic(web.a.device_id), ev.to_json(), qos=1)
        pa.wait_for_selector(f".ring-banner[data-event-id='{ev.event_id}']")
        pa.goto(web.app_url + "#/requests")
        pa.wait_for_selector("#req-title")
        wait_for(lambda: pa.locator("ul.cards li").count() == 1, what="A's request listed")
        # a marker B may see, queued after A's ring: once B shows it, A's ring would have arrived too
        mark = p.DeviceEvent(device_id=web.b.device_id, type="ring")
        web.device(web.b).pub(p.events_topic(web.b.device_id), mark.to_json(), qos=1)
        pb.wait_for_selector(f".ring-banner[data-event-id='{mark.event_id}']")
        state = pb.evaluate("({d: [...window.__doorbell.state.devices.keys()],"
                            " r: window.__doorbell.state.requests.size,"
                            " e: window.__doorbell.state.events.map(e => e.device_id), leaked: window.__leaked})")
        assert state == {"d": [web.b.device_id], "r": 0, "e": [web.b.device_id], "leaked": []}
    finally:
        ctx_a.close()
        ctx_b.close()


def test_hostile_agency_text_is_neutralised(web: WebEnv, page: Any) -> None:
    """The service refuses such text at intake (doorbell.core.text); a request that reaches the
    app anyway (an older row, another writer on the broker) is shown with every control, bidi
    and invisible character made visible, and HTML as text."""
    now = time.time()
    hostile = p.PoliceRequest(
        request_id=p.new_token(), owner_id=web.a.owner_id, agency="Springfield PD\u202e",
        case_number="2026-1\u200b", legal_basis="Warrant\x1b[2J 7", created_at=now, expires_at=now + 3600,
        reason="Witness \u202egnihtemos\u202c search\u200b <img src=x onerror=alert(1)>",
        window_start=now - 3600, window_end=now, grant_days=7, clips=[])
    admin = web.broker.client("admin")
    web._clients.append(admin)
    admin.pub(p.request_topic(web.a.owner_id, hostile.request_id), hostile.to_json(), qos=1, retain=True)
    sign_in(page, web, web.a)
    open_request(page, web, hostile.request_id)
    text = page.inner_text("dl.facts")
    assert "\\u{202e}gnihtemos\\u{202c}" in text and "search\\u{200b}" in text
    assert "Warrant\\u{001b}[2J 7" in text and "2026-1\\u{200b}" in text
    assert "<img src=x onerror=alert(1)>" in text  # shown as text, never parsed as HTML
    assert page.locator("dl.facts img").count() == 0
    assert "\\u{202e}" in page.inner_text("#rq-title")
    admin.pub(p.request_topic(web.a.owner_id, hostile.request_id), b"", qos=1, retain=True)


CANONICAL_CASES: list[Any] = [
    {"b": 1, "a": [3, 2, {"z": None, "y": True, "x": False}]},
    {"text": "quote\" backslash\\ nl\n tab\t cr\r bs\b ff\f nul\x00 esc\x1b del\x7f"},
    {"unicode": "Grüße, 東京, emoji 🚪🔔, line sep \u2028 para sep \u2029, bidi \u202e"},
    {"é": 1, "e": 2, "ü": 3, "z": 4, "Z": 5, "_": 6, "\U0001f600": 7, "\uffff": 8},
    {"big": 2**52, "neg": -17, "zero": 0, "empty": {}, "list": []},
]


def test_canonical_json_is_byte_identical_to_python(web: WebEnv, page: Any) -> None:
    from doorbell.core.auditchain import canonical as audit_canonical
    from doorbell.core.signing import canonical_json

    page.goto(web.app_url)
    page.wait_for_selector("#login-title")
    for case in CANONICAL_CASES:
        js = page.evaluate("(v) => window.__doorbell.canonical(v)", case)
        assert js.encode() == canonical_json(case) == audit_canonical(case).encode(), case
    refused = page.evaluate("(v) => { try { window.__doorbell.canonical(v, {integersOnly: true}); return 'ok' } "
                            "catch (e) { return e.message } }", {"f": 1.5})
    assert "floats" in refused


def test_unlinking_this_browser_from_the_app(web: WebEnv, page: Any) -> None:
    sign_in(page, web, web.a)
    kid = pair_browser(page, web, web.a)
    page.goto(web.app_url + "#/devices")
    page.click(f"[data-key-id='{kid}'] >> text=Unlink…")
    assert "This is this browser: it forgets its keys" in page.inner_text("#confirm pre")
    page.click("#confirm-send")
    page.wait_for_selector(".toast.ok >> text=Unlinked")
    page.wait_for_selector(f"[data-key-id='{kid}'] >> .pill.revoked")
    assert page.is_visible("#link-title")  # it offers to link again
    assert page.evaluate("window.__doorbell.state.keys") is None
    from sharing_service.enrolment import OwnerKey

    with web.core.db.read() as s:
        assert s.get(OwnerKey, kid).state == "revoked"
    kinds = [r["kind"] for r in json.loads(web.owner(web.a, "audit", "--json", "--limit", "0").out)["entries"]]
    assert kinds[-2:] == ["key_enrolled", "key_unlinked"]


def test_pairing_from_the_link_and_qr_code(web: WebEnv, page: Any) -> None:
    """`doorbell owner link --app-url`: a link (and its QR code) that opens the app with the code in."""
    from tests.support.web import LinkRun

    code = linking.new_code()
    run = LinkRun(web.a, code, app_url=web.app_url)
    assert run.link == f"{web.app_url}#/link/{linking.format_code(code)}"
    assert len(run.qr) > 10 and all(set(line) <= set(" █▀▄") for line in run.qr)
    page.goto(run.link)  # not signed in yet: the code waits in this tab
    page.fill("#broker", web.broker.ws_url)
    page.fill("#login", web.a.web_login)
    page.fill("#password", web.a.web_password)
    page.click("button[type=submit]")
    page.wait_for_selector("#link-title")
    assert page.input_value("#pair-code") == linking.format_code(code)
    page.get_by_role("button", name="Link", exact=True).click()
    page.wait_for_selector("#this-key")
    res = run.finish()
    assert res.code == 0, res


def test_an_unanswered_decision_is_sent_again_and_applied_once(web: WebEnv, page: Any) -> None:
    """As the CLI does: the instance that took a decision may die before answering, so the
    browser sends the very same signed bytes again until it is answered; the service applies
    the nonce once."""
    from sharing_service.bridge import OwnerBridge
    from sharing_service.models import RequestTarget

    web.put_clip(web.a, time.time() - 900)
    rid = web.file_request()
    admin = decisions_seen(web)
    sign_in(page, web, web.a)
    pair_browser(page, web, web.a)
    open_request(page, web, rid)
    page.click("text=Review denial…")
    web.service.bridge.stop()  # the service goes away; its session keeps what arrives meanwhile
    page.click("#confirm-send")
    topic = f"{p.PREFIX}/owners/{web.a.owner_id}/decisions/{rid}"
    first, again = admin.expect(topic, wait=10), admin.expect(topic, wait=10)
    assert again.payload == first.payload  # the same nonce, the same signature: a resend, not a new decision
    web.service.bridge = OwnerBridge(web.core, web.service.cfg.mqtt)  # a restarted instance
    web.service.bridge.start()
    page.wait_for_selector(".toast.ok >> text=Denied: nothing shared")
    with web.core.db.read() as s:
        assert s.get(RequestTarget, (rid, web.a.owner_id)).state == "denied"
    from sharing_service.models import AuditEntry

    nonce = p.decode(p.Decision, first.payload, "decision").nonce
    with web.core.db.read() as s:  # applied once: one audited decision carries this nonce
        rows = [a for a in s.query(AuditEntry).filter(AuditEntry.subject == rid) if nonce in a.details]
    assert len(rows) == 1, [(a.kind, a.details) for a in rows]
