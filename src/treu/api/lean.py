"""A lean request path for the hot POST routes (events, batches, checkout).

FastAPI's generic request handling — routing, dependency solving, body parsing with
``json.loads`` and then validation, the hand-off to the thread pool — cost about as much
CPU as ingesting the purchase itself (measured with ``callgrind`` on one purchase
through the ASGI app: 1.2 M of 3.8 M instructions at first).

``LeanRoute`` keeps a route a normal FastAPI route (the same endpoint function,
signature, OpenAPI and error answers). ``LeanApp`` is the app's *innermost* middleware
(``TreuAPI`` adds it first; ``add_middleware`` and ``@app.middleware`` put whatever
comes later in front of it), so every middleware of the app runs for the lean routes as
for any other. What the lean path skips is what FastAPI puts inside the app's
middleware: its exception middleware (the lean path calls the same exception
handlers), routing and dependency solving. The app refuses to start when a middleware
sits inside ``LeanApp`` (``check_position``).

The rule: a request takes the lean path when it is a ``POST`` to a lean route's path
with a JSON body (``application/json`` or ``…+json``) that validates against the body
parameter's type — parsed and validated in one step by pydantic (``validate_json``).
Whether its API key is in the key cache does not matter: the key is checked by the same
``deps.authenticate`` as on the standard path, on the event loop when it was verified
recently, else in the lean thread before the endpoint. The endpoint runs in a thread of
the lean pool, in a copy of the request's ``contextvars`` (request id, tracing). What
``authenticate`` or the endpoint raises — 401, 403, business errors — is answered by
the app's own exception handlers (problem+json). Anything else — another method or
content type, a body that does not validate — goes through FastAPI with the body handed
on unchanged, so those answers stay exactly FastAPI's and the problem handlers'.

Supported endpoint parameters: the body, ``DB`` and one ``require(scope)`` dependency;
a route with anything else keeps the standard path (checked at start-up). To tell that,
``_plan`` reads FastAPI's ``APIRoute.dependant`` (not a documented API: pyproject.toml
bounds FastAPI below its next minor release, tests/db/test_library_hooks.py fails naming
what is gone, and without it the routes take the standard path with a warning).

``LeanApp`` also limits every request's body to ``TREU_MAX_BODY_BYTES``: a declared
``Content-Length`` beyond it is answered at once, a body without one is stopped when it
passes the limit; either way 413 ``payload_too_large`` (problem+json).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import queue
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastapi
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from treu.api.deps import authenticate, bearer_token, get_db, scope_of
from treu.config import Settings
from treu.db.session import Database
from treu.errors import PayloadTooLarge

log = logging.getLogger("treu.api.lean")


class LeanRoute(APIRoute):
    """A route ``LeanApp`` may answer itself (see the module's docstring); as a route of
    FastAPI's router it is an ordinary ``APIRoute``."""


@dataclass(frozen=True)
class Plan:
    endpoint: Callable[..., Any]
    body_name: str
    adapter: TypeAdapter[Any]
    db_name: str
    key_name: str
    scope: str | None


_REFUSED = (
    "path_params",
    "query_params",
    "header_params",
    "cookie_params",
    "request_param_name",
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)
"""What a lean route's ``Dependant`` must not have: the lean path supplies none of it."""


def missing_hooks(route: APIRoute) -> list[str]:
    """What ``_plan`` reads of FastAPI's ``APIRoute.dependant`` that ``route`` lacks
    (empty: the lean path can plan it)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return ["APIRoute.dependant"]
    names = ("body_params", "dependencies", *_REFUSED)
    missing = {f"Dependant.{name}" for name in names if not hasattr(dependant, name)}
    for sub in getattr(dependant, "dependencies", ()):
        missing.update(f"Dependant.{name}" for name in ("call", "name") if not hasattr(sub, name))
    for body in getattr(dependant, "body_params", ()):
        if not hasattr(body, "name"):
            missing.add("ModelField.name")
    return sorted(missing)


def _plan(route: APIRoute) -> Plan | None:
    dependant = route.dependant
    if (
        len(dependant.body_params) != 1
        or any(getattr(dependant, name) for name in _REFUSED)
        or route.dependencies
        or inspect.iscoroutinefunction(route.endpoint)
        or "POST" not in (route.methods or ())
    ):
        return None
    db_name = key_name = None
    scope: str | None = None
    for sub in dependant.dependencies:
        if sub.call is get_db:
            db_name = sub.name
        elif sub.call is not None and (found := scope_of(sub.call)) is not None:
            key_name, scope = sub.name, found[0]
        else:
            return None
    if db_name is None or key_name is None:
        return None
    body = dependant.body_params[0]
    hints = typing.get_type_hints(route.endpoint, include_extras=True)
    return Plan(route.endpoint, body.name, TypeAdapter(hints[body.name]), db_name, key_name, scope)


def plans(*routers: APIRouter) -> dict[str, Plan]:
    """The lean plans of the routers' ``LeanRoute``s by path; none, with a warning, when
    this FastAPI lacks what ``_plan`` reads."""
    lean = [r for router in routers for r in router.routes if isinstance(r, LeanRoute)]
    gone = sorted({name for route in lean for name in missing_hooks(route)})
    if gone:
        log.warning(
            "the lean path is off: FastAPI %s has no %s; the hot routes take FastAPI's "
            "standard path (same answers, slower). Treu is tested with the FastAPI "
            "versions pyproject.toml allows.",
            fastapi.__version__,
            ", ".join(gone),
        )
        return {}
    return {route.path: plan for route in lean if (plan := _plan(route)) is not None}


class LeanApp:
    """The innermost middleware of a ``TreuAPI``: answers lean requests itself and hands
    everything else to FastAPI's exception middleware and router (``inner``)."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, plans: dict[str, Plan]) -> None:
        self.api = api
        self.inner = app
        self.lean = plans if check_position(api) else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        state = self.api.state
        settings: Settings = state.settings
        limit = settings.max_body_bytes
        declared, authorization, content_type = _headers(scope)
        response: Response
        if declared is not None and declared > limit:
            response = await self._handled(scope, receive, _too_large(limit))
            await response(scope, receive, send)
            return
        receive = _limited(receive, limit)
        plan = self.lean.get(scope["path"])
        if (
            plan is None
            or scope["method"] != "POST"
            or scope.get("root_path")
            or not _is_json(content_type)
        ):
            await self.inner(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except HTTPException as exc:  # the body passed the limit
            response = await self._handled(scope, receive, exc)
            await response(scope, receive, send)
            return
        if body is None:
            return  # the client went away before it had sent its body
        try:
            value = plan.adapter.validate_json(body)
        except ValidationError:  # FastAPI words the 422
            await self.inner(scope, _replay(body, receive), send)
            return
        db: Database = state.db
        token = None if authorization is None else bearer_token(authorization.decode("latin-1"))
        kwargs = {plan.body_name: value, plan.db_name: db}
        try:
            principal = authenticate(token, plan.scope, settings=settings, db=None)
            if principal is None:  # not verified recently: in the thread, before the endpoint
                call = functools.partial(
                    _authenticated, plan, kwargs, token, settings=settings, db=db
                )
            else:
                call = functools.partial(plan.endpoint, **kwargs, **{plan.key_name: principal})
            response = await self._pool().run(call)
        except Exception as exc:  # answered as FastAPI's exception handlers would
            response = await self._handled(scope, receive, exc)
        await response(scope, receive, send)

    def _pool(self) -> Pool:
        """The app's pool (``close_pool`` ends it when the app shuts down; a later request
        starts a new one)."""
        state = self.api.state
        pool: Pool | None = getattr(state, "lean_pool", None)
        if pool is None:
            pool = state.lean_pool = Pool(state.settings.threads)
        return pool

    async def _handled(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        handlers = self.api.exception_handlers
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                answer = handler(Request(scope, receive), exc)
                if inspect.isawaitable(answer):
                    answer = await answer
                assert isinstance(answer, Response)
                return answer
        raise exc


def _authenticated(
    plan: Plan, kwargs: dict[str, Any], token: str | None, *, settings: Settings, db: Database
) -> Any:
    principal = authenticate(token, plan.scope, settings=settings, db=db)
    return plan.endpoint(**kwargs, **{plan.key_name: principal})


def check_position(api: FastAPI) -> bool:
    """Refuse the app (``RuntimeError``) when a middleware sits inside ``LeanApp``: the
    lean path would skip it. Checked when the app is made and again when its middleware
    stack is built (on start-up, or at the first request). False, with a warning, when
    Starlette's list of middleware is not what it was: the lean path is then off."""
    entries = getattr(api, "user_middleware", None)
    kinds = [getattr(entry, "cls", None) for entry in entries or ()]
    if not entries or None in kinds or LeanApp not in kinds:
        log.warning(
            "the lean path is off: the app's middleware list (Starlette's "
            "user_middleware, Middleware.cls) is not as expected; the hot routes take "
            "FastAPI's standard path (same answers, slower)."
        )
        return False
    inside = kinds[kinds.index(LeanApp) + 1 :]
    if inside:
        names = ", ".join(getattr(kind, "__name__", repr(kind)) for kind in inside)
        raise RuntimeError(
            f"middleware {names} was put inside Treu's lean path, which would skip it on "
            "the hot routes (/v1/events, /v1/events/batch, /v1/checkout/evaluate); add "
            "middleware with app.add_middleware() or @app.middleware('http'), which put "
            "it in front of the lean path (see treu.api.lean)"
        )
    return True


def close_pool(app: FastAPI) -> None:
    pool: Pool | None = getattr(app.state, "lean_pool", None)
    if pool is not None:
        del app.state.lean_pool
        pool.close()


def _headers(scope: Scope) -> tuple[int | None, bytes | None, bytes | None]:
    """Content-Length, Authorization and Content-Type, in one pass over the headers (the
    first of each, as Starlette's ``Headers.get`` takes it)."""
    length: int | None = None
    authorization = content_type = None
    for name, value in scope["headers"]:  # ASGI: header names are lower case
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                pass  # the server refuses such a request before it gets here
        elif name == b"authorization":
            authorization = value if authorization is None else authorization
        elif name == b"content-type":
            content_type = value if content_type is None else content_type
    return length, authorization, content_type


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than {limit:,} bytes (TREU_MAX_BODY_BYTES); "
        "send large imports as several batches"
    )


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body (one without a Content-Length, or longer than it
    said) once it passes ``limit``, on the lean path and FastAPI's alike. It raises an
    ``HTTPException`` (413), the one error FastAPI passes on unchanged from reading a
    body; the problem handler answers it as ``payload_too_large``."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise HTTPException(413, _too_large(limit).detail)
        return message

    return counted


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the standard path: the body already read, then the connection's."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class Pool:
    """Threads for the lean endpoints (at most ``size``, started as needed). A job runs
    in a copy of the ``contextvars`` of the code that handed it over, as with
    ``asyncio.to_thread`` and FastAPI's thread pool (log context, tracing).

    Cheaper than ``loop.run_in_executor``: a job is one queue entry and its answer one
    ``call_soon_threadsafe``, without the ``concurrent.futures.Future`` that the
    executor creates and chains to an asyncio future (2.7 % fewer instructions for a
    single purchase through the ASGI app, measured with callgrind)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def run(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            if self._idle:
                self._idle -= 1  # that thread takes this job
            elif self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._work, name="treu-lean", daemon=True).start()
            # else: the job waits for the first thread to finish
        self._jobs.put((loop, future, contextvars.copy_context(), call))
        return future

    def close(self) -> None:
        """Let every thread end once the jobs queued before have run."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, future, context, call = job
            try:
                result = context.run(call)
            except BaseException as exc:
                _answer(loop, future, _fail, exc)
            else:
                _answer(loop, future, _done, result)
                del result
            del job, future, context, call  # keep nothing alive while idle
            with self._lock:
                self._idle += 1


def _answer(loop: asyncio.AbstractEventLoop, future: Any, how: Any, value: Any) -> None:
    try:
        loop.call_soon_threadsafe(how, future, value)
    except RuntimeError:  # the loop is closed: nobody waits for the answer any more
        pass


def _done(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)
