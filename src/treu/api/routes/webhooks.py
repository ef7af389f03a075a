"""Webhook endpoints (admin): register, edit, rotate the secret, see and redeliver what
was sent (docs/webhooks.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Response, status

from treu.api.deps import DB, Admin, get_settings
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.config import Settings
from treu.delivery.models import DeliveryStatus
from treu.kit.time import utc_now
from treu.web.routing import Router
from treu.webhooks.schemas import (
    EventTypes,
    WebhookCreated,
    WebhookDeliveryList,
    WebhookDeliveryOut,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    WebhookSecret,
)
from treu.webhooks.service import event_types, webhooks

router = Router(prefix="/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)
AppSettings = Annotated[Settings, Depends(get_settings)]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such webhook endpoint"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": Problem,
        "description": "`unknown_event_type` (named in `unknown`), `webhook_url_refused` "
        "(not http(s), or a host that is not public), validation",
    }
}
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


def _private(settings: Settings) -> bool:
    """Loopback and private addresses are receivers in development mode only."""
    return settings.env == "development"


@router.get("/event-types", response_model=EventTypes)
def list_event_types(_key: Admin) -> EventTypes:
    """The event types an endpoint can subscribe to (admin)."""
    return EventTypes(items=event_types())


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=REFUSED | {404: {"model": Problem, "description": "No such programme"}},
)
def create_webhook(data: WebhookIn, db: DB, key: Admin, settings: AppSettings) -> WebhookCreated:
    """Register an endpoint for the event types in `events` (admin). The answer has the
    signing `secret` — the only time it is shown (a rotation shows the next one). Treu
    signs every request by the Standard Webhooks specification (`webhook-id`,
    `webhook-timestamp`, `webhook-signature`)."""
    with db.unit_of_work() as session:
        endpoint, secret = webhooks.create(
            session, data=data, actor=key.actor, allow_private=_private(settings)
        )
        [out] = webhooks.out(session, [endpoint])
        return WebhookCreated(**out.model_dump(), secret=secret)


@router.get("", response_model=WebhookList)
def list_webhooks(db: DB, _key: Admin, limit: Limit = 50, cursor: Cursor = None) -> WebhookList:
    """The endpoints, newest first (admin); secrets are never listed."""
    with db.unit_of_work(write=False) as session:
        rows, next_cursor = webhooks.all(session, limit=limit, cursor=cursor)
        return WebhookList(items=webhooks.out(session, rows), next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=WebhookOut, responses=NOT_FOUND)
def get_webhook(webhook_id: uuid.UUID, db: DB, _key: Admin) -> WebhookOut:
    """One endpoint (admin), with why it is disabled if it is."""
    with db.unit_of_work(write=False) as session:
        [out] = webhooks.out(session, [webhooks.get(session, webhook_id)])
        return out


@router.patch("/{webhook_id}", response_model=WebhookOut, responses=NOT_FOUND | REFUSED)
def update_webhook(
    webhook_id: uuid.UUID, data: WebhookPatch, db: DB, key: Admin, settings: AppSettings
) -> WebhookOut:
    """Change an endpoint (admin); send only what changes. `enabled: false` disables it
    (what it still had to receive becomes dead), `enabled: true` enables it again and
    resets its count of failures."""
    with db.unit_of_work() as session:
        endpoint = webhooks.update(
            session,
            endpoint_id=webhook_id,
            patch=data,
            actor=key.actor,
            allow_private=_private(settings),
            now=utc_now(),
        )
        [out] = webhooks.out(session, [endpoint])
        return out


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_webhook(webhook_id: uuid.UUID, db: DB, key: Admin) -> Response:
    """Delete an endpoint (admin). What it still had to receive is dropped."""
    with db.unit_of_work() as session:
        webhooks.delete(session, endpoint_id=webhook_id, actor=key.actor, now=utc_now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookSecret, responses=NOT_FOUND)
def rotate_secret(webhook_id: uuid.UUID, db: DB, key: Admin) -> WebhookSecret:
    """A new signing secret (admin). For 24 hours every request carries two signatures,
    with the new secret and with the old one, so the receiver can switch in its own
    time."""
    with db.unit_of_work() as session:
        endpoint, secret = webhooks.rotate(
            session, endpoint_id=webhook_id, actor=key.actor, now=utc_now()
        )
        assert endpoint.previous_secret_expires_at is not None
        return WebhookSecret(
            id=endpoint.id,
            secret=secret,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
        )


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryList, responses=NOT_FOUND)
def list_deliveries(
    webhook_id: uuid.UUID,
    db: DB,
    _key: Admin,
    status_: Annotated[
        DeliveryStatus | None, Query(alias="status", description="Only deliveries in this state")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> WebhookDeliveryList:
    """What was sent to the endpoint, and what waits, newest first (admin)."""
    with db.unit_of_work(write=False) as session:
        rows, next_cursor = webhooks.deliveries(
            session, endpoint_id=webhook_id, status=status_, limit=limit, cursor=cursor
        )
        return WebhookDeliveryList(
            items=[webhooks.delivery_out(r) for r in rows], next_cursor=next_cursor
        )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookDeliveryOut,
    responses={
        404: {"model": Problem, "description": "No such endpoint, or no such delivery to it"},
        409: {
            "model": Problem,
            "description": "`webhook_delivery_pending` (it will be sent anyway), "
            "`webhook_disabled` (enable the endpoint first)",
        },
    },
)
def redeliver(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, db: DB, key: Admin
) -> WebhookDeliveryOut:
    """Send a delivery again, now, with the same `webhook-id` (admin): a dead or failed
    one with a fresh count of tries, a delivered one once more."""
    with db.unit_of_work() as session:
        row = webhooks.redeliver(
            session,
            endpoint_id=webhook_id,
            delivery_id=delivery_id,
            now=utc_now(),
            actor=key.actor,
        )
        return webhooks.delivery_out(row)
