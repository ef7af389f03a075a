"""Engines and the unit of work.

The entry point (API request, CLI command, job) owns the transaction: it opens a
``unit_of_work``, calls services (which only ``flush``), and the block commits or rolls
back as a whole. "Earn points, upgrade the tier, queue a message" is one commit.

SQLite: one writer at a time. Write transactions start with ``BEGIN IMMEDIATE`` so two
writers never both read a balance and then both try to upgrade to a write lock (which
would deadlock or fail); readers use a deferred ``BEGIN`` and, thanks to WAL, never block.

PostgreSQL: READ COMMITTED plus explicit row locks (``SELECT ... FOR UPDATE``) taken in a
stable order by the services; ``lock_timeout`` turns a stuck lock into ``Busy``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from treu.errors import Busy
from treu.kit import jsons

log = logging.getLogger("treu.db")

LOCK_TIMEOUT_MS = 5000
SQLITE_BUSY_SECONDS = LOCK_TIMEOUT_MS / 1000 * 6
"""How long an SQLite writer waits for the write lock (the other writers of its process,
then SQLite's busy handler) before the unit of work fails with ``Busy``."""


T = TypeVar("T")

_BEFORE_COMMIT = "treu.before_commit"


def before_commit(session: Session, callback: Callable[[Session], None]) -> None:
    """Run ``callback(session)`` once, when the write unit of work that owns ``session``
    has finished its block and is about to commit (in its transaction: what the callback
    writes commits or rolls back with the rest). Features use it to write what they
    gathered during the unit in one statement (``treu.outbox``). A unit that raises
    runs no callback."""
    session.info.setdefault(_BEFORE_COMMIT, []).append(callback)


def _run_before_commit(session: Session) -> None:
    for callback in session.info.pop(_BEFORE_COMMIT, ()):
        callback(session)


_AFTER_COMMIT = "treu.after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback()`` once, when the write unit of work that owns ``session`` has
    committed (outside its transaction: for in-process caches that must not keep what
    an earlier read saw). A unit that rolls back runs no callback."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


class Database:
    """Holds the engines of one database URL. Create once per process."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = self._sqlite_engine(url, immediate=True)
            self.read_engine = self._sqlite_engine(url, immediate=False)
            self._writer: threading.Lock | None = threading.Lock()
        else:
            from psycopg.types.json import set_json_dumps, set_json_loads

            from treu.db import fastpath

            # JSON parameters (stored results, postings' details) encoded by orjson, and
            # JSON columns read by it (members' attributes on every event's look-up).
            set_json_dumps(jsons.dumps)
            set_json_loads(jsons.loads)
            fastpath.tune_psycopg()  # psycopg's parse cache for one-statement writes
            engine = create_engine(
                url,
                json_serializer=jsons.dumps_str,
                pool_size=pool_size,
                max_overflow=max_overflow,
                # No pre-ping: it cost a round trip per request. A connection lost to a
                # database restart fails its request with 503 (below); the pool then
                # discards its connections and the next request reconnects.
                pool_recycle=1800,
                connect_args={"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"},
            )
            self.write_engine = engine
            self.read_engine = engine
            self._writer = None
        if self.dialect == "postgresql":
            # Read units run as READ ONLY transactions (psycopg says BEGIN READ ONLY: no
            # extra round trip) and end in COMMIT, not in the pool's ROLLBACK: psycopg
            # forgets every prepared statement of a connection on each ROLLBACK, so the
            # checkout's reads were parsed and planned anew on every request (parse and
            # bind ≈ 0.1 ms each; planning the limit counters' look-up took ≈ 1 ms).
            self._read = sessionmaker(
                self.read_engine.execution_options(postgresql_readonly=True),
                expire_on_commit=False,
            )
        else:
            self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @staticmethod
    def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
            cursor.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

        return engine

    @contextlib.contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction: commit when the block ends, roll back if it raises.

        A write unit runs on a connection it begins itself, and its ``Session`` joins
        that transaction only if the ORM is used (see ``UnitSession``)."""
        if write:
            if self._writer is not None:
                with self._sqlite_write_unit(self._writer) as session:
                    yield session
            else:
                with self._write_unit() as session:
                    yield session
            return
        session = self._read()
        try:
            yield session
            if session.info.get(_BEFORE_COMMIT):
                raise RuntimeError("a read-only unit of work cannot record writes to commit")
            if not self.is_sqlite:
                session.commit()  # PostgreSQL: see the READ ONLY note in __init__
            # SQLite: a read unit ends in close(): the connection rolls back, and loaded
            # objects stay readable (rollback() would expire them).
        except OperationalError as exc:
            session.rollback()
            _raise_busy_for(exc)
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def _sqlite_write_unit(self, writer: threading.Lock) -> Iterator[Session]:
        """SQLite has one writer at a time anyway (``BEGIN IMMEDIATE``). The writers of
        this process queue on a lock of their own, and the next one is woken as soon as
        the last one ends, instead of sleeping in SQLite's busy handler between looks at
        the file lock (1, 2, 5 … 100 ms). Measured at saturation with one worker: the
        same ≈ 560 single purchases/s, p99 57 ms instead of 350 ms. Other processes
        still meet SQLite's own lock."""
        if not writer.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise Busy("the database is busy; try again")
        try:
            with self._write_unit() as session:
                yield session
        finally:
            writer.release()

    @contextlib.contextmanager
    def _write_unit(self) -> Iterator[Session]:
        try:
            connection = self.write_engine.connect()
        except OperationalError as exc:
            _raise_busy_for(exc)
            raise
        session: UnitSession | None = None
        try:
            connection.begin()
            session = UnitSession(bind=connection, expire_on_commit=False)
            yield session
            _run_before_commit(session)
            if session.in_transaction():
                session.commit()  # flushes; the connection's transaction goes on
            connection.commit()
            for callback in session.info.pop(_AFTER_COMMIT, ()):
                callback()
        except OperationalError as exc:
            connection.rollback()
            _raise_busy_for(exc)
            raise
        except BaseException:
            connection.rollback()
            raise
        finally:
            if session is not None and (session.in_transaction() or session.identity_map):
                session.close()  # detaches what it loaded (it stays readable)
            connection.close()

    def retrying(
        self,
        work: Callable[[Session, int], T],
        *,
        attempts: int = 3,
        retry_on: tuple[type[BaseException], ...] = (IntegrityError,),
    ) -> T:
        """``work(session, attempt)`` in a write unit of work of its own, run again in a
        fresh one when it raised one of ``retry_on``: a concurrent writer won a
        unique-constraint race (two first deliveries of one event, a replayed request
        whose first attempt skipped the look-up), and the next attempt finds its row.
        The last attempt's error is raised; any other error at once."""
        for attempt in range(attempts):
            try:
                with self.unit_of_work() as session:
                    return work(session, attempt)
            except retry_on:
                if attempt == attempts - 1:
                    raise
        raise ValueError("attempts must be at least 1")

    def analyze(self, tables: Iterable[str]) -> None:
        """Refresh the planner's statistics of ``tables`` after a bulk load.

        PostgreSQL's autovacuum gathers them only a minute or so later; until then the
        planner takes a freshly loaded table for nearly empty. Measured: looking up 500
        members by card number chose the programme's index and filtered 10,000 rows,
        97 ms, against 1.5 ms through the card-number index with statistics."""
        with self.write_engine.connect() as connection:
            for table in tables:
                connection.exec_driver_sql(f"ANALYZE {table}")
            connection.commit()

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


class UnitSession(Session):
    """The ``Session`` of a write unit of work, bound to the ``Connection`` the unit
    began. Until the ORM is used, ``connection()`` hands out that connection without
    the Session's transaction bookkeeping; the first ORM operation joins the same
    transaction (SQLAlchemy's "join an external transaction"), which the unit commits.

    Why: the hot paths (a purchase, a batch) use the session only as a connection, and
    the Session's begin / connection / commit / close cost 244 K instructions per unit
    of work over the connection's own (callgrind, PostgreSQL): ≈ 10 % of a single
    purchase through the API."""

    def connection(
        self,
        bind_arguments: Any = None,
        execution_options: Any = None,
    ) -> Connection:
        if not self.in_transaction() and bind_arguments is None and execution_options is None:
            bind = self.bind
            assert isinstance(bind, Connection)
            return bind
        return super().connection(bind_arguments, execution_options)


def _raise_busy_for(exc: OperationalError) -> None:
    """``Busy`` (503, try again) for a lock that could not be taken in time, a lost
    connection or one that could not be made (an error that belongs to no statement:
    the server is down or restarting); other operational errors are left to the caller.
    Trying again is safe: events and adjustments carry idempotency keys."""
    if _is_lock_failure(exc):
        raise Busy("the database is busy; try again") from exc
    if exc.connection_invalidated:
        raise Busy("the connection to the database was lost; try again") from exc
    if exc.statement is None:
        log.warning("the database cannot be reached: %s", exc.orig)
        raise Busy("the database cannot be reached; try again") from exc


def _is_lock_failure(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "database is locked" in text or "lock timeout" in text or "could not obtain lock" in text


_databases: dict[str, Database] = {}


def get_database(url: str | None = None) -> Database:
    """The process-wide ``Database`` for ``url`` (default: settings)."""
    if url is None:
        from treu.config import get_settings

        settings = get_settings()
        url = settings.database_url
        kwargs = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
    else:
        kwargs = {}
    if url not in _databases:
        _databases[url] = Database(url, **kwargs)
    return _databases[url]
