"""Issue 12 end to end with encryption on: the honest-but-curious cloud, consent that releases keys.

Real Mosquitto, SeaweedFS and sharing service; real sealed clips (real camera
footage through the spool's age writer, signed manifests) uploaded under
opaque names and announced as the agent does; the owner's app (its own clip
index, re-wrapped headers, signed decision) and the agency client (ranged
payload + header, decrypt, device signature). The "cloud" is everything the
operator holds: the whole database, the whole bucket with admin credentials,
and a subscriber on ``#``.
"""
from __future__ import annotations

import base64
import io
import json
import queue
import shutil
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from doorbell.clients.agency.cli import download_all
from doorbell.clients.owner.app import OwnerApp, OwnerError, load_owner_config
from doorbell.clients.owner.keys import ensure_identity
from doorbell.core import age
from doorbell.core import protocol as p
from doorbell.core.signing import generate_key, public_key_text
from doorbell.core.spool import SEALED_FILES, Sealing, Spool
from tests.support.clients import HOME_A, ClientEnv, iso
from tests.support.polling import wait_for

MEDIA_SIGNATURES = (b"ftyp", b"moof", b"mdat", b"\xff\xd8\xff")


def seal_and_upload(env: ClientEnv, spool: Spool, seal: Sealing, device: str, t: float, video: bytes,
                    snapshot: bytes) -> dict[str, Any]:
    """What the firmware and agent do for one clip with encryption on (same spool code, same announcement)."""
    st = spool.stage_clip(ts=t, sealing=seal)
    sink = st.open_video()
    for i in range(0, len(video), 65536):
        sink.write(video[i:i + 65536])
    st.write_snapshot(snapshot)
    clip = st.publish(device_id=device, trigger="ring", started_at=t, ended_at=t + 10, trigger_at=t + 4,
                      pre_roll_s=4.0, duration_s=10.0)
    loaded = spool.get_clip(clip.clip_id)
    msg = loaded.sealed_message("", device)
    s3 = env.s3.client()
    for kind, obj in msg.objects.items():
        s3.put_object(Bucket=env.s3.bucket, Key=obj.key, Body=(loaded.path / SEALED_FILES[kind]).read_bytes())
    dev = env.mqtt(device)
    dev.pub(p.clips_topic(device), msg.to_json(), qos=1)
    dev.close()
    return {"clip_id": clip.clip_id, "t": t, "video": video, "snapshot": snapshot, "objects": msg.objects}


def time_encodings(t: float, clip_id: str) -> list[bytes]:
    """A clip time as anything in the cloud might spell it."""
    dt = datetime.fromtimestamp(t, UTC)
    return [s.encode() for s in {
        clip_id, clip_id[:15], repr(t), f"{t:.3f}", f"{t:.1f}", str(int(t)), str(int(t * 1000)),
        dt.isoformat()[:19], dt.strftime("%Y-%m-%dT%H:%M:%S"), dt.strftime("%Y%m%dT%H%M%S"),
        iso(t)[:19]}]


def decodes_as_media(data: bytes) -> bool:
    """Whether PyAV or OpenCV can make a frame or an image out of these bytes."""
    import av
    import cv2
    import numpy as np

    try:
        with av.open(io.BytesIO(data)) as c:
            for _ in c.decode(video=0):
                return True
    except Exception:  # noqa: BLE001 - any failure to decode is the expected outcome
        pass
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return img is not None


@pytest.fixture
def sealed_env(clients: ClientEnv, tmp_path: Path) -> Any:
    """owner-a's and owner-b's devices seal (registered device keys), the agency has an age key."""
    core = clients.core
    device_keys = {d: generate_key() for d in ("dev-a", "dev-b")}
    for d, k in device_keys.items():
        core.registry.set_device_key(d, public_key_text(k))
    agency_identity = age.generate_identity()
    agency_key_file = tmp_path / "agency-key.txt"
    age.save_identity(agency_identity, agency_key_file)
    core.registry.set_agency_recipient("Springfield PD", str(agency_identity.recipient))
    owner_identity, _ = ensure_identity(clients.key_file)
    owner_b = age.generate_identity()
    seals = {"dev-a": Sealing((owner_identity.recipient,), device_keys["dev-a"]),
             "dev-b": Sealing((owner_b.recipient,), device_keys["dev-b"])}
    return clients, seals, agency_key_file, device_keys


def test_the_honest_but_curious_cloud_learns_nothing_and_consent_releases_exactly_the_approved_clip(
        sealed_env: Any, tmp_path: Path, sample_videos: list[Path]) -> None:
    env, seals, agency_key_file, _device_keys = sealed_env
    from doorbell.clients.agency.client import AgencyClient

    # The cloud's broker view: everything on '#', from before the first clip.
    spy = env.mqtt("admin")
    spy.sub("#", qos=1)
    # The session's SeaweedFS bucket holds other tests' objects (some deliberately in clear): everything
    # this home put there during this test is what the storage provider learns about it.
    earlier = set(_whole_bucket(env))

    cfg = load_owner_config(str(env.owner_config))
    spool = Spool(tmp_path / "spool")
    now = time.time()
    window_start = now - 3 * 3600
    with OwnerApp(cfg) as app, app.clip_index() as index:
        assert app.sync_clips(index, idle_s=0.3) == 0  # opens the persistent clip session
        footage = [v.read_bytes() for v in sample_videos[:2]]
        import cv2
        ok, jpeg = cv2.imencode(".jpg", (cv2.resize(cv2.imread(str(_frame(sample_videos[0], tmp_path))),
                                                    (160, 120))))
        assert ok
        snap = jpeg.tobytes()
        shared = seal_and_upload(env, spool, seals["dev-a"], "dev-a", window_start + 600, footage[0], snap)
        kept = seal_and_upload(env, spool, seals["dev-a"], "dev-a", window_start + 1800, footage[1], snap)
        outside = seal_and_upload(env, spool, seals["dev-a"], "dev-a", window_start - 6 * 3600, footage[1], snap)
        other_home = seal_and_upload(env, spool, seals["dev-b"], "dev-b", window_start + 900, footage[0], snap)
        unshared = [kept, outside, other_home]

        # The service indexed nothing: it cannot (the times are encrypted) and does not try.
        assert app.sync_clips(index, idle_s=1.0) == 3          # owner-a's three; dev-b's is not ours to open
        with AgencyClient(env.service.url, _api_key(env)) as agency:
            req = agency.create_request(case_number="2026-7", legal_basis="warrant 12", attest_not_protest=True,
                                        window_start=window_start, window_end=window_start + 2 * 3600,
                                        lat=HOME_A[0], lon=HOME_A[1], radius_m=500, reason="burglary")
            rid = req["id"]
            pending = wait_for(lambda: [r for r in app.pending_requests(5) if r["request_id"] == rid],
                               what="request reaches owner-a by area")[0]
            assert pending["clips"] == [] and pending["agency_recipient"]
            offered = app.sealed_candidates(pending, index)
            assert [c["clip_id"] for c in offered] == [shared["clip_id"], kept["clip_id"]]  # window matched locally

            # A header swapped in from another clip fails the signed-decision check at the service (the
            # decision names only the clip being shared: the other clip's header is re-wrapped locally).
            both = app.release_for(pending, [shared["clip_id"], kept["clip_id"]], index)
            sid, kid = shared["clip_id"], kept["clip_id"]
            from doorbell.core.signing import Release, sign_decision
            swapped = Release(agency_recipient=both.agency_recipient, released={sid: both.released[sid]},
                              headers={sid: {**both.headers[sid], "video": both.headers[kid]["video"]}})
            forged = sign_decision(app.key(), owner_id="owner-a", request_id=rid, approve=True, clip_ids=[sid],
                                   release=swapped)
            res = app.send_signed(p.decision_topic("owner-a", rid), forged)
            assert not res.ok and "not the one the owner signed" in (res.reason or "")

            # The owner approves one clip; its keys are re-wrapped for the agency's registered key.
            rel = app.release_for(pending, [shared["clip_id"]], index)
            res = app.decide(rid, True, [shared["clip_id"]], 7, release=rel)
            assert res.ok, res.reason

            listing = agency.clips(rid)
            assert listing["clips"] == [] and [c["clip_id"] for c in listing["sealed"]] == [shared["clip_id"]]
            # Rule 2: nothing in the answer or its links names the home (issue 15 finding 4).
            text = json.dumps(listing)
            for home in ("dev-a", "owner-a", "/dev-a/", "devices/"):
                assert home not in text, home
            for obj in listing["sealed"][0]["objects"].values():
                assert "/_shared/" in obj["url"]
            out = tmp_path / "agency-out"
            results = download_all(agency, rid, out, identity_file=agency_key_file)
            assert [r["ok"] for r in results] == [True], results
            assert (out / f"{shared['clip_id']}.mp4").read_bytes() == shared["video"]
            assert (out / f"{shared['clip_id']}.jpg").read_bytes() == shared["snapshot"]
            # The same header + payload bytes open with the stock age CLI.
            item = listing["sealed"][0]["objects"]["video"]
            if shutil.which("age"):
                import httpx
                payload = httpx.get(item["url"], headers={"Range": f"bytes={item['payload_offset']}-"}).content
                joined = tmp_path / "joined.age"
                joined.write_bytes(base64.b64decode(item["header"]) + payload)
                opened = subprocess.run(["age", "-d", "-i", str(agency_key_file), str(joined)],
                                        capture_output=True, check=True).stdout
                assert opened == shared["video"]

            # Nothing else decrypts for the agency: every object in the bucket is the household's.
            identity = age.load_identities(agency_key_file)
            bucket = {k: v for k, v in _whole_bucket(env).items() if k not in earlier}
            copies = {k for k in bucket if "/_shared/" in k or k.startswith("_shared/")}
            assert len(copies) == 3  # the shared clip's video, snapshot and manifest, copied under opaque names
            assert len(bucket) - len(copies) == 4 * 4  # video, snapshot, metadata, manifest of each clip
            for data in bucket.values():
                with pytest.raises(age.AgeError):
                    age.decrypt(io.BytesIO(data), io.BytesIO(), identity)
            # ...nor does any released header open another clip's payload.
            for c in unshared:
                data = bucket[c["objects"]["video"].key]
                hdr, off = age.header_and_payload_offset(io.BytesIO(data))
                with pytest.raises(age.AgeError):
                    age.decrypt(io.BytesIO(base64.b64decode(item["header"]) + data[off:]), io.BytesIO(), identity)

            # Revoke: no new links.
            grant = app.grants()[0]
            assert grant.clip_ids == [shared["clip_id"]]
            assert app.revoke(grant.grant_id).ok
            assert agency.clips(rid)["sealed"] == []

    # ---- the honest-but-curious cloud: database + bucket (admin) + broker '#'
    payloads = _drain(spy)
    spy.close()
    assert sum(b'"sealed":true' in m for m in payloads) == 4  # the spy did see every announcement
    db_text = _whole_database(env)
    assert b"AGE-SECRET-KEY" not in db_text and all(b"AGE-SECRET-KEY" not in m for m in payloads)
    for key, data in bucket.items():
        assert not any(sig in data[:64] for sig in MEDIA_SIGNATURES), key
        assert b"ftyp" not in data and b"moof" not in data, key
        assert data.startswith(b"age-encryption.org/v1\n"), key
        assert not decodes_as_media(data), key
    for c in unshared:
        for enc in time_encodings(c["t"], c["clip_id"]):
            assert enc not in db_text, (c["clip_id"], enc)
            for key, data in bucket.items():
                assert enc not in key.encode() and enc not in data, (c["clip_id"], enc, key)
            for m in payloads:
                assert enc not in m, (c["clip_id"], enc, m[:200])
        for m in payloads:  # no frame or snapshot crossed the broker either
            assert c["snapshot"][:64] not in m and c["video"][:4096] not in m
    assert not any(decodes_as_media(m) for m in payloads if len(m) > 100)


def _frame(video: Path, tmp: Path) -> Path:
    import cv2
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    out = tmp / "frame.png"
    cv2.imwrite(str(out), frame)
    return out


def _api_key(env: ClientEnv) -> str:
    import yaml
    return str(yaml.safe_load(env.agency_config.read_text())["api_key"])


def _whole_bucket(env: ClientEnv) -> dict[str, bytes]:
    s3 = env.s3.client()
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env.s3.bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=env.s3.bucket, Key=o["Key"])["Body"].read()
    return out


def _whole_database(env: ClientEnv) -> bytes:
    """Every row of every table, as text, plus the raw file (nothing hides in a blob or a free page)."""
    path = Path(str(make_url(env.core.db.url).database))
    rows = []
    with sqlite3.connect(path) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows += [json.dumps(r, default=str) for r in conn.execute(f'SELECT * FROM "{table}"')]
    raw = path.read_bytes() + b"".join(Path(str(path) + s).read_bytes() for s in ("-wal",)
                                       if Path(str(path) + s).exists())
    return "\n".join(rows).encode() + raw


def _drain(probe: Any) -> list[bytes]:
    out = []
    while True:
        try:
            msg = probe.inbox.get(timeout=1.0)
        except queue.Empty:
            return out
        out.append(bytes(msg.payload))


def test_owner_and_agency_clis_share_a_sealed_clip_and_the_prompt_says_keys_cannot_be_recalled(
        sealed_env: Any, tmp_path: Path) -> None:
    from tests.support.clients import run_cli

    env, seals, agency_key_file, _k = sealed_env
    spool = Spool(tmp_path / "spool")
    oc, ac = ["--config", str(env.owner_config)], ["--config", str(env.agency_config)]
    start = time.time() - 3 * 3600
    cfg = load_owner_config(str(env.owner_config))
    with OwnerApp(cfg) as app, app.clip_index() as index:
        app.sync_clips(index, idle_s=0.3)  # the app's persistent clip session exists before the clips
    clip = seal_and_upload(env, spool, seals["dev-a"], "dev-a", start + 60, b"\x00\x00\x00\x18ftypisom" + bytes(9000),
                           b"\xff\xd8\xff\xe0snap")
    r = run_cli(["agency", "request", "create", *ac, "--case", "C-1", "--basis", "warrant", "--attest-not-protest",
                 "--start", iso(start), "--end", iso(start + 3600), "--lat", str(HOME_A[0]), "--lon",
                 str(HOME_A[1]), "--radius", "300", "--reason", "theft", "--json"])
    assert r.code == 0, r.err
    rid = json.loads(r.out)["id"]
    listed = wait_for(lambda: (lambda x: x if clip["clip_id"] in x.out else None)(
        run_cli(["owner", "requests", *oc])), what="request with the locally matched clip")
    assert rid in listed.out
    no = run_cli(["owner", "approve", rid, *oc], stdin="n\n")
    assert no.code == 1 and "cannot be recalled" in no.out and "Nothing was sent" in no.out
    yes = run_cli(["owner", "approve", rid, "--yes", *oc])
    assert yes.code == 0, yes.err + yes.out
    out = tmp_path / "dl"
    got = run_cli(["agency", "download", rid, *ac, "--out", str(out), "--identity", str(agency_key_file)])
    assert got.code == 0, got.err
    assert (out / f"{clip['clip_id']}.mp4").read_bytes() == clip["video"]
    # Without the agency's key nothing opens, and the CLI says why.
    missing = run_cli(["agency", "download", rid, *ac, "--out", str(out), "--identity", str(tmp_path / "none.txt")])
    assert missing.code == 2 and "cannot be read" in missing.err
    k = run_cli(["agency", "keys", "init", "--identity", str(tmp_path / "new-agency.txt")])
    assert k.code == 0 and k.out.strip().splitlines()[-1].startswith("age1")


def test_the_service_refuses_releases_it_must_not_accept(sealed_env: Any, tmp_path: Path) -> None:
    """Attacks with valid credentials: another home's objects, another recipient, a device not registered
    as sealing, and an object link to another owner's clip."""
    from doorbell.clients.agency.client import AgencyClient
    from doorbell.core.release import SealedSource, build_release
    from doorbell.core.signing import sign_decision

    env, seals, _agency_key_file, _k = sealed_env
    spool = Spool(tmp_path / "spool")
    start = time.time() - 3 * 3600
    cfg = load_owner_config(str(env.owner_config))
    with OwnerApp(cfg) as app, app.clip_index() as index:
        app.sync_clips(index, idle_s=0.3)
        mine = seal_and_upload(env, spool, seals["dev-a"], "dev-a", start + 60, b"\x00" * 5000, b"\xff\xd8\xffa")
        # owner-b's clip, sealed to owner-a's key too (say a shared household key): still not owner-a's to share
        theirs = seal_and_upload(env, spool, Sealing(seals["dev-a"].recipients, seals["dev-b"].device_key),
                                 "dev-b", start + 120, b"\x01" * 5000, b"\xff\xd8\xffb")
        app.sync_clips(index, idle_s=0.5)
        with AgencyClient(env.service.url, _api_key(env)) as agency:
            rid = agency.create_request(case_number="C-9", legal_basis="warrant", attest_not_protest=True,
                                        window_start=start, window_end=start + 3600, lat=HOME_A[0], lon=HOME_A[1],
                                        radius_m=100, reason="theft")["id"]
            req = wait_until_pending(app, rid)
            identities = app.identities()

            def sources(c: dict[str, Any]) -> dict[str, SealedSource]:
                out = {}
                for kind in ("video", "snapshot", "manifest"):
                    data = _whole_bucket_key(env, c["objects"][kind].key)
                    out[kind] = SealedSource(key=c["objects"][kind].key,
                                             header=age.header_and_payload_offset(io.BytesIO(data))[0])
                return out

            def send(clip_ids: list[str], rel: Any) -> p.Result:
                d = sign_decision(app.key(), owner_id="owner-a", request_id=rid, approve=True, clip_ids=clip_ids,
                                  release=rel)
                return app.send_signed(p.decision_topic("owner-a", rid), d)

            # another home's objects, under a clip id the owner chose
            rel = build_release({theirs["clip_id"]: sources(theirs)}, identities, req["agency_recipient"])
            res = send([theirs["clip_id"]], rel)
            assert not res.ok and "not one sealed clip of one of your devices" in (res.reason or "")
            # keys addressed to a recipient other than the agency's registered one
            rel = build_release({mine["clip_id"]: sources(mine)}, identities, str(age.generate_identity().recipient))
            res = send([mine["clip_id"]], rel)
            assert not res.ok and "registered" in (res.reason or "")
            # the object link RPC presigns only the owner's own sealed objects
            with pytest.raises(OwnerError, match="no such sealed object"):
                app.call(p.ObjectLinkParams(key=theirs["objects"]["video"].key), p.ObjectLink)
            # a device not registered as sealing cannot have keys released for it
            with env.core.db.write() as s:
                from sharing_service.models import Device
                s.get(Device, "dev-a").public_key = None
            rel = build_release({mine["clip_id"]: sources(mine)}, identities, req["agency_recipient"])
            res = send([mine["clip_id"]], rel)
            assert not res.ok and "not registered as sealing" in (res.reason or "")
            assert agency.clips(rid)["sealed"] == [] and agency.status(rid)["clips_shared"] == 0


def wait_until_pending(app: OwnerApp, rid: str) -> dict[str, Any]:
    return wait_for(lambda: next((r for r in app.pending_requests(5) if r["request_id"] == rid), None),
                    what="the request at the owner")


def _whole_bucket_key(env: ClientEnv, key: str) -> bytes:
    return bytes(env.s3.client().get_object(Bucket=env.s3.bucket, Key=key)["Body"].read())


def test_an_announcement_taken_by_any_command_still_reaches_the_clip_index(sealed_env: Any, tmp_path: Path) -> None:
    """The app's session is persistent: whichever command connects next gets the queued announcements
    (and acknowledges them), so they are kept on disk until a sync indexes them."""
    from tests.support.clients import run_cli

    env, seals, _agency_key_file, _k = sealed_env
    cfg = load_owner_config(str(env.owner_config))
    with OwnerApp(cfg):
        pass  # the persistent session exists; the app is closed now
    clip = seal_and_upload(env, Spool(tmp_path / "spool"), seals["dev-a"], "dev-a", time.time() - 600,
                           b"\x00" * 3000, b"\xff\xd8\xffq")
    r = run_cli(["owner", "grants", "--config", str(env.owner_config)])  # knows nothing of clip indexes
    assert r.code == 0, r.err
    app = OwnerApp(cfg)
    assert app.pending_clips_path().exists()  # the broker handed the announcement to `grants`; kept
    with app, app.clip_index() as index:
        assert app.sync_clips(index, idle_s=0.5) == 1
        assert index.get(clip["clip_id"]) is not None
    assert not app.pending_clips_path().exists()
