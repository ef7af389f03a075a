"""``LedgerWriter.refund``: a spend's points go back to the very lots they came from."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests import factories as f
from treu.db.session import Database
from treu.ledger.errors import PostingNotFound, PostingNotRefundable, RefundExceedsPosting
from treu.ledger.explain import render
from treu.ledger.models import Lot, Posting, PostingKind, PostingLot
from treu.ledger.service import PostingRecord, ledger
from treu.members.models import Member
from treu.programmes.models import Programme

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
REDEEM = {"template": "redeem", "params": {"what": "test"}}


def refund_details(points: int = 0) -> dict[str, object]:
    return {"template": "refund", "params": {"what": "test", "points": points}}


def earn(db: Database, prog: Programme, who: Member, points: int, at: datetime) -> None:
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=at)
        writer.earn(
            writer.account(who.id),
            programme=prog,
            points=points,
            earned_at=at,
            details={"template": "adjust", "params": {"reason": "test"}},
            pending=False,
        )
        writer.flush()


def spend(db: Database, who: Member, points: int, at: datetime) -> PostingRecord:
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=at)
        posting = writer.spend(
            writer.account(who.id), points=points, kind=PostingKind.redeem, details=REDEEM
        )
        writer.flush()
        return posting


def refund(
    db: Database, who: Member, posting_id: uuid.UUID, points: int | None, at: datetime
) -> PostingRecord:
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=at)
        posting = writer.refund(
            writer.account(who.id),
            posting_id=posting_id,
            points=points,
            details=refund_details(points or 0),
            actor="test",
            reason="order cancelled",
        )
        writer.flush()
        return posting


def lots(db: Database, who: Member) -> list[tuple[int, int, datetime | None]]:
    """amount, remaining, expires_at, oldest first"""
    with db.unit_of_work(write=False) as session:
        return [
            (row.amount, row.remaining, row.expires_at)
            for row in session.execute(
                select(Lot.amount, Lot.remaining, Lot.expires_at)
                .where(Lot.member_id == who.id)
                .order_by(Lot.earned_at)
            )
        ]


def allocations(db: Database, posting_id: uuid.UUID) -> list[int]:
    with db.unit_of_work(write=False) as session:
        return sorted(
            session.scalars(select(PostingLot.points).where(PostingLot.posting_id == posting_id))
        )


def test_a_full_refund_gives_every_point_back_to_its_lot(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 12})
    anna = f.member(db, prog)
    earn(db, prog, anna, 30, T0)
    earn(db, prog, anna, 50, T0 + timedelta(days=1))
    spent = spend(db, anna, 60, T0 + timedelta(days=2))
    assert [r for _, r, _ in lots(db, anna)] == [0, 20]
    back = refund(db, anna, spent.id, None, T0 + timedelta(days=3))
    assert (back.kind, back.points, back.expired) == ("refund", 60, 0)
    assert [r for _, r, _ in lots(db, anna)] == [30, 50]
    assert sorted(allocations(db, back.id)) == [30, 30]
    assert f.balance(db, anna).available == 80
    assert f.verify(db, prog) == []
    with db.unit_of_work(write=False) as session:
        stored = session.get_one(Posting, back.id)
        assert stored.refund_of == spent.id
        assert (stored.actor, stored.reason) == ("test", "order cancelled")


def test_partial_refunds_go_to_the_latest_expiring_lots_and_never_exceed_the_spend(
    db: Database,
) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 12})
    anna = f.member(db, prog)
    earn(db, prog, anna, 30, T0)
    earn(db, prog, anna, 50, T0 + timedelta(days=1))
    spent = spend(db, anna, 60, T0 + timedelta(days=2))  # 30 from the first, 30 from the second
    at = T0 + timedelta(days=3)
    refund(db, anna, spent.id, 20, at)
    assert [r for _, r, _ in lots(db, anna)] == [0, 40]  # the later-expiring lot first
    refund(db, anna, spent.id, 25, at)
    assert [r for _, r, _ in lots(db, anna)] == [15, 50]
    with pytest.raises(RefundExceedsPosting) as raised:
        refund(db, anna, spent.id, 16, at)
    assert raised.value.extra == {"requested": 16, "refundable": 15}
    last = refund(db, anna, spent.id, None, at)  # the rest
    assert last.points == 15
    assert [r for _, r, _ in lots(db, anna)] == [30, 50]
    with pytest.raises(RefundExceedsPosting):
        refund(db, anna, spent.id, None, at)
    assert f.balance(db, anna).available == 80
    assert f.verify(db, prog) == []


def test_two_refunds_in_one_unit_of_work_see_each_other(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    earn(db, prog, anna, 10, T0)
    spent = spend(db, anna, 10, T0)
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=T0)
        account = writer.account(anna.id)
        writer.refund(account, posting_id=spent.id, points=6, details=refund_details(6))
        with pytest.raises(RefundExceedsPosting):
            writer.refund(account, posting_id=spent.id, points=5, details=refund_details(5))
        writer.refund(account, posting_id=spent.id, details=refund_details(4))
        writer.flush()
    assert lots(db, anna)[0][1] == 10
    assert f.verify(db, prog) == []


def test_a_spend_refunded_in_its_own_unit_of_work(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    earn(db, prog, anna, 10, T0)
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=T0)
        account = writer.account(anna.id)
        spent = writer.spend(account, points=7, kind=PostingKind.redeem, details=REDEEM)
        back = writer.refund(account, posting_id=spent.id, details=refund_details(7))
        assert back.points == 7
        writer.flush()
    assert f.balance(db, anna).available == 10
    assert f.verify(db, prog) == []


def test_points_going_back_to_an_expired_lot_expire_at_once(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 1})
    anna = f.member(db, prog)
    earn(db, prog, anna, 40, T0)  # expires T0 + 1 month
    earn(db, prog, anna, 10, T0 + timedelta(days=20))  # expires ~ T0 + 51 days
    spent = spend(db, anna, 45, T0 + timedelta(days=21))  # 40 + 5
    later = T0 + timedelta(days=40)  # the first lot is past its expiry
    with db.unit_of_work() as session:
        assert ledger.expire_due(session, now=later) == 0  # nothing left to expire in it
    back = refund(db, anna, spent.id, None, later)
    assert (back.points, back.expired) == (45, 40)
    assert [r for _, r, _ in lots(db, anna)] == [0, 10]
    assert f.balance(db, anna).available == 10
    with db.unit_of_work(write=False) as session:
        expired = session.execute(
            select(Posting.points, Posting.correlation_id).where(
                Posting.member_id == anna.id, Posting.kind == PostingKind.expire.value
            )
        ).all()
    assert [(p, c) for p, c in expired] == [(-40, back.correlation_id)]
    assert f.verify(db, prog) == []


def test_a_partial_refund_prefers_lots_that_have_not_expired(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 1})
    anna = f.member(db, prog)
    earn(db, prog, anna, 40, T0)
    earn(db, prog, anna, 10, T0 + timedelta(days=20))
    spent = spend(db, anna, 45, T0 + timedelta(days=21))
    back = refund(db, anna, spent.id, 5, T0 + timedelta(days=40))
    assert (back.points, back.expired) == (5, 0)
    assert [r for _, r, _ in lots(db, anna)] == [0, 10]
    assert f.verify(db, prog) == []


def test_a_refund_first_pays_off_a_negative_balance(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.purchase_payload(prog, anna, amount_minor=5000)  # 50 points, available at once
    f.ingest_one(db, sale)
    spent = spend(db, anna, 50, T0)
    f.ingest_one(db, f.return_payload(prog, sale["id"], [{"sku": "sku-1", "quantity": 1}]))
    assert f.balance(db, anna).available == -50
    back = refund(db, anna, spent.id, 30, utc_now_plus())
    assert back.points == 30
    assert allocations(db, back.id) == []  # all of it settles the debt
    assert f.balance(db, anna).available == -20
    assert f.verify(db, prog) == []
    refund(db, anna, spent.id, None, utc_now_plus())
    assert f.balance(db, anna).available == 0
    assert f.verify(db, prog) == []


def utc_now_plus() -> datetime:
    from treu.kit.time import utc_now

    return utc_now() + timedelta(seconds=1)


def test_only_redemptions_of_the_same_member_are_refunded(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    ben = f.member(db, prog)
    earn(db, prog, anna, 10, T0)
    spent = spend(db, anna, 5, T0)
    with db.unit_of_work(write=False) as session:
        earned = session.scalar(
            select(Posting.id).where(Posting.member_id == anna.id, Posting.kind == "earn")
        )
    assert earned is not None
    with pytest.raises(PostingNotRefundable):
        refund(db, anna, earned, None, T0)
    with pytest.raises(PostingNotFound):
        refund(db, ben, spent.id, None, T0)
    with pytest.raises(PostingNotFound):
        refund(db, anna, uuid.uuid4(), None, T0)
    with pytest.raises(ValueError, match="positive"):
        refund(db, anna, spent.id, 0, T0)
    assert f.verify(db, prog) == []


def test_the_refund_explanation_in_both_languages() -> None:
    details = {
        "template": "refund",
        "params": {"what": {"de": "Gutschein", "en": "Voucher"}, "points": 5},
    }
    assert render(details, "en") == "Refunded: Voucher: +5"
    assert render(details, "de") == "Erstattet: Gutschein: +5"
    payment = {
        "template": "refund.payment",
        "params": {"points": 250, "amount_minor": 250, "currency": "EUR", "order": "A-1"},
    }
    assert render(payment, "en") == "Points payment for order A-1 refunded (€2.50): +250"
    assert render(payment, "de") == "Punktezahlung für Bestellung A-1 erstattet (2,50\xa0€): +250"
