"""Webhook endpoints in the console (admins): register one (its signing secret shown
once), choose its events, rotate its secret, disable and enable it, and read its delivery
log — newest first, paged — with a redelivery for what did not arrive.

The same service as ``/v1/webhooks`` does everything, audit log included; outside
development mode a URL that is not public is refused there (SSRF) and the refusal is
shown on the form."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from treu.config import Settings
from treu.delivery.models import DeliveryStatus
from treu.errors import TreuError
from treu.kit.text import N_
from treu.kit.time import utc_now
from treu.programmes.service import programmes
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.admin.once import Revealed, forget, keep, take
from treu.web.nav import ADMIN
from treu.web.render import render
from treu.web.security import check_csrf
from treu.webhooks.schemas import WebhookIn, WebhookPatch
from treu.webhooks.service import event_types, webhooks

ADMIN.link("/admin/webhooks", N_("Webhooks"), order=90, permission="webhooks.manage")

PERMISSION = "webhooks.manage"
ENDPOINTS = 50
DELIVERIES = 20
REDELIVERABLE = {
    DeliveryStatus.failed.value,
    DeliveryStatus.dead.value,
    DeliveryStatus.delivered.value,
}

Manager = Annotated[Staff, Depends(need(PERMISSION))]
Csrf = Annotated[str, Form(max_length=100)]
Cursor = Annotated[str | None, Query(max_length=200)]


def _private(request: Request) -> bool:
    """Loopback and private receivers in development mode only (as the API)."""
    settings: Settings = request.app.state.settings
    return settings.env == "development"


def _reason(error: TreuError | ValidationError) -> str:
    """What to show on the form: the service's sentence, or the first thing the input
    model refused (a forged or truncated form)."""
    if isinstance(error, TreuError):
        return error.detail
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}"


def _actor(staff: Staff) -> str:
    return f"staff:{staff.email}"


def _list_page(
    request: Request,
    staff: Staff,
    *,
    cursor: str | None = None,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, object] | None = None,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        rows, next_cursor = webhooks.all(session, limit=ENDPOINTS, cursor=cursor)
        endpoints = webhooks.out(session, rows)
        latest = webhooks.latest(session, [e.id for e in rows])
        slugs = [p.slug for p in programmes.all(session)]
    return render(
        request,
        "admin/webhooks.html",
        status_code=status_code,
        staff=staff,
        endpoints=[(e, latest.get(e.id)) for e in endpoints],
        next_cursor=next_cursor,
        cursor=cursor,
        event_types=event_types(),
        programmes=slugs,
        error=error,
        form=form or {"url": "", "description": "", "programme": "", "events": []},
    )


@router.get("/webhooks")
def webhooks_page(request: Request, staff: Manager, cursor: Cursor = None) -> Response:
    return _list_page(request, staff, cursor=cursor)


@router.post("/webhooks")
def create_webhook(
    request: Request,
    staff: Manager,
    csrf: Csrf,
    url: Annotated[str, Form(max_length=2000)],
    description: Annotated[str, Form(max_length=500)] = "",
    programme: Annotated[str, Form(max_length=100)] = "",
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    check_csrf(csrf, staff.csrf)
    chosen = events or []
    form: dict[str, object] = {
        "url": url,
        "description": description,
        "programme": programme,
        "events": chosen,
    }
    if not url.strip():
        return _list_page(request, staff, status_code=422, error="url", form=form)
    if not chosen:
        return _list_page(request, staff, status_code=422, error="events", form=form)
    try:
        with database(request).unit_of_work() as session:
            endpoint, secret = webhooks.create(
                session,
                data=WebhookIn(
                    url=url.strip(),
                    events=chosen,
                    description=description.strip(),
                    programme=programme or None,
                ),
                actor=_actor(staff),
                allow_private=_private(request),
            )
            endpoint_id = str(endpoint.id)
    except (TreuError, ValidationError) as error:
        return _list_page(request, staff, status_code=422, error=_reason(error), form=form)
    answer = RedirectResponse(f"/admin/webhooks/{endpoint_id}?done=created", status_code=303)
    return keep(request, answer, staff, Revealed("webhook", endpoint_id, secret))


def _detail_page(
    request: Request,
    staff: Staff,
    endpoint_id: uuid.UUID,
    *,
    cursor: str | None = None,
    status_code: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        [endpoint] = webhooks.out(session, [webhooks.get(session, endpoint_id)])
        rows, next_cursor = webhooks.deliveries(
            session, endpoint_id=endpoint_id, limit=DELIVERIES, cursor=cursor
        )
        sent = [webhooks.delivery_out(row) for row in rows]
    revealed = take(request, staff, kind="webhook", subject=str(endpoint_id))
    answer = render(
        request,
        "admin/webhook.html",
        status_code=status_code,
        staff=staff,
        endpoint=endpoint,
        deliveries=sent,
        redeliverable=REDELIVERABLE,
        next_cursor=next_cursor,
        cursor=cursor,
        event_types=event_types(),
        secret=revealed.secret if revealed else None,
        error=error,
        done=done,
    )
    return forget(answer) if revealed else answer


@router.get("/webhooks/{endpoint_id}")
def webhook_page(
    request: Request, endpoint_id: uuid.UUID, staff: Manager, cursor: Cursor = None
) -> Response:
    done = request.query_params.get("done")
    return _detail_page(request, staff, endpoint_id, cursor=cursor, done=done)


def _back(endpoint_id: uuid.UUID, done: str) -> Response:
    return RedirectResponse(f"/admin/webhooks/{endpoint_id}?done={done}", status_code=303)


@router.post("/webhooks/{endpoint_id}/edit")
def edit_webhook(
    request: Request,
    endpoint_id: uuid.UUID,
    staff: Manager,
    csrf: Csrf,
    description: Annotated[str, Form(max_length=500)] = "",
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    check_csrf(csrf, staff.csrf)
    if not events:
        return _detail_page(request, staff, endpoint_id, status_code=422, error="events")
    try:
        with database(request).unit_of_work() as session:
            webhooks.update(
                session,
                endpoint_id=endpoint_id,
                patch=WebhookPatch(events=events, description=description.strip()),
                actor=_actor(staff),
                allow_private=_private(request),
                now=utc_now(),
            )
    except (TreuError, ValidationError) as error:
        return _detail_page(request, staff, endpoint_id, status_code=422, error=_reason(error))
    return _back(endpoint_id, "updated")


@router.post("/webhooks/{endpoint_id}/enabled")
def switch_webhook(
    request: Request,
    endpoint_id: uuid.UUID,
    staff: Manager,
    csrf: Csrf,
    enabled: Annotated[bool, Form()],
) -> Response:
    check_csrf(csrf, staff.csrf)
    try:
        with database(request).unit_of_work() as session:
            webhooks.update(
                session,
                endpoint_id=endpoint_id,
                patch=WebhookPatch(enabled=enabled),
                actor=_actor(staff),
                allow_private=_private(request),
                now=utc_now(),
            )
    except TreuError as error:
        return _detail_page(request, staff, endpoint_id, status_code=422, error=error.detail)
    return _back(endpoint_id, "enabled" if enabled else "disabled")


@router.post("/webhooks/{endpoint_id}/rotate")
def rotate_secret(request: Request, endpoint_id: uuid.UUID, staff: Manager, csrf: Csrf) -> Response:
    check_csrf(csrf, staff.csrf)
    with database(request).unit_of_work() as session:
        _, secret = webhooks.rotate(
            session, endpoint_id=endpoint_id, actor=_actor(staff), now=utc_now()
        )
    answer = _back(endpoint_id, "rotated")
    return keep(request, answer, staff, Revealed("webhook", str(endpoint_id), secret))


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver")
def redeliver(
    request: Request,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    staff: Manager,
    csrf: Csrf,
) -> Response:
    check_csrf(csrf, staff.csrf)
    try:
        with database(request).unit_of_work() as session:
            webhooks.redeliver(
                session,
                endpoint_id=endpoint_id,
                delivery_id=delivery_id,
                now=utc_now(),
                actor=_actor(staff),
            )
    except TreuError as error:
        return _detail_page(request, staff, endpoint_id, status_code=422, error=error.detail)
    return _back(endpoint_id, "redelivered")
