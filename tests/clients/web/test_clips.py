"""Sealed clips in the owner's browser, real headless Chromium against the real stack: the
browser's own clip index, playback decrypted with age-encryption (decoded frames compared with
the synthetic clip's pixels), the device signature shown, a tampered object refused, a sealed
request approved for a subset (headers re-wrapped in the browser; the agency client then
downloads and decrypts exactly those clips), and a second owner's app seeing none of them."""
from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from doorbell.core import age
from doorbell.core import protocol as p
from doorbell.core.release import check_headers, open_released
from doorbell.core.signing import verify
from tests.support.polling import wait_for
from tests.support.web import WebEnv, gradient_jpeg, pair_browser, seek_video, sign_in, synthetic_clip

pytestmark = pytest.mark.timeout(180)

BLUE = (40, 120, 200)  # doorbell.sandbox.media.make_mp4: frame i's left (i*7) columns


def linked(page: Any, env: WebEnv, home: Any) -> str:
    """Sign in, link this browser; its age recipient (the device seals to it, as after
    `doorbell owner keys recipients --add` and re-provisioning)."""
    sign_in(page, env, home)
    pair_browser(page, env, home)
    return str(page.evaluate("window.__doorbell.state.keys.recipient"))


def indexed(page: Any, n: int) -> None:
    wait_for(lambda: page.evaluate("window.__doorbell.state.clipIndex.clips.size") >= n, what=f"{n} clips indexed")


def thumb_loaded(page: Any, clip_id: str) -> None:
    wait_for(lambda: page.evaluate("(id) => { const i = document.querySelector(`img[data-clip-id='${id}']`);"
                                   " return i ? i.naturalWidth : 0; }", clip_id) > 0, what="snapshot decrypted")


def frame_at(page: Any, t: float) -> list[list[int]]:
    """The <video>'s decoded frame at ``t`` drawn to a canvas: RGB at (5, 60), (80, 60), (150, 60)."""
    seek_video(page, t)
    return list(page.evaluate("""() => {
        const v = document.querySelector('#clip-video');
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0);
        return [[5, 60], [80, 60], [150, 60]].map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
    }"""))


def close(rgb: list[int], want: tuple[int, int, int], tol: int = 24) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, want, strict=True))


def test_a_sealed_clip_plays_decrypted_with_its_device_signature_and_a_tampered_one_is_refused(
        web: WebEnv, page: Any, tmp_path: Path) -> None:
    recipient = linked(page, web, web.a)
    now = time.time()
    long_clip = synthetic_clip(tmp_path / "long.mp4", frames=15)
    short_clip = synthetic_clip(tmp_path / "short.mp4", frames=8)
    snap = gradient_jpeg(160, 90)
    good = web.put_sealed_clip(web.a, [recipient], now - 600, long_clip, snap)
    indexed(page, 1)
    # a clip announced while the app is closed: the persistent session keeps it for this browser
    page.goto("about:blank")
    other = web.put_sealed_clip(web.a, [recipient], now - 300, short_clip, snap)
    page.goto(web.app_url + "#/clips")  # signs in again from this tab's session
    page.wait_for_selector("#nav:not([hidden])")
    indexed(page, 2)
    # an announcement kept (the app holds the broker's acknowledgement until it is in IndexedDB) but not
    # yet indexed when the tab closed: indexed at the next start
    third = web.put_sealed_clip(web.a, [recipient], now - 900, short_clip, snap, announce=False)
    page.evaluate("([d, m]) => window.__doorbell.state.clipIndex.keep(d, new TextEncoder().encode(m))",
                  [web.a.device_id, third.announcement.decode()])
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    indexed(page, 3)
    # from IndexedDB, from the broker's queue, from the kept announcement; the timeline shows all with snapshots
    page.wait_for_selector(f"li.clip-row[data-clip-id='{other.clip_id}']")
    assert page.locator("ol.timeline li.clip-row").count() == 3
    thumb_loaded(page, good.clip_id)

    page.click(f"li.clip-row[data-clip-id='{good.clip_id}'] a")
    page.wait_for_selector("#clip-signature[data-verdict]")
    status = page.inner_text("#clip-signature")
    assert page.get_attribute("#clip-signature", "data-verdict") == "ok", status
    assert f"Signed by {web.a.device_id}" in status
    # decoded frames, not just bytes: frame 0 is black, frame 13 has its left 91 columns blue
    first = frame_at(page, 0.0)
    assert all(close(px, (0, 0, 0)) for px in first), first
    later = frame_at(page, 13 / 15 + 0.02)
    assert close(later[0], BLUE) and close(later[1], BLUE) and close(later[2], (0, 0, 0)), later

    # Tampered: the other clip's video object replaced by a valid age file (this clip's video, sealed
    # to the same key). It decrypts, but is not what the device signed: refused, not played.
    s3 = web.s3.client()
    body = s3.get_object(Bucket=web.s3.bucket, Key=good.keys["video"])["Body"].read()
    s3.put_object(Bucket=web.s3.bucket, Key=other.keys["video"], Body=body)
    page.goto(f"{web.app_url}#/clips/{other.clip_id}")
    page.wait_for_selector("#clip-signature[data-verdict]")
    assert page.get_attribute("#clip-signature", "data-verdict") == "bad"
    assert "does not match the device-signed manifest" in page.inner_text("#clip-signature")
    assert page.evaluate("document.querySelector('#clip-video').hidden") is True
    # a manifest signed by another key than the device's registered one
    from doorbell.core.signing import generate_key, public_key_text

    web.core.registry.set_device_key(web.a.device_id, public_key_text(generate_key()))
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    page.goto(f"{web.app_url}#/clips/{good.clip_id}")
    page.wait_for_selector("#clip-signature[data-verdict]")
    assert page.get_attribute("#clip-signature", "data-verdict") == "bad"
    assert "not this device's registered key" in page.inner_text("#clip-signature")

    # unlinking this browser forgets its clip index with its keys (the clip times stay nowhere here)
    kid = page.evaluate("window.__doorbell.state.keys.keyId")
    page.goto(web.app_url + "#/devices")
    page.click(f"[data-key-id='{kid}'] >> text=Unlink…")
    assert "its list of your clips" in page.inner_text("#confirm pre")
    page.click("#confirm-send")
    page.wait_for_selector(".toast.ok >> text=Unlinked")
    left = page.evaluate("""() => new Promise((resolve) => { const r = indexedDB.open('doorbell-clips');
        r.onsuccess = () => { const t = r.result.transaction(['clips', 'pending']); const n = [];
            t.objectStore('clips').count().onsuccess = (e) => n.push(e.target.result);
            t.objectStore('pending').count().onsuccess = (e) => n.push(e.target.result);
            t.oncomplete = () => { r.result.close(); resolve(n); }; }; })""")
    assert left == [0, 0] and page.evaluate("window.__doorbell.state.clipIndex.clips.size") == 0


def test_approve_sealed_clips_in_the_browser_and_only_those_reach_the_agency(
        web: WebEnv, chromium: Any, tmp_path: Path) -> None:
    from doorbell.clients.agency.cli import download_all
    from doorbell.clients.agency.client import AgencyClient

    agency_identity = age.generate_identity()
    agency_key_file = tmp_path / "agency-key.txt"
    age.save_identity(agency_identity, agency_key_file)
    web.core.registry.set_agency_recipient("Springfield PD", str(agency_identity.recipient))
    web.seal_device(web.a)
    web.seal_device(web.b)
    ctx_a, ctx_b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = ctx_a.new_page(), ctx_b.new_page()
        pa.set_default_timeout(20000)
        pb.set_default_timeout(20000)
        rec_a = linked(pa, web, web.a)
        rec_b = linked(pb, web, web.b)
        now = time.time()
        snap = gradient_jpeg(160, 90)
        clips = [web.put_sealed_clip(web.a, [rec_a], now - 2400 + i * 600,
                                     synthetic_clip(tmp_path / f"c{i}.mp4", 6 + i), snap) for i in range(3)]
        b_own = web.put_sealed_clip(web.b, [rec_b], now - 900, synthetic_clip(tmp_path / "b.mp4", 5), snap)
        indexed(pa, 3)
        indexed(pb, 1)
        rid = web.file_request()  # reaches owner A by area (sealed device), with the agency's recipient

        admin = web.broker.client("admin")
        web._clients.append(admin)
        admin.sub(f"{p.PREFIX}/owners/+/decisions/+")
        pa.goto(f"{web.app_url}#/requests/{rid}")
        pa.wait_for_selector("#rq-title")
        for c in clips:
            pa.wait_for_selector(f"input[value='{c.clip_id}']")
        thumb_loaded(pa, clips[0].clip_id)
        chosen = sorted([clips[0].clip_id, clips[2].clip_id])
        for cid in chosen:
            pa.check(f"input[value='{cid}']")
        pa.click("text=Review approval…")
        text = pa.inner_text("#confirm pre")
        assert "You are about to SHARE footage with Springfield PD" in text
        assert "Clips that WILL be shared (2)" in text and "Clips that will NOT be shared (1)" in text
        assert "approving hands their decryption keys to the agency" in text
        assert "A key once delivered cannot be recalled" in text
        pa.click("#confirm-send")
        pa.wait_for_selector(".toast.ok >> text=Approved: 2 clip(s)")

        # the decision the browser signed: its signature, and headers re-wrapped only for the agency
        msg = admin.expect(f"{p.PREFIX}/owners/{web.a.owner_id}/decisions/{rid}", wait=10)
        decision = p.decode(p.Decision, msg.payload, "decision")
        from sharing_service.enrolment import OwnerKey

        with web.core.db.read() as s:
            pub = s.query(OwnerKey).filter_by(owner_id=web.a.owner_id).one().public_key
        verify(decision, pub)
        assert decision.clip_ids == chosen and sorted(decision.released or {}) == chosen
        headers = check_headers(decision)
        s3 = web.s3.client()
        video_key = clips[0].keys["video"]
        payload = s3.get_object(Bucket=web.s3.bucket, Key=video_key)["Body"].read()
        released = (decision.released or {})[clips[0].clip_id]["video"]
        payload = payload[released.payload_offset:]
        out = tmp_path / "python-opened.mp4"
        open_released(headers[clips[0].clip_id]["video"], io.BytesIO(payload), out, [agency_identity])
        assert out.read_bytes() == clips[0].video
        if shutil.which("age"):  # the stock age CLI opens the browser's header + the stored payload too
            joined = tmp_path / "joined.age"
            joined.write_bytes(headers[clips[0].clip_id]["video"] + payload)
            opened = subprocess.run(["age", "-d", "-i", str(agency_key_file), str(joined)],
                                    capture_output=True, check=True).stdout
            assert opened == clips[0].video

        # the agency client downloads, decrypts and checks exactly those two clips
        with AgencyClient(web.service.url, web.agency_key) as agency:
            listing = agency.clips(rid)
            assert sorted(c["clip_id"] for c in listing["sealed"]) == chosen
            results = download_all(agency, rid, tmp_path / "agency-out", identity_file=agency_key_file)
        assert sorted(r["clip_id"] for r in results if r["ok"]) == chosen, results
        by_id = {c.clip_id: c for c in clips}
        for cid in chosen:
            assert (tmp_path / "agency-out" / f"{cid}.mp4").read_bytes() == by_id[cid].video
        assert not (tmp_path / "agency-out" / f"{clips[1].clip_id}.mp4").exists()

        # owner B's app: none of A's clips, even when it asks for A's announcements and objects
        leaked = pb.evaluate("""async ([d, key]) => { const t = window.__doorbell.state.t;
            const sub = await t.subscribe(`doorbell/v1/devices/${d}/clips`).then(() => 'ok', (e) => e.message);
            const link = await t.rpc('object_link', { key }).then(() => 'granted', (e) => e.message);
            const devices = (await t.rpc('devices', {})).devices.map((x) => x.device_id);
            return { sub, link, devices, ids: [...window.__doorbell.state.clipIndex.clips.keys()] }; }""",
                             [web.a.device_id, video_key])
        assert "refused" in leaked["link"] and leaked["ids"] == [b_own.clip_id], leaked
        assert leaked["devices"] == [web.b.device_id], leaked
        late = web.put_sealed_clip(web.a, [rec_a], now - 100, synthetic_clip(tmp_path / "late.mp4", 4), snap)
        marker = web.put_sealed_clip(web.b, [rec_b], now - 50, synthetic_clip(tmp_path / "mark.mp4", 4), snap)
        indexed(pb, 2)  # B's marker, announced after A's late clip, arrived: A's would have too
        ids = pb.evaluate("[...window.__doorbell.state.clipIndex.clips.keys()]")
        assert sorted(ids) == sorted([b_own.clip_id, marker.clip_id]) and late.clip_id not in ids
        pb.goto(web.app_url + "#/clips")
        pb.wait_for_selector(f"li.clip-row[data-clip-id='{marker.clip_id}']")
        assert pb.locator("li.clip-row").count() == 2
        wait_for(lambda: pa.evaluate("window.__doorbell.state.clipIndex.clips.size") == 4,
                 what="A indexes its late clip")
    finally:
        ctx_a.close()
        ctx_b.close()


def test_the_browsers_age_rewrap_and_manifest_check_match_python_and_the_age_cli(
        web: WebEnv, page: Any, tmp_path: Path) -> None:
    """The hand-written parts of src/sealed.js, on their own: the re-wrapped header (python's age and the
    stock CLI open it with the agency key), the header split, and the frozen manifest vector."""
    import json

    from doorbell.core import manifest as mf

    page.goto(web.app_url)
    page.wait_for_selector("#login-title")
    # a non-extractable X25519 key in the browser, as a linked browser holds
    recipient = page.evaluate("""async () => {
        const k = await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
        window.__k = k.privateKey;
        const raw = new Uint8Array(await crypto.subtle.exportKey('raw', k.publicKey));
        return Array.from(raw); }""")
    from bech32 import bech32_encode, convertbits

    browser_recipient = bech32_encode("age", convertbits(bytes(recipient), 8, 5))
    household = age.generate_identity()
    agency_identity = age.generate_identity()
    agency_key_file = tmp_path / "agency.txt"
    age.save_identity(agency_identity, agency_key_file)
    for size in (0, 1000, 64 * 1024 + 7):  # empty, one chunk, two chunks
        plain = bytes(range(256)) * (size // 256) + bytes(size % 256)
        sealed_file = io.BytesIO()
        age.encrypt(io.BytesIO(plain), sealed_file,
                    [household.recipient, age.parse_recipient(browser_recipient)])
        data = sealed_file.getvalue()
        header, offset = age.header_and_payload_offset(io.BytesIO(data))
        got = page.evaluate("""async ([bytes, recipient]) => {
            const s = await window.__doorbell.sealed();
            const file = new Uint8Array(bytes);
            const { header, offset } = s.splitHeader(file.slice(0, 65536));
            const fresh = await s.rewrapHeader(window.__k, header, recipient);
            const plain = await s.decrypt(window.__k, file);
            return { offset, fresh: Array.from(fresh), plain: plain.length }; }""",
                            [list(data), str(agency_identity.recipient)])
        assert got["offset"] == offset == len(header) and got["plain"] == size
        fresh = bytes(got["fresh"])
        assert age.parse_header(fresh).stanzas[0].type == "X25519" and len(age.parse_header(fresh).stanzas) == 1
        out = io.BytesIO()
        age.decrypt(io.BytesIO(fresh + data[offset:]), out, [agency_identity])
        assert out.getvalue() == plain
        with pytest.raises(age.AgeError):  # addressed to the agency only
            age.decrypt(io.BytesIO(fresh + data[offset:]), io.BytesIO(), [household])
        if shutil.which("age"):
            joined = tmp_path / "joined.age"
            joined.write_bytes(fresh + data[offset:])
            assert subprocess.run(["age", "-d", "-i", str(agency_key_file), str(joined)],
                                  capture_output=True, check=True).stdout == plain
    # a header this browser's key does not open is refused, not re-wrapped
    other = io.BytesIO()
    age.encrypt(io.BytesIO(b"x"), other, [household.recipient])
    refused = page.evaluate("""async ([bytes, recipient]) => { const s = await window.__doorbell.sealed();
        const { header } = s.splitHeader(new Uint8Array(bytes));
        return s.rewrapHeader(window.__k, header, recipient).then(() => 'rewrapped', (e) => e.message); }""",
                            [list(other.getvalue()), str(agency_identity.recipient)])
    assert "does not open" in refused

    # the frozen manifest vector (tests/vectors/manifest_v1.json) verifies; altered or another key does not
    vec = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "manifest_v1.json").read_text())
    mf.verify_manifest(mf.load_manifest(vec["manifest_json"]), vec["public_key"])  # the vector itself
    altered = vec["manifest_json"].replace('"trigger":"ring"', '"trigger":"motion"')
    assert altered != vec["manifest_json"]
    from doorbell.core.signing import generate_key, public_key_text

    verdicts = page.evaluate("""async ([good, altered, key, other]) => { const s = await window.__doorbell.sealed();
        const run = (text, k) => s.verifyManifest(new TextEncoder().encode(text), k)
            .then((m) => 'ok ' + m.clip_id, (e) => e.message);
        return [await run(good, key), await run(altered, key), await run(good, other)]; }""",
                             [vec["manifest_json"], altered, vec["public_key"], public_key_text(generate_key())])
    assert verdicts[0] == "ok " + vec["manifest"]["clip_id"]
    assert "altered after signing" in verdicts[1]
    assert "not this device's registered key" in verdicts[2]
