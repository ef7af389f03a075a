from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from treu.kit.money import Rate, Rounding, is_known_currency
from treu.programmes.models import ExpiryPolicy, RoundingScope, TierMetric, TierWindow


class PluralName(BaseModel):
    one: str = Field(min_length=1, max_length=40)
    other: str = Field(min_length=1, max_length=40)


PointsName = dict[
    Literal["de", "en"], PluralName | Annotated[str, Field(min_length=1, max_length=40)]
]

DEFAULT_POINTS_NAME: dict[str, dict[str, str]] = {
    "en": {"one": "point", "other": "points"},
    "de": {"one": "Punkt", "other": "Punkte"},
}


class Expiry(BaseModel):
    """``never``; ``rolling`` (each lot ``months`` after it was earned); ``fixed`` (end of
    the calendar year it was earned in, plus ``years``)."""

    model_config = ConfigDict(extra="forbid")

    policy: ExpiryPolicy = ExpiryPolicy.never
    months: int | None = Field(default=None, ge=1, le=600)
    years: int | None = Field(default=None, ge=0, le=50)

    @model_validator(mode="after")
    def _consistent(self) -> Expiry:
        if self.policy is ExpiryPolicy.rolling and self.months is None:
            raise ValueError("a rolling expiry needs 'months'")
        if self.policy is ExpiryPolicy.fixed and self.years is None:
            raise ValueError("a fixed expiry needs 'years' (0 = end of the year earned)")
        if self.policy is ExpiryPolicy.never and (self.months or self.years):
            raise ValueError("policy 'never' takes neither 'months' nor 'years'")
        return self


class TierSettings(BaseModel):
    """How members qualify for the programme's tiers (docs/tiers.md)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"metric": "spend", "window": "calendar_year", "grace_days": 30, "max_drop": 1}
            ]
        },
    )

    metric: TierMetric = Field(
        default=TierMetric.points,
        description="points (qualifying points), spend (minor units) or purchases (count)",
    )
    window: TierWindow = Field(
        default=TierWindow.rolling_12_months,
        description="rolling_12_months, or calendar_year (a tier reached in a year is kept "
        "through the next year)",
    )
    grace_days: int = Field(
        default=30, ge=0, le=730, description="Days below a tier's threshold before a downgrade"
    )
    max_drop: int = Field(default=1, ge=1, le=100, description="Tiers down per re-evaluation")


class TierSettingsPatch(BaseModel):
    """Only what changes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"grace_days": 60}]})

    metric: TierMetric | None = None
    window: TierWindow | None = None
    grace_days: int | None = Field(default=None, ge=0, le=730)
    max_drop: int | None = Field(default=None, ge=1, le=100)


class ProgrammeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "slug": "demo",
                    "name": "Treu Demo",
                    "currency": "EUR",
                    "points_per_currency_unit": 1,
                    "pending_days": 14,
                    "expiry": {"policy": "rolling", "months": 24},
                    "auto_enrol": False,
                }
            ]
        },
    )

    slug: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. EUR")
    timezone: str = Field(default="Europe/Berlin", description="IANA zone for calendar rules")
    points_name: PointsName | None = None
    points_per_currency_unit: Decimal = Field(ge=0, le=10_000, max_digits=12, decimal_places=4)
    rounding: Rounding = Rounding.floor
    rounding_scope: RoundingScope = Field(
        default=RoundingScope.order,
        description="Round once on the order total (default) or on each line.",
    )
    point_value_minor: Decimal = Field(
        default=Decimal(1),
        ge=0,
        max_digits=12,
        decimal_places=4,
        description="What one point is worth in minor units (liability reporting).",
    )
    pending_days: int = Field(default=0, ge=0, le=365)
    expiry: Expiry = Field(default_factory=Expiry)
    auto_enrol: bool = False
    multiplier_stacking: Literal["additive", "multiplicative", "highest"] = Field(
        default="additive",
        description="How earning rules' multipliers on the same points combine: additive "
        "(x2 and x1.5 give x2.5), multiplicative (x3) or highest (x2). See docs/rules.md.",
    )
    tier_settings: TierSettings = Field(
        default_factory=TierSettings, description="Tier qualification (docs/tiers.md)"
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.upper()
        if not is_known_currency(value):
            raise ValueError(f"unknown ISO 4217 currency {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"unknown time zone {value!r}")
        return value


class ProgrammeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01a23ca7-2941-76b2-a75d-87682d0eebf8",
                    "slug": "demo",
                    "name": "Treu Demo",
                    "currency": "EUR",
                    "timezone": "Europe/Berlin",
                    "points_name": {
                        "en": {"one": "point", "other": "points"},
                        "de": {"one": "Punkt", "other": "Punkte"},
                    },
                    "points_per_currency_unit": "1",
                    "rounding": "floor",
                    "rounding_scope": "order",
                    "point_value_minor": "1",
                    "pending_days": 14,
                    "expiry": {"policy": "rolling", "months": 24, "years": None},
                    "auto_enrol": False,
                    "multiplier_stacking": "additive",
                    "tier_settings": {
                        "metric": "points",
                        "window": "rolling_12_months",
                        "grace_days": 30,
                        "max_drop": 1,
                    },
                    "created_at": "2026-11-24T10:20:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    slug: str
    name: str
    currency: str
    timezone: str
    points_name: dict[str, object]
    points_per_currency_unit: Rate
    rounding: str
    rounding_scope: str
    point_value_minor: Rate
    pending_days: int
    expiry: Expiry
    auto_enrol: bool
    multiplier_stacking: str
    tier_settings: TierSettings
    created_at: datetime
