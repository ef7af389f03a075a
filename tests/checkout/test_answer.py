"""The checkout's answer in memory (``CheckoutAnswer``) and its JSON: ``public()`` is
what ``POST /v1/checkout/evaluate`` has always answered (keys, their order, what is left
out) and what the route's ``CheckoutOut`` documents. No database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from treu.api.routes.checkout import CheckoutOut
from treu.checkout.schemas import (
    CartBalance,
    CartMember,
    CartPoints,
    CartTier,
    CheckoutAnswer,
    Hint,
    LinePoints,
    RuleApplied,
    RuleNotApplied,
)
from treu.ledger.service import Expiring
from treu.rewards.coupons import UsableCoupon
from treu.rewards.payments import Cover
from treu.rewards.redemption import RewardOffer
from treu.rules.spec import Badge

AT = datetime(2026, 11, 24, 10, 20, tzinfo=UTC)
MEMBER = uuid.UUID("01a23ca7-2950-73cc-b57d-fae8edcc5f05")
COUPON = uuid.UUID("01a23ca7-29ce-7067-9b36-ecc3727ac632")
REWARD = uuid.UUID("01a23ca7-29ce-7067-9b36-ecc3727ac633")
BADGE = Badge.model_validate({"code": "coffee-lover", "name": {"en": "Coffee lover"}, "icon": "☕"})
RULES = (
    RuleApplied("base", 1, "Base rate", "points_per_unit", 11, "1 point per €1: +11"),
    RuleApplied("r-1", 3, "Coffee x2", "multiplier", 5, "Coffee x2: +5", "limit_day"),
)
NOT_APPLIED = (RuleNotApplied("r-2", "Welcome", "limit_total", "limit reached"),)
LINES = (LinePoints(0, "4001", 6), LinePoints(1, "5001", 10))


def member_answer() -> CheckoutAnswer:
    return CheckoutAnswer(
        "demo",
        CartMember(MEMBER, "active"),
        CartPoints(16, datetime(2026, 12, 8, 10, 20, tzinfo=UTC)),
        LINES,
        RULES,
        NOT_APPLIED,
        (BADGE,),
        CartBalance(
            120,
            30,
            (Expiring(40, datetime(2027, 1, 1, tzinfo=UTC)),),
            Cover(100, 100),
            250,
        ),
        (Hint("birthday_month", "Birthday this month"),),
        (UsableCoupon(COUPON, "ABCD-EFGH", "amount_discount", "€5", "€5 off", 500, AT),),
        (RewardOffer(REWARD, "mug", "free_product", "Mug", "A mug", 900, None),),
        CartTier("gold", 2, "Gold", ("free_shipping",), paid=False),
    )


def test_a_members_answer_is_the_json_the_api_has_always_given() -> None:
    out = member_answer().public()
    assert out == {
        "programme": "demo",
        "member": {"id": str(MEMBER), "status": "active"},
        "points": {"total": 16, "pending_until": "2026-12-08T10:20:00Z"},
        "lines": [
            {"index": 0, "sku": "4001", "points": 6},
            {"index": 1, "sku": "5001", "points": 10},
        ],
        "rules": [
            {
                "rule_id": "base",
                "version": 1,
                "name": "Base rate",
                "effect": "points_per_unit",
                "points": 11,
                "explanation": "1 point per €1: +11",
            },
            {
                "rule_id": "r-1",
                "version": 3,
                "name": "Coffee x2",
                "effect": "multiplier",
                "points": 5,
                "explanation": "Coffee x2: +5",
                "limited_by": "limit_day",
            },
        ],
        "not_applied": [
            {"rule_id": "r-2", "name": "Welcome", "reason": "limit_total", "text": "limit reached"}
        ],
        "badges": [{"code": "coffee-lover", "name": {"en": "Coffee lover"}, "icon": "☕"}],
        "balance": {
            "available": 120,
            "pending": 30,
            "expiring": [{"points": 40, "expires_at": "2027-01-01T00:00:00Z"}],
            "pay_with_points": {"points": 100, "amount_minor": 100},
            "wallet_minor": 250,
        },
        "hints": [{"code": "birthday_month", "text": "Birthday this month"}],
        "coupons": [
            {
                "id": str(COUPON),
                "code": "ABCD-EFGH",
                "kind": "amount_discount",
                "name": "€5",
                "summary": "€5 off",
                "discount_minor": 500,
                "expires_at": "2026-11-24T10:20:00Z",
            }
        ],
        "rewards": [
            {
                "id": str(REWARD),
                "code": "mug",
                "type": "free_product",
                "name": "Mug",
                "summary": "A mug",
                "points_cost": 900,
            }
        ],
        "tier": {
            "code": "gold",
            "rank": 2,
            "name": "Gold",
            "flags": ["free_shipping"],
            "paid": False,
        },
    }
    # The order of the keys is part of the answer (orjson keeps it): ``tier`` comes last.
    assert list(out) == [
        "programme",
        "member",
        "points",
        "lines",
        "rules",
        "not_applied",
        "badges",
        "balance",
        "hints",
        "coupons",
        "rewards",
        "tier",
    ]
    assert list(out["rules"][0]) == [
        "rule_id",
        "version",
        "name",
        "effect",
        "points",
        "explanation",
    ]
    documented = CheckoutOut.model_validate(out).model_dump(mode="json", exclude_unset=True)
    assert documented == out  # the OpenAPI model documents every field, the tier too


def test_an_anonymous_answer_has_no_balance_and_no_tier() -> None:
    answer = CheckoutAnswer(
        "demo",
        None,
        CartPoints(16, None),
        LINES,
        RULES,
        (),
        (),
        None,
        (Hint("not_a_member", "Not a member yet: this cart would earn 16 points"),),
    )
    out = answer.public()
    assert out["member"] is None
    assert out["points"] == {"total": 16, "pending_until": None}
    assert (out["balance"], out["coupons"], out["rewards"], out["badges"]) == (None, [], [], [])
    assert "tier" not in out
    CheckoutOut.model_validate(out)
