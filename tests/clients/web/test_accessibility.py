"""Accessibility of the owner web app: an axe-core scan of every screen finds no serious or
critical violations, and the approve flow works by keyboard alone (real Chromium, real stack)."""
from __future__ import annotations

import time
from typing import Any

import pytest

from doorbell.core import protocol as p
from tests.support.web import AXE, WebEnv, axe_problems, pair_browser, sign_in

pytestmark = pytest.mark.timeout(180)

def tab_to(page: Any, test_js: str, limit: int = 80) -> None:
    """Press Tab until ``test_js`` (evaluated on document.activeElement as `el`) is true."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const el = document.activeElement; return !!({test_js}); }})()"):
            return
    raise AssertionError(f"Tab never reached {test_js}")


def test_every_screen_passes_axe(web: WebEnv, chromium: Any) -> None:
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci in doorbell/clients/web)")
    cid = web.put_clip(web.a, time.time() - 900)
    rid = web.file_request()
    ctx = chromium.new_context(bypass_csp=True)  # axe is injected as a script the app's CSP would refuse
    try:
        page = ctx.new_page()
        problems: dict[str, list[str]] = {}
        for width in (390, 1280):
            page.set_viewport_size({"width": width, "height": 844})
            page.goto(web.app_url)
            page.wait_for_selector("#login-title")
            problems[f"login@{width}"] = axe_problems(page)
        sign_in(page, web, web.a)
        pair_browser(page, web, web.a)
        dev = web.device(web.a)
        dev.pub(p.status_topic(web.a.device_id), b"online", qos=1, retain=True)
        ev = p.DeviceEvent(device_id=web.a.device_id, type="ring")
        dev.pub(p.events_topic(web.a.device_id), ev.to_json(), qos=1)
        for width in (390, 1280):
            page.set_viewport_size({"width": width, "height": 844})
            for name, url, ready in [
                ("live", "#/live", f"li[data-event-id='{ev.event_id}']"),
                ("requests", "#/requests", "ul.cards li"),
                ("request", f"#/requests/{rid}", "#rq-title"),
                ("devices", "#/devices", "#this-key"),
                ("audit", "#/audit", "#audit-status.ok"),
            ]:
                page.goto(web.app_url + url)
                page.wait_for_selector(ready)
                problems[f"{name}@{width}"] = axe_problems(page)
            page.goto(web.app_url + f"#/requests/{rid}")
            page.check(f"input[value='{cid}']")
            page.click("text=Review approval…")
            page.wait_for_selector("#confirm pre")
            problems[f"confirm@{width}"] = axe_problems(page)
        page.click("#confirm-send")
        page.wait_for_selector(".toast.ok")
        page.goto(web.app_url + "#/grants")
        page.wait_for_selector("table.grants")
        problems["grants@844"] = axe_problems(page)
        assert {k: v for k, v in problems.items() if v} == {}
    finally:
        ctx.close()


def test_approve_by_keyboard_alone(web: WebEnv, page: Any) -> None:
    clips = sorted(web.put_clip(web.a, time.time() - 1800 + i * 60) for i in range(2))
    rid = web.file_request()
    sign_in(page, web, web.a)
    pair_browser(page, web, web.a)
    page.goto(web.app_url + "#/requests")
    page.wait_for_selector("ul.cards li")
    page.keyboard.press("Tab")
    tab_to(page, f"el.tagName === 'A' && el.getAttribute('href') === '#/requests/{rid}'")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rq-title")
    tab_to(page, f"el.value === '{clips[1]}'")
    page.keyboard.press("Space")
    tab_to(page, "el.textContent === 'Review approval…'")
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirm pre")
    assert page.evaluate("document.activeElement.id") == "confirm-title"  # focus moves to the question
    tab_to(page, "el.id === 'confirm-send'")
    page.keyboard.press("Enter")
    page.wait_for_selector(".toast.ok >> text=Approved: 1 clip(s)")
    from sharing_service.models import GrantClip

    with web.core.db.read() as s:
        assert [g.clip_id for g in s.query(GrantClip).all()] == [clips[1]]
