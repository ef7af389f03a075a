"""Typed factories for tests: real rows through the real services, never mocks."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import datetime
from typing import Any

from treu.db.session import Database
from treu.events.integrity import check_references
from treu.events.schemas import event_adapter
from treu.events.service import Outcome, ingest_with_retry
from treu.kit.time import utc_now
from treu.ledger.service import Balance, ledger
from treu.members.models import Member
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes

_seq = itertools.count(1)

MILK: dict[str, Any] = {
    "sku": "4001",
    "name": "Bio Vollmilch",
    "category": "dairy",
    "quantity": 2,
    "unit_price_minor": 129,
    "tags": ["organic"],
}
COFFEE: dict[str, Any] = {
    "sku": "7002",
    "name": "Kaffee",
    "category": "coffee",
    "quantity": 1,
    "unit_price_minor": 899,
    "tags": [],
}


def contract_lines() -> list[dict[str, Any]]:
    """Fresh copies of the issue's contract example lines: 2 x 1.29 + 8.99 = 11.57 EUR,
    which earn 11 points at 1 point per EUR 1 (floor per order)."""
    return copy.deepcopy([MILK, COFFEE])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def programme(db: Database, **overrides: Any) -> Programme:
    data: dict[str, Any] = {
        "slug": unique("p"),
        "name": "Test programme",
        "currency": "EUR",
        "points_per_currency_unit": 1,
        "pending_days": 0,
        "expiry": {"policy": "never"},
    }
    data.update(overrides)
    with db.unit_of_work() as session:
        return programmes.create(session, data=ProgrammeCreate.model_validate(data))


def member(db: Database, prog: Programme, **overrides: Any) -> Member:
    data: dict[str, Any] = {"programme": prog.slug, "email": f"{unique('m')}@example.com"}
    data.update(overrides)
    with db.unit_of_work() as session:
        return members.enrol(
            session,
            programme=prog,
            data=MemberCreate.model_validate(data),
            writer=ledger.writer(session),
        )


def purchase_payload(
    prog: Programme,
    who: Member | None,
    *,
    lines: list[dict[str, Any]] | None = None,
    amount_minor: int | None = None,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    channel: str = "pos",
) -> dict[str, Any]:
    if lines is None:
        lines = [
            {
                "sku": "sku-1",
                "category": "misc",
                "quantity": 1,
                "unit_price_minor": amount_minor if amount_minor is not None else 1000,
            }
        ]
    payload: dict[str, Any] = {
        "id": event_id or unique("ev"),
        "type": "purchase",
        "programme": prog.slug,
        "occurred_at": (occurred_at or utc_now()).isoformat(),
        "channel": channel,
        "currency": prog.currency,
        "lines": lines,
    }
    if who is not None:
        payload["member"] = {"member_id": str(who.id)}
    return payload


def member_ref(who: Member) -> dict[str, str]:
    return {"member_id": str(who.id)}


def return_payload(
    prog: Programme,
    original_event_id: str,
    lines: list[dict[str, Any]],
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or unique("ret"),
        "type": "return",
        "programme": prog.slug,
        "occurred_at": (occurred_at or utc_now()).isoformat(),
        "original_event_id": original_event_id,
        "lines": lines,
    }


def ingest(db: Database, *payloads: dict[str, Any], now: datetime | None = None) -> list[Outcome]:
    return ingest_with_retry(db, [event_adapter.validate_python(p) for p in payloads], now=now)


def ingest_one(db: Database, payload: dict[str, Any], now: datetime | None = None) -> Outcome:
    outcome = ingest(db, payload, now=now)[0]
    if outcome.error is not None:
        raise outcome.error
    return outcome


def balance(db: Database, who: Member) -> Balance:
    with db.unit_of_work(write=False) as session:
        return ledger.balance(session, member_id=who.id)


def verify(db: Database, prog: Programme) -> list[Any]:
    """What ``treu ledger verify`` reports for ``prog``: balances and copied ids."""
    with db.unit_of_work(write=False) as session:
        return ledger.verify(session, programme_id=prog.id) + check_references(
            session, programme_id=prog.id
        )
