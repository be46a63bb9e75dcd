"""The sharing rules at the agency API: what is refused (rule 3), what an agency can and
cannot learn (rules 2, 5, 6), and what storage itself refuses (rule 5)."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from doorbell.clients.agency.client import AgencyClient, ApiError
from doorbell.core import protocol as p
from doorbell.core.bucket import clip_keys
from doorbell.core.config import CameraSection
from doorbell.core.signing import sign_decision
from tests.support.sharing import FAR, HOME_A, HOME_B, Env, iso, wait_for


def _err(env: Env, body: dict) -> ApiError:
    with pytest.raises(ApiError) as err:
        env.agency.create_request_raw(body)
    return err.value


def _without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


# ----------------------------------------------------------------------------- rule 3

@pytest.mark.parametrize("change, code", [
    (lambda b, e: {**b, "window_end": iso(e.clock() - 3 * 3600 + 12 * 3600 + 1)}, "window_too_long"),
    (lambda b, e: {**b, "window_start": iso(e.clock() - 30 * 3600), "window_end": iso(e.clock() - 6 * 3600)},
     "window_too_long"),
    (lambda b, e: {**b, "radius_m": 800.5}, "radius_too_large"),
    (lambda b, e: {**b, "radius_m": 5000}, "radius_too_large"),
    (lambda b, e: _without(b, "case_number"), "missing_field"),
    (lambda b, e: {**b, "case_number": "   "}, "missing_field"),
    (lambda b, e: _without(b, "legal_basis"), "missing_field"),
    (lambda b, e: {**b, "legal_basis": " "}, "missing_field"),
    (lambda b, e: _without(b, "attest_not_protest"), "missing_field"),
    (lambda b, e: {**b, "attest_not_protest": False}, "attestation_required"),
    (lambda b, e: _without(b, "reason"), "missing_field"),
    (lambda b, e: {**b, "window_end": b["window_start"]}, "window_invalid"),
    (lambda b, e: {**b, "window_start": iso(e.clock() + 3600), "window_end": iso(e.clock() + 7200)},
     "window_in_future"),
    (lambda b, e: {**b, "window_start": "2026-01-01T10:00:00"}, "invalid_field"),   # no time zone
    (lambda b, e: {**b, "radius_m": -5}, "invalid_field"),
    (lambda b, e: {**b, "lat": 91}, "invalid_field"),
    (lambda b, e: {**b, "owner_id": "owner-a"}, "invalid_field"),  # unknown fields are refused, not ignored
])
def test_rule3_requests_outside_the_limits_are_refused(sharing: Env, change, code) -> None:
    err = _err(sharing, change(sharing.request_body(), sharing))
    assert 400 <= err.status < 500 and err.code == code, err
    assert err.message
    assert sharing.agency.requests() == []  # nothing was created


def test_rule3_limits_are_inclusive_and_malformed_json_is_400(sharing: Env) -> None:
    body = sharing.request_body(start=sharing.clock() - 13 * 3600, hours=12, radius_m=800)
    assert sharing.agency.create_request_raw(body)["status"] == "pending"
    r = httpx.post(f"{sharing.service.url}/v1/requests", content=b"{not json",
                   headers={"Authorization": f"Bearer {sharing.agency_key}", "Content-Type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["error"]["code"] in ("invalid_json", "invalid_field")


# ----------------------------------------------------------------------------- rule 2

def _status_shape(st: dict) -> dict:
    return {k: v for k, v in st.items() if k not in ("id", "created_at", "expires_at", "window_start", "window_end")}


def test_rule2_no_match_all_denied_and_pending_look_the_same(sharing: Env) -> None:
    t0 = sharing.clock() - 2 * 3600
    sharing.put_clip("dev-a", t0)
    sharing.put_clip("dev-b", t0 + 60)
    owner_a = sharing.owner("owner-a")
    owner_b = sharing.owner("owner-b")
    # 1) nobody in the area; 2) only owner-a asked, who denies; 3) both asked, nobody has answered yet
    r_none = sharing.agency.create_request_raw(sharing.request_body(center=FAR, radius_m=100))
    r_deny = sharing.agency.create_request_raw(sharing.request_body(center=HOME_A, radius_m=100))
    r_pend = sharing.agency.create_request_raw(sharing.request_body(center=HOME_A, radius_m=800))
    assert _status_shape(r_none) == _status_shape(r_deny) == _status_shape(r_pend)
    assert set(r_none) == set(r_deny) == set(r_pend)
    owner_a.expect(p.request_topic("owner-a", r_deny["id"]))
    deny = sign_decision(sharing.keys["owner-a"], owner_id="owner-a", request_id=r_deny["id"], approve=False,
                         now=sharing.clock())
    owner_a.pub(p.decision_topic("owner-a", r_deny["id"]), deny.to_json())
    res = owner_a.expect(p.result_topic("owner-a", deny.nonce))
    assert json.loads(res.payload)["ok"] is True
    owner_b.expect(p.request_topic("owner-b", r_pend["id"]))

    raw = {}
    for name, r in (("none", r_none), ("deny", r_deny), ("pend", r_pend)):
        st = sharing.agency.status(r["id"])
        clips = sharing.agency.clips(r["id"])
        assert clips == {"request_id": r["id"], "clips": [], "sealed": []}
        raw[name] = _status_shape(st)
        text = json.dumps([st, clips])
        for secret in ("owner-a", "owner-b", "dev-a", "dev-b", "denied", "declin", "approved", "expired", "asked"):
            assert secret not in text
    assert raw["none"] == raw["deny"] == raw["pend"] == {"case_number": "2026-000123", "status": "pending",
                                                        "clips_shared": 0}
    listed = {r["id"]: _status_shape(r) for r in sharing.agency.requests()}
    assert len(set(json.dumps(v, sort_keys=True) for v in listed.values())) == 1

    sharing.clock.advance(72 * 3600 + 1)  # every request closes at its fixed time, answered or not
    closed = [_status_shape(sharing.agency.status(r["id"])) for r in (r_none, r_deny, r_pend)]
    assert closed[0] == closed[1] == closed[2] and closed[0]["status"] == "closed"


# ----------------------------------------------------------------------------- rule 5

def _approved_link(env: Env) -> tuple[str, dict, bytes]:
    clip_id, data = env.put_clip("dev-a", env.clock() - 2 * 3600)
    owner = env.owner("owner-a")
    rid = env.agency.create_request_raw(env.request_body())["id"]
    owner.expect(p.request_topic("owner-a", rid))
    d = sign_decision(env.keys["owner-a"], owner_id="owner-a", request_id=rid, approve=True, clip_ids=[clip_id],
                      now=env.clock())
    owner.pub(p.decision_topic("owner-a", rid), d.to_json())
    owner.expect(p.result_topic("owner-a", d.nonce))
    clip = env.agency.clips(rid)["clips"][0]
    return rid, clip, data


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


def test_rule5_tampered_and_expired_links_are_refused_by_the_s3_server(sharing: Env) -> None:
    rid, clip, data = _approved_link(sharing)
    url = clip["url"]
    assert httpx.get(url).content == data
    assert clip["url_expires_at"] - sharing.clock() <= sharing.service.cfg.sharing.link_ttl_s + 1
    tampered = [
        _with_query(url, **{"X-Amz-Expires": "604800"}),                     # stretch the lifetime
        url.replace(clip["clip_id"], clip["clip_id"][:-1] + ("0" if clip["clip_id"][-1] != "0" else "1")),
        _with_query(url, **{"X-Amz-Signature": "0" * 64}),
        urlunsplit(urlsplit(url)._replace(path="/" + sharing.s3.bucket + "/", query=urlsplit(url).query)),  # listing
    ]
    for bad in tampered:
        r = httpx.get(bad)
        assert r.status_code == 403, (bad, r.status_code)
        assert data not in r.content
    # No anonymous listing or reading of the bucket either.
    for bare in (f"{sharing.s3.endpoint_url}/{sharing.s3.bucket}", f"{sharing.s3.endpoint_url}/{sharing.s3.bucket}/"
                 + urlsplit(url).path.split("/", 2)[2]):
        assert httpx.get(bare).status_code == 403
    # Expiry is enforced by the server: a link made with the service's own presigner, 3 s lifetime
    # (SigV4 dates have 1 s resolution, so a 1 s link may already be dead when first used).
    key = urlsplit(url).path.split("/", 2)[2]
    short = sharing.core.presigner.get_url(key, 3)
    assert httpx.get(short).status_code == 200
    time.sleep(4.2)
    r = httpx.get(short)
    assert r.status_code == 403 and data not in r.content


def test_rule5_agency_never_gets_credentials_or_listings(sharing: Env) -> None:
    rid, clip, _ = _approved_link(sharing)
    secret = sharing.s3.secret_key
    everything = json.dumps([sharing.agency.status(rid), sharing.agency.clips(rid), sharing.agency.requests(),
                             sharing.agency.transparency()])
    assert secret not in everything and "secret" not in everything.lower()
    assert sharing.agency.download_url(rid, clip["clip_id"]).startswith(sharing.s3.endpoint_url)
    spec = httpx.get(f"{sharing.service.url}/openapi.json").json()
    assert not any("bucket" in path or "list" in path for path in spec["paths"])


# ----------------------------------------------------------------------------- auth, rate limit

def test_api_keys_and_rate_limit(sharing: Env) -> None:
    url = sharing.service.url
    assert httpx.get(f"{url}/v1/requests").status_code == 401
    r = httpx.get(f"{url}/v1/requests", headers={"Authorization": "Bearer dbk_000000000000_" + "x" * 43})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    wrong_secret = sharing.agency_key[:-4] + "AAAA"
    assert httpx.get(f"{url}/v1/requests", headers={"Authorization": f"Bearer {wrong_secret}"}).status_code == 401
    # The key is stored hashed: nothing in the database equals it.
    from sharing_service.models import Agency
    with sharing.core.db.read() as s:
        stored = [(a.key_id, a.key_hash) for a in s.query(Agency).all()]
    assert all(sharing.agency_key.split("_", 2)[2] not in h for _, h in stored)

    _, key = sharing.core.registry.add_agency("Tiny PD", rate_per_min=3)
    tiny = AgencyClient(url, key)
    for _ in range(3):
        tiny.requests()
    with pytest.raises(ApiError) as err:
        tiny.requests()
    assert err.value.status == 429 and err.value.code == "rate_limited"
    r = httpx.get(f"{url}/v1/requests", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    sharing.core.registry.set_agency_disabled("Tiny PD", True)
    time.sleep(0.1)
    assert httpx.get(f"{url}/v1/transparency").status_code == 200  # public
    tiny.close()


def test_agency_key_disabled_is_refused(sharing: Env) -> None:
    sharing.agency.requests()
    sharing.core.registry.set_agency_disabled("Springfield PD", True)
    with pytest.raises(ApiError) as err:
        sharing.agency.requests()
    assert err.value.status == 401


# ----------------------------------------------------------------------------- rule 6

def test_rule6_transparency_per_agency_monthly_without_home_identifiers(sharing: Env) -> None:
    t0 = sharing.clock() - 2 * 3600
    a_clips = [sharing.put_clip("dev-a", t0 + i * 60)[0] for i in range(2)]
    sharing.put_clip("dev-b", t0 + 30)
    owner_a, owner_b = sharing.owner("owner-a"), sharing.owner("owner-b")
    rid = sharing.agency.create_request_raw(sharing.request_body(radius_m=800))["id"]
    other = sharing.new_agency("Shelbyville PD")
    other.create_request_raw(sharing.request_body(center=FAR, radius_m=50))
    owner_a.expect(p.request_topic("owner-a", rid))
    owner_b.expect(p.request_topic("owner-b", rid))
    d = sign_decision(sharing.keys["owner-a"], owner_id="owner-a", request_id=rid, approve=True,
                      clip_ids=a_clips, now=sharing.clock())
    owner_a.pub(p.decision_topic("owner-a", rid), d.to_json())
    owner_a.expect(p.result_topic("owner-a", d.nonce))
    d = sign_decision(sharing.keys["owner-b"], owner_id="owner-b", request_id=rid, approve=False, now=sharing.clock())
    owner_b.pub(p.decision_topic("owner-b", rid), d.to_json())
    owner_b.expect(p.result_topic("owner-b", d.nonce))

    # The current month is not published while its requests can still change.
    assert sharing.agency.transparency()["rows"] == []
    sharing.clock.advance(35 * 86400)
    pub = sharing.agency.transparency()
    month = time.strftime("%Y-%m", time.gmtime(sharing.clock() - 35 * 86400))
    rows = {r["agency"]: r for r in pub["rows"]}
    assert set(rows) == {"Springfield PD", "Shelbyville PD"}
    assert rows["Springfield PD"]["month"] == month and rows["Springfield PD"]["requests"] == 1
    # Home counts carry stored noise (tests/sharing_service/test_rule2_transparency.py); the rest is exact.
    assert pub["epsilon_per_figure"] > 0 and pub["homes_counted_per_request"] >= 1
    assert rows["Springfield PD"]["clips_shared"] == 2
    assert rows["Shelbyville PD"]["clips_shared"] == 0 and rows["Shelbyville PD"]["requests"] == 1
    assert all(isinstance(r[k], int) and r[k] >= 0 for r in pub["rows"] for k in ("approvals", "denials"))
    cells, names, _ = sharing.core.transparency.exact()  # the operator's true figures
    exact = {names[a]: c for (a, _m), c in cells.items()}["Springfield PD"]
    assert (exact.approvals, exact.denials, exact.clips_shared) == (1, 1, 2)
    assert sharing.agency.transparency() == pub  # published once: reads never re-draw
    text = json.dumps(pub)
    for ident in ("owner-a", "owner-b", "dev-a", "dev-b", str(HOME_A[0]), str(HOME_B[0]), rid):
        assert ident not in text


# ----------------------------------------------------------------------------- rule 7

def test_rule7_no_audio_by_default_and_no_face_or_person_search(sharing: Env) -> None:
    """The sharing side has no person/face/plate search: the index holds times and keys only."""
    assert CameraSection().audio is False
    spec = httpx.get(f"{sharing.service.url}/openapi.json").json()
    words = json.dumps(spec).lower()
    for banned in ("face", "recogni", "person", "plate", "biometric", "audio"):
        assert banned not in words
    from sharing_service.models import Clip
    assert set(Clip.__table__.columns.keys()) == {"id", "device_id", "trigger", "started_at", "ended_at", "key",
                                                  "snapshot_key", "sha256", "size", "indexed_at"}


# ----------------------------------------------------------------------------- clip index

def test_clip_index_validates_device_and_payload(sharing: Env) -> None:
    admin = sharing.mqtt("admin")
    good, _ = sharing.put_clip("dev-a", sharing.clock() - 3600, publish=False)
    base = {"clip_id": good, "device_id": "dev-b", "trigger": "ring", "started_at": sharing.clock() - 3600,
            "ended_at": sharing.clock() - 3590, "trigger_at": sharing.clock() - 3596, "pre_roll_s": 4,
            "key": clip_keys("", "dev-a", good, sharing.clock() - 3600).video, "sha256": "0" * 64, "size": 10}
    admin.pub(p.clips_topic("dev-a"), json.dumps(base))                       # device mismatch
    admin.pub(p.clips_topic("dev-a"), b"\xff not json")                        # garbage
    admin.pub(p.clips_topic("dev-zzz"), json.dumps({**base, "device_id": "dev-zzz"}))  # unknown device
    admin.pub(p.clips_topic("dev-a"), json.dumps({**base, "device_id": "dev-a", "size": 0}))  # invalid
    for foreign in ("dev-b/2026/01/01/x.mp4", "dev-a/../dev-b/x.mp4", "dev-ab/x.mp4"):  # another device's object
        admin.pub(p.clips_topic("dev-a"), json.dumps({**base, "device_id": "dev-a", "key": foreign}))
    admin.pub(p.clips_topic("dev-a"), json.dumps({**base, "device_id": "dev-a", "snapshot_key": "dev-b/s.jpg"}))
    # dev-b cannot publish on dev-a's topic at all (broker ACL): the PUBACK says not authorised.
    rc = sharing.mqtt("dev-b").pub(p.clips_topic("dev-a"), json.dumps(base))
    assert getattr(rc, "is_failure", False)
    ok = json.dumps({**base, "device_id": "dev-a"})
    admin.pub(p.clips_topic("dev-a"), ok)
    wait_for(lambda: sharing.indexed(good), what="valid clip indexed")
    from sharing_service.models import Clip
    with sharing.core.db.read() as s:
        assert s.get(Clip, good).device_id == "dev-a"
        assert s.query(Clip).count() == 1
    admin.pub(p.clips_topic("dev-a"), ok)  # QoS 1 redelivery is harmless
    later, _ = sharing.put_clip("dev-a", sharing.clock() - 1800)  # handled after the duplicate (one worker, in order)
    with sharing.core.db.read() as s:
        assert s.query(Clip).count() == 2
        assert s.get(Clip, good).key == base["key"]
