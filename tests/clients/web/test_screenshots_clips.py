"""The sealed-clip screens of the owner web app (clips timeline, the player with the device's
signature, a police request for a sealed device with its previews, and its confirmation), at
phone and laptop size, from the real stack, each also scanned with axe-core. PNGs go to a temporary directory unless
``scripts/screenshots.sh`` sets DOORBELL_SCREENSHOTS_DIR=docs/owner-app."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from doorbell.core import age
from tests.support.polling import wait_for
from tests.support.web import (
    AXE,
    LAPTOP,
    PHONE,
    WebEnv,
    axe_problems,
    finish_screenshots,
    gradient_jpeg,
    pair_browser,
    seek_video,
    sign_in,
    snap,
    synthetic_clip,
)

pytestmark = pytest.mark.timeout(240)

SCREENS = ["clips", "clip", "sealed-request", "sealed-confirm"]


def test_screenshots_and_axe_of_the_clip_screens(web: WebEnv, chromium: Any, tmp_path: Path) -> None:
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci in doorbell/clients/web)")
    out = Path(os.environ.get("DOORBELL_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    web.core.registry.set_agency_recipient("Springfield PD", str(age.generate_identity().recipient))
    pages = {}
    for size_name, viewport in (("phone", PHONE), ("laptop", LAPTOP)):
        # bypass_csp: axe is injected as a script the app's CSP would refuse
        ctx = chromium.new_context(viewport=viewport, timezone_id="UTC", device_scale_factor=1, bypass_csp=True)
        pages[size_name] = (ctx, ctx.new_page())
    try:
        recipients = []
        for size_name, (_ctx, page) in pages.items():
            page.set_default_timeout(20000)
            sign_in(page, web, web.a, login_name=None if size_name == "phone" else "laptop")
            pair_browser(page, web, web.a)
            recipients.append(str(page.evaluate("window.__doorbell.state.keys.recipient")))
        now = time.time()
        video = synthetic_clip(tmp_path / "clip.mp4", frames=15)
        clips = [web.put_sealed_clip(web.a, recipients, now - 3000 + i * 700, video, gradient_jpeg(320, 180))
                 for i in range(3)]
        problems: dict[str, list[str]] = {}
        rid = web.file_request(reason="Witness search: a bicycle was stolen from the street between 14:00 and 15:00")
        for size_name, (_ctx, page) in pages.items():
            def shoot(name: str, pg: Any = page, sz: str = size_name) -> None:
                snap(pg, out / f"{name}-{sz}.png")
                problems[f"{name}@{sz}"] = axe_problems(pg)

            wait_for(lambda pg=page: pg.evaluate("window.__doorbell.state.clipIndex.clips.size") == 3,
                     what="clips indexed")
            page.goto(web.app_url + "#/clips")
            for c in clips:
                page.wait_for_selector(f"img[data-clip-id='{c.clip_id}'][src]")
            shoot("clips")
            page.goto(f"{web.app_url}#/clips/{clips[-1].clip_id}")
            page.wait_for_selector("#clip-signature[data-verdict='ok']")
            seek_video(page, 0.9)
            shoot("clip")
            page.goto(f"{web.app_url}#/requests/{rid}")
            page.wait_for_selector("svg.area")
            for c in clips[:2]:
                page.check(f"input[value='{c.clip_id}']")
            for c in clips:
                page.wait_for_selector(f"label img[data-clip-id='{c.clip_id}'][src]")
            page.evaluate("document.querySelector('fieldset').scrollIntoView({block: 'start'})")
            page.screenshot(path=str(out / f"sealed-request-{size_name}.png"))
            problems[f"sealed-request@{size_name}"] = axe_problems(page)
            page.click("text=Review approval…")
            page.wait_for_selector("#confirm pre")
            shoot("sealed-confirm")
    finally:
        for ctx, _page in pages.values():
            ctx.close()
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}
    finish_screenshots(out, SCREENS)
