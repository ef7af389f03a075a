"""Rewards tables: the catalogue, redemptions and coupons.

* ``rewards``: what a programme's points buy. ``stock_left`` is decremented in the
  redemption's transaction by a conditional UPDATE and guarded by
  ``CHECK (stock_left >= 0)``, so the database itself refuses an oversell.
* ``redemptions``: one per successful ``POST /v1/members/{id}/redemptions``, unique per
  (member, idempotency key); ``result`` is the answer given the first time, returned
  unchanged on a replay. ``reward`` is a snapshot of the terms the member redeemed under
  (a later catalogue edit does not change what they bought).
* ``coupons``: the voucher a redemption issues (unguessable ``code``, unique across the
  installation). A coupon is used once: ``status`` goes from ``active`` to ``used`` only
  by ``UPDATE … WHERE status = 'active'``, so two tills cannot both use it. ``terms`` is a
  snapshot of the discount. ``redemption_id`` is nullable to leave room for coupons issued
  by other features (campaigns, birthday gifts).

The tables of the payments helper (wallet credits, donations) reference ``redemptions.id``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class RewardType(enum.StrEnum):
    percent_discount = "percent_discount"
    amount_discount = "amount_discount"
    free_product = "free_product"
    experience = "experience"
    """A seat at an event (styling session, early-access evening): the coupon is the ticket."""
    donation = "donation"
    """Points become a donation record for a named charity; fulfilled at once, no coupon."""
    wallet_credit = "wallet_credit"
    """Points become money credit in the member's e-wallet; fulfilled at once, no coupon."""


DISCOUNT_TYPES = frozenset(
    {RewardType.percent_discount, RewardType.amount_discount, RewardType.free_product}
)
COUPON_TYPES = DISCOUNT_TYPES | {RewardType.experience}
"""Rewards that issue a coupon; the others are fulfilled in the redemption itself."""


class RewardStatus(enum.StrEnum):
    active = "active"
    paused = "paused"
    """Listed to nobody, redeemable by nobody; issued coupons stay valid."""
    archived = "archived"
    """Deleted from the catalogue; kept because redemptions refer to it."""


class RedemptionStatus(enum.StrEnum):
    redeemed = "redeemed"
    """Holds a unit of stock and counts against the per-member limit."""
    cancelled = "cancelled"
    expired = "expired"
    """Its coupon expired unused."""


class CouponStatus(enum.StrEnum):
    active = "active"
    used = "used"
    expired = "expired"
    cancelled = "cancelled"


class Reward(IdMixin, TimestampMixin, Base):
    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("programme_id", "code"),
        Index("ix_rewards_programme_status", "programme_id", "status"),
        CheckConstraint("points_cost > 0", name="points_cost_positive"),
        CheckConstraint("stock_left >= 0", name="stock_left_non_negative"),
        CheckConstraint(
            "(stock_total IS NULL AND stock_left IS NULL) OR "
            "(stock_total IS NOT NULL AND stock_left IS NOT NULL AND stock_left <= stock_total)",
            name="stock_consistent",
        ),
        CheckConstraint("per_member_limit > 0", name="per_member_limit_positive"),
        CheckConstraint("coupon_valid_days > 0", name="coupon_valid_days_positive"),
        CheckConstraint("percent_bp BETWEEN 1 AND 10000", name="percent_bp_range"),
        CheckConstraint("value_minor > 0", name="value_minor_positive"),
        CheckConstraint("min_order_minor >= 0", name="min_order_minor_non_negative"),
        CheckConstraint("min_membership_days >= 0", name="min_membership_days_non_negative"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    code: Mapped[str] = mapped_column(String(64))
    """The programme's own handle (``coffee-free``), unique in the programme."""
    type: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16), default=RewardStatus.active.value)
    name: Mapped[dict[str, Any]]
    """``{"de": "…", "en": "…"}``"""
    description: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image_url: Mapped[str | None] = mapped_column(String(2000))
    points_cost: Mapped[int]
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    # eligibility
    min_tier: Mapped[str | None] = mapped_column(String(64))
    """A tier code of the programme: members of that tier or a higher one may redeem."""
    min_membership_days: Mapped[int | None]
    segments: Mapped[list[Any]] = mapped_column(default=list)
    """Reserved for segment eligibility (always empty until segments exist)."""
    # stock and limits
    stock_total: Mapped[int | None]
    stock_left: Mapped[int | None]
    per_member_limit: Mapped[int | None]
    # coupon
    coupon_valid_days: Mapped[int | None]
    min_order_minor: Mapped[int | None]
    # type-specific terms
    percent_bp: Mapped[int | None]
    """percent_discount: basis points (1000 = 10 %)."""
    value_minor: Mapped[int | None]
    """amount_discount: the discount; wallet_credit: the credit; donation: the amount
    donated (None: what the points are worth at the programme's point value). Minor
    units of ``currency``."""
    currency: Mapped[str | None] = mapped_column(String(3))
    sku: Mapped[str | None] = mapped_column(String(64))
    product_name: Mapped[dict[str, Any] | None]
    """free_product: ``{"de": "…", "en": "…"}``, what the summaries call the product."""
    event_starts_at: Mapped[datetime | None]
    event_ends_at: Mapped[datetime | None]
    event_location: Mapped[str | None] = mapped_column(String(200))
    charity_code: Mapped[str | None] = mapped_column(String(64))
    """donation: the code of one of the programme's charities (``treu.rewards.donations``)."""
    # policies
    refund_on_cancel: Mapped[bool] = mapped_column(default=True)
    refund_on_expiry: Mapped[bool] = mapped_column(default=False)
    restore_on_return: Mapped[bool] = mapped_column(default=True)


class Redemption(IdMixin, TimestampMixin, Base):
    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("member_id", "key"),
        Index("ix_redemptions_member_id_id", "member_id", "id"),
        Index("ix_redemptions_reward_id", "reward_id"),
        CheckConstraint("points > 0", name="points_positive"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rewards.id"))
    key: Mapped[str] = mapped_column(String(200))
    """The Idempotency-Key of the request (per member)."""
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RedemptionStatus.redeemed.value)
    points: Mapped[int]
    posting_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("postings.id"))
    refund_posting_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("postings.id"))
    reward: Mapped[dict[str, Any]]
    """Snapshot of the reward's terms and policies at redemption."""
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str | None] = mapped_column(String(200))
    ended_at: Mapped[datetime | None]
    """When it was cancelled or its coupon expired."""
    end_reason: Mapped[str | None] = mapped_column(Text)


class Coupon(IdMixin, Base):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("code"),
        UniqueConstraint("redemption_id"),
        Index("ix_coupons_member_status", "member_id", "status", "expires_at"),
        Index(
            "ix_coupons_expiry_due",
            "expires_at",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(
            "ix_coupons_order",
            "programme_id",
            "order_id",
            postgresql_where=text("order_id IS NOT NULL"),
            sqlite_where=text("order_id IS NOT NULL"),
        ),
        CheckConstraint("discount_minor >= 0", name="discount_minor_non_negative"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    reward_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("rewards.id"))
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("redemptions.id"))
    code: Mapped[str] = mapped_column(String(32))
    """Normalised (no dashes); see ``treu.kit.codes``."""
    kind: Mapped[str] = mapped_column(String(24))
    """The reward type: what the coupon does."""
    status: Mapped[str] = mapped_column(String(16), default=CouponStatus.active.value)
    terms: Mapped[dict[str, Any]]
    """Snapshot: name, percent_bp, value_minor, currency, sku, min_order_minor, event."""
    restore_on_return: Mapped[bool] = mapped_column(default=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    order_id: Mapped[str | None] = mapped_column(String(200))
    """The shop's order id (the purchase event's id) the coupon was used for."""
    discount_minor: Mapped[int | None]
    """The discount granted on that order (None for a ticket)."""
    used_by: Mapped[str | None] = mapped_column(String(200))
    restored_at: Mapped[datetime | None]
    restore_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
