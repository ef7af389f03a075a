from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from treu.api.deps import DB, CheckoutKey
from treu.api.lean import LeanRoute
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.api.responses import JSONBody
from treu.checkout.service import CartIn, checkout
from treu.web.routing import Router

router = Router(
    prefix="/v1/checkout", tags=["checkout"], responses=PROBLEM_RESPONSES, route_class=LeanRoute
)


class CheckoutPoints(BaseModel):
    total: int = Field(description="Points the purchase of this cart will credit")
    pending_until: str | None = Field(
        description="Until when those points stay pending (the return window)"
    )


class CheckoutLine(BaseModel):
    index: int
    sku: str
    points: int


class CheckoutRule(BaseModel):
    rule_id: str = Field(description="'base' for the programme's base rate")
    version: int
    name: str
    effect: str
    points: int
    explanation: str = Field(description="The text the ledger will show")
    limited_by: str | None = None


class NotApplied(BaseModel):
    rule_id: str
    name: str
    reason: str = Field(description="limit_day, limit_week, ..., budget, excluded, ...")
    text: str


class Hint(BaseModel):
    code: str = Field(
        description="not_a_member, member_blocked, birthday_month, points_expiring, "
        "rule_limit_day, ..."
    )
    text: str


class CheckoutTier(BaseModel):
    code: str
    rank: int = Field(description="0 for the base tier, higher is better")
    name: str
    flags: list[str] = Field(description="The tier's benefits as flags, e.g. free_shipping")
    paid: bool = Field(description="Held by a paid membership")


class CheckoutOut(BaseModel):
    programme: str
    member: dict[str, Any] | None
    points: CheckoutPoints
    lines: list[CheckoutLine]
    rules: list[CheckoutRule]
    not_applied: list[NotApplied]
    badges: list[dict[str, Any]]
    balance: dict[str, Any] | None
    hints: list[Hint]
    coupons: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The member's coupons usable on this cart, with discount_minor, "
        "largest first (see docs/rewards.md)",
    )
    rewards: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Rewards the member can redeem now (discounts: discount_minor on this cart)",
    )
    tier: CheckoutTier | None = Field(
        default=None, description="The member's tier; absent for anonymous carts and no tiers"
    )


@router.post(
    "/evaluate",
    response_model=CheckoutOut,
    responses={404: {"model": Problem, "description": "Unknown programme or member"}},
)
def evaluate(cart: CartIn, db: DB, _key: CheckoutKey) -> JSONResponse:
    """What this cart earns, per line and per rule, with the explanations the ledger will
    show, the member's balance and hints for the cashier or the checkout page. No side
    effects; the later `purchase` event for the same cart credits exactly these points
    (unless a limit is used up or a rule is published in between)."""
    with db.unit_of_work(write=False) as session:
        return JSONBody(checkout.evaluate(session, cart).public())
