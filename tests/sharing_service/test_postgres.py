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
