"""A small HTTP/1.1 load generator: raw keep-alive connections on asyncio (uvloop).

Why not a general client (httpx, aiohttp)? The benchmark shares two cores with the server
it measures, so every microsecond the client spends is taken from the server. This client
does the least it can: request bytes are built from a template, a response is parsed only
as far as the status line and ``Content-Length``, and the body is skipped unless the caller
asks for it. Its own CPU time is measured and reported next to every figure.

Two modes:

* ``closed_loop`` (saturation): ``concurrency`` connections, each sends its next request as
  soon as the previous answer arrived. Throughput is counted over a measurement window
  after a warm-up.
* ``open_loop`` (latency at a fixed rate): requests are *scheduled* at ``start + i / rate``
  and sent on an idle connection (a new one is opened when none is idle). Latency is
  measured from the scheduled time, not from the moment the request was written, so a
  stalled server cannot hide its stall by slowing the client down (no coordinated
  omission). uvloop's millisecond timers may wake up to ~0.7 ms early; then the clock
  starts at the real send time, never before it.

Connections are reused for ``requests_per_connection`` requests, then reopened, and the
closed loop opens its connections ``STAGGER`` apart. uvicorn's workers share one listening
socket, and whichever worker wakes first accepts every pending connection: a handful of
long-lived connections opened at once often all land on one worker while the other one
idles (seen here: 4 connections, 0.72 and 0.00 cores). Reconnecting now and then lets the
less busy worker pick up new connections, as it would with a fleet of tills.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

try:  # installed with uvicorn[standard]; plain asyncio works too, a little slower
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

REQUEST_TIMEOUT = 60.0
STAGGER = 0.02
"""Seconds between opening the closed loop's connections (see ``closed_loop``)."""


class HttpError(Exception):
    pass


class _Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.want_body = False
        self.closed = False
        self.used = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._try_complete()

    def _try_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                self.waiter.set_exception(HttpError("chunked responses are not supported"))
                return
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total]) if self.want_body else b""
        del self.buffer[:total]
        self.waiter.set_result((status, body))

    async def request(self, raw: bytes, *, want_body: bool) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.want_body = want_body
        self.used += 1
        self.transport.write(raw)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):  # a timer, not a task per request
                return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Client:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host = host
        self.port = port
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        ).encode()

    async def connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        return conn

    def build(self, path: str, body: bytes) -> bytes:
        return (
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\n"
            + self.head
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


@dataclass
class Result:
    """What one load phase saw. Latencies are in seconds."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    measured_requests: int = 0
    measured_seconds: float = 0.0
    events_accepted: int = 0
    """Events the server answered 201 for (for a batch: the items with status 201)."""
    events_in_window: int = 0
    wall_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    max_connections: int = 0
    late_sends: int = 0
    """Open loop only: requests that could not be sent on time (no connection free)."""

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]


BodyFactory = Callable[[], bytes]
Accepted = Callable[[int, bytes], int]
"""From (status, body) to the number of events accepted (201) by that answer."""


def _single_accepted(status: int, _body: bytes) -> int:
    return 1 if status == 201 else 0


async def closed_loop(
    client: Client,
    path: str,
    make_body: BodyFactory,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    accepted: Accepted = _single_accepted,
    want_body: bool = False,
    max_requests: int | None = None,
    requests_per_connection: int = 100,
) -> Result:
    result = Result()
    start = time.perf_counter()
    window_start = start + warmup
    deadline = window_start + duration
    cpu0 = time.process_time()
    budget = [max_requests if max_requests is not None else 1 << 62]

    async def one_connection(index: int) -> None:
        await asyncio.sleep(index * STAGGER)
        conn = await client.connect()
        try:
            while budget[0] > 0:
                now = time.perf_counter()
                if now >= deadline:
                    return
                budget[0] -= 1
                if conn.used >= requests_per_connection:
                    conn.close()
                    conn = await client.connect()
                raw = client.build(path, make_body())
                sent = time.perf_counter()
                try:
                    status, body = await conn.request(raw, want_body=want_body)
                except (HttpError, TimeoutError, OSError) as exc:
                    result.errors[type(exc).__name__] += 1
                    conn.close()
                    conn = await client.connect()
                    continue
                done = time.perf_counter()
                result.requests += 1
                result.statuses[status] += 1
                n = accepted(status, body)
                result.events_accepted += n
                if window_start <= done <= deadline:
                    result.measured_requests += 1
                    result.events_in_window += n
                    result.latencies.append(done - sent)
        finally:
            conn.close()

    await asyncio.gather(*(one_connection(i) for i in range(concurrency)))
    end = time.perf_counter()
    result.wall_seconds = end - start
    result.measured_seconds = min(end, deadline) - window_start
    result.client_cpu_seconds = time.process_time() - cpu0
    result.max_connections = concurrency
    return result


async def open_loop(
    client: Client,
    path: str,
    make_body: BodyFactory,
    *,
    rate: float,
    duration: float,
    max_connections: int = 256,
    accepted: Accepted = _single_accepted,
    requests_per_connection: int = 100,
) -> Result:
    result = Result()
    total = int(rate * duration)
    idle: list[_Conn] = []
    opened = [0]
    waiters: deque[asyncio.Future[_Conn]] = deque()
    tasks: set[asyncio.Task[None]] = set()
    cpu0 = time.process_time()

    async def checkout() -> _Conn:
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            opened[0] -= 1
        if opened[0] < max_connections:
            opened[0] += 1
            result.max_connections = max(result.max_connections, opened[0])
            return await client.connect()
        waiter: asyncio.Future[_Conn] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        return await waiter

    def checkin(conn: _Conn) -> None:
        if conn.used >= requests_per_connection:
            conn.close()
            conn.closed = True
        if conn.closed:
            opened[0] -= 1
            if waiters:  # hand the waiting request a fresh connection instead
                opened[0] += 1
                task = asyncio.create_task(_reconnect(waiters.popleft()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        elif waiters:
            waiters.popleft().set_result(conn)
        else:
            idle.append(conn)

    async def _reconnect(waiter: asyncio.Future[_Conn]) -> None:
        try:
            waiter.set_result(await client.connect())
        except OSError as exc:
            waiter.set_exception(exc)

    async def fire(scheduled: float, body: bytes) -> None:
        conn = await checkout()
        now = time.perf_counter()
        if now - scheduled > 0.002:
            result.late_sends += 1
        # uvloop's timers have millisecond resolution and may wake a little early: then
        # the clock starts when the request is really sent, never before.
        reference = max(scheduled, now)
        try:
            status, resp = await conn.request(client.build(path, body), want_body=False)
        except (HttpError, TimeoutError, OSError) as exc:
            result.errors[type(exc).__name__] += 1
            conn.close()
            checkin(conn)
            return
        done = time.perf_counter()
        checkin(conn)
        result.requests += 1
        result.statuses[status] += 1
        result.events_accepted += accepted(status, resp)
        result.latencies.append(done - reference)

    start = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = start + i / rate
        body = make_body()  # built before the scheduled time, off the measured path
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(scheduled, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    end = time.perf_counter()
    for conn in idle:
        conn.close()
    result.wall_seconds = end - start
    result.measured_seconds = result.wall_seconds
    result.measured_requests = result.requests
    result.events_in_window = result.events_accepted
    result.client_cpu_seconds = time.process_time() - cpu0
    return result


def run(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed."""
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)
