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
