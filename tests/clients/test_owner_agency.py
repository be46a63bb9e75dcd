"""``doorbell owner`` and ``doorbell agency`` against the real broker, S3 server and
sharing service: approve a subset, deny, revoke, verify the audit; the
confirmation prompt; clip fetches checked by SHA-256; bad arguments."""
from __future__ import annotations

import json
import os
import queue
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from doorbell.core import protocol as p
from tests.support.clients import ClientEnv, run_cli, run_proc


def j(r) -> object:  # type: ignore[no-untyped-def]
    assert r.code == 0, r
    return json.loads(r.out)


def test_keys_init_writes_a_private_key_0600_and_prints_the_public_key(tmp_path: Path) -> None:
    cfg = tmp_path / "owner.yaml"
    key = tmp_path / "keys" / "me.pem"
    cfg.write_text(f"owner:\n  owner_id: owner-z\n  key_file: {key}\n")
    r = run_cli(["owner", "keys", "init", "--config", str(cfg)])
    assert r.code == 0, r
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = next(line.strip() for line in r.out.splitlines() if line.strip().startswith("ed25519:"))
    assert f"doorbell sharing owner add owner-z --public-key {pub}" in r.out
    shown = run_cli(["owner", "keys", "show", "--config", str(cfg)])
    assert shown.code == 0 and shown.out.strip() == pub
    again = run_cli(["owner", "keys", "init", "--config", str(cfg)])
    assert again.code == 2 and "already exists" in again.err          # never silently replaced
    assert run_cli(["owner", "keys", "show", "--config", str(cfg)]).out.strip() == pub


def test_approve_a_subset_download_revoke_deny_and_verify_the_audit(clients: ClientEnv) -> None:
    t0 = time.time() - 1800
    c1, c2, c3 = (clients.put_clip(t0 + i * 60) for i in range(3))
    rid = clients.file_request()

    # the owner sees the request with its three clips and snapshot links
    reqs = j(clients.owner("requests", "--json"))
    req = next(r for r in reqs if r["request_id"] == rid)
    assert req["agency"] == "Springfield PD" and req["case_number"] == "2026-000123"
    assert sorted(c["clip_id"] for c in req["clips"]) == sorted([c1, c2, c3])
    assert all(c["snapshot_url"].startswith("http") for c in req["clips"])
    human = clients.owner("requests")
    assert rid in human.out and "legal basis: Search warrant 4711" in human.out and c1 in human.out

    # approve two of three, for 3 days
    r = clients.owner("approve", rid, "--clip", c2, "--clip", c1, "--days", "3", "--yes")
    assert r.code == 0, r
    assert "WILL be shared (2)" in r.out and "will NOT be shared (1)" in r.out and "3 days" in r.out
    assert "✓ approved: 2 clip(s) shared with Springfield PD" in r.out
    grants = j(clients.owner("grants", "--json"))
    assert len(grants) == 1 and grants[0]["clip_ids"] == sorted([c1, c2]) and grants[0]["state"] == "active"
    assert 2.9 * 86400 < grants[0]["expires_at"] - time.time() <= 3 * 86400
    gid = grants[0]["grant_id"]
    assert j(clients.owner("requests", "--json")) == []                 # decided: gone from the list

    # the agency sees exactly the two, downloads them, each checked by SHA-256
    assert j(clients.agency("request", "status", rid, "--json"))["clips_shared"] == 2
    listing = j(clients.agency("clips", rid, "--json"))
    assert sorted(c["clip_id"] for c in listing["clips"]) == sorted([c1, c2])
    out = clients.tmp / "evidence"
    d = clients.agency("download", rid, "--out", str(out))
    assert d.code == 0, d
    assert "2 of 2 clip(s) written" in d.out
    files = sorted(out.glob("*.mp4"))
    assert [f.stem for f in files] == sorted([c1, c2])
    for f in files:
        assert f.read_bytes() == clients.clips[f.stem]
    assert not list(out.glob(".*"))                                    # no partial files left

    # revoke: the agency loses access at once
    r = clients.owner("revoke", gid, "--yes")
    assert r.code == 0 and "revoked" in r.out, r
    assert j(clients.owner("grants", "--json")) == []
    revoked = j(clients.owner("grants", "--all", "--json"))
    assert revoked[0]["state"] == "revoked"
    assert j(clients.agency("request", "status", rid, "--json"))["clips_shared"] == 0
    again = clients.agency("download", rid, "--out", str(clients.tmp / "again"), "--json")
    assert again.code == 0 and j(again)["clips"] == []
    r = clients.owner("revoke", gid, "--yes")
    assert r.code == 1 and "already revoked" in r.err

    # a second request, denied
    rid2 = clients.file_request(case="2026-000124")
    r = clients.owner("deny", rid2, "--yes", "--json")
    assert j(r)["ok"] is True
    assert j(clients.agency("clips", rid2, "--json"))["clips"] == []
    r = clients.owner("approve", rid2, "--yes")                       # decided: no longer pending
    assert r.code == 1 and "no pending request" in r.err

    # the audit: the owner's entries, verified locally
    audit = j(clients.owner("audit", "--verify", "--json", "--limit", "0"))
    assert audit["verification"]["ok"] is True
    kinds = [e["kind"] for e in audit["entries"]]
    for k in ("delivery", "decision", "grant", "link_issued", "download", "revocation"):
        assert k in kinds, kinds
    assert all(e["owner_id"] == "owner-a" for e in audit["entries"])
    human = clients.owner("audit", "--verify")
    assert human.code == 0 and "✓ audit chain verified" in human.out
    assert "you revoked grant" in human.out and "downloaded clip" in human.out


def test_audit_verify_detects_a_tampered_log(clients: ClientEnv) -> None:
    c1 = clients.put_clip(time.time() - 1200)
    rid = clients.file_request()
    assert clients.owner("approve", rid, "--clip", c1, "--yes").code == 0
    from sharing_service.models import AuditEntry

    with clients.core.db.write() as s:  # an operator edits history behind the owner's back
        row = s.query(AuditEntry).filter(AuditEntry.kind == "decision").one()
        assert '"grant_days":7' in row.details
        row.details = row.details.replace('"grant_days":7', '"grant_days":30')
    r = clients.owner("audit", "--verify")
    assert r.code == 1 and "BROKEN" in r.err, r
    assert "edited" in r.err


def test_confirmation_prompt_n_sends_nothing_y_sends(clients: ClientEnv) -> None:
    c1 = clients.put_clip(time.time() - 900)
    rid = clients.file_request()
    argv = ["owner", "approve", rid, "--config", str(clients.owner_config)]
    no = run_proc(argv, stdin="n\n")
    assert no.code == 1, no
    assert "You are about to SHARE footage with Springfield PD" in no.out
    assert c1 in no.out and "Sign and send this approval? [y/N]" in no.out and "Nothing was sent." in no.out
    assert j(clients.agency("request", "status", rid, "--json"))["clips_shared"] == 0
    assert any(r["request_id"] == rid for r in j(clients.owner("requests", "--json")))   # still pending
    eof = run_proc(argv, stdin="")                                                       # no answer is no
    assert eof.code == 1 and "Nothing was sent." in eof.out
    yes = run_proc(argv, stdin="y\n")
    assert yes.code == 0, yes
    assert "✓ approved: 1 clip(s)" in yes.out
    assert j(clients.agency("request", "status", rid, "--json"))["clips_shared"] == 1

    rid2 = clients.file_request(case="2026-000125")
    deny = run_cli(["owner", "deny", rid2, "--config", str(clients.owner_config)], stdin="no\n")
    assert deny.code == 1 and "DENY" in deny.out and "Nothing was sent." in deny.out
    assert any(r["request_id"] == rid2 for r in j(clients.owner("requests", "--json")))


def test_refusal_by_the_service_is_reported_with_non_zero_exit(clients: ClientEnv, tmp_path: Path) -> None:
    """A key the service does not know: the signed decision is refused, and the CLI says why."""
    from doorbell.core.signing import generate_key, save_private_key

    c1 = clients.put_clip(time.time() - 900)
    rid = clients.file_request()
    other = tmp_path / "wrong.pem"
    save_private_key(generate_key(), other)
    cfg = tmp_path / "wrong.yaml"
    cfg.write_text(clients.owner_config.read_text().replace(str(clients.key_file), str(other)))
    r = run_cli(["owner", "approve", rid, "--clip", c1, "--yes", "--config", str(cfg)])
    assert r.code == 1
    assert "refused" in r.err and "signature does not verify" in r.err

    # the service stops answering: a timeout is a failure too, and says what may still happen
    d = clients.owner("deny", rid, "--yes")
    assert d.code == 0                                      # (the right key still works)
    rid2 = clients.file_request(case="2026-000126")
    reqs = clients.owner("requests", "--json")
    assert rid2 in reqs.out
    clients.service.bridge.stop()
    t = clients.owner("requests", "--timeout", "2")
    assert t.code == 1 and "timed out after 2 s waiting for the sharing service" in t.err
    from doorbell.clients.owner.app import OwnerApp, OwnerError
    from doorbell.core.config import load_config

    with OwnerApp(load_config(clients.owner_config)) as app:  # the app's own decision path
        try:
            app.decide(rid2, False, timeout=1.5)
            raise AssertionError("a decision without an answer must not count as done")
        except OwnerError as exc:
            assert "no answer from the sharing service within 1.5 s: NOT known to be applied" in str(exc)
            assert "may still apply it" in str(exc)


def test_clips_list_and_fetch_are_sha256_checked(clients: ClientEnv) -> None:
    c1 = clients.put_clip(time.time() - 600)
    rows = j(clients.owner("clips", "--json"))
    assert [r["clip_id"] for r in rows][:1] == [c1]
    assert clients.owner("clips").out.count(c1) == 1
    dest = clients.tmp / "mine"
    dest.mkdir()
    r = clients.owner("clips", "fetch", c1, "--out", str(dest))
    assert r.code == 0 and "SHA-256 verified" in r.out, r
    assert (dest / f"{c1}.mp4").read_bytes() == clients.clips[c1]
    snap = clients.owner("clips", "fetch", c1, "--snapshot", "--out", str(dest / "s.jpg"))
    assert snap.code == 0 and (dest / "s.jpg").read_bytes().startswith(b"\xff\xd8\xff")
    # the bucket object is swapped: the app refuses to keep it
    s3c = clients.s3.client()
    s3c.put_object(Bucket=clients.s3.bucket, Key=f"dev-a/{c1}.mp4", Body=b"not the clip")
    bad = clients.owner("clips", "fetch", c1, "--out", str(clients.tmp / "bad.mp4"))
    assert bad.code == 1 and "SHA-256 mismatch" in bad.err
    assert not (clients.tmp / "bad.mp4").exists()
    # another owner's clip is not reachable
    c_b = clients.put_clip(time.time() - 500, device="dev-b")
    other = clients.owner("clips", "fetch", c_b, "--out", str(clients.tmp / "b.mp4"))
    assert other.code == 1 and not (clients.tmp / "b.mp4").exists()
    assert c_b not in clients.owner("clips").out


def test_events_shows_rings_of_own_devices_only(clients: ClientEnv) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "owner", "events", "--follow", "--json",
                             "--config", str(clients.owner_config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        dev_a, dev_b = clients.mqtt("dev-a"), clients.mqtt("dev-b")
        ring_b = p.DeviceEvent(device_id="dev-b", type="ring")
        got: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [got.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        buf = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and '"ring"' not in buf:
            dev_b.pub(p.events_topic("dev-b"), ring_b.to_json(), qos=1)
            dev_a.pub(p.events_topic("dev-a"), p.DeviceEvent(device_id="dev-a", type="ring").to_json(), qos=1)
            time.sleep(0.3)
            while not got.empty():
                buf += got.get()
        lines = [json.loads(x) for x in buf.splitlines() if x.strip()]
        rings = [e for e in lines if e.get("type") == "ring"]
        assert rings and all(e["device_id"] == "dev-a" for e in rings), lines
        assert rings[0]["ts"] > time.time() - 60
    finally:
        proc.terminate()
        proc.wait(10)
    short = clients.owner("events", "--seconds", "0.5")
    assert short.code == 0 and "Listening" in short.out


def test_bad_arguments_give_a_clear_message_and_non_zero_exit(clients: ClientEnv, tmp_path: Path) -> None:
    c1 = clients.put_clip(time.time() - 900)
    rid = clients.file_request()
    cases = [
        (clients.owner("approve", rid, "--days", "40", "--yes"), 2, "--days must be between 1 and 30"),
        (clients.owner("approve", rid, "--clip", "not-a-clip", "--yes"), 2, "not a clip id"),
        (clients.owner("approve", rid, "--clip", "20200101T000000000Z-abcdef", "--yes"), 2, "not offered"),
        (clients.owner("approve", "0123456789abcdef", "--yes"), 1, "no pending request"),
        (clients.owner("revoke", "no such grant!", "--yes"), 2, "not a grant id"),
        (clients.owner("clips", "fetch"), 2, "needs a clip ID"),
        (clients.owner("clips", "--limit", "0"), 2, "--limit must be between 1 and 500"),
        (run_cli(["owner", "requests", "--config", str(tmp_path / "absent.yaml")]), 2, "no owner config"),
        (run_cli(["owner", "approve"]), 2, "the following arguments are required: REQUEST"),
        (clients.agency("request", "create", "--case", "1", "--basis", "b", "--start", "now-2h", "--end", "now",
                        "--lat", "52.52", "--lon", "13.4", "--radius", "100", "--reason", "r"),
         2, "--attest-not-protest is required"),
        (clients.agency("request", "create", "--attest-not-protest", "--case", "1", "--basis", "b",
                        "--start", "now-14h", "--end", "now", "--lat", "52.52", "--lon", "13.4", "--radius", "100",
                        "--reason", "r"), 1, "window_too_long"),
        (clients.agency("request", "create", "--attest-not-protest", "--case", "1", "--basis", "b",
                        "--start", "now-2h", "--end", "now", "--lat", "52.52", "--lon", "13.4", "--radius", "5000",
                        "--reason", "r"), 1, "radius_too_large"),
        (clients.agency("request", "create", "--attest-not-protest", "--case", "1", "--basis", "b",
                        "--start", "yesterday-ish", "--end", "now", "--lat", "52.52", "--lon", "13.4",
                        "--radius", "100", "--reason", "r"), 2, "cannot read time"),
        (clients.agency("request", "status", "0123456789abcdef"), 1, "not_found"),
        (run_cli(["agency", "request", "status", rid, "--config", str(tmp_path / "none.yaml")]), 2, "cannot read"),
        (run_cli(["agency", "clips", rid, "--api-key", "dbk_000000000000_" + "x" * 43,
                  "--url", clients.service.url]), 1, "unauthorized"),
        (run_cli(["agency", "request", "create", "--lat", "x"]), 2, "invalid float value"),
    ]
    wrong = tmp_path / "wrong-password.yaml"
    wrong.write_text(clients.owner_config.read_text().replace(clients.broker.users["owner-a"], "not-the-password"))
    cases.append((run_cli(["owner", "requests", "--config", str(wrong)]), 1, "the broker refused 'owner-a'"))
    no_tls = tmp_path / "bad-tls.yaml"
    import yaml

    data = yaml.safe_load(clients.owner_config.read_text())
    data["mqtt"]["tls"] = {"enabled": True, "ca_file": "/nonexistent/ca.crt"}
    no_tls.write_text(yaml.safe_dump(data))
    cases.append((run_cli(["owner", "requests", "--config", str(no_tls)]), 2, "TLS files unusable"))
    for r, code, needle in cases:
        assert r.code == code, (needle, r)
        assert needle in r.err, (needle, r)
        assert "Traceback" not in r.err
    os.environ.pop("DOORBELL_AGENCY_API_KEY", None)
    r = run_cli(["agency", "request", "list", "--url", clients.service.url, "--config", str(tmp_path / "x.yaml")])
    assert r.code == 2
    # nothing was shared by any of that
    assert j(clients.agency("request", "status", rid, "--json"))["clips_shared"] == 0
    assert c1


def test_agency_key_from_environment(clients: ClientEnv, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import yaml

    key = yaml.safe_load(clients.agency_config.read_text())["api_key"]
    monkeypatch.setenv("DOORBELL_AGENCY_API_KEY", key)
    monkeypatch.setenv("DOORBELL_SHARING_URL", clients.service.url)
    r = run_cli(["agency", "request", "list", "--json"])
    assert r.code == 0 and json.loads(r.out) == []
