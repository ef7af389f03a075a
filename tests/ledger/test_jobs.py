"""The ledger jobs: pending -> available (``activate_due``) and expiry (``expire_due``).

The jobs work on the whole database, so every test here has a database of its own
(``fresh_db``) and counts exactly what the jobs did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests import factories as f
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.ledger.models import Lot, LotState, Posting, PostingLot
from treu.ledger.service import ledger
from treu.members.models import Member

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def buy(db: Database, prog: Any, who: Member, amount_minor: int, at: datetime) -> str:
    out = f.ingest_one(
        db, f.purchase_payload(prog, who, amount_minor=amount_minor, occurred_at=at), now=at
    )
    return out.event_id


def give_back(db: Database, prog: Any, sale: str, at: datetime) -> None:
    f.ingest_one(
        db, f.return_payload(prog, sale, [{"sku": "sku-1", "quantity": 1}], occurred_at=at), now=at
    )


def adjust(db: Database, who: Member, points: int, at: datetime) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(
            session, member=who, adjustment=Adjustment(points, "test"), actor="test", now=at
        )


def activate(db: Database, at: datetime, *, limit: int = 500) -> int:
    total = 0
    while True:
        with db.unit_of_work() as session:
            n = ledger.activate_due(session, now=at, limit=limit)
        if n == 0:
            return total
        total += n


def expire(db: Database, at: datetime, *, limit: int = 500) -> int:
    total = 0
    while True:
        with db.unit_of_work() as session:
            n = ledger.expire_due(session, now=at, limit=limit)
        if n == 0:
            return total
        total += n


def state(db: Database, who: Member) -> tuple[int, int]:
    bal = f.balance(db, who)
    return bal.available, bal.pending


def postings(db: Database, who: Member) -> list[tuple[str, int]]:
    with db.unit_of_work(write=False) as session:
        return [
            (p.kind, p.points)
            for p in session.scalars(
                select(Posting).where(Posting.member_id == who.id).order_by(Posting.id)
            )
        ]


def lots(db: Database, who: Member) -> list[Lot]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(Lot).where(Lot.member_id == who.id).order_by(Lot.id)))


def test_pending_points_become_available_after_pending_days(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, pending_days=14)
    anna = f.member(db, prog)
    buy(db, prog, anna, 4290, T0)
    assert state(db, anna) == (0, 42)
    [release] = f.balance(db, anna).next_available
    assert (release.points, release.expires_at) == (42, T0 + timedelta(days=14))

    assert activate(db, T0 + timedelta(days=14) - timedelta(seconds=1)) == 0
    assert state(db, anna) == (0, 42)
    assert activate(db, T0 + timedelta(days=14)) == 1
    assert state(db, anna) == (42, 0)
    assert [lot.state for lot in lots(db, anna)] == [LotState.available]
    assert f.verify(db, prog) == []

    before = postings(db, anna)
    assert activate(db, T0 + timedelta(days=14)) == 0
    assert activate(db, T0 + timedelta(days=30)) == 0
    assert state(db, anna) == (42, 0)
    assert postings(db, anna) == before == [("earn", 42)]


def test_activation_of_many_members_in_small_chunks(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, pending_days=7)
    people = [f.member(db, prog) for _ in range(5)]
    for n, who in enumerate(people):
        buy(db, prog, who, 1000 * (n + 1), T0)
        buy(db, prog, who, 500, T0 + timedelta(hours=1))
    assert activate(db, T0 + timedelta(days=8), limit=2) == 10
    assert [state(db, who) for who in people] == [(10 * (n + 1) + 5, 0) for n in range(5)]
    assert activate(db, T0 + timedelta(days=8), limit=2) == 0
    assert f.verify(db, prog) == []


def test_points_earned_after_the_window_are_available_at_once(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, pending_days=14)
    anna = f.member(db, prog)
    # A late-delivered purchase whose return window has passed already.
    f.ingest_one(
        db,
        f.purchase_payload(prog, anna, amount_minor=1000, occurred_at=T0),
        now=T0 + timedelta(days=20),
    )
    assert state(db, anna) == (10, 0)
    assert activate(db, T0 + timedelta(days=20)) == 0


@pytest.mark.parametrize("years", [0, 1])
def test_fixed_expiry_across_year_end_in_berlin(fresh_db: Database, years: int) -> None:
    db = fresh_db
    prog = f.programme(db, timezone="Europe/Berlin", expiry={"policy": "fixed", "years": years})
    anna = f.member(db, prog)
    late_2026 = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)  # 23:30 in Berlin, still 2026
    early_2027 = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 January in Berlin
    buy(db, prog, anna, 1000, late_2026)
    buy(db, prog, anna, 2000, early_2027)
    end_2026 = datetime(2026 + years, 12, 31, 22, 59, 59, 999999, tzinfo=UTC)
    end_2027 = datetime(2027 + years, 12, 31, 22, 59, 59, 999999, tzinfo=UTC)
    assert [lot.expires_at for lot in lots(db, anna)] == [end_2026, end_2027]
    assert [(e.points, e.expires_at) for e in f.balance(db, anna).expiring] == [
        (10, end_2026),
        (20, end_2027),
    ]
    assert state(db, anna) == (30, 0)

    assert expire(db, end_2026 - timedelta(seconds=1)) == 0
    assert expire(db, end_2026) == 1
    assert state(db, anna) == (20, 0)
    assert postings(db, anna)[-1] == ("expire", -10)
    assert f.verify(db, prog) == []

    assert expire(db, end_2027 - timedelta(minutes=1)) == 0
    assert expire(db, end_2027 + timedelta(minutes=1)) == 1
    assert state(db, anna) == (0, 0)
    assert [k for k, _ in postings(db, anna)] == ["earn", "earn", "expire", "expire"]
    assert f.verify(db, prog) == []


def test_rolling_expiry_takes_what_is_left_of_each_lot(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, expiry={"policy": "rolling", "months": 3})
    anna = f.member(db, prog)
    first = datetime(2026, 1, 31, 9, tzinfo=UTC)
    second = datetime(2026, 2, 15, 9, tzinfo=UTC)
    buy(db, prog, anna, 3000, first)  # expires 30 April (31 April does not exist)
    buy(db, prog, anna, 2000, second)  # expires 15 May
    assert [lot.expires_at for lot in lots(db, anna)] == [
        datetime(2026, 4, 30, 9, tzinfo=UTC),
        datetime(2026, 5, 15, 9, tzinfo=UTC),
    ]
    # Spending takes the points that expire first.
    adjust(db, anna, -25, datetime(2026, 3, 1, tzinfo=UTC))
    assert [lot.remaining for lot in lots(db, anna)] == [5, 20]

    assert expire(db, datetime(2026, 4, 30, 8, 59, tzinfo=UTC)) == 0
    assert expire(db, datetime(2026, 4, 30, 9, tzinfo=UTC)) == 1
    assert state(db, anna) == (20, 0)
    assert postings(db, anna)[-1] == ("expire", -5)
    assert expire(db, datetime(2026, 5, 1, tzinfo=UTC)) == 0
    assert expire(db, datetime(2026, 5, 20, tzinfo=UTC)) == 1
    assert state(db, anna) == (0, 0)
    assert f.verify(db, prog) == []


def test_fully_spent_lots_do_not_expire(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, expiry={"policy": "rolling", "months": 1})
    anna = f.member(db, prog)
    buy(db, prog, anna, 1000, T0)
    adjust(db, anna, -10, T0 + timedelta(days=1))
    assert expire(db, T0 + timedelta(days=60)) == 0
    assert [k for k, _ in postings(db, anna)] == ["earn", "adjust"]


def test_expire_job_twice_writes_one_posting_per_lot(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, expiry={"policy": "rolling", "months": 2})
    people = [f.member(db, prog) for _ in range(4)]
    for who in people:
        buy(db, prog, who, 1000, T0)
        buy(db, prog, who, 700, T0 + timedelta(days=1))
    later = T0 + timedelta(days=70)
    assert expire(db, later, limit=3) == 8
    assert expire(db, later, limit=3) == 0
    assert expire(db, later + timedelta(days=400)) == 0
    with db.unit_of_work(write=False) as session:
        per_lot = session.execute(
            select(PostingLot.lot_id, Posting.kind).join(
                Posting, Posting.id == PostingLot.posting_id
            )
        ).all()
    expiries = [lot_id for lot_id, kind in per_lot if kind == "expire"]
    assert len(expiries) == 8
    assert len(set(expiries)) == 8
    assert all(state(db, who) == (0, 0) for who in people)
    assert f.verify(db, prog) == []


def test_pending_points_can_expire_before_release(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, pending_days=60, expiry={"policy": "rolling", "months": 1})
    anna = f.member(db, prog)
    buy(db, prog, anna, 1000, T0)
    assert expire(db, T0 + timedelta(days=40)) == 1
    assert state(db, anna) == (0, 0)
    assert activate(db, T0 + timedelta(days=61)) == 1
    assert state(db, anna) == (0, 0)
    assert f.verify(db, prog) == []


def test_fully_reversed_pending_lot_is_activated_without_changing_balances(
    fresh_db: Database,
) -> None:
    db = fresh_db
    prog = f.programme(db, pending_days=14)
    anna = f.member(db, prog)
    adjust(db, anna, 5, T0)
    sale = buy(db, prog, anna, 1000, T0)
    give_back(db, prog, sale, T0 + timedelta(days=2))
    assert state(db, anna) == (5, 0)
    before = postings(db, anna)
    assert activate(db, T0 + timedelta(days=15)) == 1
    assert state(db, anna) == (5, 0)
    assert postings(db, anna) == before
    assert [(lot.state, lot.remaining) for lot in lots(db, anna)] == [
        (LotState.available, 5),
        (LotState.available, 0),
    ]
    assert activate(db, T0 + timedelta(days=15)) == 0
    assert f.verify(db, prog) == []


def test_debt_is_settled_at_activation_with_a_settle_posting(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, pending_days=14)
    anna = f.member(db, prog)
    day = timedelta(days=1)
    first = buy(db, prog, anna, 5000, T0)
    assert activate(db, T0 + 14 * day) == 1
    adjust(db, anna, -40, T0 + 14 * day)
    assert state(db, anna) == (10, 0)
    buy(db, prog, anna, 3000, T0 + 15 * day)
    give_back(db, prog, first, T0 + 16 * day)  # the 40 spent points become debt
    assert state(db, anna) == (-40, 30)
    assert f.verify(db, prog) == []

    assert activate(db, T0 + 29 * day) == 1
    assert state(db, anna) == (-10, 0)
    assert postings(db, anna)[-1] == ("settle", 0)
    assert f.verify(db, prog) == []

    buy(db, prog, anna, 2500, T0 + 30 * day)
    assert state(db, anna) == (-10, 25)
    assert activate(db, T0 + 44 * day) == 1
    assert state(db, anna) == (15, 0)
    kinds = [k for k, _ in postings(db, anna)]
    assert kinds == ["earn", "adjust", "earn", "reverse", "settle", "earn", "settle"]
    assert [lot.remaining for lot in lots(db, anna)] == [0, 0, 15]
    assert f.verify(db, prog) == []
    with db.unit_of_work(write=False) as session:
        page = ledger.history(session, member_id=anna.id)
    settles = [p for p in page.items if p.kind == "settle"]
    assert [p.explanation for p in settles] == [
        "10 newly available points settle a negative balance",
        "30 newly available points settle a negative balance",
    ]


def test_debt_is_settled_by_points_available_at_once(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db)
    anna = f.member(db, prog)
    first = buy(db, prog, anna, 3000, T0)
    adjust(db, anna, -30, T0)
    give_back(db, prog, first, T0)
    assert state(db, anna) == (-30, 0)
    buy(db, prog, anna, 1000, T0 + timedelta(days=1))
    assert state(db, anna) == (-20, 0)
    adjust(db, anna, 50, T0 + timedelta(days=2))
    assert state(db, anna) == (30, 0)
    assert [lot.remaining for lot in lots(db, anna)] == [0, 0, 30]
    assert f.verify(db, prog) == []
