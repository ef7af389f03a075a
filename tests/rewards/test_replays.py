"""A retry with the same idempotency key answers the first answer again, typed: for each
kind of answer the rewards services give to keyed requests, the replay — validated back
from the stored JSON, or rebuilt from the stored row — equals the first answer and
encodes to the same JSON document, on both backends.

The first answer is made in the request that stores it, from what the caller passed
(here a ``now`` in Berlin time, with microseconds); the replay only from what the
database kept, so a difference in spelling or precision would show here. (PostgreSQL
keeps stored JSON as ``jsonb``, which orders an object's keys its own way: the free-form
objects of a redemption's answer, ``posting``, ``balance`` and ``fulfilment``, come
back with their keys in that order; the answer's own fields keep the model's order.)"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.members.models import Member
from treu.rewards.donations import donations
from treu.rewards.models import Redemption
from treu.rewards.payments import PointPayment, PointPaymentRefund, payments
from treu.rewards.schemas import (
    CouponUseOut,
    DonationOut,
    Keyed,
    PaymentRefundOut,
    PointPaymentOut,
    RedemptionResult,
    WalletDebitOut,
    WalletRefundOut,
)
from treu.rewards.wallet import wallet

NOW = (f.REWARDS_T0 + timedelta(microseconds=123_456)).astimezone(ZoneInfo("Europe/Berlin"))

Answer = TypeVar("Answer", bound=BaseModel)


def replayed(first: Keyed[Answer], again: Keyed[Answer], model: type[Answer]) -> Answer:
    """``again`` is the replay of ``first``: the same answer, the same JSON."""
    assert (first.replayed, first.http_status) == (False, 201)
    assert (again.replayed, again.http_status) == (True, 200)
    assert type(first.result) is model
    assert type(again.result) is model
    assert again.result == first.result
    assert again.result.model_dump(mode="json") == first.result.model_dump(mode="json")
    assert json.loads(again.result.model_dump_json()) == json.loads(first.result.model_dump_json())
    return first.result


def give(db: Database, who: Member, points: int) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(session, member=who, adjustment=Adjustment(points, "t"), actor="t")


def stored_result(db: Database, model: Any, row_id: uuid.UUID) -> dict[str, Any]:
    with db.unit_of_work(write=False) as session:
        return dict(session.scalars(select(model.result).where(model.id == row_id)).one())


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="coupon"),
        pytest.param({"type": "donation", "value_minor": None, "charity": "tafel"}, id="donation"),
        pytest.param({"type": "wallet_credit", "value_minor": 1000}, id="wallet_credit"),
    ],
)
def test_a_redemption_replays_its_stored_answer(db: Database, spec: dict[str, Any]) -> None:
    prog = f.programme(db)
    with db.unit_of_work() as session:
        donations.add_charity(session, programme_id=prog.id, code="tafel", name={"de": "Tafel"})
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    reward = f.reward(db, prog, **spec)
    first = f.redeem(db, anna, reward, key="app-1", now=NOW)
    again = f.redeem(db, anna, reward, key="app-1", now=NOW + timedelta(minutes=1))
    answer = replayed(first, again, RedemptionResult)
    stored = stored_result(db, Redemption, answer.id)
    assert stored == answer.model_dump(mode="json")
    assert answer.created_at == f.REWARDS_T0 + timedelta(microseconds=123_456)
    assert (answer.coupon is None) == (reward.type != "amount_discount")
    assert (answer.fulfilment is None) == (reward.type == "amount_discount")


def test_a_coupon_used_for_the_same_order_again_answers_the_same(db: Database) -> None:
    prog = f.programme(db)
    _, coupon = f.coupon(db, prog)
    first = f.use_coupon(db, prog, coupon.code, "order-1", now=NOW)
    again = f.use_coupon(db, prog, coupon.code.lower(), "order-1", now=NOW + timedelta(hours=1))
    answer = replayed(first, again, CouponUseOut)
    assert (answer.status, answer.discount_minor) == ("used", 500)
    assert answer.coupon.order_id == "order-1"


def test_a_points_payment_and_its_refunds_replay_their_stored_answers(db: Database) -> None:
    prog = f.programme(db, point_value_minor="3")  # 10 cents: 3 points pay 9
    anna = f.member(db, prog)
    give(db, anna, 100)

    def pay() -> Keyed[PointPaymentOut]:
        with db.unit_of_work() as session:
            return payments.pay(
                session,
                member_id=anna.id,
                key="pay-1",
                order_id="order-1",
                amount_minor=10,
                currency="EUR",
                now=NOW,
            )

    paid = replayed(pay(), pay(), PointPaymentOut)
    assert (paid.points_used, paid.amount_covered_minor, paid.remaining_to_pay_minor) == (3, 9, 1)
    assert PointPaymentOut.model_validate(stored_result(db, PointPayment, paid.id)) == paid

    def refund(key: str) -> Keyed[PaymentRefundOut]:
        with db.unit_of_work() as session:
            return payments.refund(session, payment_id=paid.id, key=key, amount_minor=1, now=NOW)

    one = replayed(refund("r-1"), refund("r-1"), PaymentRefundOut)
    assert (one.points, one.posting is not None) == (1, True)
    # A cent more is covered by the point the first refund rounded up: no points, no posting.
    none = replayed(refund("r-2"), refund("r-2"), PaymentRefundOut)
    assert (none.points, none.posting) == (0, None)
    for answer in (one, none):
        stored = stored_result(db, PointPaymentRefund, answer.id)
        assert PaymentRefundOut.model_validate(stored) == answer


def test_a_wallet_debit_and_its_refund_replay(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    with db.unit_of_work() as session:
        wallet.credit(
            session,
            member_id=anna.id,
            programme_id=prog.id,
            amount_minor=700,
            currency="EUR",
            redemption_id=uuid.uuid4(),
            now=NOW,
        )

    def debit() -> Keyed[WalletDebitOut]:
        with db.unit_of_work() as session:
            return wallet.debit(
                session,
                member_id=anna.id,
                key="d-1",
                order_id="order-1",
                amount_minor=1000,
                currency="EUR",
                partial=True,
                now=NOW,
            )

    paid = replayed(debit(), debit(), WalletDebitOut)
    assert (paid.debited_minor, paid.remaining_to_pay_minor) == (700, 300)

    def refund() -> Keyed[WalletRefundOut]:
        with db.unit_of_work() as session:
            return wallet.refund(session, debit_id=paid.id, key="r-1", amount_minor=200, now=NOW)

    back = replayed(refund(), refund(), WalletRefundOut)
    assert (back.refunded_minor, back.debit_id, back.balance_after_minor) == (200, paid.id, 200)


def test_a_donation_replays(db: Database) -> None:
    prog = f.programme(db)
    with db.unit_of_work() as session:
        donations.add_charity(session, programme_id=prog.id, code="tafel", name={"de": "Tafel"})
    anna = f.member(db, prog)
    give(db, anna, 500)

    def donate() -> Keyed[DonationOut]:
        with db.unit_of_work() as session:
            return donations.donate(
                session, member_id=anna.id, key="don-1", charity="tafel", points=300, now=NOW
            )

    gift = replayed(donate(), donate(), DonationOut)
    assert (gift.charity.code, gift.points, gift.value_minor) == ("tafel", 300, 300)


def test_the_api_answers_a_replay_with_the_same_document(api: Api, db: Database) -> None:
    """The redemption and coupon routes encode the answer themselves (hot paths)."""
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 1000)
    reward = f.reward(db, prog)
    url = f"/v1/members/{anna.id}/redemptions"
    headers = api.headers("members:write") | {"Idempotency-Key": "app-1"}
    first = api.client.post(url, json={"reward_id": str(reward.id)}, headers=headers)
    again = api.client.post(url, json={"reward_id": str(reward.id)}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert first.headers["content-type"] == again.headers["content-type"] == "application/json"
    assert again.json() == first.json()
    assert list(again.json()) == list(first.json())  # the model's order, on both backends
    body = {
        "code": first.json()["coupon"]["code"],
        "order_id": "order-1",
        "programme": prog.slug,
        "cart": {
            "programme": prog.slug,
            "channel": "pos",
            "currency": "EUR",
            "lines": [{"sku": "a", "quantity": 1, "unit_price_minor": 3000}],
        },
    }
    used = api.client.post("/v1/coupons/redeem", json=body, headers=api.headers("events:write"))
    again = api.client.post("/v1/coupons/redeem", json=body, headers=api.headers("events:write"))
    assert (used.status_code, again.status_code) == (201, 200), used.text
    assert used.headers["content-type"] == again.headers["content-type"] == "application/json"
    assert again.content == used.content  # rebuilt from the coupon's row: the same bytes
    assert used.json()["discount_minor"] == 500
