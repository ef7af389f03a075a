"""Pay with points under concurrency: real threads, each with its own unit of work."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only, retrying
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.ledger.errors import InsufficientPoints
from treu.members.models import Member
from treu.rewards.payments import PointPayment, RefundExceedsPayment, payments


def credit(db: Database, who: Member, points: int) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(session, member=who, adjustment=Adjustment(points, "t"), actor="t")


def pay(db: Database, who: Member, key: str, amount: int) -> tuple[int, dict[str, Any]]:
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
    assert kinds == {"tuple": 10, "InsufficientPoints": 10}, results
    assert all(r[0] == 201 for r in results if isinstance(r, tuple))
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
    assert all(isinstance(r, tuple) for r in results), results
    outcomes = [r for r in results if isinstance(r, tuple)]
    assert sorted(code for code, _ in outcomes) == [200] * 9 + [201]
    assert all(body == outcomes[0][1] for _, body in outcomes)
    assert f.balance(db, anna).available == 700
    assert f.verify(db, prog) == []


def test_concurrent_full_refunds_of_one_payment_refund_once(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 1000)
    _, paid = pay(db, anna, "p", 600)

    def refund(i: int) -> tuple[int, dict[str, Any]]:
        return retrying(
            db,
            lambda session: payments.refund(
                session, payment_id=paid_id, key=f"refund-{i}", amount_minor=None
            ),
        )

    paid_id = uuid.UUID(paid["id"])
    results = in_parallel(10, refund)
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"tuple": 1, "RefundExceedsPayment": 9}, results
    assert all(isinstance(r, (tuple, RefundExceedsPayment)) for r in results)
    assert f.balance(db, anna).available == 1000
    assert f.verify(db, prog) == []
