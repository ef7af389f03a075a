"""``/v1/outbox``: how delivery is doing — depth, failures, lag — and its deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from treu.api.deps import DB, Admin
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.delivery.schemas import DeliveryOut, DepthOut, OutboxPageOut, Status
from treu.delivery.service import deliveries
from treu.errors import Invalid
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.kit.time import utc_now
from treu.web.routing import Router

router = Router(prefix="/v1/outbox", tags=["outbox"], responses=PROBLEM_RESPONSES)


@router.get("", response_model=OutboxPageOut)
def list_outbox(
    db: DB,
    _key: Admin,
    status: Annotated[Status | None, Query(description="Only deliveries in this state")] = None,
    channel: Annotated[str | None, Query(description="webhook, email, inbox")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> OutboxPageOut:
    """Depth, failures and lag of the delivery from the outbox, and its deliveries
    (newest first), e.g. ``?status=dead`` for what needs a hand."""
    before = None
    if cursor is not None:
        try:
            before = uuid.UUID(str(decode_cursor(cursor)["before"]))
        except (InvalidCursor, KeyError, ValueError) as exc:
            raise Invalid("cursor is not valid; use next_cursor from the previous page") from exc
    with db.unit_of_work(write=False) as session:
        depth = deliveries.depth(session)
        rows = deliveries.list(
            session, status=status, channel=channel, before=before, limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return OutboxPageOut(
        depth=DepthOut(
            undispatched=depth.undispatched,
            lag_seconds=round(depth.lag_seconds(utc_now()), 3),
            **depth.by_status,
        ),
        items=[DeliveryOut.of(row) for row in rows],
        next_cursor=encode_cursor({"before": str(rows[-1].id)}) if more else None,
    )


@router.post(
    "/deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
)
def retry_delivery(delivery_id: uuid.UUID, db: DB, _key: Admin) -> DeliveryOut:
    """Send a dead (or failed) delivery again now, with the same id."""
    with db.unit_of_work() as session:
        return DeliveryOut.of(deliveries.retry(session, delivery_id, now=utc_now()))
