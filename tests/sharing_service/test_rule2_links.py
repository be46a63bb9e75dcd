"""Rule 2 at the links (issue 15 finding 4): an agency holding valid credentials collects
everything it gets for clips from two homes (the JSON, each presigned URL, the S3 server's
answer) and finds no device id, owner id or per-home constant, and nothing that groups
the clips by home."""
from __future__ import annotations

import email.utils
import time
from urllib.parse import parse_qsl, urlsplit

import httpx

from doorbell.core import protocol as p
from doorbell.core.bucket import SHARED_DIR, clip_keys
from doorbell.core.signing import sign_decision, sign_revoke
from sharing_service.models import Clip
from tests.support.sharing import Env, wait_for


def _decide(env: Env, c, owner_id: str, rid: str, clip_ids: list[str]) -> p.Result:  # type: ignore[no-untyped-def]
    """Owner ``owner_id`` (probe ``c``: one connection per login) approves ``clip_ids``."""
    c.expect(p.request_topic(owner_id, rid))
    d = sign_decision(env.keys[owner_id], owner_id=owner_id, request_id=rid, approve=True, clip_ids=clip_ids,
                      now=env.clock())
    c.pub(p.decision_topic(owner_id, rid), d.to_json())
    res = p.Result.model_validate_json(c.expect(p.result_topic(owner_id, d.nonce)).payload)
    assert res.ok, res
    return res


def _features(clip: dict, resp: httpx.Response) -> dict[str, str]:
    """Everything the agency sees about one clip, as name -> value."""
    u = urlsplit(clip["url"])
    f = {f"json.{k}": str(v) for k, v in clip.items() if k != "url"}
    f.update({"url.host": u.netloc, "url.path": u.path})
    f.update({f"url.path[{i}]": seg for i, seg in enumerate(u.path.split("/"))})
    f.update({f"url.q.{k}": v for k, v in parse_qsl(u.query)})
    f.update({f"header.{k.lower()}": v for k, v in resp.headers.items()})
    return f


def _groups_by_home(values: dict[str, str], home_of: dict[str, str]) -> bool:
    """True if equal values exactly coincide with equal homes (the feature links clips to homes)."""
    ids = sorted(values)
    same_value = {(a, b) for a in ids for b in ids if a < b and values[a] == values[b]}
    same_home = {(a, b) for a in ids for b in ids if a < b and home_of[a] == home_of[b]}
    return bool(same_home) and same_value == same_home


def test_rule2_links_name_no_home_and_do_not_group_clips_by_home(sharing: Env) -> None:
    t0 = sharing.clock() - 2 * 3600
    home_of: dict[str, str] = {}
    s3c = sharing.s3.client()
    for dev in ("dev-a", "dev-b"):
        for i in range(2):
            cid, data = sharing.put_clip(dev, t0 + i * 90 + (dev == "dev-b") * 30)
            home_of[cid] = dev
            # what an uploader may attach to the device's object must not follow the clip to the agency
            key = clip_keys("", dev, cid, t0 + i * 90 + (dev == "dev-b") * 30).video
            s3c.put_object(Bucket=sharing.s3.bucket, Key=key, Body=data, ContentType="video/mp4",
                           Metadata={"device": dev, "owner": "owner-" + dev[-1]})
    rid = sharing.agency.create_request_raw(sharing.request_body(radius_m=800))["id"]
    grants = {}
    for dev, owner in (("dev-a", "owner-a"), ("dev-b", "owner-b")):
        mine = sorted(c for c, d in home_of.items() if d == dev)
        grants[owner] = _decide(sharing, sharing.owner(owner), owner, rid, mine).grant_id
        time.sleep(1.1)  # different approval times (and grant expiries) for the two homes

    before = time.time()
    listing = sharing.agency.clips(rid)["clips"]
    after = time.time()
    assert sorted(c["clip_id"] for c in listing) == sorted(home_of)
    feats: dict[str, dict[str, str]] = {}
    with httpx.Client(timeout=30) as http:
        for c in listing:
            r = http.get(c["url"])
            assert r.status_code == 200, r.text[:200]
            feats[c["clip_id"]] = _features(c, r)
            redirect = sharing.agency.download_url(rid, c["clip_id"])
            assert urlsplit(redirect).path == urlsplit(c["url"]).path

    secrets_of_home = ["dev-a", "dev-b", "owner-a", "owner-b", grants["owner-a"], grants["owner-b"]]
    with sharing.core.db.read() as s:
        secrets_of_home += [s.get(Clip, c).key for c in home_of]  # type: ignore[union-attr]
    for cid, f in feats.items():
        text = "\n".join(f"{k}={v}" for k, v in f.items())
        for ident in secrets_of_home:
            assert ident not in text, f"{ident!r} visible to the agency for clip {cid}"
        assert f["url.path"].split("/", 2)[2].startswith(SHARED_DIR)  # /{bucket}/_shared/{token}
        assert f["header.content-type"] == "application/octet-stream"
        assert not any(k.startswith("header.x-amz-meta") for k in f)
        # Last-Modified is the time of the agency's own listing call (the copy is made then), not
        # anything about the home: checked here, and left out of the grouping check below.
        lm = email.utils.parsedate_to_datetime(f["header.last-modified"]).timestamp()
        assert int(before) - 1 <= lm <= after + 1
    skip = {"header.last-modified", "header.date"}
    names = set.intersection(*(set(f) for f in feats.values()))
    assert names == set.union(*(set(f) for f in feats.values())), "features differ between clips"
    linking = [n for n in sorted(names - skip)
               if _groups_by_home({c: feats[c][n] for c in feats}, home_of)]
    assert linking == [], f"these fields group the clips by home: {linking}"


def test_rule2_copies_of_a_revoked_grant_are_deleted(sharing: Env) -> None:
    """A revoke ends links already handed out at the next sweep, not at their own expiry."""
    t0 = sharing.clock() - 2 * 3600
    a, _ = sharing.put_clip("dev-a", t0)
    b, _ = sharing.put_clip("dev-b", t0 + 60)
    rid = sharing.agency.create_request_raw(sharing.request_body(radius_m=800))["id"]
    owner = sharing.owner("owner-a")
    ga = _decide(sharing, owner, "owner-a", rid, [a]).grant_id
    _decide(sharing, sharing.owner("owner-b"), "owner-b", rid, [b])
    urls = {c["clip_id"]: c["url"] for c in sharing.agency.clips(rid)["clips"]}
    assert httpx.get(urls[a]).status_code == 200
    rv = sign_revoke(sharing.keys["owner-a"], owner_id="owner-a", grant_id=ga, now=sharing.clock())
    owner.pub(p.revoke_topic("owner-a", ga), rv.to_json())
    owner.expect(p.result_topic("owner-a", rv.nonce))
    sharing.core.sweeper.sweep()
    wait_for(lambda: httpx.get(urls[a]).status_code == 404, what="revoked copy gone")
    assert httpx.get(urls[b]).status_code == 200  # the other home's grant is untouched
    assert [c["clip_id"] for c in sharing.agency.clips(rid)["clips"]] == [b]
    # the device's own object is never touched by sharing
    key = clip_keys("", "dev-a", a, t0).video
    assert sharing.s3.client().head_object(Bucket=sharing.s3.bucket, Key=key)["ContentLength"] > 0
