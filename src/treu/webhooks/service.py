"""Webhook endpoints: registering, editing, rotating secrets, and what delivery asks of
them — planning (which endpoints an outbox row goes to, and the body they get) and
settling (counting failures, disabling an endpoint that keeps failing).

Sending is in ``treu.webhooks.channel``; the deliveries themselves are
``treu.delivery``'s rows (``channel = "webhook"``, ``target`` = the endpoint's id).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.delivery.channel import Outcome, Planned, SendFailed
from treu.delivery.models import Delivery, DeliveryStatus
from treu.delivery.service import deliveries
from treu.errors import Invalid
from treu.kit.pagination import decode_cursor, encode_cursor
from treu.kit.time import iso
from treu.outbox.events import TYPES
from treu.outbox.models import OutboxMessage
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.webhooks import signing, urls
from treu.webhooks.errors import (
    DeliveryPending,
    UnknownEventType,
    WebhookDeliveryNotFound,
    WebhookDisabled,
    WebhookNotFound,
    WebhookUrlRefused,
)
from treu.webhooks.models import WebhookEndpoint
from treu.webhooks.schemas import (
    WebhookDeliveryOut,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)

CHANNEL = "webhook"
ROTATION_OVERLAP = timedelta(hours=24)
"""How long the secret before a rotation keeps signing (receivers switch meanwhile)."""
COMING_TYPES = ("campaign.message",)
"""Types no outbox row has yet, accepted so that endpoints can subscribe ahead."""
SYSTEM_ACTOR = "treu.delivery"
_DUE = (DeliveryStatus.pending.value, DeliveryStatus.failed.value)


def event_types() -> list[str]:
    """Every type an endpoint may subscribe to."""
    return sorted({*TYPES, *COMING_TYPES})


class EndpointUnavailable(SendFailed):
    """The delivery's endpoint is deleted or disabled: the delivery is dead at once, and
    it is no failure of the receiver's (it counts toward no disabling)."""

    def __init__(self, error: str) -> None:
        super().__init__(error, retry=False)


@dataclass(frozen=True, slots=True)
class _Subscriber:
    id: uuid.UUID
    events: frozenset[str]
    programme_id: uuid.UUID | None


class WebhookService:
    # --- endpoints -----------------------------------------------------------------------

    def create(
        self,
        session: Session,
        *,
        data: WebhookIn,
        actor: str,
        allow_private: bool,
        resolve: urls.Resolver = urls.system_resolver,
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its secret (the only time the secret is shown, but for a
        rotation)."""
        _check_url(data.url, allow_private=allow_private, resolve=resolve)
        secret = signing.new_secret()
        endpoint = WebhookEndpoint(
            url=data.url,
            description=data.description,
            events=_event_list(data.events),
            programme_id=_programme_id(session, data.programme),
            enabled=True,
            secret=secret,
            consecutive_failures=0,
        )
        session.add(endpoint)
        session.flush()
        self._audit(session, endpoint, actor, "webhook.created", url=endpoint.url)
        return endpoint, secret

    def get(
        self, session: Session, endpoint_id: uuid.UUID, *, lock: bool = False
    ) -> WebhookEndpoint:
        query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        found = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if found is None:
            raise WebhookNotFound(f"no webhook endpoint {str(endpoint_id)!r}")
        return found

    def all(
        self, session: Session, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[WebhookEndpoint], str | None]:
        """Newest first, keyset-paginated."""
        query = select(WebhookEndpoint)
        if cursor:
            query = query.where(WebhookEndpoint.id < _before(cursor))
        rows = list(session.scalars(query.order_by(WebhookEndpoint.id.desc()).limit(limit + 1)))
        return _page(rows, limit)

    def update(
        self,
        session: Session,
        *,
        endpoint_id: uuid.UUID,
        patch: WebhookPatch,
        actor: str,
        allow_private: bool,
        now: datetime,
        resolve: urls.Resolver = urls.system_resolver,
    ) -> WebhookEndpoint:
        endpoint = self.get(session, endpoint_id, lock=True)
        given = patch.model_fields_set
        changed: list[str] = []
        if "url" in given and patch.url is not None and patch.url != endpoint.url:
            _check_url(patch.url, allow_private=allow_private, resolve=resolve)
            endpoint.url = patch.url
            changed.append("url")
        if "events" in given and patch.events is not None:
            events = _event_list(patch.events)
            if events != endpoint.events:
                endpoint.events = events
                changed.append("events")
        if "description" in given and patch.description is not None:
            if patch.description != endpoint.description:
                endpoint.description = patch.description
                changed.append("description")
        if "programme" in given:
            programme_id = _programme_id(session, patch.programme)
            if programme_id != endpoint.programme_id:
                endpoint.programme_id = programme_id
                changed.append("programme")
        if changed:
            endpoint.updated_at = now
            self._audit(session, endpoint, actor, "webhook.updated", fields=changed)
        if "enabled" in given and patch.enabled is not None and patch.enabled != endpoint.enabled:
            if patch.enabled:
                endpoint.enabled = True
                endpoint.consecutive_failures = 0
                endpoint.disabled_at = None
                endpoint.disabled_reason = None
                endpoint.updated_at = now
                self._audit(session, endpoint, actor, "webhook.enabled")
            else:
                self._disable(
                    session, endpoint, actor=actor, reason=f"disabled by {actor}", now=now
                )
        session.flush()
        return endpoint

    def rotate(
        self, session: Session, *, endpoint_id: uuid.UUID, actor: str, now: datetime
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret; the one it replaces signs too for ``ROTATION_OVERLAP``. (A
        second rotation within that time drops the oldest secret at once.)"""
        endpoint = self.get(session, endpoint_id, lock=True)
        secret = signing.new_secret()
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret = secret
        endpoint.updated_at = now
        session.flush()
        self._audit(
            session,
            endpoint,
            actor,
            "webhook.secret_rotated",
            previous_secret_expires_at=iso(endpoint.previous_secret_expires_at),
        )
        return endpoint, secret

    def delete(
        self, session: Session, *, endpoint_id: uuid.UUID, actor: str, now: datetime
    ) -> None:
        """Delete the endpoint; what it still had to receive is dead ("endpoint
        deleted"), what it received stays on record."""
        endpoint = self.get(session, endpoint_id, lock=True)
        self._audit(session, endpoint, actor, "webhook.deleted", url=endpoint.url)
        self._bury(session, endpoint.id, reason="endpoint deleted", now=now)
        session.delete(endpoint)
        session.flush()

    def out(self, session: Session, endpoints: Sequence[WebhookEndpoint]) -> list[WebhookOut]:
        ids = {e.programme_id for e in endpoints if e.programme_id is not None}
        slugs = _slugs(session, ids)
        return [
            WebhookOut(
                id=e.id,
                url=e.url,
                events=list(e.events),
                description=e.description,
                programme=slugs.get(e.programme_id) if e.programme_id else None,
                enabled=e.enabled,
                consecutive_failures=e.consecutive_failures,
                disabled_at=e.disabled_at,
                disabled_reason=e.disabled_reason,
                previous_secret_expires_at=e.previous_secret_expires_at,
                created_at=e.created_at,
                updated_at=e.updated_at,
            )
            for e in endpoints
        ]

    # --- deliveries ----------------------------------------------------------------------

    def deliveries(
        self,
        session: Session,
        *,
        endpoint_id: uuid.UUID,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """The endpoint's deliveries, newest first, keyset-paginated."""
        endpoint = self.get(session, endpoint_id)
        rows = deliveries.list(
            session,
            channel=CHANNEL,
            target=str(endpoint.id),
            status=status.value if status else None,
            before=_before(cursor) if cursor else None,
            limit=limit + 1,
        )
        return _page(rows, limit)

    def latest(
        self, session: Session, endpoint_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Delivery]:
        """Each endpoint's newest delivery (its last status at a glance), in one query
        for a page of endpoints."""
        if not endpoint_ids:
            return {}
        targets = [str(i) for i in endpoint_ids]
        rank = (
            func.row_number()
            .over(partition_by=Delivery.target, order_by=Delivery.id.desc())
            .label("rank")
        )
        ranked = (
            select(Delivery.id, rank)
            .where(Delivery.channel == CHANNEL, Delivery.target.in_(targets))
            .subquery()
        )
        newest = select(ranked.c.id).where(ranked.c.rank == 1)
        rows = session.scalars(select(Delivery).where(Delivery.id.in_(newest)))
        return {uuid.UUID(row.target): row for row in rows}

    def delivery_out(self, row: Delivery) -> WebhookDeliveryOut:
        return WebhookDeliveryOut(
            id=row.id,
            message_id=signing.message_id(row.id),
            event_type=row.event_type,
            status=DeliveryStatus(row.status),
            attempts=row.attempts,
            last_status=row.last_status,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            next_attempt_at=row.next_attempt_at,
        )

    def redeliver(
        self,
        session: Session,
        *,
        endpoint_id: uuid.UUID,
        delivery_id: uuid.UUID,
        now: datetime,
        actor: str | None = None,
    ) -> Delivery:
        """Send a delivery again now, under the same ``webhook-id`` (it is the same
        message): a dead or failed one with a fresh count of tries, a delivered one as
        if it had not been (the receiver lost it, or wants it again). With an ``actor``
        the redelivery is in the audit log."""
        endpoint = self.get(session, endpoint_id)
        row = session.scalars(
            select(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.channel == CHANNEL,
                Delivery.target == str(endpoint.id),
            )
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise WebhookDeliveryNotFound(
                f"no delivery {str(delivery_id)!r} to webhook endpoint {str(endpoint_id)!r}"
            )
        if not endpoint.enabled:
            raise WebhookDisabled(
                'the endpoint is disabled: enable it first (PATCH {"enabled": true})'
            )
        if row.status == DeliveryStatus.pending.value:
            raise DeliveryPending(f"delivery {delivery_id} is pending: it will be sent")
        if actor is not None:
            self._audit(
                session,
                endpoint,
                actor,
                "webhook.redelivered",
                delivery_id=str(row.id),
                message_id=signing.message_id(row.id),
                status=row.status,
            )
        if row.status != DeliveryStatus.delivered.value:
            return deliveries.retry(session, delivery_id, now=now)
        row.status = DeliveryStatus.pending.value
        row.attempts = 0
        row.next_attempt_at = now
        row.last_error = None
        row.last_status = None
        row.updated_at = now
        session.flush()
        return row

    # --- what delivery asks --------------------------------------------------------------

    def plan(self, session: Session, messages: Sequence[OutboxMessage]) -> list[Planned]:
        """One delivery per enabled endpoint subscribed to a message's type (and
        programme). The endpoints are read once per call: a batch of messages costs two
        queries whatever its size."""
        subscribers = [
            _Subscriber(id=e.id, events=frozenset(e.events), programme_id=e.programme_id)
            for e in session.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.enabled.is_(True))
                .order_by(WebhookEndpoint.id)
            )
        ]
        if not subscribers:
            return []
        matched = [
            (message, [s for s in subscribers if _wants(s, message)]) for message in messages
        ]
        matched = [(m, subs) for m, subs in matched if subs]
        if not matched:
            return []
        slugs = _slugs(session, {m.programme_id for m, _ in matched})
        planned: list[Planned] = []
        for message, subs in matched:
            body = _body(message, slugs.get(message.programme_id, str(message.programme_id)))
            planned.extend(
                Planned(
                    channel=CHANNEL,
                    target=str(s.id),
                    dedupe_key=f"webhook:{s.id}:{message.id}",
                    event_type=message.type,
                    payload=body,
                    programme_id=message.programme_id,
                    member_id=message.member_id,
                    outbox_id=message.id,
                )
                for s in subs
            )
        return planned

    def settle(
        self,
        session: Session,
        outcomes: Sequence[Outcome],
        *,
        now: datetime,
        disable_after: int,
    ) -> list[uuid.UUID]:
        """Count each endpoint's consecutive failures over a round's outcomes (in the
        order they were claimed; an arrival resets the count) and disable the endpoints
        that reach ``disable_after``. Returns the ids of those disabled."""
        by_endpoint: dict[uuid.UUID, list[Outcome]] = {}
        for outcome in outcomes:
            if isinstance(outcome.error, EndpointUnavailable):
                continue
            by_endpoint.setdefault(uuid.UUID(outcome.delivery.target), []).append(outcome)
        if not by_endpoint:
            return []
        # Locked in id order, as every writer of several endpoints locks them.
        rows = session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(by_endpoint))
            .order_by(WebhookEndpoint.id)
            .with_for_update()
        )
        disabled: list[uuid.UUID] = []
        for endpoint in rows:
            count = endpoint.consecutive_failures
            last_error: str | None = None
            for outcome in by_endpoint[endpoint.id]:
                if outcome.error is None:
                    count = 0
                else:
                    count += 1
                    last_error = outcome.error.error
            if count != endpoint.consecutive_failures:
                endpoint.consecutive_failures = count
            if endpoint.enabled and count >= disable_after:
                self._disable(
                    session,
                    endpoint,
                    actor=SYSTEM_ACTOR,
                    reason=f"{count} failures in a row; the last: {last_error}",
                    now=now,
                )
                disabled.append(endpoint.id)
        session.flush()
        return disabled

    # --- inside --------------------------------------------------------------------------

    def _disable(
        self, session: Session, endpoint: WebhookEndpoint, *, actor: str, reason: str, now: datetime
    ) -> None:
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = reason[:2000]
        endpoint.updated_at = now
        self._bury(session, endpoint.id, reason="endpoint disabled", now=now)
        self._audit(session, endpoint, actor, "webhook.disabled", reason=endpoint.disabled_reason)

    def _bury(
        self, session: Session, endpoint_id: uuid.UUID, *, reason: str, now: datetime
    ) -> None:
        """What the endpoint still had to receive is dead (and can be redelivered)."""
        session.execute(
            update(Delivery)
            .where(
                Delivery.channel == CHANNEL,
                Delivery.target == str(endpoint_id),
                Delivery.status.in_(_DUE),
            )
            .values(
                status=DeliveryStatus.dead.value,
                last_error=reason,
                next_attempt_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )

    def _audit(
        self, session: Session, endpoint: WebhookEndpoint, actor: str, action: str, **data: Any
    ) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            subject_type="webhook_endpoint",
            subject_id=str(endpoint.id),
            programme_id=endpoint.programme_id,
            data=data,
        )


def _wants(subscriber: _Subscriber, message: OutboxMessage) -> bool:
    return message.type in subscriber.events and (
        subscriber.programme_id is None or subscriber.programme_id == message.programme_id
    )


def _body(message: OutboxMessage, programme: str) -> dict[str, Any]:
    """The request body (Standard Webhooks' ``{type, timestamp, data}``): the outbox's
    ids and amounts, with the programme's slug and the member's id."""
    return {
        "type": message.type,
        "timestamp": iso(message.occurred_at),
        "data": {
            "programme": programme,
            "member_id": str(message.member_id) if message.member_id else None,
            **message.payload,
        },
    }


def _slugs(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    query = select(Programme.id, Programme.slug).where(Programme.id.in_(ids))
    return {row.id: row.slug for row in session.execute(query)}


def _event_list(given: Sequence[str]) -> list[str]:
    known = set(event_types())
    unknown = [t for t in given if t not in known]
    if unknown:
        raise UnknownEventType(
            f"unknown event type{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}",
            field="events",
            unknown=unknown,
        )
    return list(dict.fromkeys(given))


def _programme_id(session: Session, ref: str | None) -> uuid.UUID | None:
    return None if ref is None else programmes.get(session, ref).id


def _check_url(url: str, *, allow_private: bool, resolve: urls.Resolver) -> None:
    try:
        urls.check(url, allow_private=allow_private, resolve=resolve)
    except urls.UrlRefused as exc:
        raise WebhookUrlRefused(str(exc), field="url") from exc


def _before(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(decode_cursor(cursor).get("before")))
    except ValueError as exc:
        raise Invalid(
            "cursor is not valid; use next_cursor from the previous page", field="cursor"
        ) from exc


def _page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor({"before": str(rows[-1].id)})


webhooks = WebhookService()
