"""The hot paths' shortcuts answer exactly like the general paths they bypass.

* ``LeanApp``: a valid JSON body to the events and checkout routes skips FastAPI's
  routing and dependency solving, whatever the key cache holds; every other request
  takes FastAPI's own path with its body unchanged, and what ``authenticate`` or the
  endpoint raises is answered by the app's exception handlers. The app's middleware runs
  for lean requests too, and a lean request is logged with its request id like any
  other. ``Pool``: its threads, which run in a copy of the caller's context.
* ``WriteBatch`` on PostgreSQL: a small unit of work is written by one statement.
* ``fetch``: a prebuilt SELECT through the driver gives what SQLAlchemy would.
* Payload hashes: events stored with the earlier (``json.dumps``) hash still replay.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import fastapi.routing
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from tests import factories as f
from treu.api.app import TreuAPI, create_app
from treu.api.lean import LeanRoute, Pool, _plan
from treu.api.routes import checkout as checkout_routes
from treu.api.routes import events as event_routes
from treu.auth.service import api_keys
from treu.config import Settings
from treu.db.base import table_of
from treu.db.fastpath import _combined, fetch
from treu.db.session import Database
from treu.events.models import Event
from treu.events.schemas import event_adapter
from treu.events.service import legacy_payload_hash, payload_hash
from treu.kit.time import utc_now
from treu.ledger.models import Account
from treu.members.models import Member

# A day before the suite's clock at collection, once for the module so that a replayed
# payload is the same payload: inside the 14-day pending period of the programmes below on
# whatever day the suite runs.
T0: datetime  # the purchases' time, set for each test on the clock it runs on


@pytest.fixture(autouse=True)
def _yesterday() -> None:
    """One time for every purchase of a test (answers compare equal but for ids), a day
    before the test's clock: set when the test starts, not when the module is imported,
    so that a test on a shifted clock buys on its own yesterday."""
    global T0
    T0 = utc_now().replace(microsecond=0) - timedelta(days=1)


class Client:
    """The app as production builds it (key cache on), or with the lean path off
    (``lean=False``: every request takes FastAPI's standard path, to compare with)."""

    def __init__(
        self,
        db: Database,
        *,
        lean: bool = True,
        cache_seconds: float = 60,
        keys: tuple[str, str] | None = None,
    ) -> None:
        settings = Settings(database_url=db.url, api_key_cache_seconds=cache_seconds)
        app = create_app(settings, database=db)
        if not lean:
            app.lean_plans.clear()
        self.http = TestClient(app, raise_server_exceptions=False)
        if keys is None:
            with db.unit_of_work() as session:
                _, writer = api_keys.create(session, name="till", scopes=["events:write"])
                _, reader = api_keys.create(session, name="report", scopes=["members:read"])
            keys = (writer, reader)
        self.writer, self.reader = keys

    def post(self, path: str, body: Any, key: str | None = None, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {key or self.writer}"}
        headers.update((k.lower(), v) for k, v in kwargs.pop("headers", {}).items())
        if isinstance(body, bytes):
            return self.http.post(path, content=body, headers=headers, **kwargs)
        return self.http.post(path, json=body, headers=headers, **kwargs)


@contextmanager
def solved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records each request that went through FastAPI's dependency solving."""
    calls: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    yield calls


def verified(db: Database) -> tuple[Client, Any, Any]:
    """A client whose writer key was verified a moment ago (the lean path takes its
    requests), a programme and a member of it."""
    client = Client(db)
    prog = f.programme(db)
    anna = f.member(db, prog)
    client.post("/v1/events", purchase(prog, anna, f.unique("e")))
    return client, prog, anna


def purchase(prog: Any, who: Any, key: str, **overrides: Any) -> dict[str, Any]:
    payload = f.purchase_payload(prog, who, event_id=key, occurred_at=T0)
    payload.update(overrides)
    return payload


def test_hot_routes_take_the_lean_path() -> None:
    hot = [
        route
        for router in (event_routes.router, checkout_routes.router)
        for route in router.routes
        if isinstance(route, LeanRoute)
    ]
    assert {r.path for r in hot} == {"/v1/events", "/v1/events/batch", "/v1/checkout/evaluate"}
    assert all(_plan(route) is not None for route in hot)


def _same_answer(one: Any, two: Any) -> None:
    """Two answers to the same purchase of two members, but for ids and times."""
    assert one.status_code == two.status_code
    assert one.headers["content-type"] == two.headers["content-type"]
    bodies = one.json(), two.json()
    for body in bodies:
        for posting in body["postings"]:
            posting.pop("id"), posting.pop("correlation_id"), posting.pop("created_at")
        body.pop("event_id"), body.pop("member_id")
    assert bodies[0] == bodies[1]


def test_lean_path_answers_like_the_standard_path(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lean = Client(db)
    standard = Client(db, lean=False, keys=(lean.writer, lean.reader))
    prog = f.programme(db, pending_days=14)
    anna, ben, cleo = f.member(db, prog), f.member(db, prog), f.member(db, prog)
    with solved(monkeypatch) as calls:
        first = lean.post("/v1/events", purchase(prog, anna, f.unique("e")))
        second = lean.post("/v1/events", purchase(prog, ben, f.unique("e")))
        assert calls == []  # a key not verified yet and a cached one alike: lean
        general = standard.post("/v1/events", purchase(prog, cleo, f.unique("e")))
        assert calls == ["/v1/events"]
    assert first.status_code == 201
    _same_answer(first, general)
    _same_answer(second, general)
    assert f.balance(db, ben).pending == second.json()["points"]["pending"] > 0


@pytest.mark.parametrize("cache_seconds", [60, 0])
def test_the_key_cache_does_not_decide_the_path(
    db: Database, monkeypatch: pytest.MonkeyPatch, cache_seconds: float
) -> None:
    """Lean or not depends on the request, never on what the key cache holds: a key
    seen for the first time, one verified a moment ago and (cache off) one verified on
    every request all take the lean path, and a revoked key is refused there at once."""
    client = Client(db, cache_seconds=cache_seconds)
    prog = f.programme(db)
    anna = f.member(db, prog)
    with db.unit_of_work() as session:
        row, key = api_keys.create(session, name=f.unique("till"), scopes=["events:write"])
    with solved(monkeypatch) as calls:
        answers = [
            client.post("/v1/events", purchase(prog, anna, f.unique("e")), key=key)
            for _ in range(3)
        ]
        with db.unit_of_work() as session:
            assert api_keys.revoke(session, lookup=row.lookup)
        revoked = client.post("/v1/events", purchase(prog, anna, f.unique("e")), key=key)
        assert calls == []
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert revoked.status_code == 401
    assert revoked.json()["code"] == "invalid_api_key"


def test_lean_path_replays_and_reports_business_errors(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(db)
    prog = f.programme(db)
    anna = f.member(db, prog)
    key = f.unique("e")
    created = client.post("/v1/events", purchase(prog, anna, key))
    with solved(monkeypatch) as calls:
        replay = client.post("/v1/events", purchase(prog, anna, key))
        conflict = client.post("/v1/events", purchase(prog, anna, key, store="elsewhere"))
        unknown = client.post(
            "/v1/events",
            purchase(prog, None, f.unique("e"), member={"email": "nobody@example.com"}),
        )
        assert calls == []
    assert (created.status_code, replay.status_code) == (201, 200)
    assert replay.json() == created.json()
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["code"] == "member_not_found"
    assert f.balance(db, anna).available == created.json()["points"]["available"]


def test_errors_keep_the_standard_paths_answers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body FastAPI must word the 422 for leaves the lean path; a refused key is
    answered on it by the same ``authenticate`` and problem handlers: either way the
    answer is the standard path's."""
    lean = Client(db)
    standard = Client(db, lean=False, keys=(lean.writer, lean.reader))
    prog = f.programme(db)
    anna = f.member(db, prog)
    lean.post("/v1/events", purchase(prog, anna, f.unique("e")), key=lean.reader)  # cached
    bad = purchase(prog, anna, f.unique("e"))
    bad["lines"][0]["quantity"] = 0
    json_type = {"content-type": "application/json"}
    requests: dict[str, tuple[Any, dict[str, Any]]] = {
        "invalid": (bad, {}),
        "broken": (b'{"id": "x", ', {"headers": json_type}),
        "text": (purchase(prog, anna, "e-text"), {"headers": {"content-type": "text/plain"}}),
        "scope": (purchase(prog, anna, "e-scope"), {"key": lean.reader}),
        "unknown key": (purchase(prog, anna, "e-unknown"), {"key": "treu_" + "x" * 44}),
        "malformed key": (purchase(prog, anna, "e-malformed"), {"key": "treu_short"}),
        "no key": (purchase(prog, anna, "e-none"), {"headers": {"authorization": ""}}),
        "basic auth": (purchase(prog, anna, "e-basic"), {"headers": {"authorization": "Basic x"}}),
    }
    answers = {}
    with solved(monkeypatch) as calls:
        for case, (body, kwargs) in requests.items():
            answers[case] = lean.post("/v1/events", body, **dict(kwargs))
        # FastAPI's own path for the bodies only (it refuses broken JSON before solving)
        assert len(calls) == 2
        for case, (body, kwargs) in requests.items():
            general = standard.post("/v1/events", body, **dict(kwargs))
            answer = answers[case]
            assert (answer.status_code, answer.json()) == (general.status_code, general.json())
            assert answer.headers["content-type"] == general.headers["content-type"], case
    codes = {case: (a.status_code, a.json()["code"]) for case, a in answers.items()}
    assert codes == {
        "invalid": (422, "validation_error"),
        "broken": (422, "validation_error"),
        "text": (422, "validation_error"),
        "scope": (403, "missing_scope"),
        "unknown key": (401, "invalid_api_key"),
        "malformed key": (401, "invalid_api_key"),
        "no key": (401, "invalid_api_key"),
        "basic auth": (401, "invalid_api_key"),
    }
    assert any(e["field"].endswith("lines.0.quantity") for e in answers["invalid"].json()["errors"])
    with db.unit_of_work(write=False) as session:
        stored = session.scalars(select(Event.key).where(Event.member_id == anna.id)).all()
    assert stored == []  # the reader's purchase was refused too


def test_batch_and_checkout_take_the_lean_path(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prog, anna = verified(db)
    cart = {
        "programme": prog.slug,
        "member": {"member_id": str(anna.id)},
        "channel": "pos",
        "currency": "EUR",
        "lines": f.contract_lines(),
    }
    events = [purchase(prog, anna, f.unique("b"), lines=f.contract_lines()) for _ in range(3)]
    with solved(monkeypatch) as calls:
        quote = client.post("/v1/checkout/evaluate", cart)
        batch = client.post("/v1/events/batch", {"events": events})
        assert calls == []
    assert quote.status_code == 200
    assert batch.status_code == 200
    assert batch.json()["summary"] == {"processed": 3, "replayed": 0, "failed": 0}
    earned = [item["result"]["points"]["earned"] for item in batch.json()["results"]]
    assert earned == [quote.json()["points"]["total"]] * 3


def _asgi_post(app: Any, path: str, chunks: list[bytes], headers: dict[str, str]) -> Any:
    """POST through the ASGI interface with the body in ``chunks`` (as a server passes a
    body that arrives in pieces); an empty list: the client goes away instead. Returns
    (status, headers, body) or None when nothing was answered."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ] or [{"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    if not sent:
        return None
    start = sent[0]
    return (
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


def test_lean_path_reads_a_body_in_pieces_and_hands_it_on_unchanged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prog, anna = verified(db)
    headers = {"content-type": "application/json", "authorization": f"Bearer {client.writer}"}
    good = json.dumps(purchase(prog, anna, f.unique("e"))).encode()
    bad_payload = purchase(prog, anna, f.unique("e"))
    bad_payload["lines"][0]["quantity"] = 0
    bad = json.dumps(bad_payload).encode()
    app = client.http.app
    with solved(monkeypatch) as calls:
        created = _asgi_post(app, "/v1/events", [good[:10], good[10:50], good[50:]], headers)
        assert calls == []  # lean
        refused = _asgi_post(app, "/v1/events", [bad[:7], bad[7:]], headers)
        assert calls == ["/v1/events"]  # FastAPI's path, with the whole body
        gone = _asgi_post(app, "/v1/events", [], headers)
    assert created is not None
    assert created[0] == 201
    assert json.loads(created[2])["points"]["earned"] > 0
    assert refused is not None
    assert refused[0] == 422
    problem = json.loads(refused[2])
    assert any(e["field"].endswith("lines.0.quantity") for e in problem["errors"])
    assert gone is None  # nothing to answer, nothing written
    assert f.balance(db, anna).available == 2 * json.loads(created[2])["points"]["earned"]


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_is_stored(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prog, anna = verified(db)
    fits = json.dumps(purchase(prog, anna, f.unique("e"))).encode()
    big = json.dumps(purchase(prog, anna, f.unique("e"), lines=f.contract_lines() * 20)).encode()
    assert len(big) > len(fits) + 100
    app = create_app(
        Settings(database_url=db.url, api_key_cache_seconds=60, max_body_bytes=len(fits)),
        database=db,
    )
    json_type = {"content-type": "application/json"}
    writer = {**json_type, "authorization": f"Bearer {client.writer}"}
    answers = {
        "declared, lean route": _asgi_post(
            app, "/v1/events", [big], {**writer, "content-length": str(len(big))}
        ),
        "in pieces, lean route": _asgi_post(app, "/v1/events", [big[:100], big[100:]], writer),
        "declared, other route": _asgi_post(
            app, "/v1/members", [big], {**writer, "content-length": str(len(big))}
        ),
        "in pieces, other route": _asgi_post(app, "/v1/members", [big[:100], big[100:]], writer),
        "in pieces, unknown key": _asgi_post(
            app,
            "/v1/events",
            [big[:100], big[100:]],
            {**json_type, "authorization": "Bearer treu_" + "x" * 44},
        ),
    }
    for case, answer in answers.items():
        assert answer is not None, case
        status, headers, body = answer
        assert status == 413, case
        assert headers["content-type"].startswith("application/problem+json"), case
        problem = json.loads(body)
        assert problem["code"] == "payload_too_large", case
        assert f"{len(fits):,} bytes" in problem["detail"], case
    with db.unit_of_work(write=False) as session:
        stored = session.scalars(select(Event.key).where(Event.member_id == anna.id)).all()
    assert len(stored) == 1
    at_the_limit = _asgi_post(
        app, "/v1/events", [fits[:50], fits[50:]], {**writer, "content-length": str(len(fits))}
    )
    assert at_the_limit is not None
    assert at_the_limit[0] == 201


def test_an_unexpected_error_on_the_lean_path_is_a_problem_not_a_trace(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prog, anna = verified(db)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(event_routes, "ingest_with_retry", broken)
    with solved(monkeypatch) as calls:
        answer = client.post("/v1/events", purchase(prog, anna, f.unique("e")))
        assert calls == []  # it was the lean path that failed
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "internal_error"
    assert "secret detail" not in answer.text


def test_lean_pool_runs_up_to_its_size_at_once_and_passes_errors_on() -> None:
    async def main(size: int, jobs: int) -> tuple[int, list[Any]]:
        pool = Pool(size)
        running = 0
        most = 0
        lock = threading.Lock()
        release = threading.Event()

        def job(n: int) -> int:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            release.wait(5)
            with lock:
                running -= 1
            if n == 0:
                raise ValueError("job 0 fails")
            return n * 10

        futures = [pool.run(functools.partial(job, n)) for n in range(jobs)]
        await asyncio.sleep(0.2)  # every thread the pool may start has taken a job
        release.set()
        results = await asyncio.gather(*futures, return_exceptions=True)
        pool.close()
        return most, results

    most, results = asyncio.run(main(3, 7))
    assert most == 3
    assert isinstance(results[0], ValueError)
    assert results[1:] == [10, 20, 30, 40, 50, 60]
    most, _ = asyncio.run(main(1, 3))
    assert most == 1
    closed = Pool(1)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(_run_one(closed))


async def _run_one(pool: Pool) -> Any:
    return await pool.run(lambda: 1)


def test_lean_pool_runs_its_jobs_in_a_copy_of_the_callers_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> tuple[str, str, str]:
        pool = Pool(1)
        var.set("request 1")
        seen = await pool.run(var.get)

        def change() -> str:
            var.set("changed in the thread")
            return var.get()

        changed = await pool.run(change)
        pool.close()
        return seen, changed, var.get()

    seen, changed, after = asyncio.run(main())
    assert seen == "request 1"
    assert changed == "changed in the thread"
    assert after == "request 1"  # a copy: the thread's change stays in the thread


# --- middleware and logs -----------------------------------------------------------------


class Tagging:
    """A pure ASGI middleware that notes each path and tags the answer."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-tagged", b"yes")]
            await send(message)

        await self.app(scope, receive, tagged)


def test_middleware_added_to_the_app_runs_on_the_lean_path(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prog, anna = verified(db)
    app = create_app(Settings(database_url=db.url, api_key_cache_seconds=60), database=db)
    seen: list[str] = []
    app.add_middleware(Tagging, seen=seen)

    @app.middleware("http")
    async def timing(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-decorated"] = "yes"
        return response

    client.http = TestClient(app, raise_server_exceptions=False)
    with solved(monkeypatch) as calls:
        answer = client.post("/v1/events", purchase(prog, anna, f.unique("e")))
        assert calls == []  # lean
    assert answer.status_code == 201
    assert seen == ["/v1/events"]
    assert answer.headers["x-tagged"] == answer.headers["x-decorated"] == "yes"


def test_the_app_refuses_to_start_with_a_middleware_the_lean_path_would_skip(
    db: Database,
) -> None:
    inside = "middleware Tagging was put inside Treu's lean path"
    with pytest.raises(RuntimeError, match=inside):
        TreuAPI(middleware=[Middleware(Tagging, seen=[])])
    app = create_app(Settings(database_url=db.url), database=db)
    app.user_middleware.append(Middleware(Tagging, seen=[]))
    with pytest.raises(RuntimeError, match=inside):
        app.build_middleware_stack()
    with pytest.raises(RuntimeError, match=re.escape("add middleware with app.add_middleware")):
        TestClient(app).get("/healthz")


@pytest.mark.parametrize("lean", [True, False])
def test_a_request_is_logged_with_its_request_id_on_either_path(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, lean: bool
) -> None:
    client, prog, anna = verified(db)
    client = Client(db, lean=lean, keys=(client.writer, client.reader))
    ingest = event_routes.ingest_with_retry

    def logging_ingest(*args: Any, **kwargs: Any) -> Any:
        logging.getLogger("treu.test").warning("ingesting")
        return ingest(*args, **kwargs)

    monkeypatch.setattr(event_routes, "ingest_with_retry", logging_ingest)
    caplog.set_level(logging.INFO, logger="treu.api.access")
    with solved(monkeypatch) as calls:
        given = client.post(
            "/v1/events",
            purchase(prog, anna, f.unique("e")),
            headers={"x-request-id": "till-7/0042"},
        )
        made = client.post(
            "/v1/events",
            purchase(prog, anna, f.unique("e")),
            headers={"x-request-id": "not an id: spaces"},
        )
        assert calls == ([] if lean else ["/v1/events", "/v1/events"])
    assert (given.status_code, made.status_code) == (201, 201)
    assert given.headers["x-request-id"] == "till-7/0042"
    ours = made.headers["x-request-id"]
    assert len(ours) == 32
    records = [
        (r.name, r.getMessage().split(" ")[:3], r.request_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name in ("treu.test", "treu.api.access")
    ]
    assert records == [
        ("treu.test", ["ingesting"], "till-7/0042"),
        ("treu.api.access", ["POST", "/v1/events", "201"], "till-7/0042"),
        ("treu.test", ["ingesting"], ours),
        ("treu.api.access", ["POST", "/v1/events", "201"], ours),
    ]
    threads = {r.threadName for r in caplog.records if r.name == "treu.test"}
    assert all(name.startswith("treu-lean") for name in threads) == lean


def test_an_unexpected_error_on_the_lean_path_is_logged_with_the_request_id(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, prog, anna = verified(db)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(event_routes, "ingest_with_retry", broken)
    answer = client.post(
        "/v1/events", purchase(prog, anna, f.unique("e")), headers={"x-request-id": "r-1"}
    )
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "r-1"
    errors = [r for r in caplog.records if r.name == "treu.api"]
    assert [r.request_id for r in errors] == ["r-1"]  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None


# --- one statement per small unit of work (PostgreSQL) ----------------------------------


def test_a_single_purchase_is_one_read_and_one_write_on_postgresql(
    db: Database, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite writes each table with executemany")
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.ingest_one(db, purchase(prog, anna, f.unique("e")))  # caches warm
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.write_engine, "before_cursor_execute", record)
    try:
        outcome = f.ingest_one(db, purchase(prog, anna, f.unique("e")))
    finally:
        event.remove(db.write_engine, "before_cursor_execute", record)
    assert outcome.status == 201
    assert len(seen) == 2, seen
    assert seen[0].lstrip().startswith("SELECT")
    assert "FOR UPDATE" in seen[0]
    assert seen[1].startswith("WITH ")
    assert 'INSERT INTO "events"' in seen[1]
    assert f.verify(db, prog) == []


def test_combining_refuses_what_one_statement_would_get_wrong() -> None:
    accounts, events_table = table_of(Account), table_of(Event)
    row = {"member_id": 1, "available": 5, "pending": 0}
    event_row = {"id": 7, "key": "a"}
    ok = _combined(
        [("insert", events_table, [event_row], ()), ("update", accounts, [row], ("member_id",))]
    )
    assert ok is not None
    statement, params = ok
    assert statement.startswith("WITH w0 AS (INSERT INTO")
    assert params == [7, "a", 5, 0, 1]
    twice = [
        ("update", accounts, [row], ("member_id",)),
        ("update", accounts, [dict(row)], ("member_id",)),
    ]
    assert _combined(twice) is None  # both would change the old version of the row
    lots = table_of(Event)
    inserted_then_updated = [
        ("insert", lots, [event_row], ()),
        ("update", lots, [{"id": 7, "key": "b"}], ("id",)),
    ]
    assert _combined(inserted_then_updated) is None  # the update could not see the insert
    big = [("insert", events_table, [{"id": i, "key": str(i)} for i in range(100)], ())]
    assert _combined(big) is None


def test_a_combined_statement_follows_the_shape_of_its_writes_each_time() -> None:
    """The statement text is built once per shape: units of other shapes (more rows,
    other columns) get their own text, and the same shape again takes its new values."""
    accounts, events_table = table_of(Account), table_of(Event)

    def unit(rows: list[dict[str, Any]], available: int) -> tuple[str, list[Any]]:
        update = {"member_id": 1, "available": available}
        combined = _combined(
            [
                ("insert", events_table, rows, ()),
                ("update", accounts, [update], ("member_id",)),
            ]
        )
        assert combined is not None
        return combined

    one, one_params = unit([{"id": 7, "key": "a"}], 5)
    two, two_params = unit([{"id": 8, "key": "b"}, {"id": 9, "key": "c"}], 6)
    other, other_params = unit([{"id": 10, "store": "s"}], 7)
    again, again_params = unit([{"id": 11, "key": "d"}], 8)
    assert one_params == [7, "a", 5, 1]
    assert two_params == [8, "b", 9, "c", 6, 1]
    assert other_params == [10, "s", 7, 1]
    assert again_params == [11, "d", 8, 1]
    assert again == one
    assert one.count("%s") == 4
    assert two.count("%s") == 6
    assert '"store"' in other
    assert '"key"' not in other
    assert two.startswith('WITH w0 AS (INSERT INTO "events" ("id", "key") VALUES (%s, %s), (%s')
    assert one.endswith('UPDATE "accounts" SET "available" = %s WHERE "member_id" = %s')


def test_fetch_gives_what_sqlalchemy_gives(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog, birthday="1990-05-17")
    statement = select(Member.id, Member.enrolled_at, Member.birthday, Member.attributes).where(
        Member.id == anna.id
    )
    with db.unit_of_work(write=False) as session:
        fast = fetch(session.connection(), statement, {})
        general = [tuple(r) for r in session.execute(statement)]
    assert fast == general
    assert fast[0][1].utcoffset() == timedelta(0)


# --- payload hashes ------------------------------------------------------------------------


def test_events_stored_with_the_earlier_hash_still_replay(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    payload = purchase(prog, anna, f.unique("e"))
    payload["lines"][0]["name"] = "Bergkäse 1½ kg"  # json.dumps escapes it, orjson does not
    parsed = event_adapter.validate_python(payload)
    assert legacy_payload_hash(parsed) != payload_hash(parsed)
    first = f.ingest_one(db, payload)
    with db.unit_of_work() as session:
        session.execute(
            update(Event)
            .where(Event.key == payload["id"])
            .values(payload_hash=legacy_payload_hash(parsed))
        )
    again = f.ingest(db, payload)[0]
    assert (again.status, again.body) == (200, first.body)
    changed = dict(payload, store="elsewhere")
    assert f.ingest(db, changed)[0].status == 409
