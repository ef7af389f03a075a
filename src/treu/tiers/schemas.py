"""What the tiers API accepts and answers (docs/tiers.md has the worked examples)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from treu.kit.money import Rate
from treu.programmes.schemas import TierSettings

CODE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
FLAG_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

Flag = Annotated[str, Field(pattern=FLAG_PATTERN, examples=["free_shipping"])]


class Localized(BaseModel):
    model_config = ConfigDict(extra="forbid")

    en: str = Field(min_length=1, max_length=200)
    de: str | None = Field(default=None, min_length=1, max_length=200)


def _unique_flags(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("flags must not repeat")
    return value


_EXAMPLE: dict[str, Any] = {
    "code": "gold",
    "rank": 2,
    "name": {"en": "Gold", "de": "Gold"},
    "threshold": 200000,
    "multiplier": "1.5",
    "flags": ["free_shipping"],
    "benefits": [
        {"en": "1.5 points per €1", "de": "1,5 Punkte pro 1 €"},
        {"en": "Free shipping", "de": "Kostenloser Versand"},
    ],
    "purchasable": True,
}


class TierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    code: str = Field(pattern=CODE_PATTERN, description="Stable id; never changes")
    rank: int = Field(ge=0, le=1000, description="Order: 0 = lowest; unique per programme")
    name: Localized
    description: Localized | None = None
    threshold: int = Field(
        ge=0,
        le=10**15,
        description="In the programme's tier metric: points, spend in minor units, or "
        "purchases. Rises with the rank; the lowest tier may have 0 (everybody).",
    )
    multiplier: Decimal = Field(
        default=Decimal(1),
        ge=1,
        le=100,
        max_digits=8,
        decimal_places=4,
        description="Earn multiplier on base points (1 = none)",
    )
    flags: list[Flag] = Field(
        default_factory=list, max_length=20, description="Benefits the shop acts on"
    )
    benefits: list[Localized] = Field(default_factory=list, max_length=20)
    purchasable: bool = Field(
        default=False, description="Can be bought (membership_purchased events)"
    )

    _flags = field_validator("flags")(_unique_flags)


class TierPatch(BaseModel):
    """Only what changes; ``code`` never does."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"threshold": 180000}]}
    )

    rank: int | None = Field(default=None, ge=0, le=1000)
    name: Localized | None = None
    description: Localized | None = None
    threshold: int | None = Field(default=None, ge=0, le=10**15)
    multiplier: Decimal | None = Field(default=None, ge=1, le=100, max_digits=8, decimal_places=4)
    flags: list[Flag] | None = Field(default=None, max_length=20)
    benefits: list[Localized] | None = Field(default=None, max_length=20)
    purchasable: bool | None = None

    _flags = field_validator("flags")(_unique_flags)


class TierOut(BaseModel):
    code: str
    rank: int
    name: dict[str, str]
    description: dict[str, str] | None
    threshold: int
    multiplier: Rate
    flags: list[str]
    benefits: list[dict[str, str]]
    purchasable: bool


class TiersOut(BaseModel):
    settings: TierSettings
    tiers: list[TierOut]


class TierRef(BaseModel):
    code: str
    rank: int
    name: str = Field(description="In the requested language")


class MissingOut(BaseModel):
    """Machine fields plus the sentence for people."""

    tier: TierRef
    metric: Literal["points", "spend", "purchases"]
    missing: int = Field(description="Points, minor units of spend, or purchases")
    currency: str | None = Field(description="For spend")
    deadline: date | None = Field(description="By the end of this day (programme time zone)")
    text: str = Field(examples=["€120.00 spend by 31.12.2026 for Gold"])


class BenefitsOut(BaseModel):
    multiplier: Rate
    flags: list[str]
    benefits: list[str]


class MemberTierOut(BaseModel):
    member_id: uuid.UUID
    tier: TierRef | None
    since: datetime | None
    valid_until: date | None = Field(
        description="Last day the tier is certain without more activity (None: no end)"
    )
    paid: bool
    paid_until: datetime | None
    qualified_tier: TierRef | None
    grace_until: date | None = Field(
        description="Below the tier's threshold: the last day before a downgrade"
    )
    metric: Literal["points", "spend", "purchases"]
    window: Literal["rolling_12_months", "calendar_year"]
    value: int = Field(description="What counts now (window to date)")
    next: MissingOut | None
    keep: MissingOut | None
    benefits: BenefitsOut | None


class HistoryEntryOut(BaseModel):
    id: uuid.UUID
    from_tier: str | None
    to_tier: str | None
    reason: str = Field(
        examples=["qualified"],
        description="qualified, requalification_failed, membership_purchased, "
        "membership_renewed, membership_expired",
    )
    text: str
    event_id: str | None = Field(description="Your id of the event that caused it")
    at: datetime


class HistoryOut(BaseModel):
    items: list[HistoryEntryOut]
    next_cursor: str | None


def dump_localized(value: Localized | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return value.model_dump(exclude_none=True)
