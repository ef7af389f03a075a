"""A lean request path for the hot POST routes (events, batches, checkout).

FastAPI's generic request handling — its middleware (error handling, exception handlers,
the body limit, the exit stack), routing, dependency solving, body parsing with
``json.loads`` and then validation, the hand-off to the thread pool — cost about as much
CPU as ingesting the purchase itself (measured with ``callgrind`` on one purchase
through the ASGI app: 1.2 M of 3.8 M instructions at first; the middleware and routing
alone still 0.27 M of 2.88 M after the dependency solving had gone).

``LeanRoute`` keeps a route a normal FastAPI route (the same endpoint function,
signature, OpenAPI and error answers). ``TreuAPI`` puts ``LeanApp`` in front of
FastAPI's whole middleware stack; for the lean routes it takes the common case itself:

* the request is ``POST`` to the route's path, its body is JSON (``application/json``)
  and validates against the body parameter's type, parsed and validated in one step by
  pydantic (``validate_json``);
* the API key was verified recently (``api_keys.cached``) and has the scope.

Then the endpoint runs at once, in a thread of its own pool, with those values; what it
raises is answered by the app's own exception handlers (problem+json). Anything else — a
missing or unknown key, a wrong scope, another content type, a body that does not
validate — goes through FastAPI's stack with the body handed on unchanged, so every
error answer stays exactly what FastAPI and the problem handlers give. Supported
endpoint parameters: the body, ``DB`` and one ``require(scope)`` dependency; a route
with anything else keeps the standard path (checked at start-up).

``LeanApp`` also limits every request's body to ``TREU_MAX_BODY_BYTES``: a declared
``Content-Length`` beyond it is answered at once, a body without one is stopped when it
passes the limit; either way 413 ``payload_too_large`` (problem+json).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import queue
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from treu.api.deps import get_db, scope_of
from treu.auth.service import api_keys
from treu.errors import PayloadTooLarge, TreuError


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


def _plan(route: APIRoute) -> Plan | None:
    dependant = route.dependant
    if (
        len(dependant.body_params) != 1
        or dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.request_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
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
    """The lean plans of the routers' ``LeanRoute``s by path."""
    found: dict[str, Plan] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, LeanRoute) and (plan := _plan(route)) is not None:
                found[route.path] = plan
    return found


class TreuAPI(FastAPI):
    """FastAPI with ``LeanApp`` in front of its middleware stack for the routes of
    ``lean_routers`` (set before the first request)."""

    lean_plans: dict[str, Plan]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lean_plans = {}

    def lean_routers(self, *routers: APIRouter) -> None:
        self.lean_plans.update(plans(*routers))

    def build_middleware_stack(self) -> ASGIApp:
        return LeanApp(self, super().build_middleware_stack(), self.lean_plans)


class LeanApp:
    def __init__(self, app: FastAPI, inner: ASGIApp, lean: dict[str, Plan]) -> None:
        self.app = app
        self.inner = inner
        self.lean = lean

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        limit: int = self.app.state.settings.max_body_bytes
        declared, authorization, content_type = _headers(scope)
        response: Response
        if declared is not None and declared > limit:
            response = await self._handled(scope, receive, _too_large(limit))
            await response(scope, receive, send)
            return
        receive = _limited(receive, limit)
        plan = self.lean.get(scope["path"])
        principal = (
            None
            if plan is None or scope["method"] != "POST" or scope.get("root_path")
            else _cached_principal(self.app, authorization, content_type, plan.scope)
        )
        if plan is None or principal is None:
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
        kwargs = {plan.body_name: value, plan.db_name: self.app.state.db, plan.key_name: principal}
        try:
            call = functools.partial(plan.endpoint, **kwargs)
            response = await self._pool().run(call)
        except Exception as exc:  # answered as FastAPI's exception handlers would
            response = await self._handled(scope, receive, exc)
        await response(scope, receive, send)

    def _pool(self) -> Pool:
        """The app's pool (``close_pool`` ends it when the app shuts down; a later request
        starts a new one)."""
        state = self.app.state
        pool: Pool | None = getattr(state, "lean_pool", None)
        if pool is None:
            pool = state.lean_pool = Pool(state.settings.threads)
        return pool

    async def _handled(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        handlers = self.app.exception_handlers
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                answer = handler(Request(scope, receive), exc)
                if inspect.isawaitable(answer):
                    answer = await answer
                assert isinstance(answer, Response)
                return answer
        raise exc


def close_pool(app: FastAPI) -> None:
    pool: Pool | None = getattr(app.state, "lean_pool", None)
    if pool is not None:
        del app.state.lean_pool
        pool.close()


def _headers(scope: Scope) -> tuple[int | None, bytes | None, bytes | None]:
    """Content-Length, Authorization and Content-Type, in one pass over the headers."""
    length: int | None = None
    authorization = content_type = None
    for name, value in scope["headers"]:  # ASGI: header names are lower case
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                pass  # the server refuses such a request before it gets here
        elif name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
    return length, authorization, content_type


def _cached_principal(
    app: FastAPI, authorization: bytes | None, content_type: bytes | None, scope: str | None
) -> Any:
    """The key's principal when it was verified recently, has ``scope`` and the body is
    declared JSON; None sends the request down the standard path."""
    if not authorization or not _is_json(content_type):
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    if not app.state.settings.api_key_cache_seconds:
        return None
    try:
        principal = api_keys.cached(token)
    except TreuError:
        return None  # malformed: the standard path answers 401
    if principal is None or (scope is not None and not principal.allows(scope)):
        return None
    return principal


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
    """Threads for the lean endpoints (at most ``size``, started as needed).

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
        self._jobs.put((loop, future, call))
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
            loop, future, call = job
            try:
                result = call()
            except BaseException as exc:
                _answer(loop, future, _fail, exc)
            else:
                _answer(loop, future, _done, result)
                del result
            del job, future, call  # keep nothing alive while idle
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
