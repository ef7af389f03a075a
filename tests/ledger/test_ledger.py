"""The ledger service: FIFO spending, balances, history, verify/repair (manual adjustments:
``test_adjustments``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from tests import factories as f
from treu.db.session import Database
from treu.kit.pagination import encode_cursor
from treu.ledger.adjustments import AdjustedBalance
from treu.ledger.errors import AccountNotFound, InsufficientPoints
from treu.ledger.models import Account, Lot, Posting, PostingKind
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.programmes.models import Programme

T0 = f.LEDGER_T0


adjust = f.adjust


def lot_remaining(db: Database, who: Member) -> list[int]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(select(Lot.remaining).where(Lot.member_id == who.id).order_by(Lot.id))
        )


def set_programme(db: Database, prog: Programme, **values: Any) -> None:
    with db.unit_of_work() as session:
        session.execute(update(Programme).where(Programme.id == prog.id).values(**values))


# --- spending order ---------------------------------------------------------------------


def test_spending_takes_the_points_that_expire_first(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 6})
    anna = f.member(db, prog)
    adjust(db, anna, 10, at=T0 + timedelta(days=20))  # expires last
    adjust(db, anna, 10, at=T0)  # expires first
    adjust(db, anna, 10, at=T0 + timedelta(days=10))
    adjust(db, anna, -15, at=T0 + timedelta(days=30))
    assert lot_remaining(db, anna) == [10, 0, 5]
    adjust(db, anna, -7, at=T0 + timedelta(days=31))
    assert lot_remaining(db, anna) == [8, 0, 0]
    assert f.verify(db, prog) == []


def test_points_that_never_expire_are_spent_last(db: Database) -> None:
    prog = f.programme(db)  # never expires
    anna = f.member(db, prog)
    adjust(db, anna, 10, at=T0)
    set_programme(db, prog, expiry_policy="rolling", expiry_months=3)
    adjust(db, anna, 10, at=T0 + timedelta(days=5))
    adjust(db, anna, -12, at=T0 + timedelta(days=6))
    assert lot_remaining(db, anna) == [8, 0]
    assert f.verify(db, prog) == []


def test_spending_more_than_available_changes_nothing(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 30)
    with pytest.raises(InsufficientPoints) as info:
        adjust(db, anna, -31)
    assert info.value.code == "insufficient_points"
    assert info.value.http_status == 422
    assert info.value.extra == {"needed": 31, "available": 30}
    assert f.balance(db, anna).available == 30
    with db.unit_of_work(write=False) as session:
        kinds = session.scalars(select(Posting.kind).where(Posting.member_id == anna.id)).all()
    assert kinds == ["adjust"]


def test_pending_points_cannot_be_spent(db: Database) -> None:
    prog = f.programme(db, pending_days=14)
    anna = f.member(db, prog)
    f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=5000))
    with pytest.raises(InsufficientPoints):
        adjust(db, anna, -1)


def test_allow_negative_debit_is_settled_by_the_next_credit(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 10)
    answer = adjust(db, anna, -25, allow_negative=True, reason="chargeback")
    assert answer.http_status == 201
    assert answer.result.balance == AdjustedBalance(available=-15, pending=0)
    assert lot_remaining(db, anna) == [0]
    assert f.verify(db, prog) == []
    adjust(db, anna, 20)
    assert f.balance(db, anna).available == 5
    assert lot_remaining(db, anna) == [0, 5]
    assert f.verify(db, prog) == []


# --- writer guards ----------------------------------------------------------------------


def test_writer_refuses_non_positive_amounts(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=T0)
        account = writer.account(anna.id)
        with pytest.raises(ValueError, match="positive"):
            writer.earn(account, programme=prog, points=0, earned_at=T0, details={})
        with pytest.raises(ValueError, match="positive"):
            writer.spend(account, points=-5, kind=PostingKind.redeem, details={})


def test_unknown_account(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        with pytest.raises(AccountNotFound) as info:
            ledger.balance(session, member_id=uuid.uuid4())
        assert info.value.http_status == 404


# --- balance and history ----------------------------------------------------------------


def test_balance_lists_next_expiries_and_releases(db: Database) -> None:
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 12})
    anna = f.member(db, prog)
    now = T0 + timedelta(days=3)
    for day, amount in [(0, 1000), (0, 500), (1, 2000), (2, 700)]:
        at = T0 + timedelta(days=day)
        f.ingest_one(
            db, f.purchase_payload(prog, anna, amount_minor=amount, occurred_at=at), now=now
        )
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending, bal.lifetime_earned) == (0, 42, 42)
    assert [(e.points, e.expires_at) for e in bal.expiring] == [
        (15, datetime(2027, 2, 2, 9, tzinfo=UTC)),
        (20, datetime(2027, 2, 3, 9, tzinfo=UTC)),
        (7, datetime(2027, 2, 4, 9, tzinfo=UTC)),
    ]
    assert [(e.points, e.expires_at) for e in bal.next_available] == [
        (15, T0 + timedelta(days=14)),
        (20, T0 + timedelta(days=15)),
        (7, T0 + timedelta(days=16)),
    ]
    with db.unit_of_work(write=False) as session:
        short = ledger.balance(session, member_id=anna.id, expiring_limit=2)
    assert len(short.expiring) == 2
    assert len(short.next_available) == 2


def test_history_is_newest_first_and_paginates_without_gaps(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    for n in range(7):
        adjust(db, anna, n + 1, reason=f"credit {n + 1}")
    seen: list[Posting] = []
    cursor = None
    pages = 0
    while True:
        with db.unit_of_work(write=False) as session:
            page = ledger.history(session, member_id=anna.id, limit=3, cursor=cursor)
        seen.extend(page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert [p.points for p in seen] == [7, 6, 5, 4, 3, 2, 1]
    assert len({p.id for p in seen}) == 7
    assert seen[0].explanation == "Manual adjustment: credit 7"
    assert seen[0].reason == "credit 7"
    assert seen[0].actor == "admin@example.com"


def test_history_can_hide_settle_postings(db: Database) -> None:
    prog = f.programme(db, pending_days=7)
    anna = f.member(db, prog)
    adjust(db, anna, -10, allow_negative=True)
    f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=2500, occurred_at=T0), now=T0)
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=T0 + timedelta(days=8))
        account = writer.account(anna.id)
        [lot] = writer._lots(account)
        writer.activate(account, lot)
        writer.flush()
    with db.unit_of_work(write=False) as session:
        everything = ledger.history(session, member_id=anna.id)
        visible = ledger.history(session, member_id=anna.id, include_settle=False)
    assert [p.kind for p in everything.items] == ["settle", "earn", "adjust"]
    assert [p.kind for p in visible.items] == ["earn", "adjust"]
    assert f.balance(db, anna).available == 15
    assert f.verify(db, prog) == []


@pytest.mark.parametrize("cursor", ["garbage!", "%%%", encode_cursor({"before": "not-a-uuid"})])
def test_history_rejects_bad_cursors(db: Database, cursor: str) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    # InvalidCursor is a ValueError; the API answers both with a 422 naming the cursor.
    with db.unit_of_work(write=False) as session, pytest.raises(ValueError):  # noqa: PT011
        ledger.history(session, member_id=anna.id, cursor=cursor)


# --- verify and repair ------------------------------------------------------------------


def test_verify_finds_a_tampered_balance_and_repair_fixes_it(db: Database) -> None:
    prog = f.programme(db, pending_days=14)
    anna, ben = f.member(db, prog), f.member(db, prog)
    adjust(db, anna, 50)
    f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=3000))
    adjust(db, ben, 5)
    assert f.verify(db, prog) == []
    with db.unit_of_work() as session:
        session.execute(
            update(Account).where(Account.member_id == anna.id).values(available=57, pending=20)
        )
    found = {(d.member_id, d.what, d.cached, d.rebuilt) for d in f.verify(db, prog)}
    assert found == {
        (anna.id, "total", 77, 80),
        (anna.id, "pending", 20, 30),
        (anna.id, "available lots", 57, 50),
    }
    with db.unit_of_work() as session:
        ledger.repair(session, member_ids=[anna.id])
    assert f.verify(db, prog) == []
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (50, 30)


def test_verify_finds_a_tampered_lot(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 50)
    adjust(db, anna, -20)
    with db.unit_of_work() as session:
        session.execute(update(Lot).where(Lot.member_id == anna.id).values(remaining=40))
    found = {(d.what, d.cached, d.rebuilt) for d in f.verify(db, prog)}
    assert ("lot remaining", 40, 30) in found
    with db.unit_of_work() as session:
        session.execute(update(Lot).where(Lot.member_id == anna.id).values(remaining=30))
    assert f.verify(db, prog) == []


def test_verify_of_the_whole_database(fresh_db: Database) -> None:
    db = fresh_db
    progs = [f.programme(db), f.programme(db, pending_days=3)]
    for prog in progs:
        who = f.member(db, prog)
        adjust(db, who, 10)
        f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=1234))
    with db.unit_of_work(write=False) as session:
        assert ledger.verify(session) == []


def test_database_refuses_a_lot_below_zero(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    prog = f.programme(db)
    anna = f.member(db, prog)
    adjust(db, anna, 5)
    with pytest.raises(IntegrityError), db.unit_of_work() as session:
        session.execute(update(Lot).where(Lot.member_id == anna.id).values(remaining=-1))
    with pytest.raises(IntegrityError), db.unit_of_work() as session:
        session.execute(update(Lot).where(Lot.member_id == anna.id).values(remaining=6))
    assert lot_remaining(db, anna) == [5]
