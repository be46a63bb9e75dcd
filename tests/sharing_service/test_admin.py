"""Admin CLI (``doorbell sharing ...``), migrations and the published OpenAPI spec."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from doorbell.cli import main
from doorbell.core.age import generate_identity
from doorbell.core.signing import generate_key, public_key_text


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    path = tmp_path / "sharing.yaml"
    path.write_text(yaml.safe_dump({"sharing": {"database_url": f"sqlite:///{tmp_path / 'db' / 'sharing.db'}"}}))
    return path


def test_admin_cli_enrols_and_lists(cfg_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["--config", str(cfg_file)]
    assert main(["sharing", "migrate", *c]) == 0
    assert "revision 0009" in capsys.readouterr().out
    key = public_key_text(generate_key())
    assert main(["sharing", "owner", "add", "owner-a", "--public-key", key, *c]) == 0
    assert main(["sharing", "owner", "add", "owner-a", "--public-key", key, *c]) == 1       # duplicate
    assert main(["sharing", "owner", "add", "owner-x", "--public-key", "ed25519:short", *c]) == 1
    assert main(["sharing", "device", "add", "dev-a", "--owner", "owner-a", "--lat", "52.520008",
                 "--lon", "13.404954", *c]) == 0
    assert main(["sharing", "device", "add", "dev-b", "--owner", "nobody", "--lat", "1", "--lon", "1", *c]) == 1
    dev_key = public_key_text(generate_key())  # a device that seals its clips registers its manifest key
    assert main(["sharing", "device", "add", "dev-s", "--owner", "owner-a", "--lat", "1", "--lon", "1",
                 "--public-key", dev_key, *c]) == 0
    assert main(["sharing", "device", "add", "dev-t", "--owner", "owner-a", "--lat", "1", "--lon", "1",
                 "--public-key", "ed25519:short", *c]) == 1
    capsys.readouterr()
    assert main(["sharing", "agency", "add", "Shelbyville PD", "--age-recipient", "age1notarecipient", *c]) == 1
    recipient = str(generate_identity().recipient)
    assert main(["sharing", "agency", "add", "Springfield PD", "--age-recipient", recipient, *c]) == 0
    out = capsys.readouterr().out
    api_key = out.strip().splitlines()[-1]
    assert api_key.startswith("dbk_") and len(api_key) == 4 + 12 + 1 + 43
    assert main(["sharing", "agency", "list", "--json", *c]) == 0
    listed = capsys.readouterr().out
    assert "Springfield PD" in listed and api_key.split("_", 2)[2] not in listed   # never shown again
    assert json.loads(listed)[0]["age_recipient"] == recipient
    new_recipient = str(generate_identity().recipient)
    assert main(["sharing", "agency", "set-recipient", "Springfield PD", new_recipient, *c]) == 0
    assert main(["sharing", "agency", "set-recipient", "Nobody PD", new_recipient, *c]) == 1
    capsys.readouterr()
    assert main(["sharing", "device", "list", "--json", *c]) == 0
    devs = json.loads(capsys.readouterr().out)
    assert devs == [{"id": "dev-a", "owner_id": "owner-a", "lat": 52.52, "lon": 13.405, "public_key": None},  # coarse
                    {"id": "dev-s", "owner_id": "owner-a", "lat": 1.0, "lon": 1.0, "public_key": dev_key}]
    assert main(["sharing", "owner", "list", *c]) == 0
    assert "owner-a" in capsys.readouterr().out
    assert main(["sharing", "audit", "verify", *c]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    db = cfg_file.parent / "db" / "sharing.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert api_key not in json.dumps(conn.execute("select * from agencies").fetchall())


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """The shipped Alembic migrations create exactly the tables and indexes in models.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sharing_service.db import Database
    from sharing_service.models import Base

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    with db.read_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.migrate()  # idempotent
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("pragma foreign_keys").fetchone()[0] == 0  # per connection; the engine turns it on
    with db.write() as s:
        assert s.connection().exec_driver_sql("pragma foreign_keys").scalar() == 1
    db.dispose()


def test_openapi_command_prints_the_spec() -> None:
    out = subprocess.run([sys.executable, "-m", "doorbell.cli", "sharing", "openapi"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    spec = json.loads(out)
    assert spec["openapi"].startswith("3.")
    assert {"/v1/requests", "/v1/requests/{request_id}", "/v1/requests/{request_id}/clips",
            "/v1/requests/{request_id}/clips/{clip_id}/download", "/v1/transparency"} <= set(spec["paths"])
    body = spec["components"]["schemas"]["RequestCreate"]
    assert set(body["required"]) >= {"case_number", "legal_basis", "attest_not_protest", "window_start",
                                     "window_end", "lat", "lon", "radius_m", "reason"}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_serve_command_runs_and_stops_cleanly(tmp_path: Path, broker, s3) -> None:  # type: ignore[no-untyped-def]
    """The real entry point: `doorbell sharing serve` with HTTP + MQTT bridge; SIGTERM ends it (exit 0)."""
    import signal
    import time

    import httpx

    from doorbell.sandbox.embedded import free_port

    port = free_port()
    cfg = tmp_path / "sharing.yaml"
    cfg.write_text(yaml.safe_dump({
        "sharing": {"database_url": f"sqlite:///{tmp_path / 'sharing.db'}",
                    "http": {"host": "127.0.0.1", "port": port}},
        "mqtt": {"host": broker.host, "port": broker.port, "username": "sharing-service"},
        "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "access_key_id": s3.access_key},
    }))
    env = {"DOORBELL__MQTT__PASSWORD": broker.users["sharing-service"],
           "DOORBELL__S3__SECRET_ACCESS_KEY": s3.secret_key, "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "sharing", "serve", "--config", str(cfg)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stdout.read().decode() if proc.stdout else "")
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["info"]["title"].startswith("Doorbell")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "MQTT connected" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_missing_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "sharing.yaml"
    cfg.write_text(yaml.safe_dump({"sharing": {"database_url": f"sqlite:///{tmp_path / 's.db'}"}}))
    assert main(["sharing", "serve", "--config", str(cfg)]) == 2
    assert "mqtt.username" in capsys.readouterr().err


def test_published_spec_is_current() -> None:
    """sharing_service/openapi.json (the published copy) equals what the code generates."""
    from sharing_service.cli import openapi_spec

    shipped = json.loads((Path(__file__).parents[2] / "sharing_service" / "openapi.json").read_text())
    assert shipped == json.loads(json.dumps(openapi_spec())), \
        "regenerate: doorbell sharing openapi > sharing_service/openapi.json"


def test_upgrade_from_0001_keeps_data(tmp_path: Path) -> None:
    """A database made by the first release upgrades in place; old requests count as delivered."""
    from sharing_service.db import Database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    db.migrate("0001")
    with sqlite3.connect(tmp_path / "old.db") as c:
        c.execute("insert into agencies (name, key_id, key_hash, disabled, created_at) values ('A', 'k', 'h', 0, 1)")
        c.execute("insert into requests (id, agency_id, case_number, legal_basis, reason, attest_not_protest, "
                  "window_start, window_end, lat, lon, radius_m, grant_days, created_at, expires_at) "
                  "values ('r1', 1, 'c', 'b', 'r', 1, 1, 2, 0, 0, 10, 7, 1700000000, 1700003600)")
    db.migrate()
    assert db.current_revision() == "0009"
    with sqlite3.connect(tmp_path / "old.db") as c:
        assert c.execute("select matched_at from requests where id='r1'").fetchone()[0] == 1700000000
    db.dispose()


def test_upgrade_to_0003_puts_existing_rows_on_each_owners_chain(tmp_path: Path) -> None:
    """Rows written before the per-owner chain existed are chained in seq order by 0003,
    so the service's check and an owner's first verification pass on an upgraded log."""
    from doorbell.core.auditchain import GENESIS, body_digest, chain_hash, verify_owner_view
    from doorbell.core.config import SharingSection
    from sharing_service import audit
    from sharing_service.context import ServiceContext
    from sharing_service.core import SharingCore
    from sharing_service.db import Database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    db.migrate("0002")
    prev = GENESIS
    owners = ["owner-a", None, "owner-b", "owner-a", "owner-a"]
    with sqlite3.connect(tmp_path / "old.db") as c:
        for seq, owner in enumerate(owners, start=1):
            d = body_digest(seq=seq, ts=1700000000 + seq, kind="delivery", actor="service", subject="r1",
                            owner_id=owner, details_json="{}")
            h = chain_hash(prev, d)
            c.execute("insert into audit (seq, ts, kind, actor, subject, owner_id, details, body_digest, prev_hash, "
                      "hash) values (?, ?, 'delivery', 'service', 'r1', ?, '{}', ?, ?, ?)",
                      (seq, 1700000000 + seq, owner, d, prev, h))
            prev = h
        c.execute("update audit_head set seq=?, hash=? where id=1", (len(owners), prev))
    db.migrate()
    assert db.current_revision() == "0009"
    report = SharingCore(ServiceContext(db, SharingSection())).registry.verify_audit()
    assert report["ok"], report
    with db.read() as s:
        view = audit.owner_view(s, "owner-a").model_dump(mode="json", exclude_none=True)
    assert [r["owner_seq"] for r in view["rows"] if "details" in r] == [1, 2, 3]
    assert view["owner_head"]["seq"] == 3
    assert verify_owner_view(view, "owner-a").ok
    db.dispose()
