"""Request and response shapes of the rewards feature: the catalogue, redemptions,
coupons, pay with points, the e-wallet and donations.

``RewardIn`` checks what a reward of each type needs (a percentage for a percentage
discount, a SKU for a free product, an event time for an experience, …) so that a
reward that could never be redeemed or used is never saved.

The services answer with the response models below, the very ones the API routes
declare, so a route hands on what a service returned and the API's JSON is this module's
business. Instants go in as ``iso()`` strings where a service builds an answer: one
spelling (UTC, ``Z``) whatever zone a caller's ``now`` had, as the answers always had.
A request made with an Idempotency-Key answers a ``Keyed`` result: the first answer, or
the stored answer of the first time, validated back into the same model. ``Keyed`` lives
in ``treu.kit.results`` (the ledger's adjustments answer it too) and is importable from
here as before.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from treu.kit.results import Keyed as Keyed  # re-exported: the rewards services import it here
from treu.rewards.models import COUPON_TYPES, DISCOUNT_TYPES, RewardType

Lang = Literal["de", "en"]
Text = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=2000)]
LocalText = Annotated[
    dict[Lang, Text],
    Field(min_length=1, description='Per language: {"de": "…", "en": "…"}'),
]
LocalLongText = Annotated[dict[Lang, LongText], Field(description="Per language")]

DEFAULT_COUPON_DAYS = 30
"""Coupon validity after redemption when a reward does not say."""

EXAMPLE_REWARD: dict[str, Any] = {
    "code": "gutschein-5",
    "type": "amount_discount",
    "name": {"de": "5-€-Gutschein", "en": "€5 voucher"},
    "description": {"de": "Ab 20 € Einkaufswert", "en": "On orders of €20 or more"},
    "image_url": "https://shop.example/img/gutschein-5.png",
    "points_cost": 500,
    "value_minor": 500,
    "min_order_minor": 2000,
    "coupon_valid_days": 30,
    "per_member_limit": 3,
}


class Eligibility(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_tier: str | None = Field(
        default=None, max_length=32, description="Tier code: that tier or a higher one"
    )
    min_membership_days: int | None = Field(
        default=None, ge=0, le=36_500, description="Days since enrolment"
    )
    segments: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]] = Field(
        default_factory=list,
        max_length=20,
        description="Segment slugs: when given, only members of one of these active "
        "segments may redeem (see docs/segments.md)",
    )


class EventInfo(BaseModel):
    """When and where an experience takes place; the coupon is the ticket."""

    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    location: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _order(self) -> EventInfo:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class Policies(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_on_cancel: bool = Field(
        default=True, description="Give the points back when the redemption is cancelled"
    )
    refund_on_expiry: bool = Field(
        default=False, description="Give the points back when the coupon expires unused"
    )
    restore_on_return: bool = Field(
        default=True,
        description="Make the coupon usable again when the order that used it is fully returned",
    )


_REQUIRED: dict[RewardType, set[str]] = {
    RewardType.percent_discount: {"percent_bp"},
    RewardType.amount_discount: {"value_minor"},
    RewardType.free_product: {"sku"},
    RewardType.experience: {"event"},
    RewardType.donation: {"charity"},
    RewardType.wallet_credit: {"value_minor"},
}
_OPTIONAL: dict[RewardType, set[str]] = {
    RewardType.donation: {"value_minor"},
    RewardType.free_product: {"product_name"},
}
_ALL_TYPE_FIELDS = {"percent_bp", "value_minor", "sku", "product_name", "event", "charity"}
CharityCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="donation: the code of one of the programme's charities",
    ),
]


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REWARD]})

    code: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Your handle for the reward, unique in the programme",
    )
    type: RewardType
    name: LocalText
    description: LocalLongText = Field(default_factory=dict)
    image_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")
    points_cost: int = Field(ge=1, le=1_000_000_000)
    status: Literal["active", "paused"] = "active"
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    eligibility: Eligibility = Field(default_factory=Eligibility)
    stock: int | None = Field(
        default=None, ge=0, le=1_000_000_000, description="Total stock; null: unlimited"
    )
    per_member_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    coupon_valid_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description=f"Coupon validity after redemption (default {DEFAULT_COUPON_DAYS} days; "
        "an experience's ticket is valid until the event ends)",
    )
    min_order_minor: int | None = Field(
        default=None, ge=0, le=10**11, description="Discounts only: minimum cart total"
    )
    percent_bp: int | None = Field(
        default=None, ge=1, le=10_000, description="percent_discount: basis points (1000 = 10 %)"
    )
    value_minor: int | None = Field(
        default=None,
        ge=1,
        le=10**11,
        description="amount_discount, wallet_credit: the amount in minor units; donation: "
        "the amount donated (default: what the points are worth at the programme's point "
        "value)",
    )
    currency: str | None = Field(
        default=None, min_length=3, max_length=3, description="Default: the programme's"
    )
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    product_name: LocalText | None = Field(
        default=None,
        description='free_product: the product as members know it, e.g. {"de": "Cappuccino", '
        '"en": "Cappuccino"}; summaries name it ("1 x Cappuccino gratis") instead of the SKU',
    )
    event: EventInfo | None = None
    charity: CharityCode | None = None
    policies: Policies = Field(default_factory=Policies)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @model_validator(mode="after")
    def _fits_type(self) -> RewardIn:
        kind = RewardType(self.type)
        needed = _REQUIRED[kind]
        missing = sorted(f for f in needed if getattr(self, f) is None)
        if missing:
            raise ValueError(f"a {kind.value} reward needs {', '.join(missing)}")
        allowed = needed | _OPTIONAL.get(kind, set())
        foreign = sorted(f for f in _ALL_TYPE_FIELDS - allowed if getattr(self, f) is not None)
        if foreign:
            raise ValueError(f"a {kind.value} reward takes no {', '.join(foreign)}")
        if self.min_order_minor is not None and kind not in DISCOUNT_TYPES:
            raise ValueError("min_order_minor applies to discounts and free products only")
        if self.coupon_valid_days is not None and kind not in COUPON_TYPES:
            raise ValueError(f"a {kind.value} reward issues no coupon (no coupon_valid_days)")
        if self.currency is not None and kind not in (
            RewardType.amount_discount,
            RewardType.wallet_credit,
            RewardType.donation,
        ):
            raise ValueError(f"a {kind.value} reward takes no currency")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValueError("valid_until must be after valid_from")
        return self


class RewardPatch(BaseModel):
    """Send only what changes; ``code`` and ``type`` never change. A new ``stock`` moves
    what is left by the same amount (restocking); it cannot go below what is redeemed."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"points_cost": 450, "stock": 120}]}
    )

    name: LocalText | None = None
    description: LocalLongText | None = None
    image_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")
    points_cost: int | None = Field(default=None, ge=1, le=1_000_000_000)
    status: Literal["active", "paused"] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    eligibility: Eligibility | None = None
    stock: int | None = Field(default=None, ge=0, le=1_000_000_000)
    per_member_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    coupon_valid_days: int | None = Field(default=None, ge=1, le=3650)
    min_order_minor: int | None = Field(default=None, ge=0, le=10**11)
    percent_bp: int | None = Field(default=None, ge=1, le=10_000)
    value_minor: int | None = Field(default=None, ge=1, le=10**11)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    product_name: LocalText | None = None
    event: EventInfo | None = None
    charity: CharityCode | None = None
    policies: Policies | None = None


class StockOut(BaseModel):
    total: int
    left: int


class RewardOut(BaseModel):
    id: uuid.UUID
    programme: str
    code: str
    type: RewardType
    status: str
    name: dict[str, str]
    description: dict[str, str]
    image_url: str | None
    points_cost: int
    valid_from: datetime | None
    valid_until: datetime | None
    eligibility: Eligibility
    stock: StockOut | None = Field(description="null: unlimited")
    per_member_limit: int | None
    coupon_valid_days: int | None
    min_order_minor: int | None
    percent_bp: int | None
    value_minor: int | None
    currency: str | None
    sku: str | None
    product_name: dict[str, str] | None
    event: EventInfo | None
    charity: str | None
    policies: Policies
    created_at: datetime
    updated_at: datetime


class RewardList(BaseModel):
    items: list[RewardOut]


class ReasonOut(BaseModel):
    code: str = Field(
        description="insufficient_points, tier_required, segment_required, membership_too_new, "
        "out_of_stock, member_limit_reached, not_yet_available, no_longer_available, "
        "member_blocked, …"
    )
    text: str
    params: dict[str, Any] = Field(
        default_factory=dict, description='Facts behind the text, e.g. {"missing_points": 260}'
    )


class MemberRewardOut(BaseModel):
    id: uuid.UUID
    code: str
    type: RewardType
    name: str
    description: str | None
    summary: str = Field(description="What it gives, e.g. '10 % Rabatt ab 20,00 €'")
    image_url: str | None
    points_cost: int
    valid_until: datetime | None
    stock_left: int | None
    event: EventInfo | None
    reasons: list[ReasonOut] = Field(description="Empty when redeemable now")


class MemberRewardsOut(BaseModel):
    member_id: uuid.UUID
    available_points: int
    tier: str | None
    redeemable: list[MemberRewardOut]
    locked: list[MemberRewardOut]


class RedemptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reward_id": "0193a1c2-7f00-7000-8000-000000000042"}]},
    )

    reward_id: uuid.UUID | None = Field(default=None, description="The reward's id …")
    reward: str | None = Field(
        default=None, max_length=64, description="… or its code in the member's programme"
    )

    @model_validator(mode="after")
    def _one(self) -> RedemptionIn:
        if (self.reward_id is None) == (self.reward is None):
            raise ValueError("name the reward by reward_id or by its code in reward, not both")
        return self


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class CouponOut(BaseModel):
    id: uuid.UUID
    code: str = Field(description="Formatted in groups of four; send it back in any format")
    kind: RewardType
    status: str
    name: str
    summary: str
    reward_id: uuid.UUID | None
    redemption_id: uuid.UUID | None
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None
    order_id: str | None
    discount_minor: int | None
    qr_url: str


class CouponList(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None = None


class RedemptionOut(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    reward: dict[str, Any]
    points: int
    status: str
    created_at: datetime
    ended_at: datetime | None
    coupon: CouponOut | None


class RedemptionList(BaseModel):
    items: list[RedemptionOut]
    next_cursor: str | None = None


class RewardRef(BaseModel):
    id: uuid.UUID
    code: str
    type: RewardType
    name: dict[str, str]


class IssuedCoupon(BaseModel):
    id: uuid.UUID
    code: str = Field(description="Formatted in groups of four")
    kind: RewardType
    expires_at: datetime
    qr_url: str


class RedemptionResult(BaseModel):
    """The answer to ``POST /v1/members/{id}/redemptions``; a replay with the same
    Idempotency-Key answers exactly this again (status 200)."""

    id: uuid.UUID
    member_id: uuid.UUID
    reward: RewardRef
    points: int
    status: str
    created_at: datetime
    coupon: IssuedCoupon | None = Field(description="Discounts, free products, tickets")
    fulfilment: dict[str, Any] | None = Field(
        description="Donations and wallet credits: what was booked"
    )
    posting: dict[str, Any]
    balance: dict[str, int]


class CouponValidationOut(BaseModel):
    code: str
    applicable: bool
    discount_minor: int | None = Field(description="What the coupon takes off this cart")
    currency: str
    reasons: list[ReasonOut] = Field(description="Why not, when not applicable")
    coupon: CouponOut


class CouponUseOut(BaseModel):
    code: str
    order_id: str | None
    status: str
    discount_minor: int | None = Field(description="Granted on the order (null for a ticket)")
    currency: str
    used_at: str | None
    coupon: CouponOut


# --- pay with points -------------------------------------------------------------------


class BalanceNow(BaseModel):
    available: int
    pending: int


class PostingRef(BaseModel):
    id: uuid.UUID
    kind: str
    points: int
    explanation: str
    correlation_id: uuid.UUID
    created_at: datetime


class PointPaymentOut(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    order_id: str
    currency: str
    amount_requested_minor: int
    points_used: int = Field(description="Points burnt, earliest expiry first")
    amount_covered_minor: int = Field(description="What those points paid")
    remaining_to_pay_minor: int = Field(description="Still to pay another way")
    point_value_minor: str = Field(description="Minor units per point (a decimal)")
    posting: PostingRef
    balance: BalanceNow
    created_at: datetime


class PaymentState(BaseModel):
    points_used: int
    amount_covered_minor: int
    refunded_minor: int
    refunded_points: int


class PaymentRefundOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    order_id: str
    currency: str
    amount_minor: int
    points: int = Field(description="Points given back (to the lots they were paid from)")
    points_expired: int = Field(
        description="Of those, points whose lot was past its expiry: they expired at once"
    )
    posting: PostingRef | None
    payment: PaymentState
    balance: BalanceNow
    created_at: datetime


class RefundSummary(BaseModel):
    id: uuid.UUID
    amount_minor: int
    points: int
    created_at: datetime


class PointPaymentDetail(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    order_id: str
    currency: str
    amount_requested_minor: int
    points_used: int
    amount_covered_minor: int
    remaining_to_pay_minor: int
    point_value_minor: str
    refunded_minor: int
    refunded_points: int
    refunds: list[RefundSummary]
    created_at: datetime


# --- the e-wallet ----------------------------------------------------------------------


class WalletEntryOut(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    kind: Literal["credit", "debit", "refund", "reversal"]
    amount_minor: int = Field(description="Signed: credits and refunds add, debits take")
    currency: str
    balance_after_minor: int
    requested_minor: int | None
    order_id: str | None
    redemption_id: uuid.UUID | None
    debit_id: uuid.UUID | None = Field(description="A refund: the debit it gives back")
    created_at: datetime


class WalletDebitOut(WalletEntryOut):
    debited_minor: int
    remaining_to_pay_minor: int


class WalletRefundOut(WalletEntryOut):
    refunded_minor: int


# --- charities and donations -----------------------------------------------------------


class CharityOut(BaseModel):
    id: uuid.UUID
    code: str
    name: dict[str, str]
    description: dict[str, str]
    url: str | None
    active: bool
    created_at: datetime


class CharityRef(BaseModel):
    code: str
    name: dict[str, str]


class DonationOut(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    charity: CharityRef
    points: int
    value_minor: int = Field(description="What the points were worth (point value, rounded down)")
    currency: str
    redemption_id: uuid.UUID | None
    posting_id: uuid.UUID | None = Field(description="The redeem posting that burnt the points")
    created_at: datetime
