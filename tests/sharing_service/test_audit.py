"""Rule 5's audit log: hash-chained, verifiable by the service and by each owner (over
MQTT RPC) without seeing other owners' rows; edits and deletions are detected."""
from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from doorbell.core import protocol as p
from doorbell.core.auditchain import GENESIS, verify_owner_view, verify_rows
from doorbell.core.signing import sign_decision, sign_revoke
from tests.support.sharing import Env


def rpc(env: Env, client, owner_id: str, method: str, **params):  # type: ignore[no-untyped-def]
    call_id = p.new_token()
    client.pub(p.rpc_topic(owner_id, call_id), p.RpcCall(method=method, params=params).to_json())
    msg = client.expect(p.rpc_reply_topic(owner_id, call_id), wait=10)
    return p.decode(p.RpcReply, msg.payload, "rpc_reply")


@pytest.fixture
def history(sharing: Env):  # type: ignore[no-untyped-def]
    """Two owners asked; owner-a approves and later revokes, owner-b denies; links issued."""
    t0 = sharing.clock() - 2 * 3600
    a_ids = [sharing.put_clip("dev-a", t0 + i * 60)[0] for i in range(2)]
    sharing.put_clip("dev-b", t0)
    oa, ob = sharing.owner("owner-a"), sharing.owner("owner-b")
    rid = sharing.agency.create_request_raw(sharing.request_body(radius_m=800))["id"]
    oa.expect(p.request_topic("owner-a", rid))
    ob.expect(p.request_topic("owner-b", rid))
    d = sign_decision(sharing.keys["owner-a"], owner_id="owner-a", request_id=rid, approve=True, clip_ids=a_ids,
                      now=sharing.clock())
    oa.pub(p.decision_topic("owner-a", rid), d.to_json())
    gid = json.loads(oa.expect(p.result_topic("owner-a", d.nonce)).payload)["grant_id"]
    d = sign_decision(sharing.keys["owner-b"], owner_id="owner-b", request_id=rid, approve=False, now=sharing.clock())
    ob.pub(p.decision_topic("owner-b", rid), d.to_json())
    ob.expect(p.result_topic("owner-b", d.nonce))
    sharing.agency.clips(rid)
    sharing.agency.download_url(rid, a_ids[0])
    r = sign_revoke(sharing.keys["owner-a"], owner_id="owner-a", grant_id=gid, now=sharing.clock())
    oa.pub(p.revoke_topic("owner-a", gid), r.to_json())
    oa.expect(p.result_topic("owner-a", r.nonce))
    return {"rid": rid, "gid": gid, "a_ids": a_ids, "oa": oa, "ob": ob}


def _db_path(env: Env) -> str:
    return env.service.cfg.sharing.database_url.split("///", 1)[1]


def test_audit_records_every_step_and_verifies(sharing: Env, history) -> None:
    report = sharing.core.registry.verify_audit()
    assert report["ok"] and report["checked"] == report["head_seq"]
    with sqlite3.connect(_db_path(sharing)) as c:
        kinds = [k for (k,) in c.execute("select kind from audit order by seq")]
    for kind in ("request", "delivery", "decision", "grant", "link_issued", "download", "revocation"):
        assert kind in kinds, kind
    assert kinds.count("delivery") == 2 and kinds.count("decision") == 2 and kinds.count("link_issued") == 2


def test_audit_detects_edited_deleted_and_truncated_rows(sharing: Env, history) -> None:
    db = _db_path(sharing)
    with sqlite3.connect(db) as c:
        seq, details = c.execute("select seq, details from audit where kind='download'").fetchone()
        c.execute("update audit set details=? where seq=?", (details.replace("url_expires_at", "url_expires_aX"), seq))
    report = sharing.core.registry.verify_audit()
    assert not report["ok"] and report["bad_seq"] == seq and "edited" in report["reason"]
    with sqlite3.connect(db) as c:  # put it back, then delete a middle row instead
        c.execute("update audit set details=? where seq=?", (details, seq))
    assert sharing.core.registry.verify_audit()["ok"]
    with sqlite3.connect(db) as c:
        c.execute("delete from audit where seq=?", (seq,))
    report = sharing.core.registry.verify_audit()
    assert not report["ok"] and report["bad_seq"] == seq
    # A forger who recomputes every later hash still cannot hide it from an owner who kept the head.


def test_audit_detects_deleted_tail(sharing: Env, history) -> None:
    with sqlite3.connect(_db_path(sharing)) as c:
        last = c.execute("select max(seq) from audit").fetchone()[0]
        c.execute("delete from audit where seq=?", (last,))
    report = sharing.core.registry.verify_audit()
    assert not report["ok"] and "rows deleted" in report["reason"]


def test_owner_fetches_and_verifies_its_own_audit_view(sharing: Env, history) -> None:
    view_a = rpc(sharing, history["oa"], "owner-a", "audit")
    assert view_a.ok
    va = view_a.result
    assert va["complete"] and va["start_prev"] == GENESIS
    report = verify_owner_view(va, "owner-a")
    assert report.ok, report.problems
    assert report.head_hash == va["head"]["hash"] == sharing.core.registry.verify_audit()["head_hash"]
    full = [r for r in va["rows"] if "details" in r]
    assert {r["owner_id"] for r in full} == {"owner-a"}
    assert {r["kind"] for r in full} >= {"delivery", "decision", "grant", "link_issued", "download", "revocation"}
    # Other owners' rows (and agency-only rows) reach owner-a as digests only.
    text = json.dumps(va)
    assert "owner-b" not in text and "Shelbyville" not in text
    assert all(set(r) == {"seq", "body_digest", "hash"} for r in va["rows"] if "details" not in r)
    vb = rpc(sharing, history["ob"], "owner-b", "audit").result
    assert verify_owner_view(vb, "owner-b").ok
    assert "link_issued" not in json.dumps([r for r in vb["rows"] if "details" in r])

    # Paging: a page verifies from its own start_prev.
    page = rpc(sharing, history["oa"], "owner-a", "audit", since=3, limit=4).result
    assert not page["complete"] and page["next_since"] == 7 and verify_owner_view(page, "owner-a").ok

    # If the service edits one of owner-b's rows, owner-a's verification fails too.
    with sqlite3.connect(_db_path(sharing)) as c:
        seq = c.execute("select seq from audit where owner_id='owner-b' and kind='decision'").fetchone()[0]
        c.execute("update audit set body_digest=? where seq=?", ("ab" * 32, seq))
    tampered = rpc(sharing, history["oa"], "owner-a", "audit").result
    bad = verify_owner_view(tampered, "owner-a")
    assert not bad.ok and bad.bad_seq == seq


def test_owner_rpc_methods(sharing: Env, history) -> None:
    oa = history["oa"]
    grants = rpc(sharing, oa, "owner-a", "grants").parse_result(p.GrantList).grants
    assert grants[0].grant_id == history["gid"] and grants[0].state == "revoked"
    reqs = rpc(sharing, oa, "owner-a", "requests").parse_result(p.RequestList).requests
    assert reqs[0].request_id == history["rid"] and reqs[0].state == "approved"
    assert reqs[0].clip_ids == sorted(history["a_ids"])
    assert rpc(sharing, oa, "owner-a", "requests", state="pending").parse_result(p.RequestList).requests == []
    clips = rpc(sharing, oa, "owner-a", "clips", limit=10).parse_result(p.ClipList).clips
    assert sorted(c.clip_id for c in clips) == sorted(history["a_ids"])
    assert all(c.device_id == "dev-a" for c in clips)
    link = rpc(sharing, oa, "owner-a", "clip_link", clip_id=history["a_ids"][0]).parse_result(p.ClipLink)
    assert httpx.get(link.url).status_code == 200
    snap = rpc(sharing, oa, "owner-a", "clip_link", clip_id=history["a_ids"][0], what="snapshot")
    assert httpx.get(snap.parse_result(p.ClipLink).url).content.startswith(b"\xff\xd8\xff")
    # owner-b's clip is not owner-a's to link; bad params and methods fail cleanly.
    b_clip = rpc(sharing, history["ob"], "owner-b", "clips").parse_result(p.ClipList).clips[0].clip_id
    for params in ({"clip_id": b_clip}, {"clip_id": "nope"}, {"clip_id": history["a_ids"][0], "what": "x"},
                   {"clip_id": b_clip, "extra": 1}):
        r = rpc(sharing, oa, "owner-a", "clip_link", **params)
        assert not r.ok and r.error
    r = rpc(sharing, oa, "owner-a", "grants", limit="many")
    assert not r.ok and "limit" in r.error
    call_id = p.new_token()
    oa.pub(p.rpc_topic("owner-a", call_id), b'{"v":1,"method":"drop_tables"}')
    r = p.decode(p.RpcReply, oa.expect(p.rpc_reply_topic("owner-a", call_id)).payload)
    assert not r.ok and "method" in r.error
    with sqlite3.connect(_db_path(sharing)) as c:
        assert c.execute("select count(*) from audit where kind='owner_link'").fetchone()[0] == 2
    assert sharing.core.registry.verify_audit()["ok"]


def test_verify_rows_pure() -> None:
    """The chain functions the owner CLI uses, without a database."""
    from doorbell.core.auditchain import body_digest, canonical, chain_hash

    rows, prev = [], GENESIS
    for i in range(1, 4):
        d = canonical({"i": i})
        dig = body_digest(seq=i, ts=1_800_000_000 + i, kind="k", actor="a", subject="s", owner_id="o", details_json=d)
        h = chain_hash(prev, dig)
        rows.append({"seq": i, "ts": 1_800_000_000 + i, "kind": "k", "actor": "a", "subject": "s", "owner_id": "o",
                     "details": d, "body_digest": dig, "prev_hash": prev, "hash": h})
        prev = h
    assert verify_rows(rows, head=(3, prev)).ok
    assert not verify_rows(rows[:2], head=(3, prev)).ok
    assert not verify_rows([rows[0], rows[2]]).ok
    edited = [dict(rows[0], subject="x")] + rows[1:]
    assert verify_rows(edited).bad_seq == 1
