"""Redemptions and coupons under concurrency: real threads, each with its own unit of
work. PostgreSQL runs them in parallel and relies on the account lock, the conditional
stock UPDATE and the conditional coupon UPDATE; SQLite serialises writers, so most of
these run on PostgreSQL only (idempotency under concurrency holds on both)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from treu.db.session import Database
from treu.errors import Busy
from treu.ledger.errors import InsufficientPoints
from treu.members.models import Member
from treu.rewards.errors import (
    CouponAlreadyUsed,
    CouponNotApplicable,
    OutOfStock,
    RedemptionNotCancellable,
)
from treu.rewards.models import Coupon, Redemption, Reward
from treu.rewards.schemas import Keyed, RedemptionResult
from treu.rewards.service import redemptions
from treu.worker.jobs import expire_coupons

T0 = f.REWARDS_T0


def redeem_retrying(db: Database, who: Member, reward: Reward, key: str) -> Keyed[RedemptionResult]:
    """What a client does: on 503 ``busy`` send the same request again with the same
    Idempotency-Key (safe: it redeems at most once)."""
    for attempt in range(5):
        try:
            with db.unit_of_work() as session:
                return redemptions.redeem(
                    session, member_id=who.id, key=key, reward_id=reward.id, now=T0
                )
        except Busy:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_hundred_members_race_for_ten_units(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(100)]
    for who in people:
        f.earn(db, prog, who, 1000)
    reward = f.reward(db, prog, points_cost=500, stock=10)

    results = in_parallel(100, lambda i: redeem_retrying(db, people[i], reward, f"k-{i}"))
    won = [i for i, r in enumerate(results) if isinstance(r, Keyed)]
    lost = [r for r in results if isinstance(r, BaseException)]
    others = [repr(e) for e in lost if not isinstance(e, OutOfStock)][:3]
    assert others == []
    assert len(won) == 10
    assert all(not results[i].replayed for i in won)  # type: ignore[union-attr]
    assert len(lost) == 90
    assert f.reward_row(db, reward).stock_left == 0
    balances = [f.balance(db, who).available for who in people]
    assert sorted(balances) == [500] * 10 + [1000] * 90
    assert {i for i, b in enumerate(balances) if b == 500} == set(won)
    assert count(db, Redemption, Redemption.reward_id == reward.id) == 10
    assert count(db, Coupon, Coupon.reward_id == reward.id) == 10
    assert f.verify(db, prog) == []


def test_twenty_redemptions_with_points_for_five(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    f.earn(db, prog, anna, 1500, at=T0 - timedelta(days=3))
    reward = f.reward(db, prog, points_cost=500)  # unlimited stock

    results = in_parallel(20, lambda i: redeem_retrying(db, anna, reward, f"k-{i}"))
    won = [r for r in results if isinstance(r, Keyed)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert [repr(e) for e in refused if not isinstance(e, InsufficientPoints)][:3] == []
    assert len(won) == 5
    assert len(refused) == 15
    # Each success saw a different balance afterwards: 2000, 1500, ..., 0; never below.
    assert sorted(r.result.balance["available"] for r in won) == [0, 500, 1000, 1500, 2000]
    assert f.balance(db, anna).available == 0
    assert count(db, Redemption, Redemption.member_id == anna.id) == 5
    assert f.verify(db, prog) == []


def test_the_same_key_sent_ten_times_at_once_redeems_once(db: Database) -> None:
    """On both backends."""
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 5000)
    reward = f.reward(db, prog, points_cost=500, stock=100)
    results = in_parallel(10, lambda _: redeem_retrying(db, anna, reward, "same-key"))
    assert [r for r in results if isinstance(r, BaseException)] == []
    answers = [r for r in results if isinstance(r, Keyed)]
    assert sorted(r.http_status for r in answers) == [200] * 9 + [201]
    assert all(r.result == answers[0].result for r in answers)
    assert f.balance(db, anna).available == 4500
    assert f.reward_row(db, reward).stock_left == 99
    assert count(db, Redemption, Redemption.member_id == anna.id) == 1


def test_a_coupon_used_for_two_orders_at_once_goes_to_exactly_one(
    db: Database, backend: str
) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 50 * 500)
    reward = f.reward(db, prog, points_cost=500)
    for round_ in range(25):
        redeemed = redeem_retrying(db, anna, reward, f"k-{round_}")
        code = f.coupon_of(db, redeemed).code
        orders = [f"order-{round_}-a", f"order-{round_}-b"]
        results = in_parallel(
            2,
            lambda i, c=code, o=orders: f.use_coupon(db, prog, c, o[i]),  # type: ignore[misc]
        )
        won = [r for r in results if isinstance(r, Keyed)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert not won[0].replayed
        assert [type(e) for e in lost] == [CouponAlreadyUsed]
        stored = f.coupon_of(db, redeemed)
        assert stored.status == "used"
        assert stored.order_id == won[0].result.order_id


def test_the_same_order_sent_by_ten_tills_at_once_uses_the_coupon_once(
    db: Database, backend: str
) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 500)
    redeemed = redeem_retrying(db, anna, f.reward(db, prog, points_cost=500), "k")
    code = f.coupon_of(db, redeemed).code
    results = in_parallel(10, lambda _: f.use_coupon(db, prog, code, "order-1"))
    assert [r for r in results if isinstance(r, BaseException)] == []
    answers = [r for r in results if isinstance(r, Keyed)]
    assert sorted(r.http_status for r in answers) == [200] * 9 + [201]
    assert all(r.result == answers[0].result for r in answers)


def test_cancel_and_use_at_once_never_both_happen(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 20 * 500)
    reward = f.reward(db, prog, points_cost=500, stock=100)
    outcomes: Counter[str] = Counter()
    for round_ in range(20):
        redeemed = redeem_retrying(db, anna, reward, f"k-{round_}")
        coupon = f.coupon_of(db, redeemed)

        def act(
            i: int,
            made: uuid.UUID = redeemed.result.id,
            code: str = coupon.code,
            round_: int = round_,
        ) -> str:
            if i == 0:
                with db.unit_of_work() as session:
                    redemptions.cancel(session, redemption_id=made, actor="test", now=T0)
                return "cancelled"
            f.use_coupon(db, prog, code, f"order-{round_}")
            return "used"

        results = in_parallel(2, act)
        done = [r for r in results if isinstance(r, str)]
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(done) == 1, results
        assert [type(e) for e in failed] in (
            [RedemptionNotCancellable],
            [CouponNotApplicable],
        )
        outcomes[done[0]] += 1
        assert f.coupon_of(db, redeemed).status == done[0]
    # Every cancel gave 500 points and a unit back; every use kept them.
    assert f.balance(db, anna).available == outcomes["cancelled"] * 500
    assert f.reward_row(db, reward).stock_left == 100 - outcomes["used"]
    assert f.verify(db, prog) == []


def test_two_expiry_runs_at_once_expire_and_refund_once(fresh_db: Database, backend: str) -> None:
    postgres_only(backend)
    db = fresh_db
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(30)]
    reward = f.reward(
        db,
        prog,
        points_cost=100,
        stock=50,
        coupon_valid_days=1,
        policies={"refund_on_expiry": True},
    )
    for i, who in enumerate(people):
        f.earn(db, prog, who, 100)
        redeem_retrying(db, who, reward, f"k-{i}")
    later = T0 + timedelta(days=2)
    results = in_parallel(2, lambda _: expire_coupons(db, now=later))
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sum(r for r in results if isinstance(r, int)) == 30
    assert [f.balance(db, who).available for who in people] == [100] * 30
    assert f.reward_row(db, reward).stock_left == 50
    assert count(db, Coupon, Coupon.reward_id == reward.id, Coupon.status == "expired") == 30
    assert f.verify(db, prog) == []
