"""Every screen of the owner web app, rendered at phone and laptop size from one story on the
real stack. The PNGs go to a temporary directory (each must be a real, non-blank image);
``scripts/screenshots.sh`` sets DOORBELL_SCREENSHOTS_DIR=docs/owner-app to refresh the docs."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from doorbell.core import protocol as p
from tests.support.web import LAPTOP, PHONE, WebEnv, finish_screenshots, gradient_jpeg, pair_browser, sign_in, snap

pytestmark = pytest.mark.timeout(240)

SCREENS = ["login", "live", "requests", "request", "confirm", "grants", "audit", "devices", "pair-code", "share"]


def test_screenshots_of_every_screen(web: WebEnv, chromium: Any, tmp_path: Path) -> None:
    out = Path(os.environ.get("DOORBELL_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    now = time.time()
    from doorbell.sandbox.media import make_mp4

    real = make_mp4(tmp_path / "porch.mp4", frames=30, width=320, height=180).read_bytes()  # plays in a share link
    clips = [web.put_clip(web.a, now - 2400 + i * 420, data=real if i == 0 else None) for i in range(3)]
    rid = web.file_request(reason="Witness search: a bicycle was stolen from the street between 14:00 and 15:00")
    dev = web.device(web.a)
    dev.pub(p.status_topic(web.a.device_id), b"online", qos=1, retain=True)
    dev.pub(p.snapshot_topic(web.a.device_id), gradient_jpeg(), qos=1, retain=True)
    pages = {}
    for size_name, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        ctx = chromium.new_context(viewport=viewport, timezone_id="UTC", device_scale_factor=1)
        pages[size_name] = (ctx, ctx.new_page())
    try:
        for size_name, (_ctx, page) in pages.items():
            page.goto(web.app_url)
            page.wait_for_selector("#login-title")
            page.screenshot(path=str(out / f"login-{size_name}.png"))
            sign_in(page, web, web.a, login_name=None if size_name == "phone" else "laptop")
        pair_browser(pages["laptop"][1], web, web.a)
        pair_browser(pages["phone"][1], web, web.a)
        ev = p.DeviceEvent(device_id=web.a.device_id, type="ring", clip_id=clips[-1])
        dev.pub(p.events_topic(web.a.device_id), ev.to_json(), qos=1)
        for size_name, (_ctx, page) in pages.items():
            shoot = lambda name, pg=page, sz=size_name: snap(pg, out / f"{name}-{sz}.png")  # noqa: E731
            page.goto(web.app_url + "#/live")
            page.wait_for_selector(f".ring-banner[data-event-id='{ev.event_id}']")
            page.wait_for_selector("article.device img")
            shoot("live")
            page.goto(web.app_url + "#/requests")
            page.wait_for_selector("ul.cards li")
            shoot("requests")
            page.goto(web.app_url + f"#/requests/{rid}")
            page.wait_for_selector("svg.area")
            page.check(f"input[value='{clips[1]}']")
            page.check(f"input[value='{clips[2]}']")
            shoot("request")
            page.click("text=Review approval…")
            page.wait_for_selector("#confirm pre")
            shoot("confirm")
            if size_name == "laptop":  # approve once, last; both then list the grant
                page.click("#confirm-send")
                page.wait_for_selector(".toast.ok")
        web.use_sharing_url(web.a)
        made = web.owner(web.a, "share", clips[0], "--days", "7", "--yes", "--json")
        assert made.code == 0, made
        link = json.loads(made.out)["link"]
        for size_name, (_ctx, page) in pages.items():
            shoot = lambda name, pg=page, sz=size_name: snap(pg, out / f"{name}-{sz}.png")  # noqa: E731
            page.goto(web.app_url + "#/grants")
            page.wait_for_selector("tr[data-share-id] .pill.active")
            page.wait_for_selector("table.grants .pill.active")
            shoot("grants")
            page.goto(web.app_url + "#/audit")
            page.wait_for_selector("#audit-status.ok")
            shoot("audit")
            page.goto(web.app_url + "#/devices")
            page.wait_for_selector("#this-key")
            shoot("devices")
            page.click("#show-code-start")
            page.wait_for_selector("canvas.qr")
            shoot("pair-code")
            page.click("text=Stop showing the code")
            viewer = chromium.new_context(viewport=PHONE if size_name == "phone" else LAPTOP, timezone_id="UTC",
                                          device_scale_factor=1)  # anyone's browser: no login, no keys
            try:
                v = viewer.new_page()
                v.goto(link)
                v.wait_for_selector("#share-status.ok")
                snap(v, out / f"share-{size_name}.png")
            finally:
                viewer.close()
    finally:
        for ctx, _page in pages.values():
            ctx.close()
    finish_screenshots(out, SCREENS)
