"""Units of work: read-only ones on PostgreSQL cannot write and keep the connection's
prepared statements."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from treu.db.session import Database


def test_read_units_cannot_write_and_keep_prepared_statements(
    fresh_db: Database, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no prepared statements to keep")
    # psycopg prepares a statement from its sixth execution on a connection, and forgets
    # all of them on a ROLLBACK: a read unit that ended in one re-planned every query.
    for _ in range(8):
        with fresh_db.unit_of_work(write=False) as session:
            assert session.execute(text("SELECT count(*) FROM members")).scalar_one() == 0
    with fresh_db.unit_of_work(write=False) as session:
        prepared = session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars()
        assert any("FROM members" in statement for statement in prepared)

    with pytest.raises(DBAPIError, match="read-only transaction"):
        with fresh_db.unit_of_work(write=False) as session:
            session.execute(text("CREATE TEMP TABLE scratch (a int)"))
    with fresh_db.unit_of_work() as session:  # the write path is untouched
        session.execute(text("CREATE TEMP TABLE scratch (a int)"))
