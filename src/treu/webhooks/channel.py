"""Webhooks as a delivery channel (``treu.delivery.channel``): planning and settling are
``treu.webhooks.service``'s; sending is here.

A send reads the endpoint as it is at that moment — its URL, whether it is still
enabled, the secrets valid now — so an edit, a rotation or a disabling applies to the
retries of deliveries planned before it. The body is the one fixed at planning, sent as
the same bytes on every try, and the ``webhook-id`` is the delivery's id.

Each sender (one per worker thread) keeps one ``httpx.Client``, so connections to a
receiver are reused (keep-alive). Its connections are opened by ``GuardedBackend``,
which resolves the host, refuses any non-public address outside development mode
(``treu.webhooks.urls``) and connects to an address it has just checked. Redirects are
not followed (a redirect is a failed try: it could lead anywhere), and proxy settings
from the environment are ignored.
"""

from __future__ import annotations

import re
import time
import typing
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import httpcore
import httpx
from sqlalchemy.orm import Session

from treu import __version__
from treu.config import Settings
from treu.db.session import Database, get_database
from treu.delivery.channel import Claimed, Outcome, Planned, SendFailed
from treu.kit.jsons import dumps
from treu.kit.time import utc_now
from treu.outbox.models import OutboxMessage
from treu.webhooks import signing, urls
from treu.webhooks.models import WebhookEndpoint
from treu.webhooks.service import CHANNEL, EndpointUnavailable, webhooks

USER_AGENT = f"Treu-Webhooks/{__version__} (+https://treu.dev)"
KEEP_BYTES = 64 * 1024
ENDPOINT_FRESH_SECONDS = 1.0
"""How much of an answer's body is read (and so the connection kept): receivers are
asked for a status, not a document."""
ERROR_EXCERPT = 200


@dataclass(frozen=True, slots=True)
class EndpointNow:
    url: str
    enabled: bool
    secrets: tuple[str, ...]


class WebhookChannel:
    name = CHANNEL

    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        *,
        resolve: urls.Resolver = urls.system_resolver,
    ) -> None:
        self.settings = settings
        self._db = db
        self.resolve = resolve

    @property
    def db(self) -> Database:
        """The database the senders read endpoints from (the process's, by default)."""
        if self._db is None:
            self._db = get_database(self.settings.database_url)
        return self._db

    @property
    def allow_private(self) -> bool:
        return self.settings.env == "development"

    def plan(
        self, session: Session, messages: Sequence[OutboxMessage], *, now: datetime
    ) -> list[Planned]:
        return webhooks.plan(session, messages)

    def sender(self) -> WebhookSender:
        return WebhookSender(self)

    def settle(self, session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        webhooks.settle(
            session, outcomes, now=now, disable_after=self.settings.webhook_disable_after
        )

    def endpoint(self, endpoint_id: uuid.UUID, *, now: datetime) -> EndpointNow | None:
        with self.db.unit_of_work(write=False) as session:
            row = session.get(WebhookEndpoint, endpoint_id)
            if row is None:
                return None
            return EndpointNow(url=row.url, enabled=row.enabled, secrets=tuple(row.secrets_at(now)))


class WebhookSender:
    def __init__(self, channel: WebhookChannel) -> None:
        self.channel = channel
        self._seen: dict[uuid.UUID, tuple[float, EndpointNow | None]] = {}
        self.timeout = channel.settings.webhook_timeout_seconds
        backend = GuardedBackend(allow_private=channel.allow_private, resolve=channel.resolve)
        self.client = httpx.Client(
            transport=guarded_transport(backend),
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )

    def _endpoint(self, endpoint_id: uuid.UUID, now: datetime) -> EndpointNow | None:
        """The endpoint as the database has it, read at most once per
        ``ENDPOINT_FRESH_SECONDS`` by this sender: a read per message halved the rate
        at which one worker sends (benchmarks/delivery.py), and an edit, a rotation or
        a disabling takes effect within the second anyway."""
        seen = self._seen.get(endpoint_id)
        clock = time.monotonic()
        if seen is not None and clock - seen[0] < ENDPOINT_FRESH_SECONDS:
            return seen[1]
        endpoint = self.channel.endpoint(endpoint_id, now=now)
        self._seen[endpoint_id] = (clock, endpoint)
        return endpoint

    def send(self, delivery: Claimed) -> int:
        """POST the delivery; the receiver's (2xx) status, or ``SendFailed``."""
        now = utc_now()
        endpoint = self._endpoint(uuid.UUID(delivery.target), now)
        if endpoint is None:
            raise EndpointUnavailable("endpoint deleted")
        if not endpoint.enabled:
            raise EndpointUnavailable("endpoint disabled")
        try:
            urls.parse(endpoint.url)
        except urls.UrlRefused as exc:
            raise SendFailed(str(exc), retry=False) from exc
        body = dumps(delivery.payload)
        headers = signing.headers(
            endpoint.secrets,
            msg_id=signing.message_id(delivery.id),
            timestamp=int(now.timestamp()),
            body=body,
        )
        try:
            with self.client.stream("POST", endpoint.url, content=body, headers=headers) as answer:
                status = answer.status_code
                excerpt = _read_some(answer)
        except urls.HostUnresolved as exc:
            raise SendFailed(str(exc)) from exc
        except urls.UrlRefused as exc:  # resolved to another address since registration
            raise SendFailed(str(exc), retry=False) from exc
        except httpx.InvalidURL as exc:
            raise SendFailed(f"the URL is not valid: {exc}", retry=False) from exc
        except httpx.TimeoutException as exc:
            raise SendFailed(f"no answer within {self.timeout:g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise SendFailed(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= status < 300:
            text = f"HTTP {status}"
            if 300 <= status < 400:
                text += " (redirects are not followed)"
            if excerpt:
                text += f": {excerpt}"
            raise SendFailed(text, status=status)
        return status

    def close(self) -> None:
        self.client.close()


def _read_some(answer: httpx.Response) -> str:
    """The start of the answer's body, as one line. A body up to ``KEEP_BYTES`` is read
    to its end, so the connection can serve the next request."""
    got = bytearray()
    for chunk in answer.iter_raw():
        got += chunk
        if len(got) > KEEP_BYTES:
            break
    text = bytes(got[: ERROR_EXCERPT * 4]).decode("utf-8", "replace")
    return re.sub(r"\s+", " ", text).strip()[:ERROR_EXCERPT]


class GuardedBackend(httpcore.SyncBackend):
    """Opens every connection to an address of the host that ``urls.allowed`` has
    checked just now, trying them in turn as ``socket.create_connection`` would. TLS
    still names the host (SNI, certificate), as the URL does."""

    def __init__(self, *, allow_private: bool, resolve: urls.Resolver) -> None:
        self.allow_private = allow_private
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        found = urls.allowed(host, port, allow_private=self.allow_private, resolve=self.resolve)
        failure: httpcore.ConnectError | None = None
        for address in found:
            try:
                return super().connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure


def guarded_transport(backend: httpcore.NetworkBackend) -> httpx.HTTPTransport:
    """httpx's transport with its connections opened by ``backend``.

    httpx does not take a network backend, so the transport's connection pool (its
    ``_pool``, the one internal used here) is replaced by an httpcore pool made with the
    same settings and the backend. httpx is bounded below 1.0 in pyproject.toml;
    tests/webhooks/test_sending.py fails plainly if the attribute goes away."""
    transport = httpx.HTTPTransport(trust_env=False)
    if not isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        raise RuntimeError("httpx.HTTPTransport has no _pool any more: see guarded_transport")
    limits = httpx.Limits()  # httpx's defaults, as the transport it replaces had
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport
