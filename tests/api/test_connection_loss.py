"""A connection killed under Treu (database restart, failover) costs one 503, not a 500;
a database that cannot be reached answers 503 too."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests import factories as f
from tests.api_helpers import make_api
from treu.db.session import Database


def _kill_connections(db: Database) -> int:
    url = make_url(db.url)
    name = url.database
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert killed is not None
    return int(killed[0])


def test_lost_connection_answers_503_then_recovers(fresh_db: Database, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no server connection to lose")
    prog = f.programme(fresh_db)
    who = f.member(fresh_db, prog)
    api = make_api(fresh_db)
    url = f"/v1/members/{who.id}/balance"
    assert api.client.get(url, headers=api.headers("members:read")).status_code == 200
    assert _kill_connections(fresh_db) >= 1
    lost = api.client.get(url, headers=api.headers("members:read"))
    assert lost.status_code == 503, lost.text
    assert lost.json()["code"] == "busy"
    again = api.client.get(url, headers=api.headers("members:read"))
    assert again.status_code == 200


@pytest.mark.parametrize("backend_kind", ["postgresql", "sqlite"])
def test_an_unreachable_database_answers_503_busy(
    tmp_path: Path, backend_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on port 1 (PostgreSQL), the file is a directory (SQLite): every
    unit of work, reading or writing, fails with ``Busy`` and the API answers 503
    ``busy`` problem+json, never a bare 500; the reason is logged."""
    from fastapi.testclient import TestClient

    from treu.api.app import create_app
    from treu.config import Settings
    from treu.errors import Busy

    url = (
        "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
        if backend_kind == "postgresql"
        else f"sqlite:///{tmp_path}"
    )
    down = Database(url)
    with pytest.raises(Busy, match="cannot be reached"):
        with down.unit_of_work() as session:
            session.connection()
    with pytest.raises(Busy, match="cannot be reached"):
        with down.unit_of_work(write=False) as session:
            session.execute(text("SELECT 1"))
    app = create_app(Settings(database_url=down.url), database=down)
    client = TestClient(app, raise_server_exceptions=False)
    answer = client.get("/healthz")
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "busy"
    key = "treu_" + "x" * 44
    member = client.get(
        "/v1/members?identifier=a@example.com", headers={"Authorization": f"Bearer {key}"}
    )
    assert member.status_code == 503, member.text
    assert "cannot be reached" in caplog.text
    down.dispose()
