"""Large batches take the COPY path on PostgreSQL; what it writes must read back the same."""

from __future__ import annotations

from sqlalchemy import func, select

from tests import factories as f
from treu.db.base import COPY_THRESHOLD
from treu.db.session import Database
from treu.events.models import PurchaseLine


def test_large_batch_round_trips_and_replays_identically(db: Database) -> None:
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 12})
    who = f.member(db, prog)
    lines = [
        {
            "sku": "4001",
            "name": "Bio Vollmilch",
            "category": "dairy",
            "quantity": 2,
            "unit_price_minor": 129,
            "tags": ["organic", "ü-tag"],
        },
        {
            "sku": "7002",
            "name": 'Kaffee "Crema"\t\\',
            "category": None,
            "quantity": 1,
            "unit_price_minor": 899,
            "tags": [],
        },
    ]
    payloads = [f.purchase_payload(prog, who, lines=lines) for _ in range(COPY_THRESHOLD + 8)]
    first = f.ingest(db, *payloads)
    assert [o.status for o in first] == [201] * len(payloads)
    again = f.ingest(db, *payloads)
    assert [o.status for o in again] == [200] * len(payloads)
    assert [o.body for o in again] == [o.body for o in first]
    assert f.balance(db, who).pending == 11 * len(payloads)
    assert f.verify(db, prog) == []
    with db.unit_of_work(write=False) as session:
        names = set(
            session.scalars(select(PurchaseLine.name).where(PurchaseLine.member_id == who.id))
        )
        tags = session.scalars(
            select(PurchaseLine.tags)
            .where(PurchaseLine.member_id == who.id, PurchaseLine.sku == "4001")
            .limit(1)
        ).one()
        count = session.scalar(
            select(func.count()).select_from(PurchaseLine).where(PurchaseLine.member_id == who.id)
        )
    assert names == {"Bio Vollmilch", 'Kaffee "Crema"\t\\'}
    assert tags == ["organic", "ü-tag"]
    assert count == 2 * len(payloads)
