"""The same service on a real PostgreSQL: migrations, the end-to-end flow, the audit chain."""
from __future__ import annotations

from tests.sharing_service import test_flow
from tests.support.sharing import Env


def test_postgres_migrations_match_models(pg_database: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from sharing_service.db import Database
    from sharing_service.models import Base

    db = Database(pg_database)
    db.migrate()
    db.migrate()
    with db.read_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_postgres_happy_path_and_audit(sharing_pg: Env) -> None:
    t0 = sharing_pg.clock() - 2 * 3600
    clips = [sharing_pg.put_clip("dev-a", t0 + i * 600) for i in range(3)]
    test_flow.test_happy_path_two_of_three(sharing_pg, clips)
    report = sharing_pg.core.registry.verify_audit()
    assert report["ok"] and report["checked"] >= 6
    assert sharing_pg.core.db.dialect == "postgresql"


def test_postgres_owner_sees_a_hidden_row(sharing_pg: Env) -> None:
    """Issue 15 finding 2 on PostgreSQL: owner_id set NULL on a row about owner-a leaves a hole
    in owner-a's own chain, in the view the owner verifies."""
    from sqlalchemy import text

    from doorbell.core.auditchain import verify_owner_view
    from sharing_service import audit

    t0 = sharing_pg.clock() - 2 * 3600
    clips = [sharing_pg.put_clip("dev-a", t0 + i * 600) for i in range(3)]
    test_flow.test_happy_path_two_of_three(sharing_pg, clips)
    with sharing_pg.core.db.read() as s:
        before = audit.owner_view(s, "owner-a").model_dump(mode="json", exclude_none=True)
    assert verify_owner_view(before, "owner-a").ok
    with sharing_pg.core.db.write() as s:
        s.execute(text("UPDATE audit SET owner_id = NULL WHERE seq = (SELECT min(seq) FROM audit "
                       "WHERE owner_id = 'owner-a' AND kind = 'grant')"))
    with sharing_pg.core.db.read() as s:
        after = audit.owner_view(s, "owner-a").model_dump(mode="json", exclude_none=True)
    report = verify_owner_view(after, "owner-a")
    assert not report.ok and "rows about the owner are missing" in str(report.reason), report.problems


def test_postgres_status_reads_survive_dropped_connections(sharing_pg: Env) -> None:
    """The agency API's hot reads skip the per-checkout ping (docs/scale.md): when the server drops
    every connection (a restart, a fail-over), the next key check and status read still answer,
    through one retry on a fresh connection, and a wrong key still gets 401."""
    import httpx
    from sqlalchemy import text

    rid = sharing_pg.agency.create_request_raw(sharing_pg.request_body())["id"]
    first = sharing_pg.agency.status(rid)
    with sharing_pg.core.db.write() as s:
        dropped = s.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
    assert dropped >= 1
    assert sharing_pg.agency.status(rid) == first
    r = httpx.get(f"{sharing_pg.service.url}/v1/requests/{rid}", headers={"Authorization": "Bearer dbk_0_x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_postgres_status_reads_take_rate_limit_tokens(sharing_pg: Env) -> None:
    """A status read takes its rate-limit token on its own autocommit connection (PostgreSQL):
    the token is stored (the third read in a minute is refused), and another agency's reads
    are not limited by it."""
    from doorbell.clients.agency.client import AgencyClient, ApiError

    rid = sharing_pg.agency.create_request_raw(sharing_pg.request_body())["id"]
    _, key = sharing_pg.core.registry.add_agency("Tiny PD", rate_per_min=2)
    codes = []
    with AgencyClient(sharing_pg.service.url, key) as tiny:
        tiny_rid = tiny.create_request_raw(sharing_pg.request_body())["id"]
        for _ in range(3):
            try:
                tiny.status(tiny_rid)
                codes.append(200)
            except ApiError as exc:
                codes.append(exc.status)
    assert codes == [200, 429, 429]  # the creation took the first of its two tokens
    assert sharing_pg.agency.status(rid)["id"] == rid
