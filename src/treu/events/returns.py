"""Returns against purchases: finding the purchase (stored earlier, or earlier in the same
batch), checking what may still come back, and reversing exactly the points the returned
lines earned — the order's points minus what the kept lines alone would have earned under
the rules and rates recorded on the purchase, so rounding never favours the member."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.db.base import WriteBatch, table_of
from treu.events.errors import (
    EventInFuture,
    OriginalEventNotFound,
    ReturnExceedsPurchase,
)
from treu.events.models import Event, PurchaseLine
from treu.events.schemas import Balance, EventAnswer, Points, PurchaseEvent, ReturnEvent
from treu.events.seam import IngestRun, Original, Outcome
from treu.events.views import earn_basis, points_under_basis, purchase_view
from treu.kit.ids import new_id
from treu.kit.time import CLOCK_SKEW, iso, utc_now
from treu.ledger.service import (
    AccountState,
    LedgerWriter,
)
from treu.programmes.models import Programme
from treu.rules.engine import (
    Evaluation,
    LineView,
    MemberView,
)
from treu.rules.service import rules


def load_originals(run: IngestRun) -> dict[tuple[uuid.UUID, str], Original]:
    session, events, fresh, progs = run.session, run.events, run.fresh, run.programmes
    outcomes = run.outcomes
    wanted: dict[uuid.UUID, set[str]] = defaultdict(set)
    batch_purchases: dict[tuple[uuid.UUID, str], int] = {}
    for i in fresh:
        if isinstance(events[i], PurchaseEvent):
            batch_purchases.setdefault((progs[events[i].programme].id, events[i].id), i)
    for i in fresh:
        event = events[i]
        if isinstance(event, ReturnEvent) and i not in outcomes:
            wanted[progs[event.programme].id].add(event.original_event_id)
    originals: dict[tuple[uuid.UUID, str], Original] = {}
    for programme_id, keys in wanted.items():
        for row in session.execute(
            select(
                Event.id,
                Event.key,
                Event.member_id,
                Event.currency,
                Event.occurred_at,
                Event.channel,
                Event.store,
            ).where(
                Event.programme_id == programme_id,
                Event.key.in_(keys),
                Event.type == "purchase",
            )
        ).all():
            originals[(programme_id, row.key)] = Original(
                row.id,
                row.key,
                row.member_id,
                row.currency,
                {},
                occurred_at=row.occurred_at,
                channel=row.channel,
                store=row.store,
            )
    for i in fresh:
        event = events[i]
        if isinstance(event, ReturnEvent) and i not in outcomes:
            key = (progs[event.programme].id, event.original_event_id)
            if key not in originals:
                if batch_purchases.get(key, i) < i:
                    continue  # bought earlier in this batch: ``_purchase`` adds it
                hint = " (it is later in this batch)" if key in batch_purchases else ""
                outcomes[i] = Outcome.failed(
                    i,
                    event,
                    OriginalEventNotFound(
                        f"no purchase {event.original_event_id!r} to return against{hint}"
                    ),
                )
    return originals


def load_original_lines(session: Session, originals: dict[tuple[uuid.UUID, str], Original]) -> None:
    if not originals:
        return
    by_id = {o.id: o for o in originals.values()}
    for event_id, data in session.execute(
        select(Event.id, Event.data).where(Event.id.in_(by_id))
    ).all():
        by_id[event_id].data = dict(data)
    for row in session.execute(
        select(
            PurchaseLine.id,
            PurchaseLine.event_id,
            PurchaseLine.line_no,
            PurchaseLine.sku,
            PurchaseLine.name,
            PurchaseLine.category,
            PurchaseLine.tags,
            PurchaseLine.quantity,
            PurchaseLine.unit_price_minor,
            PurchaseLine.returned_quantity,
        )
        .where(PurchaseLine.event_id.in_(by_id))
        .order_by(PurchaseLine.event_id, PurchaseLine.line_no)
    ).mappings():
        by_id[row["event_id"]].lines.append(dict(row))


def points_kept(
    session: Session,
    programme: Programme,
    original: Original,
    basis: dict[str, Any],
    currency: str,
    kept: list[int],
) -> int:
    """What the kept lines of a partly returned order earn under the rules the
    purchase was evaluated with (each rule capped at what it gave then)."""
    if "rules" not in basis:  # recorded before earning rules existed: the base rate
        return points_under_basis(basis, currency, kept)
    base = basis.get("base")
    tier = basis.get("tier")
    rule_set = rules.as_recorded(
        session,
        programme,
        basis["rules"],
        base=(Decimal(base[0]), str(base[1])) if base else None,
        tier=(str(tier[0]), Decimal(tier[1])) if tier else None,
    )
    lines = [
        LineView.of(
            x["sku"],
            unit_price_minor=x["unit_price_minor"],
            quantity=x["quantity"] - x["returned_quantity"],
            name=x.get("name"),
            category=x.get("category"),
            tags=x.get("tags") or (),
        )
        for x in original.lines
        if x["quantity"] > x["returned_quantity"]
    ]
    if not lines:
        return 0
    occurred_at = original.occurred_at or utc_now()
    view = purchase_view(
        programme,
        occurred_at=occurred_at,
        currency=currency,
        lines=lines,
        channel=original.channel,
        store=original.store,
    )
    snapshot = basis.get("member") or {}
    mview = MemberView.of(at=occurred_at, timezone=programme.timezone, id=original.member_id)
    mview = replace(
        mview,
        days_enrolled=int(snapshot.get("days_enrolled", 0)),
        birthday_month=bool(snapshot.get("birthday_month", False)),
        tier=snapshot.get("tier"),
    )
    awarded = {str(k): int(v) for k, v in (original.data.get("awards") or {}).items()}
    result: Evaluation = rule_set.evaluate(view, mview, None, now=occurred_at, caps=awarded)
    return result.points


def process_return(
    session: Session,
    event: ReturnEvent,
    programme: Programme,
    original: Original,
    writer: LedgerWriter,
    now: datetime,
) -> tuple[dict[str, Any], EventAnswer]:
    """The return's event row and answer; ``original`` records what came back."""
    if event.occurred_at > now + CLOCK_SKEW:
        raise EventInFuture(f"occurred_at {iso(event.occurred_at)} lies in the future")
    # Check every line before changing anything.
    wanted: dict[str, int] = defaultdict(int)
    for line in event.lines:
        wanted[line.sku] += line.quantity
    for sku, quantity in wanted.items():
        open_qty = sum(
            x["quantity"] - x["returned_quantity"] for x in original.lines if x["sku"] == sku
        )
        if quantity > open_qty:
            raise ReturnExceedsPurchase(
                f"sku {sku!r}: {quantity} returned but only {open_qty} left on "
                f"purchase {original.key!r}",
                sku=sku,
            )
    basis = original.data.get("basis") or earn_basis(programme)
    currency = original.currency or programme.currency
    earned = int(original.data.get("earned", 0))
    already = int(original.data.get("reversed", 0))
    for sku, quantity in wanted.items():
        left = quantity
        for bought in original.lines:
            if bought["sku"] != sku or left == 0:
                continue
            take = min(bought["quantity"] - bought["returned_quantity"], left)
            bought["returned_quantity"] += take
            if bought.get("row") is not None:
                bought["row"]["returned_quantity"] = bought["returned_quantity"]
            left -= take
    kept = [
        (x["quantity"] - x["returned_quantity"]) * x["unit_price_minor"] for x in original.lines
    ]
    kept_points = (
        min(points_kept(session, programme, original, basis, currency, kept), earned)
        if earned
        else 0
    )
    account: AccountState | None = None
    expired = 0
    if original.member_id is not None:
        account = writer.account(original.member_id)
        stored = bool(original.lines) and original.lines[0]["id"] is not None
        if earned and stored:
            # Points that expired unused never benefited the member: not taken back.
            expired = writer.expired_from_event(account, original.id)
    to_reverse = max(max(earned - kept_points - expired, 0) - already, 0)
    original.data["reversed"] = already + to_reverse
    original.dirty = True
    event_uuid = new_id()
    postings: list[dict[str, Any]] = []
    if account is not None:
        if to_reverse > 0:
            items = ", ".join(f"{q} x {sku}" for sku, q in wanted.items())
            posting = writer.reverse(
                account,
                points=to_reverse,
                event_id=original.id,
                return_event_id=event_uuid,
                details={
                    "template": "reverse.return",
                    "params": {"items": items, "order": original.key, "points": to_reverse},
                },
            )
            postings.append(posting.public())
    row = {
        "id": event_uuid,
        "programme_id": programme.id,
        "key": event.id,
        "type": "return",
        "member_id": original.member_id,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "channel": event.channel.value if event.channel else None,
        "store": event.store,
        "currency": currency,
        "total_minor": -sum(unit_price(original, sku) * q for sku, q in wanted.items()),
        "original_event_id": original.id,
        "data": {"lines": [line.model_dump() for line in event.lines], "reversed": to_reverse},
    }
    answer = EventAnswer(
        event.id,
        "return",
        original.member_id,
        Points(0, 0, 0, to_reverse),
        None if account is None else Balance(account.available, account.pending),
        tuple(postings),
    )
    return row, answer


def unit_price(original: Original, sku: str) -> int:
    return next(int(x["unit_price_minor"]) for x in original.lines if x["sku"] == sku)


def write_originals(batch: WriteBatch, originals: dict[tuple[uuid.UUID, str], Original]) -> None:
    dirty = [o for o in originals.values() if o.dirty]
    stored_lines = [
        {"id": x["id"], "returned_quantity": x["returned_quantity"]}
        for o in dirty
        for x in o.lines
        if x["id"] is not None
    ]
    batch.update(table_of(Event), [{"id": o.id, "data": o.data} for o in dirty])
    batch.update(table_of(PurchaseLine), stored_lines)
