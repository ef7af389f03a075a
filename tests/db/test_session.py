"""Units of work: read-only ones on PostgreSQL cannot write and keep the connection's
prepared statements; a write unit's connection work and ORM work are one transaction."""

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


def _scratch(db: Database, name: str) -> None:
    with db.unit_of_work() as session:
        session.execute(text(f"CREATE TABLE {name} (a int NOT NULL)"))


def _values(db: Database, name: str) -> list[int]:
    with db.unit_of_work(write=False) as session:
        return list(session.execute(text(f"SELECT a FROM {name} ORDER BY a")).scalars())


def test_a_write_unit_commits_connection_and_orm_work_together(fresh_db: Database) -> None:
    """Work sent on ``session.connection()`` before the ORM is first used, the ORM's own
    work and a savepoint are one transaction: all of it commits, or none of it."""
    from tests import factories as f
    from treu.members.models import Member

    _scratch(fresh_db, "scratch")
    prog = f.programme(fresh_db)
    anna = f.member(fresh_db, prog)
    with fresh_db.unit_of_work() as session:
        session.connection().execute(text("INSERT INTO scratch VALUES (1)"))
        member = session.get(Member, anna.id)  # the ORM joins the same transaction
        assert member is not None
        member.first_name = "Anna"
        with session.begin_nested():
            session.execute(text("INSERT INTO scratch VALUES (2)"))
        session.connection().execute(text("INSERT INTO scratch VALUES (3)"))
    assert member.first_name == "Anna"  # still readable after the unit
    assert _values(fresh_db, "scratch") == [1, 2, 3]
    with fresh_db.unit_of_work(write=False) as session:
        stored = session.get(Member, anna.id)
        assert stored is not None
        assert stored.first_name == "Anna"

    def fail_after_orm_work() -> None:
        with fresh_db.unit_of_work() as session:
            session.connection().execute(text("INSERT INTO scratch VALUES (4)"))
            changed = session.get(Member, anna.id)
            assert changed is not None
            changed.first_name = "Changed"
            session.flush()
            raise RuntimeError("boom")

    def fail_without_orm_work() -> None:
        with fresh_db.unit_of_work() as session:
            session.connection().execute(text("INSERT INTO scratch VALUES (5)"))
            raise RuntimeError("boom")  # the ORM never used: the connection rolls back

    with pytest.raises(RuntimeError, match="boom"):
        fail_after_orm_work()
    assert _values(fresh_db, "scratch") == [1, 2, 3]
    with fresh_db.unit_of_work(write=False) as session:
        stored = session.get(Member, anna.id)
        assert stored is not None
        assert stored.first_name == "Anna"

    with pytest.raises(RuntimeError, match="boom"):
        fail_without_orm_work()
    assert _values(fresh_db, "scratch") == [1, 2, 3]


def test_a_failed_statement_leaves_no_connection_behind(fresh_db: Database) -> None:
    _scratch(fresh_db, "scratch")
    pool = fresh_db.write_engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    for _ in range(3):
        with pytest.raises(DBAPIError):
            with fresh_db.unit_of_work() as session:
                session.connection().execute(text("INSERT INTO scratch VALUES (NULL)"))
    assert pool.checkedout() == before  # type: ignore[attr-defined]
    with fresh_db.unit_of_work() as session:
        session.connection().execute(text("INSERT INTO scratch VALUES (7)"))
    assert _values(fresh_db, "scratch") == [7]


def test_sqlite_writers_of_one_process_take_turns_and_give_up_with_busy(
    fresh_db: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one writer at a time. The write units of one process queue on a lock of
    their own, so the next one starts when the last one ends, not whenever SQLite's busy
    handler next looks. One that waits too long fails with ``Busy`` (503, try again)
    and writes nothing."""
    if backend != "sqlite":
        pytest.skip("SQLite only: PostgreSQL has row locks, not one writer")
    import threading

    from treu.db import session as session_module
    from treu.errors import Busy

    _scratch(fresh_db, "turns")
    inside = threading.Event()
    leave = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with fresh_db.unit_of_work() as session:
            session.execute(text("INSERT INTO turns VALUES (1)"))
            order.append("holder in")
            inside.set()
            leave.wait(timeout=30)
            order.append("holder out")

    def waiter() -> None:
        with fresh_db.unit_of_work() as session:
            order.append("waiter in")
            # It sees the holder's row: it began after the holder committed.
            seen = session.execute(text("SELECT count(*) FROM turns")).scalar_one()
            session.execute(text("INSERT INTO turns VALUES (:a)"), {"a": 1 + seen})

    first = threading.Thread(target=holder)
    first.start()
    assert inside.wait(timeout=30)
    monkeypatch.setattr(session_module, "SQLITE_BUSY_SECONDS", 0.05)
    refused: list[BaseException] = []

    def impatient() -> None:
        try:
            with fresh_db.unit_of_work() as session:
                session.execute(text("INSERT INTO turns VALUES (99)"))
        except BaseException as exc:
            refused.append(exc)

    third = threading.Thread(target=impatient)
    third.start()
    third.join(timeout=10)  # it gives up after its own 0.05 s, not SQLite's 30 s
    assert not third.is_alive()
    assert len(refused) == 1
    assert isinstance(refused[0], Busy)
    monkeypatch.setattr(session_module, "SQLITE_BUSY_SECONDS", 30.0)
    second = threading.Thread(target=waiter)
    second.start()
    second.join(timeout=0.3)
    assert second.is_alive()  # queued behind the holder
    leave.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert order == ["holder in", "holder out", "waiter in"]
    assert _values(fresh_db, "turns") == [1, 2]
