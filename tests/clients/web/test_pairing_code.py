"""A linked browser shows a pairing code (and its QR code); a second browser pairs with it and can
then sign a decision that the sharing service accepts."""
from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.polling import wait_for
from tests.support.web import WebEnv, pair_browser, sign_in

pytestmark = pytest.mark.timeout(180)


def test_a_linked_browser_shows_a_code_that_links_another(web: WebEnv, page: Any, chromium: Any) -> None:
    from sharing_service.enrolment import OwnerKey
    from sharing_service.models import RequestTarget

    sign_in(page, web, web.a)
    first = pair_browser(page, web, web.a)          # browser A: linked through the CLI
    page.goto(web.app_url + "#/devices")
    page.click("#show-code-start")
    code = page.wait_for_selector(".pair-code").get_attribute("data-code")
    assert code and len(code) == 10
    # the QR code decodes (OpenCV) to the pairing link that opens the app with the code filled in
    import base64

    import cv2
    import numpy as np

    png = base64.b64decode(page.evaluate("document.querySelector('canvas.qr').toDataURL('image/png')").split(",")[1])
    img = cv2.resize(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), None, fx=2, fy=2,
                     interpolation=cv2.INTER_NEAREST)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(img)
    assert text == f"{web.app_url.split('#')[0]}#/link/{code[:5]}-{code[5:]}", text

    other = chromium.new_context(viewport={"width": 390, "height": 844})  # browser B: a phone, no keys
    try:
        b = other.new_page()
        b.set_default_timeout(30000)
        sign_in(b, web, web.a, login_name="phone")   # its own broker login (one session per login)
        b.goto(web.app_url + "#/devices")
        b.fill("#pair-code", f"{code[:5]}-{code[5:]}")
        b.fill("#pair-label", "Phone")
        b.get_by_role("button", name="Link", exact=True).click()
        page.wait_for_selector("#offer-title")
        kid = b.evaluate("window.__doorbell.state.keys.keyId")
        fp = " ".join(kid[i:i + 4] for i in range(0, 16, 4))
        assert fp in page.text_content("#show-code")  # A shows B's fingerprint to compare
        page.click("#offer-confirm")
        b.wait_for_selector("#this-key", timeout=60000)
        with web.core.db.read() as s:
            row = s.get(OwnerKey, kid)
            assert row is not None and row.state == "active" and row.label == "Phone"
            assert row.enrolled_by == first  # signed by browser A's own key

        # B signs a denial in the browser; the service accepts it.
        web.put_clip(web.a, time.time() - 900)
        rid = web.file_request()
        wait_for(lambda: b.evaluate("(id) => window.__doorbell.state.requests.has(id)", rid),
                 what="the request reached browser B")
        b.goto(f"{web.app_url}#/requests/{rid}")
        b.wait_for_selector("#rq-title")
        b.click("text=Review denial…")
        b.click("#confirm-send")
        b.wait_for_selector("text=Denied: nothing shared")

        def denied() -> bool:
            with web.core.db.read() as s:
                t = s.get(RequestTarget, (rid, web.a.owner_id))
                return t is not None and t.state == "denied"

        wait_for(denied, what="the browser-signed denial applied")
    finally:
        other.close()
