"""Share links end to end: the owner shares a sealed clip from the CLI, a second browser context
with no owner keys plays it (decrypted in the browser, frames checked), another owner's valid
credentials cannot revoke it, the owner's revoke ends it with a clear message, and the fragment's
key never reaches the service (its database and its logs are searched)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from doorbell.clients.owner.app import OwnerApp, load_owner_config
from doorbell.clients.owner.keys import ensure_identity
from doorbell.clients.owner.share import list_shares, revoke_share
from doorbell.core import protocol as p
from doorbell.core.signing import generate_key, sign_unshare
from doorbell.sandbox.media import make_mp4
from tests.support.polling import wait_for
from tests.support.web import WebEnv, gradient_jpeg, pair_browser, sign_in

pytestmark = pytest.mark.timeout(180)


def sealed_clip(web: WebEnv, tmp_path: Path) -> Any:
    """Home A's device seals to the owner's age identity; one real H.264 clip recorded, uploaded and announced
    (the owner's persistent clip session is opened first, as the app does on its first run)."""
    identity, _ = ensure_identity(web.a.key_file)
    with OwnerApp(load_owner_config(str(web.a.config))) as app, app.clip_index() as index:
        app.sync_clips(index, idle_s=0.2)
    video = make_mp4(tmp_path / "clip.mp4", frames=30).read_bytes()
    return web.put_sealed_clip(web.a, [str(identity.recipient)], time.time() - 600, video, gradient_jpeg(96, 54))


def open_viewer(ctx: Any, link: str) -> Any:
    page = ctx.new_page()
    page.set_default_timeout(30000)
    page.goto(link)
    settled(page)
    return page


def settled(page: Any) -> None:
    """The viewer said it played the clip, or why not (the page's CSP forbids wait_for_function's eval)."""
    page.wait_for_selector("#share-status.ok, #share-status.bad")


def test_share_link_plays_in_a_second_browser_and_revoke_ends_it(web: WebEnv, chromium: Any, page: Any,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    web.use_sharing_url(web.a)
    clip = sealed_clip(web, tmp_path)
    res = web.owner(web.a, "share", clip.clip_id, "--days", "2", "--yes", "--json")
    assert res.code == 0, res
    made = json.loads(res.out)
    link, share_id = made["link"], made["share_id"]
    assert made["sealed"] and link.startswith(f"{web.service.url}/app/share.html#t=")
    key = link.split("&k=", 1)[1]
    assert key.startswith("AGE-SECRET-KEY-1")

    viewer = chromium.new_context(viewport={"width": 390, "height": 844})  # no owner keys, no login
    try:
        view = open_viewer(viewer, link)
        assert view.evaluate("window.__share.error") is None
        assert "signature verifies" in view.text_content("#share-status")
        # decoded frames, not just bytes: frames were presented, and one shows the clip's blue bar
        wait_for(lambda: view.evaluate("window.__share.frames") >= 3, what="frames presented")
        pixel = view.evaluate("""() => {
            const v = document.querySelector('#share-video');
            const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
            const g = c.getContext('2d'); g.drawImage(v, 0, 0);
            return [v.videoWidth, v.videoHeight, Array.from(g.getImageData(2, 60, 1, 1).data)];
        }""")
        assert pixel[:2] == [160, 120]
        r, g, b, _ = pixel[2]
        assert b > 150 and g > 80 and r < 90, pixel  # (40, 120, 200) after H.264

        # The owner sees the link and its view in the list and in the audit log.
        with OwnerApp(load_owner_config(str(web.a.config))) as app:
            listed = {s.share_id: s for s in list_shares(app)}
            assert listed[share_id].state == "active" and listed[share_id].views == 1
            kinds = [r.kind for r in app.audit().rows if r.subject == share_id]
            assert kinds == ["share", "share_view"]

        # Another owner, with its own valid login and key, cannot revoke it...
        with OwnerApp(load_owner_config(str(web.b.config))) as other:
            refused = revoke_share(other, share_id)
            assert not refused.ok and "no such share link of this owner" in (refused.reason or "")
        # ...nor publish on owner A's topics (the broker's ACL), even with a validly signed message.
        intruder = web.broker.client(web.broker.add_owner_login(web.b.owner_id, "intruder"))
        web._clients.append(intruder)
        forged = sign_unshare(generate_key(), owner_id=web.a.owner_id, share_id=share_id)
        intruder.pub(p.share_revoke_topic(web.a.owner_id, share_id), forged.to_json(), qos=1)
        view.reload()
        settled(view)
        assert view.evaluate("window.__share.error") is None  # still works

        # The owner revokes it in the app (signed in the browser): the link fails with a clear message,
        # and the copies are gone.
        sign_in(page, web, web.a)
        pair_browser(page, web, web.a)
        page.goto(web.app_url + "#/grants")
        page.click(f"tr[data-share-id='{share_id}'] >> text=Revoke…")
        assert "REVOKE the share link" in page.text_content("#confirm")
        page.click("#confirm-send")
        page.wait_for_selector("text=the share link no longer works")
        page.wait_for_selector(f"tr[data-share-id='{share_id}'] >> text=revoked")
        view.reload()
        settled(view)
        assert "no longer works" in view.evaluate("window.__share.error")
        assert view.is_visible("text=its owner revoked it, or it expired")
        from sharing_service.shares import ShareObject

        with web.core.db.read() as s:
            copies = [o.copy_key for o in s.query(ShareObject).filter_by(share_id=share_id)]
        assert len(copies) == 3
        s3 = web.s3.client()
        for k in copies:
            with pytest.raises(Exception, match="404|Not Found|NoSuchKey"):
                s3.head_object(Bucket=web.s3.bucket, Key=k)
    finally:
        viewer.close()

    # The key in the fragment never reached the service: not in its database, not in its logs.
    db = tmp_path / "sharing.db"  # the web fixture's service database (with its -wal and -shm files)
    stored = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*"))
    assert stored and key.encode() not in stored and key.lower().encode() not in stored
    assert key not in caplog.text and key.lower() not in caplog.text
    token = link.split("#t=", 1)[1].split("&", 1)[0]
    assert token not in caplog.text and token.encode() not in stored  # only its hash is kept, and logs redact it
    assert share_id.encode() in stored  # the search does look at the right file


def test_clear_clip_share_expires_and_is_rate_limited(web: WebEnv) -> None:
    """A clip stored in clear is shared without a key (the token is its only secret); the sweep ends it
    at expiry and deletes its copies; one token is rate-limited."""
    import httpx

    from sharing_service.shares import VIEW_RATE_PER_MIN, ShareObject, sweep_shares

    web.use_sharing_url(web.a)
    clip_id = web.put_clip(web.a, time.time() - 900)
    res = web.owner(web.a, "share", clip_id, "--days", "1", "--yes", "--json")
    assert res.code == 0, res
    made = json.loads(res.out)
    assert not made["sealed"] and "&k=" not in made["link"]
    token = made["link"].split("#t=", 1)[1]
    got = httpx.get(f"{web.service.url}/v1/shares/{token}", timeout=30).json()
    assert set(got["objects"]) == {"video", "snapshot"} and "/_shared/" in got["objects"]["video"]["url"]
    assert web.a.device_id not in json.dumps(got)  # the answer names no home (rule 2)
    assert httpx.get(got["objects"]["video"]["url"], timeout=30).content == web.clips[clip_id]
    assert httpx.get(f"{web.service.url}/v1/shares/{'x' * 43}", timeout=30).status_code == 404
    codes = [httpx.get(f"{web.service.url}/v1/shares/{token}", timeout=30).status_code
             for _ in range(2 * VIEW_RATE_PER_MIN)]
    assert codes[-1] == 429 and set(codes) == {200, 429}  # the burst is one minute's worth

    # a second link to the same clip, revoked from the CLI: its token is refused at once
    other = json.loads(web.owner(web.a, "share", clip_id, "--days", "1", "--yes", "--json").out)
    token2 = other["link"].split("#t=", 1)[1]
    assert httpx.get(f"{web.service.url}/v1/shares/{token2}", timeout=30).status_code == 200
    res = web.owner(web.a, "unshare", other["share_id"], "--yes")
    assert res.code == 0 and "revoked" in res.out, res
    assert httpx.get(f"{web.service.url}/v1/shares/{token2}", timeout=30).status_code == 404

    assert sweep_shares(web.core.ctx, time.time() + 2 * 86400) == 1
    from sharing_service.shares import Share

    with web.core.db.read() as s:
        assert s.get(Share, made["share_id"]).state == "expired"
        copies = [o.copy_key for o in s.query(ShareObject).filter_by(share_id=made["share_id"])]
    for k in copies:
        with pytest.raises(Exception, match="404|Not Found|NoSuchKey"):
            web.s3.client().head_object(Bucket=web.s3.bucket, Key=k)
    listed = web.owner(web.a, "shares", "--all", "--json")
    assert sorted(s["state"] for s in json.loads(listed.out)) == ["expired", "revoked"]
    assert "share_expiry" in web.owner(web.a, "audit", "--json").out


def test_a_link_made_in_the_browser_plays_elsewhere(web: WebEnv, page: Any, chromium: Any, tmp_path: Path) -> None:
    """The owner's app makes the link itself: the clip's keys are re-wrapped in the browser (its own
    non-extractable key opens them) to a fresh identity that goes only into the link."""
    sign_in(page, web, web.a)
    pair_browser(page, web, web.a)
    recipient = str(page.evaluate("window.__doorbell.state.keys.recipient"))
    clip = web.put_sealed_clip(web.a, [recipient], time.time() - 600,
                               make_mp4(tmp_path / "clip.mp4", frames=30).read_bytes(), gradient_jpeg(96, 54))
    wait_for(lambda: page.evaluate("window.__doorbell.state.clipIndex.clips.size") >= 1, what="clip indexed")
    page.goto(f"{web.app_url}#/clips/{clip.clip_id}")
    page.wait_for_selector("#clip-signature[data-verdict]")
    assert page.get_attribute("#clip-signature", "data-verdict") == "ok", page.inner_text("#clip-signature")
    page.fill("#share-days", "2")
    page.click("#share-make")
    link = page.wait_for_selector("#share-link").input_value()
    assert link.startswith(f"{web.service.url}/app/share.html#t=") and "&k=AGE-SECRET-KEY-1" in link
    viewer = chromium.new_context()
    try:
        view = open_viewer(viewer, link)
        assert view.evaluate("window.__share.error") is None
        wait_for(lambda: view.evaluate("window.__share.frames") >= 3, what="frames presented")
    finally:
        viewer.close()
    page.goto(web.app_url + "#/grants")
    page.wait_for_selector(f"tr[data-share-id] >> text={clip.clip_id}")
