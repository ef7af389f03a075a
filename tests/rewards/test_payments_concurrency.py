"""Pay with points under concurrency: real threads, each with its own unit of work."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only, retrying
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.ledger.errors import InsufficientPoints
from treu.members.models import Member
from treu.rewards.payments import PointPayment, RefundExceedsPayment, payments
from treu.rewards.schemas import Keyed, PaymentRefundOut, PointPaymentOut


def credit(db: Database, who: Member, points: int) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(session, member=who, adjustment=Adjustment(points, "t"), actor="t")


def pay(db: Database, who: Member, key: str, amount: int) -> Keyed[PointPaymentOut]:
    return retrying(
        db,
        lambda session: payments.pay(
            session,
            member_id=who.id,
            key=key,
            order_id=f"order-{key}",
            amount_minor=amount,
            currency="EUR",
        ),
    )


def test_twenty_concurrent_payments_never_overspend(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 1000)
    results = in_parallel(20, lambda i: pay(db, anna, f"pay-{i}", 100))
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Keyed": 10, "InsufficientPoints": 10}, results
    assert all(not r.replayed for r in results if isinstance(r, Keyed))
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert all(r.extra["needed"] == 100 for r in refused)
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (0, 0)
    with db.unit_of_work(write=False) as session:
        paid = session.scalar(
            select(func.sum(PointPayment.points)).where(PointPayment.member_id == anna.id)
        )
    assert paid == 1000
    assert f.verify(db, prog) == []


def test_one_key_sent_ten_times_concurrently_pays_once(db: Database) -> None:
    """On both backends."""
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 1000)
    results = in_parallel(10, lambda _: pay(db, anna, "same-key", 300))
    assert all(isinstance(r, Keyed) for r in results), results
    outcomes = [r for r in results if isinstance(r, Keyed)]
    assert sorted(r.http_status for r in outcomes) == [200] * 9 + [201]
    assert all(r.result == outcomes[0].result for r in outcomes)
    assert f.balance(db, anna).available == 700
    assert f.verify(db, prog) == []


def test_concurrent_full_refunds_of_one_payment_refund_once(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 1000)
    paid_id = pay(db, anna, "p", 600).result.id

    def refund(i: int) -> Keyed[PaymentRefundOut]:
        return retrying(
            db,
            lambda session: payments.refund(
                session, payment_id=paid_id, key=f"refund-{i}", amount_minor=None
            ),
        )

    results = in_parallel(10, refund)
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Keyed": 1, "RefundExceedsPayment": 9}, results
    assert all(isinstance(r, (Keyed, RefundExceedsPayment)) for r in results)
    assert f.balance(db, anna).available == 1000
    assert f.verify(db, prog) == []
