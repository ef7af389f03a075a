"""Tiers, each member's tier state and history, and the qualifying activity.

* ``tiers``: a programme's ordered tiers (``rank`` 0 = lowest) with the threshold on the
  programme's one metric (``programmes.tier_metric``), the earn multiplier, the flags a
  shop acts on (``free_shipping``) and whether the tier can be bought.
* ``tier_activity``: per member and day (in the programme's time zone) what counts
  towards qualification: points earned, spend and purchases, less returns. Written in
  the transaction of the event that caused it; a window sum is an index range over one
  member's rows. Redemptions never touch it, so spending points never lowers a tier.
* ``member_tiers``: the member's tier now (``tier``), the tier held by qualification
  (``qualified_tier``), a bought tier (``paid_tier`` until ``paid_until``), the grace
  period and when the member needs looking at next (``review_on``, for the daily job).
  A row exists once the member has activity; a member without one holds the lowest tier
  if its threshold is 0.
* ``tier_history``: every change, append-only, with a reason code and text.

Tiers are named by their ``code`` in state and history: codes never change. Foreign
keys name their type (``Uuid``): a derived type stays unknown to statements built before
the referenced model is imported.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class Tier(IdMixin, TimestampMixin, Base):
    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("programme_id", "code"),
        UniqueConstraint("programme_id", "rank"),
        CheckConstraint("threshold >= 0", name="threshold_non_negative"),
        CheckConstraint("multiplier >= 1", name="multiplier_at_least_one"),
        CheckConstraint("rank >= 0", name="rank_non_negative"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("programmes.id"))
    code: Mapped[str] = mapped_column(String(32))
    rank: Mapped[int] = mapped_column(Integer)
    name: Mapped[dict[str, Any]]
    """``{"en": "Gold", "de": "Gold"}``."""
    description: Mapped[dict[str, Any] | None]
    threshold: Mapped[int]
    """In the programme's metric: points, minor units of spend, or purchases."""
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4), default=Decimal(1))
    flags: Mapped[list[Any]] = mapped_column(default=list)
    benefits: Mapped[list[Any]] = mapped_column(default=list)
    """Localised benefit texts for members: ``[{"en": ..., "de": ...}, ...]``."""
    purchasable: Mapped[bool] = mapped_column(default=False)


class TierActivity(Base):
    __tablename__ = "tier_activity"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    points: Mapped[int] = mapped_column(default=0)
    spend_minor: Mapped[int] = mapped_column(default=0)
    purchases: Mapped[int] = mapped_column(default=0)


class MemberTier(Base):
    __tablename__ = "member_tiers"
    __table_args__ = (
        Index("ix_member_tiers_programme_review", "programme_id", "review_on", "member_id"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"), primary_key=True)
    programme_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("programmes.id"))
    tier: Mapped[str | None] = mapped_column(String(32))
    since: Mapped[datetime] = mapped_column(default=utc_now)
    qualified_tier: Mapped[str | None] = mapped_column(String(32))
    valid_until: Mapped[date | None] = mapped_column(Date)
    """Last day the qualified tier is certain without further activity."""
    paid_tier: Mapped[str | None] = mapped_column(String(32))
    paid_until: Mapped[datetime | None]
    grace_started_on: Mapped[date | None] = mapped_column(Date)
    review_on: Mapped[date | None] = mapped_column(Date)
    """When ``tiers.reevaluate`` must look at the member next (None: only activity can
    change the tier, and activity upgrades at once)."""
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class TierHistory(IdMixin, Base):
    __tablename__ = "tier_history"
    __table_args__ = (Index("ix_tier_history_member_at", "member_id", "at"),)

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("programmes.id"))
    from_tier: Mapped[str | None] = mapped_column(String(32))
    to_tier: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(500))
    """English; ``details`` renders it in German too."""
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("events.id"))
    at: Mapped[datetime] = mapped_column(default=utc_now)
