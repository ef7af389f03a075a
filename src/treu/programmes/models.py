from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin


class ExpiryPolicy(enum.StrEnum):
    never = "never"
    rolling = "rolling"
    """Each earned lot expires ``expiry_months`` after it was earned."""
    fixed = "fixed"
    """Lots expire at the end of the calendar year they were earned in + ``expiry_years``."""


class RoundingScope(enum.StrEnum):
    order = "order"
    line = "line"


class TierMetric(enum.StrEnum):
    """What qualifies a member for a tier (one metric per programme)."""

    points = "points"
    """Qualifying points: what purchases and engagement earned (not the spendable balance)."""
    spend = "spend"
    """Purchase amounts in minor units, less returns."""
    purchases = "purchases"
    """Number of purchases; a fully returned purchase no longer counts."""


class TierWindow(enum.StrEnum):
    rolling_12_months = "rolling_12_months"
    """The last 12 months up to and including today (programme time zone)."""
    calendar_year = "calendar_year"
    """The calendar year; a tier reached in one year is kept through the next."""


class Programme(IdMixin, TimestampMixin, Base):
    __tablename__ = "programmes"
    __table_args__ = (
        CheckConstraint("pending_days >= 0", name="pending_days_non_negative"),
        CheckConstraint("points_per_currency_unit >= 0", name="rate_non_negative"),
    )

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Berlin")
    points_name: Mapped[dict[str, Any]]
    points_per_currency_unit: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    rounding: Mapped[str] = mapped_column(String(16), default="floor")
    rounding_scope: Mapped[str] = mapped_column(String(16), default=RoundingScope.order.value)
    point_value_minor: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(1))
    pending_days: Mapped[int] = mapped_column(default=0)
    expiry_policy: Mapped[str] = mapped_column(String(16), default=ExpiryPolicy.never.value)
    expiry_months: Mapped[int | None]
    expiry_years: Mapped[int | None]
    auto_enrol: Mapped[bool] = mapped_column(default=False)
    multiplier_stacking: Mapped[str] = mapped_column(
        String(16), default="additive", server_default="additive"
    )
    """How earning rules' multipliers on the same points combine (see docs/rules.md)."""
    tier_metric: Mapped[str] = mapped_column(
        String(16), default=TierMetric.points.value, server_default=TierMetric.points.value
    )
    tier_window: Mapped[str] = mapped_column(
        String(24),
        default=TierWindow.rolling_12_months.value,
        server_default=TierWindow.rolling_12_months.value,
    )
    tier_grace_days: Mapped[int] = mapped_column(default=30, server_default="30")
    """Days a member keeps a tier after falling below its threshold (treu.tiers)."""
    tier_max_drop: Mapped[int] = mapped_column(default=1, server_default="1")
    """At most this many tiers down per re-evaluation."""
    tiers_version: Mapped[int] = mapped_column(default=0, server_default="0")
    """Bumped whenever the programme's tiers or tier settings change; 0 = no tiers. Cached
    programme rows carry it, so ingestion knows without a query whether tiers apply and
    whether its compiled tier definitions are current."""
