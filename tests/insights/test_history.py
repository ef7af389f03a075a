"""Purchase history read from the database as the analyst frame: one row per line kept,
net of returns, the day in the programme's time zone, anonymous purchases and other
programmes left out — the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tests import factories as f
from treu.db.session import Database
from treu.insights.history import COLUMNS, copy_floor, read_history

DAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _line(sku: str, quantity: int, price: int, category: str | None = None) -> dict[str, object]:
    line: dict[str, object] = {"sku": sku, "quantity": quantity, "unit_price_minor": price}
    if category is not None:
        line["category"] = category
    return line


def test_lines_net_of_returns_by_local_day(db: Database) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    a, b = f.member(db, prog), f.member(db, prog)
    other = f.programme(db)
    stranger = f.member(db, other)
    first = f.purchase_payload(
        prog,
        a,
        lines=[
            {**_line("milk", 2, 150, "dairy"), "tags": ["organic", "regional"]},
            _line("bread", 1, 250, "bakery"),
        ],
        occurred_at=DAY,
        channel="app",
    )
    late = DAY + timedelta(hours=13, minutes=30)  # 23:30 UTC = 00:30 next day in Berlin
    second = f.purchase_payload(
        prog, b, lines=[_line("soap", 3, 199), _line("kale", 1, 899, "organic")],
        occurred_at=late, channel="web",
    )  # fmt: skip
    anonymous = f.purchase_payload(prog, None, amount_minor=5000, occurred_at=DAY)
    elsewhere = f.purchase_payload(other, stranger, amount_minor=700, occurred_at=DAY)
    now = DAY + timedelta(days=3)
    f.ingest(db, first, second, anonymous, elsewhere, now=now)
    f.ingest(
        db,
        f.return_payload(prog, first["id"], [{"sku": "milk", "quantity": 1}], occurred_at=now),
        f.return_payload(prog, second["id"], [{"sku": "kale", "quantity": 1}], occurred_at=now),
        now=now,
    )

    with db.unit_of_work(write=False) as session:
        frame = read_history(session, programme=prog)

    assert tuple(frame.columns) == COLUMNS
    rows = sorted(
        (str(r.customer_id), r.date.date().isoformat(), r.amount, r.item, *r[5:7], bool(r.organic))
        for r in frame.itertuples()
    )
    assert rows == sorted(
        [
            (str(a.id), "2026-03-02", 1.5, "milk", "dairy", "app", True),  # one of two came back
            (str(a.id), "2026-03-02", 2.5, "bread", "bakery", "app", False),
            (str(b.id), "2026-03-03", 5.97, "soap", "", "web", False),  # the kale came back
        ]
    )
    assert frame["date"].dtype == "datetime64[ns]"
    assert frame["amount"].dtype == "float64"
    assert isinstance(frame["customer_id"].dtype, pd.CategoricalDtype)


def test_until_and_empty_history(db: Database) -> None:
    prog = f.programme(db)
    a = f.member(db, prog)
    with db.unit_of_work(write=False) as session:
        empty = read_history(session, programme=prog)
    assert empty.empty
    assert tuple(empty.columns) == COLUMNS

    early = f.purchase_payload(prog, a, amount_minor=1000, occurred_at=DAY)
    later = f.purchase_payload(prog, a, amount_minor=2000, occurred_at=DAY + timedelta(days=10))
    f.ingest(db, early, later, now=DAY + timedelta(days=11))
    with db.unit_of_work(write=False) as session:
        before = read_history(session, programme=prog, until=DAY + timedelta(days=5))
        everything = read_history(session, programme=prog)
    assert before["amount"].tolist() == [10.0]
    assert sorted(everything["amount"].tolist()) == [10.0, 20.0]


def test_the_floor_reads_the_same_rows(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("the COPY floor is PostgreSQL's")
    pg_db = db
    prog = f.programme(pg_db)
    a = f.member(pg_db, prog)
    payloads = [
        f.purchase_payload(prog, a, amount_minor=100 * (i + 1), occurred_at=DAY + timedelta(i))
        for i in range(5)
    ]
    f.ingest(pg_db, *payloads, now=DAY + timedelta(days=6))
    with pg_db.unit_of_work(write=False) as session:
        size = copy_floor(session, programme=prog)
        frame = read_history(session, programme=prog)
    assert len(frame) == 5
    assert size > 5 * len(str(a.id))  # each row carries at least the member's id
