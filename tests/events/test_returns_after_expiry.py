"""A return after the order's points expired takes back only what the member used."""

from __future__ import annotations

from datetime import UTC, datetime

from tests import factories as f
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.ledger.service import ledger


def test_expired_points_are_not_taken_back_twice(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, expiry={"policy": "fixed", "years": 0}, timezone="UTC")
    who = f.member(db, prog)
    bought = datetime(2025, 12, 20, 10, 0, tzinfo=UTC)
    lines = [
        {"sku": "coat", "quantity": 1, "unit_price_minor": 5000},
        {"sku": "scarf", "quantity": 1, "unit_price_minor": 5000},
    ]
    sale = f.ingest_one(
        db, f.purchase_payload(prog, who, lines=lines, occurred_at=bought), now=bought
    )
    assert sale.body is not None
    assert sale.body.points.earned == 100
    spent_at = datetime(2025, 12, 22, tzinfo=UTC)
    with db.unit_of_work() as session:
        adjustments.adjust(
            session, member=who, adjustment=Adjustment(-30, "spent"), actor="t", now=spent_at
        )
    new_year = datetime(2026, 1, 2, tzinfo=UTC)
    with db.unit_of_work() as session:
        assert ledger.expire_due(session, now=new_year) == 1  # the 70 left expire
    assert f.balance(db, who).available == 0

    # Half of the goods back: the member used 30 points of the order, 70 expired unused;
    # keeping 50 points' worth of goods they owe nothing.
    first = f.ingest_one(
        db,
        f.return_payload(
            prog, sale.event_id, [{"sku": "coat", "quantity": 1}], occurred_at=new_year
        ),
        now=new_year,
    )
    assert first.body is not None
    assert first.body.points.reversed == 0
    # Everything back: the 30 points they spent are taken back, not the 70 that expired.
    second = f.ingest_one(
        db,
        f.return_payload(
            prog, sale.event_id, [{"sku": "scarf", "quantity": 1}], occurred_at=new_year
        ),
        now=new_year,
    )
    assert second.body is not None
    assert second.body.points.reversed == 30
    assert f.balance(db, who).available == -30
    assert f.verify(db, prog) == []


def test_return_before_expiry_reverses_in_full(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 1})
    who = f.member(db, prog)
    sale = f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=4000))
    back = f.ingest_one(
        db, f.return_payload(prog, sale.event_id, [{"sku": "sku-1", "quantity": 1}])
    )
    assert back.body is not None
    assert back.body.points.reversed == 40
    assert f.balance(db, who).available == 0
