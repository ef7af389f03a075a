"""The library internals the fast paths use are still there — and when one is gone, the
code takes the standard path with a warning instead of breaking.

``db.fastpath`` uses SQLAlchemy's and psycopg's, ``api.lean`` FastAPI's and Starlette's
(see their docstrings); pyproject.toml bounds each library below its next minor release.
A failure of one of the first tests here, after an upgrade, names what is gone: adapt
the module that uses it, or keep the old version.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import fastapi.routing
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from tests import factories as f
from treu.api import lean
from treu.api.app import create_app
from treu.api.routes import checkout as checkout_routes
from treu.api.routes import events as event_routes
from treu.auth.service import api_keys
from treu.config import Settings
from treu.db import fastpath
from treu.db.session import Database
from treu.members.models import Member

UPGRADE = (
    "is gone from the installed version; the fast path falls back to the standard path "
    "(slower). Adapt {module} or keep the version pyproject.toml allows."
)


def test_sqlalchemy_and_psycopg_have_what_db_fastpath_uses() -> None:
    for name in fastpath.missing_hooks():
        pytest.fail(f"{name} {UPGRADE.format(module='src/treu/db/fastpath.py')}")


def test_fastapi_has_what_the_lean_path_reads() -> None:
    for router in (event_routes.router, checkout_routes.router):
        for route in router.routes:
            assert isinstance(route, lean.LeanRoute)
            for name in lean.missing_hooks(route):
                pytest.fail(f"FastAPI's {name} {UPGRADE.format(module='src/treu/api/lean.py')}")


def test_starlette_keeps_the_app_middleware_in_order(db: Database) -> None:
    app = create_app(Settings(database_url=db.url), database=db)
    kinds = [getattr(entry, "cls", None) for entry in app.user_middleware]
    assert kinds == [lean.LeanApp], (
        "Starlette's app.user_middleware no longer lists Middleware entries with .cls, "
        "the first added last; " + UPGRADE.format(module="src/treu/api/lean.py")
    )
    assert lean.check_position(app)


# --- the fallbacks ---------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_without_sqlalchemys_internals_the_fast_path_uses_sqlalchemy(
    db: Database, backend: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite takes SQLAlchemy's path anyway")
    prog = f.programme(db)
    anna = f.member(db, prog, birthday="1990-05-17")
    statement = select(Member.id, Member.enrolled_at, Member.attributes).where(Member.id == anna.id)
    # As if a later SQLAlchemy had renamed one (deleting one would break SQLAlchemy).
    renamed = "SQLCompiler._bind_processors_of_old"
    monkeypatch.setattr(fastpath, "SQLALCHEMY_HOOKS", (*fastpath.SQLALCHEMY_HOOKS, renamed))
    monkeypatch.setattr(fastpath, "_fast", None)  # checked again
    assert fastpath.missing_hooks() == [renamed]
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    with db.unit_of_work(write=False) as session:
        rows = fastpath.fetch(session.connection(), statement, {})
        assert rows == [tuple(r) for r in session.execute(statement)]
    event.listen(db.write_engine, "before_cursor_execute", record)
    try:
        outcome = f.ingest_one(db, f.purchase_payload(prog, anna, event_id=f.unique("e")))
    finally:
        event.remove(db.write_engine, "before_cursor_execute", record)
    assert outcome.status == 201
    assert not any(s.startswith("WITH ") for s in seen)  # no combined statement
    assert f.verify(db, prog) == []
    warnings = _warnings(caplog, "treu.db.fastpath")
    assert len(warnings) == 1  # once per process
    assert "fast path is off" in warnings[0]
    assert renamed in warnings[0]


def test_without_psycopgs_parse_cache_limit_units_go_out_as_a_pipeline(
    db: Database, backend: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite does not use psycopg")
    renamed = "psycopg._queries.MAX_CACHED_STATEMENT_PARAMS_OF_OLD"  # as in a later psycopg
    monkeypatch.setattr(fastpath, "PSYCOPG_HOOK", renamed)
    monkeypatch.setattr(fastpath, "_combine", True)
    fastpath.tune_psycopg()
    assert fastpath.missing_hooks() == [renamed]
    assert [w.split(":")[0] for w in _warnings(caplog, "treu.db.fastpath")] == [
        f"psycopg {psycopg.__version__} has no {renamed}"
    ]
    prog = f.programme(db)
    anna = f.member(db, prog)
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.write_engine, "before_cursor_execute", record)
    try:
        outcome = f.ingest_one(db, f.purchase_payload(prog, anna, event_id=f.unique("e")))
    finally:
        event.remove(db.write_engine, "before_cursor_execute", record)
    assert outcome.status == 201
    assert len(seen) > 2  # the read, then each table's write in one pipeline
    assert not any(s.startswith("WITH ") for s in seen)
    assert f.verify(db, prog) == []


def test_without_fastapis_dependant_the_hot_routes_take_the_standard_path(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lean, "_REFUSED", (*lean._REFUSED, "gone_in_a_later_fastapi"))
    app = create_app(Settings(database_url=db.url), database=db)
    warnings = _warnings(caplog, "treu.api.lean")
    assert len(warnings) == 1
    assert "lean path is off" in warnings[0]
    assert "Dependant.gone_in_a_later_fastapi" in warnings[0]
    assert app.lean_plans == {}
    prog = f.programme(db)
    anna = f.member(db, prog)
    with db.unit_of_work() as session:
        _, key = api_keys.create(session, name=f.unique("till"), scopes=["events:write"])
    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    answer = TestClient(app).post(
        "/v1/events",
        json=f.purchase_payload(prog, anna, event_id=f.unique("e")),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 201
    assert solved == ["/v1/events"]


def test_without_starlettes_middleware_list_the_lean_path_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="treu.api.lean")
    assert not lean.check_position(SimpleNamespace(user_middleware=None))  # type: ignore[arg-type]
    assert "lean path is off" in _warnings(caplog, "treu.api.lean")[0]
