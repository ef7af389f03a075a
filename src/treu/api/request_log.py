"""Request ids in the logs, the same for every request whichever path answers it.

Each HTTP request gets an id: the ``X-Request-ID`` header a proxy or client sent (1 to
128 letters, digits or ``-_.:/+=@``), else a new time-ordered one. The answer carries it
back as ``X-Request-ID``. While the request runs the id is in ``request_id`` (a context
variable), and every log record made meanwhile — on the event loop, in FastAPI's thread
pool, in the lean path's (``api.lean.Pool`` copies the context into its threads) — has
it as ``record.request_id`` (``-`` outside a request), for a format such as
``%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s``.

When a request ends, one line goes to the ``treu.api.access`` logger at INFO: method,
path, status and milliseconds. Nothing is formatted while that level is off.

``TreuAPI.__call__`` runs ``logged`` outside every middleware, so that what is logged
while an error is answered (``treu.api`` logs unexpected errors) still has the id.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from treu.kit.ids import new_id

HEADER = b"x-request-id"
_GIVEN = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")

request_id: ContextVar[str] = ContextVar("treu_request_id", default="-")
access = logging.getLogger("treu.api.access")


def install() -> None:
    """Give every log record of this process a ``request_id`` attribute (once: later
    calls change nothing)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "treu_request_id", False):
        return

    def with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    with_request_id.treu_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(with_request_id)


async def logged(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` for one request with its id set, answered and logged."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    raw: bytes | None = None
    for name, value in scope["headers"]:  # ASGI: header names are lower case
        if name == HEADER:
            raw = value if _GIVEN.fullmatch(value) else None
            break
    if raw is None:
        raw = new_id().hex.encode()
    token = request_id.set(raw.decode("ascii"))
    started = time.perf_counter()
    status: int | str = "-"  # no answer: the client went away

    async def answer(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), (HEADER, raw)]}
        await send(message)

    try:
        await app(scope, receive, answer)
    finally:
        if access.isEnabledFor(logging.INFO):
            access.info(
                "%s %s %s %.1f ms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
        request_id.reset(token)
