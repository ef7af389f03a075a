"""Test databases: every database test runs on SQLite *and* on a real PostgreSQL server.

* PostgreSQL: ``TREU_TEST_POSTGRES_URL`` (default: the local server on 127.0.0.1:5432).
  A template database is migrated once per test session (``alembic upgrade head``, never
  ``create_all``); the shared test database and every ``fresh_db`` are copied from it.
  Without a reachable server the PostgreSQL variants are skipped loudly — unless
  ``TREU_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which makes that a failure.
* SQLite: a migrated file, copied the same way.

Tests isolate themselves by creating their own programme (``factories.programme``), so
the shared databases need no cleaning between tests.

Clients on the shared database: ``api`` (the real app over HTTP, a key per scope) and
``runner`` (the ``treu`` command line).
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tests.api_helpers import Api, make_api
from tests.support.cli import make_runner
from treu.db.session import Database
from treu.migrations import upgrade
from treu.staff import service as staff_service

pytest_plugins = ["tests.clock"]

# Staff passwords are hashed with argon2, slow on purpose (about 0.1 s a hash or a check,
# its memory cost is the defence). The suite signs staff in hundreds of times, so it uses
# argon2's lowest costs; a hash carries its own parameters, so checking works the same.
staff_service._hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))

BACKENDS = ["sqlite", "postgresql"]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin_conninfo(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _with_db(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@functools.cache
def _pg_probe() -> tuple[str, str | None]:
    """The test server's URL, and why it cannot be used (None when it answers)."""
    url = os.environ.get("TREU_TEST_POSTGRES_URL", DEFAULT_PG)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        with psycopg.connect(_admin_conninfo(url), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        return url, f"PostgreSQL is not reachable at {url}: {exc}"
    return url, None


@pytest.fixture(scope="session")
def pg_server() -> str | None:
    url, problem = _pg_probe()
    if problem is not None:
        if os.environ.get("TREU_REQUIRE_POSTGRES") == "1":
            pytest.fail(problem + " (TREU_REQUIRE_POSTGRES=1)", pytrace=False)
        warnings.warn(
            "\n" + "!" * 70 + f"\n{problem}\nPostgreSQL tests are SKIPPED.\n" + "!" * 70,
            stacklevel=1,
        )
        return None
    return url


BROWSER_ON_SQLITE = pytest.mark.skip(
    reason="in-browser tests run on PostgreSQL, the production database, when it answers; "
    "the pages' SQLite side is tested over HTTP"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``in_browser`` spends its time in Chromium, not in the database: it
    runs once, on PostgreSQL, and on SQLite only where no PostgreSQL answers. Every page
    it drives is also tested over HTTP on both databases."""
    browser_sqlite = [
        item
        for item in items
        if item.get_closest_marker("in_browser") is not None
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("backend") == "sqlite"
    ]
    if browser_sqlite and _pg_probe()[1] is None:
        for item in browser_sqlite:
            item.add_marker(BROWSER_ON_SQLITE)


def _create_pg(server: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(_admin_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(server, name)


def _drop_pg(server: str, name: str) -> None:
    with psycopg.connect(_admin_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def run_id(worker_id: str) -> str:
    return f"{worker_id}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def pg_template(pg_server: str | None, run_id: str) -> Iterator[str | None]:
    if pg_server is None:
        yield None
        return
    name = f"treu_tpl_{run_id}"
    url = _create_pg(pg_server, name)
    upgrade(url)
    yield name
    _drop_pg(pg_server, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


class DatabaseFactory:
    """Makes migrated, empty databases of one backend."""

    def __init__(
        self, backend: str, server: str | None, template: str | None, sqlite_tpl: Path, tmp: Path
    ) -> None:
        self.backend = backend
        self.server = server
        self.template = template
        self.sqlite_tpl = sqlite_tpl
        self.tmp = tmp
        self.created: list[tuple[str, Database]] = []

    def url(self, name: str) -> str:
        if self.backend == "sqlite":
            path = self.tmp / f"{name}.db"
            shutil.copy(self.sqlite_tpl, path)
            return f"sqlite:///{path}"
        assert self.server is not None
        assert self.template is not None
        return _create_pg(self.server, name, self.template)

    def new(self, name: str) -> Database:
        # At most 40 connections per database: two xdist workers, each with its shared
        # database and one busy ``fresh_db`` or concurrency test, stay under the default
        # ``max_connections = 100`` of a stock PostgreSQL. Threads beyond that wait for
        # a pooled connection, which keeps the contention the concurrency tests want.
        db = Database(self.url(name), pool_size=10, max_overflow=30)
        self.created.append((name, db))
        return db

    def release(self, name: str, db: Database) -> None:
        """Close a database's connections and drop it now, not at the end of the run."""
        self.created.remove((name, db))
        db.dispose()
        if self.backend == "postgresql" and self.server:
            _drop_pg(self.server, name)

    def close(self) -> None:
        for name, db in list(self.created):
            self.release(name, db)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def db_factory(
    backend: str,
    pg_server: str | None,
    pg_template: str | None,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DatabaseFactory]:
    if backend == "postgresql" and pg_server is None:
        pytest.skip("PostgreSQL not reachable (see the warning above)")
    factory = DatabaseFactory(
        backend, pg_server, pg_template, sqlite_template, tmp_path_factory.mktemp("dbs")
    )
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def shared_db(db_factory: DatabaseFactory, run_id: str) -> Database:
    return db_factory.new(f"treu_shared_{db_factory.backend}_{run_id}")


@pytest.fixture
def db(shared_db: Database) -> Database:
    """The shared database of this backend; isolate by creating your own programme."""
    return shared_db


@pytest.fixture
def fresh_db(db_factory: DatabaseFactory, run_id: str) -> Iterator[Database]:
    """An empty, migrated database of its own (for tests that look at whole tables),
    dropped when the test ends so idle pooled connections do not pile up."""
    name = f"treu_fresh_{uuid.uuid4().hex[:10]}_{run_id}"[:63]
    db = db_factory.new(name)
    yield db
    db_factory.release(name, db)


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """``gw0``… under pytest-xdist, ``main`` otherwise."""
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture
def api(db: Database) -> Api:
    return make_api(db)


@pytest.fixture
def runner(db: Database, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return make_runner(monkeypatch, db)
