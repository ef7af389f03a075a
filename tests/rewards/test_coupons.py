"""Coupons: what a coupon takes off a cart (pure), validating and using one, the same
order again, another order, restoring on a full return, QR codes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import segno

from tests import factories as f
from treu.db.session import Database
from treu.kit import codes
from treu.programmes.models import Programme
from treu.rewards.coupons import Cart, CartLine, cart_discount, coupons
from treu.rewards.errors import (
    CouponAlreadyUsed,
    CouponNotApplicable,
    CouponNotFound,
    InvalidCouponCode,
)
from treu.rewards.models import RewardType
from treu.rewards.schemas import CouponValidationOut, Keyed, RedemptionResult

T0 = f.REWARDS_T0


def cart(*lines: tuple[str, int, int], currency: str = "EUR", member: Any = None) -> Cart:
    return Cart(
        currency=currency,
        lines=tuple(CartLine(sku, quantity, price) for sku, quantity, price in lines),
        member_id=member,
    )


def validate(
    db: Database, prog: Programme, code: str, basket: Cart, now: Any = T0
) -> CouponValidationOut:
    with db.unit_of_work(write=False) as session:
        return coupons.validate(session, code=code, programme=prog, cart=basket, now=now)


# --- what a coupon takes off a cart (no database) ----------------------------------------------


def test_a_percent_discount_is_rounded_half_up_and_capped_at_the_cart() -> None:
    ten = {"percent_bp": 1000}
    assert (
        cart_discount(RewardType.percent_discount, ten, cart(("a", 1, 1005))).discount_minor == 101
    )
    assert (
        cart_discount(RewardType.percent_discount, ten, cart(("a", 1, 1004))).discount_minor == 100
    )
    assert (
        cart_discount(RewardType.percent_discount, ten, cart(("a", 3, 333))).discount_minor == 100
    )
    odd = {"percent_bp": 1250}  # 12.5 % of 1.99 = 0.24875 → 0.25
    assert cart_discount(RewardType.percent_discount, odd, cart(("a", 1, 199))).discount_minor == 25
    everything = {"percent_bp": 10_000}
    assert (
        cart_discount(RewardType.percent_discount, everything, cart(("a", 2, 450))).discount_minor
        == 900
    )


def test_a_fixed_amount_is_capped_at_the_cart_and_needs_the_minimum_order() -> None:
    five = {"value_minor": 500, "currency": "EUR", "min_order_minor": 2000}
    verdict = cart_discount(RewardType.amount_discount, five, cart(("a", 1, 1999)))
    assert (verdict.applicable, verdict.discount_minor) == (False, None)
    assert [r.code for r in verdict.reasons] == ["min_order_value"]
    assert (
        verdict.reasons[0].text("de")
        == "Mindestbestellwert 20,00\xa0€ nicht erreicht (es fehlen 0,01\xa0€)"
    )
    assert verdict.reasons[0].text("en") == "Minimum order value €20.00 not reached (€0.01 missing)"
    assert (
        cart_discount(RewardType.amount_discount, five, cart(("a", 2, 1000))).discount_minor == 500
    )
    big = {"value_minor": 5000, "currency": "EUR"}
    assert (
        cart_discount(RewardType.amount_discount, big, cart(("a", 1, 1200))).discount_minor == 1200
    )
    other = cart_discount(RewardType.amount_discount, big, cart(("a", 1, 1200), currency="CHF"))
    assert [r.code for r in other.reasons] == ["currency_mismatch"]


def test_a_free_product_needs_the_sku_in_the_cart_and_gives_one_unit() -> None:
    coffee = {"sku": "7002"}
    verdict = cart_discount(
        RewardType.free_product, coffee, cart(("7002", 3, 899), ("7002", 1, 849), ("4001", 1, 129))
    )
    assert verdict.discount_minor == 849  # one unit, the cheapest matching line
    missing = cart_discount(RewardType.free_product, coffee, cart(("4001", 1, 129)))
    assert [(r.code, r.text("de")) for r in missing.reasons] == [
        ("product_not_in_cart", "Artikel 7002 ist nicht im Warenkorb")
    ]


def test_a_ticket_is_no_discount() -> None:
    verdict = cart_discount(RewardType.experience, {}, cart(("a", 1, 100)))
    assert [r.code for r in verdict.reasons] == ["not_a_discount"]


# --- validate and redeem -------------------------------------------------------------------------


def issued(db: Database, prog: Programme, **spec: Any) -> tuple[Any, Keyed[RedemptionResult]]:
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 10_000)
    reward = f.reward(db, prog, **spec)
    return anna, f.redeem(db, anna, reward)


def code_of(redeemed: Keyed[RedemptionResult]) -> str:
    """The code of the coupon a redemption issued, as the member is shown it."""
    assert redeemed.result.coupon is not None
    return redeemed.result.coupon.code


def test_validate_tells_the_discount_and_changes_nothing(db: Database) -> None:
    prog = f.programme(db)
    anna, body = issued(db, prog, type="percent_discount", value_minor=None, percent_bp=1000)
    code = code_of(body)
    typed = code.lower().replace("-", " ")
    answer = validate(db, prog, typed, cart(("a", 2, 1005), member=anna.id))
    assert answer.applicable is True
    assert answer.discount_minor == 201
    assert answer.reasons == []
    assert answer.code == code
    assert answer.coupon.status == "active"
    assert f.coupon_of(db, body).status == "active"


def test_validate_explains_why_not(db: Database) -> None:
    prog = f.programme(db)
    _, body = issued(db, prog, min_order_minor=2000, coupon_valid_days=10)
    code = code_of(body)
    bert = f.member(db, prog)
    small = validate(db, prog, code, cart(("a", 1, 1500)))
    assert [r.code for r in small.reasons] == ["min_order_value"]
    assert small.discount_minor is None
    theirs = validate(db, prog, code, cart(("a", 1, 5000), member=bert.id))
    assert [r.code for r in theirs.reasons] == ["other_member"]
    late = validate(db, prog, code, cart(("a", 1, 5000)), now=T0 + timedelta(days=11))
    assert [r.code for r in late.reasons] == ["coupon_expired"]
    assert late.reasons[0].text == "Expired on 11 Jun 2026"


def test_codes_with_a_typo_or_of_another_programme_are_refused(db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    _, body = issued(db, prog)
    code = codes.normalise(code_of(body))
    typo = code[:3] + ("A" if code[3] != "A" else "B") + code[4:]
    with pytest.raises(InvalidCouponCode):
        validate(db, prog, typo, cart(("a", 1, 5000)))
    with pytest.raises(CouponNotFound):
        validate(db, other, code, cart(("a", 1, 5000)))
    with pytest.raises(CouponNotFound):
        validate(db, prog, codes.new_code(), cart(("a", 1, 5000)))


def test_a_coupon_is_used_once_and_the_same_order_again_answers_the_same(db: Database) -> None:
    prog = f.programme(db)
    _, body = issued(db, prog)
    code = code_of(body)
    first = f.use_coupon(db, prog, code, "order-1")
    assert (first.replayed, first.http_status) == (False, 201)
    assert first.result.discount_minor == 500
    assert first.result.order_id == "order-1"
    assert first.result.status == "used"
    again = f.use_coupon(db, prog, code.lower(), "order-1")
    assert (again.replayed, again.http_status) == (True, 200)
    assert again.result == first.result
    with pytest.raises(CouponAlreadyUsed):
        f.use_coupon(db, prog, code, "order-2")
    stored = f.coupon_of(db, body)
    assert (stored.status, stored.order_id, stored.discount_minor) == ("used", "order-1", 500)
    answer = validate(db, prog, code, cart(("a", 1, 5000)))
    assert [r.code for r in answer.reasons] == ["coupon_used"]


def test_a_coupon_that_does_not_apply_is_not_used(db: Database) -> None:
    prog = f.programme(db)
    _, body = issued(db, prog, type="free_product", value_minor=None, sku="7002")
    code = code_of(body)
    with pytest.raises(CouponNotApplicable) as refused:
        f.use_coupon(db, prog, code, "order-1", lines=[("4001", 1, 129)])
    assert refused.value.extra["reasons"][0]["code"] == "product_not_in_cart"
    with pytest.raises(CouponNotApplicable) as refused:
        f.use_coupon(db, prog, code, "order-1", amount_minor=None)
    assert refused.value.extra["reasons"][0]["code"] == "cart_required"
    assert f.coupon_of(db, body).status == "active"
    used = f.use_coupon(db, prog, code, "order-1", lines=[("7002", 2, 899)])
    assert (used.replayed, used.result.discount_minor) == (False, 899)


def test_an_expired_coupon_is_not_used(db: Database) -> None:
    prog = f.programme(db)
    _, body = issued(db, prog, coupon_valid_days=5)
    with pytest.raises(CouponNotApplicable) as refused:
        f.use_coupon(db, prog, code_of(body), "order-1", now=T0 + timedelta(days=5))
    assert refused.value.extra["reasons"][0]["code"] == "coupon_expired"
    assert f.coupon_of(db, body).status == "active"  # the job expires it, with its policy


def test_a_ticket_is_admitted_without_a_cart(db: Database) -> None:
    prog = f.programme(db)
    _, body = issued(
        db,
        prog,
        type="experience",
        value_minor=None,
        event={"starts_at": (T0 + timedelta(days=3)).isoformat()},
    )
    used = f.use_coupon(db, prog, code_of(body), "door-1", amount_minor=None)
    assert (used.replayed, used.result.discount_minor, used.result.status) == (False, None, "used")


# --- returns -----------------------------------------------------------------------------------


def test_a_full_return_restores_the_coupon_and_a_partial_one_does_not(db: Database) -> None:
    prog = f.programme(db)
    anna, body = issued(db, prog, coupon_valid_days=30)
    code = code_of(body)
    lines = [
        {"sku": "a", "quantity": 2, "unit_price_minor": 1000},
        {"sku": "b", "quantity": 1, "unit_price_minor": 500},
    ]
    order = f.purchase_payload(prog, anna, lines=lines, occurred_at=T0)
    f.use_coupon(db, prog, code, order["id"], lines=[("a", 2, 1000), ("b", 1, 500)])
    f.ingest_one(db, order, now=T0)
    partial = f.ingest_one(
        db,
        f.return_payload(prog, order["id"], [{"sku": "a", "quantity": 1}], occurred_at=T0),
        now=T0,
    )
    assert partial.body is not None
    assert partial.body.coupons_restored == ()
    assert f.coupon_of(db, body).status == "used"
    rest = f.ingest_one(
        db,
        f.return_payload(
            prog,
            order["id"],
            [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 1}],
            occurred_at=T0,
        ),
        now=T0,
    )
    assert rest.body is not None
    assert rest.body.coupons_restored == (f.coupon_of(db, body).id,)
    stored = f.coupon_of(db, body)
    assert (stored.status, stored.order_id, stored.restore_count) == ("active", None, 1)
    assert stored.expires_at == T0 + timedelta(days=30)  # keeps its expiry
    assert not f.use_coupon(db, prog, code, "order-2").replayed  # usable again


def test_a_coupon_whose_reward_says_so_stays_used_after_a_return(db: Database) -> None:
    prog = f.programme(db)
    anna, body = issued(db, prog, policies={"restore_on_return": False})
    order = f.purchase_payload(prog, anna, amount_minor=3000, occurred_at=T0)
    f.use_coupon(db, prog, code_of(body), order["id"], amount_minor=3000)
    f.ingest_one(db, order, now=T0)
    back = f.ingest_one(
        db,
        f.return_payload(prog, order["id"], [{"sku": "sku-1", "quantity": 1}], occurred_at=T0),
        now=T0,
    )
    assert back.body is not None
    assert back.body.coupons_restored == ()
    assert f.coupon_of(db, body).status == "used"


def test_a_restored_coupon_past_its_expiry_expires_with_the_next_job_run(db: Database) -> None:
    from treu.worker.jobs import expire_coupons

    prog = f.programme(db)
    anna, body = issued(db, prog, coupon_valid_days=2, policies={"refund_on_expiry": True})
    order = f.purchase_payload(prog, anna, amount_minor=3000, occurred_at=T0)
    f.use_coupon(db, prog, code_of(body), order["id"], amount_minor=3000)
    f.ingest_one(db, order, now=T0)
    later = T0 + timedelta(days=5)
    f.ingest_one(
        db,
        f.return_payload(prog, order["id"], [{"sku": "sku-1", "quantity": 1}], occurred_at=later),
        now=later,
    )
    assert f.coupon_of(db, body).status == "active"
    before = f.balance(db, anna).available
    assert expire_coupons(db, now=later) >= 1
    assert f.coupon_of(db, body).status == "expired"
    assert f.balance(db, anna).available == before + 500
    assert f.verify(db, prog) == []


# --- QR codes ------------------------------------------------------------------------------------


def test_the_qr_code_encodes_the_printed_code_in_alphanumeric_mode() -> None:
    code = codes.new_code()
    svg = coupons.qr_svg(code)
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    qr = segno.make(codes.format_code(code), error="m", micro=False)
    assert qr.mode == "alphanumeric"
    assert qr.designator == "1-M"  # 19 characters fit the smallest QR code
    assert f'width="{(21 + 8) * 4}"' in svg
    assert svg == coupons.qr_svg(codes.format_code(code).lower())


def test_coupons_of_a_member_newest_first(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    f.earn(db, prog, anna, 10_000)
    reward = f.reward(db, prog)
    made = [f.coupon_of(db, f.redeem(db, anna, reward)) for _ in range(3)]
    f.use_coupon(db, prog, made[0].code, "order-1")
    with db.unit_of_work(write=False) as session:
        every, _ = coupons.for_member(session, member_id=anna.id)
        active, _ = coupons.for_member(session, member_id=anna.id, status="active")
    assert [c.id for c in every] == [c.id for c in made[::-1]]
    assert [c.id for c in active] == [c.id for c in made[:0:-1]]
