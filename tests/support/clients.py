"""Helpers for the owner app and agency client tests (imported by conftest and the
tests; a module name of its own, so it never collides with another conftest).

The CLIs run through ``doorbell.cli.main(argv)`` (``run_cli``) or as real
processes (``run_proc``), never with mocks.
"""
from __future__ import annotations

import hashlib
import io
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doorbell.core import protocol as p
from tests.support.polling import wait_for

HOME_A = (52.5200, 13.4050)
HOME_B = (52.5227, 13.4050)   # ~300 m north of A




def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class ClientEnv:
    service: Any
    broker: Any
    s3: Any
    owner_config: Path
    agency_config: Path
    key_file: Path
    tmp: Path
    mqtt: Callable[..., Any]
    clips: dict[str, bytes] = field(default_factory=dict)

    @property
    def core(self) -> Any:
        return self.service.core

    def put_clip(self, started_at: float, device: str = "dev-a", length: float = 5.0) -> str:
        """Upload a clip + snapshot to S3 and announce it on the device's clips topic."""
        ms = int(started_at * 1000) % 1000
        clip_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started_at))}{ms:03d}Z-{secrets.token_hex(3)}"
        data = b"\x00\x00\x00\x18ftypmp42" + secrets.token_bytes(3000)
        key, snap = f"{device}/{clip_id}.mp4", f"{device}/{clip_id}.jpg"
        s3c = self.s3.client()
        s3c.put_object(Bucket=self.s3.bucket, Key=key, Body=data)
        s3c.put_object(Bucket=self.s3.bucket, Key=snap, Body=b"\xff\xd8\xff\xe0" + b"jpeg" * 10)
        msg = p.ClipMessage(clip_id=clip_id, device_id=device, trigger="ring", started_at=started_at,
                            ended_at=started_at + length, trigger_at=started_at + 2, pre_roll_s=2, key=key,
                            snapshot_key=snap, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        with self.mqtt(device) as dev:  # closed: the device's login holds one connection at a time
            dev.pub(p.clips_topic(device), msg.to_json(), qos=1)
        from sharing_service.models import Clip

        def indexed() -> bool:
            with self.core.db.read() as s:
                return s.get(Clip, clip_id) is not None

        wait_for(indexed, what=f"clip {clip_id} indexed")
        self.clips[clip_id] = data
        return clip_id

    def owner(self, *args: str, stdin: str = "") -> Result:
        return run_cli(["owner", *args, "--config", str(self.owner_config)], stdin)

    def agency(self, *args: str, stdin: str = "") -> Result:
        return run_cli(["agency", *args, "--config", str(self.agency_config)], stdin)

    def file_request(self, hours_ago: float = 1.0, **over: Any) -> str:
        now = time.time()
        body = {"case": "2026-000123", "basis": "Search warrant 4711", "start": iso(now - hours_ago * 3600 - 600),
                "end": iso(now), "lat": HOME_A[0], "lon": HOME_A[1], "radius": 200, "reason": "burglary"}
        body.update(over)
        argv = ["request", "create", "--attest-not-protest", "--json"]
        for k, v in body.items():
            argv += [f"--{k}", str(v)]
        r = self.agency(*argv)
        assert r.code == 0, r
        import json

        # owners are asked off the HTTP path (sharing_service.service.Matcher): wait until they were
        assert self.service.matcher.wait_idle(timeout=30)
        return json.loads(r.out)["id"]


def run_cli(argv: list[str], stdin: str = "") -> Result:
    """``doorbell <argv>`` in this process, capturing stdout/stderr and feeding stdin."""
    from contextlib import redirect_stderr, redirect_stdout

    from doorbell.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse errors
                code = int(exc.code or 0)
    finally:
        sys.stdin = old_stdin
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(argv: list[str], stdin: str = "", timeout: float = 60) -> Result:
    """``doorbell <argv>`` as a real process."""
    r = subprocess.run([sys.executable, "-m", "doorbell.cli", *argv], input=stdin, capture_output=True,
                       text=True, timeout=timeout)
    return Result(r.returncode, r.stdout, r.stderr)


def sharing_db(env: ClientEnv) -> Path:
    """The service's SQLite file (what an operator with database access edits)."""
    return Path(env.service.cfg.sharing.database_url.removeprefix("sqlite:///"))


def rechain(db: Path) -> None:
    """The attacker with database access: after editing rows, renumber seqs without gaps and
    recompute every digest, link, owner chain and head so the log is self-consistent again.
    (Columns that do not exist in the schema, e.g. before the per-owner chain, are skipped.)"""
    import sqlite3

    from doorbell.core.auditchain import GENESIS, body_digest, chain_hash

    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        cols = {r["name"] for r in c.execute("pragma table_info(audit)")}
        owner_chain = "owner_seq" in cols
        rows = [dict(r) for r in c.execute("select * from audit order by seq")]
        c.execute("delete from audit")
        prev, owners = GENESIS, {}
        for n, r in enumerate(rows, start=1):
            r["seq"] = n
            r["body_digest"] = body_digest(seq=n, ts=r["ts"], kind=r["kind"], actor=r["actor"], subject=r["subject"],
                                           owner_id=r["owner_id"], details_json=r["details"])
            r["prev_hash"], r["hash"] = prev, chain_hash(prev, r["body_digest"])
            prev = r["hash"]
            if owner_chain:
                if r["owner_id"]:
                    k, oprev = owners.get(r["owner_id"], (0, GENESIS))
                    r["owner_seq"], r["owner_prev"] = k + 1, oprev
                    r["owner_hash"] = chain_hash(oprev, r["body_digest"])
                    owners[r["owner_id"]] = (k + 1, r["owner_hash"])
                else:
                    r["owner_seq"] = r["owner_prev"] = r["owner_hash"] = None
            c.execute(f"insert into audit ({', '.join(r)}) values ({', '.join('?' for _ in r)})", list(r.values()))
        c.execute("update audit_head set seq=?, hash=? where id=1", (len(rows), prev))
        if owner_chain:
            c.execute("delete from audit_owner_head")
            c.executemany("insert into audit_owner_head (owner_id, seq, hash) values (?, ?, ?)",
                          [(o, k, h) for o, (k, h) in owners.items()])
