"""A connection killed under Treu (database restart, failover) costs one 503, not a 500."""

from __future__ import annotations

import psycopg
import pytest
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
