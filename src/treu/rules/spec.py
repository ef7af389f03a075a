"""Rule definitions as marketing staff write them (and as the HTTP API accepts them).

A ``RuleSpec`` is plain data: trigger, conditions, effect, limits. Validating one
compiles its expressions against the rule scope, so a rule with a syntax or type error
can never be saved; the pydantic error carries the expression's line, column and offset
in ``ctx``. ``treu.rules.engine`` turns published specs into executable rule sets.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from treu.kit.money import Rounding
from treu.rules.expr import (
    BOOL,
    DATE,
    INT,
    MAP,
    STR,
    ExpressionError,
    Record,
    Scope,
    list_of,
    optional,
    set_of,
    translate,
)

# --------------------------------------------------------------------------- scope

EVENT = Record(
    "event",
    {
        "type": STR,
        "channel": optional(STR),
        "store": optional(STR),
        "currency": optional(STR),
        "total_minor": INT,
        "item_count": INT,
        "line_count": INT,
        "weekday": INT,
        "hour": INT,
        "date": DATE,
        "attrs": MAP,
    },
    "The event being rewarded. weekday (1 = Monday .. 7 = Sunday), hour and date are "
    "in the programme's time zone; amounts are in minor units (cents).",
)
MEMBER = Record(
    "member",
    {
        "tier": optional(STR),
        "segments": set_of(STR),
        "days_enrolled": INT,
        "birthday_month": BOOL,
        "language": optional(STR),
        "channel": optional(STR),
        "attrs": MAP,
        "known": BOOL,
        "id": optional(STR),
    },
    "The member: id is the member's id (None for an anonymous cart), known is False for "
    "an anonymous cart; birthday_month is True when the member's birthday falls in the "
    "event's month; channel is the enrolment channel.",
)
LINE = Record(
    "line",
    {
        "sku": STR,
        "name": optional(STR),
        "category": optional(STR),
        "quantity": INT,
        "unit_price_minor": INT,
        "total_minor": INT,
        "tags": list_of(STR),
    },
    "One cart line (only in line conditions); prices in minor units.",
)

ORDER_SCOPE = Scope({"event": EVENT, "member": MEMBER})
"""What ``condition`` may mention."""

LINE_SCOPE = Scope({"event": EVENT, "member": MEMBER, "line": LINE})
"""What ``line_condition`` may mention."""

# --------------------------------------------------------------------------- effects

TRIGGER_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
Trigger = Annotated[str, Field(pattern=TRIGGER_PATTERN, examples=["purchase"])]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointsPerUnit(_Model):
    """``rate`` points per currency major unit (1 = 1 point per EUR 1), on the whole
    order or, with ``scope="lines"``, on the lines that match ``line_condition``."""

    type: Literal["points_per_unit"] = "points_per_unit"
    rate: Decimal = Field(ge=0, le=10_000, decimal_places=6, examples=["1", "0.5"])
    scope: Literal["order", "lines"] = "order"


class Multiplier(_Model):
    """Multiplies the base points (from points_per_unit rules) of the lines it covers;
    the rule's award is the extra, (factor - 1) x base."""

    type: Literal["multiplier"] = "multiplier"
    factor: Decimal = Field(
        ge=1,
        le=100,
        decimal_places=4,
        examples=["2", "1.5"],
        description="At least 1: for fewer points on some lines use an exclusive "
        "points_per_unit rule with a lower rate (a posting never takes points away)",
    )
    scope: Literal["order", "lines"] = "order"


class Fixed(_Model):
    """A fixed number of points per event (50 points for a review) or, with
    ``scope="lines"``, per purchase line matching ``line_condition`` (50 points on each
    line tagged ``near_best_before``, whatever its quantity)."""

    type: Literal["fixed"] = "fixed"
    points: int = Field(ge=0, le=1_000_000_000)
    scope: Literal["order", "lines"] | None = Field(
        default=None, description='"lines": per matching line; omitted: once per event'
    )


class PercentBonus(_Model):
    """``percent`` of what the event earns from points_per_unit and multiplier rules (on
    the lines matching ``line_condition`` if there is one)."""

    type: Literal["percent_bonus"] = "percent_bonus"
    percent: Decimal = Field(gt=0, le=10_000, decimal_places=4, examples=["10"])


class BadgeOnly(_Model):
    """No points; the rule's ``badge`` is the reward."""

    type: Literal["badge_only"] = "badge_only"


Effect = Annotated[
    PointsPerUnit | Multiplier | Fixed | PercentBonus | BadgeOnly, Field(discriminator="type")
]

LINE_EFFECTS = ("points_per_unit", "multiplier", "percent_bonus", "fixed")


class LocalizedText(_Model):
    en: str = Field(min_length=1, max_length=500)
    de: str | None = Field(default=None, min_length=1, max_length=500)

    def get(self, lang: str) -> str:
        return self.de if lang == "de" and self.de else self.en


_EMOJI_MAX = 16


class Badge(_Model):
    """Recognition for engagement that earns no money (or besides points)."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", examples=["first-review"])
    name: LocalizedText
    icon: str = Field(
        min_length=1,
        max_length=500,
        description="An https URL or an emoji",
        examples=["🏅", "https://example.com/badges/review.svg"],
    )
    description: LocalizedText | None = None

    @field_validator("icon")
    @classmethod
    def _icon(cls, value: str) -> str:
        if re.match(r"^https?://[^\s]+$", value):
            return value
        if len(value) <= _EMOJI_MAX and not value.isascii() and not any(c.isspace() for c in value):
            return value
        raise PydanticCustomError("badge_icon", "icon must be an http(s) URL or an emoji")


class Limit(_Model):
    """Per member: at most ``max_count`` awards and/or ``max_points`` points per period
    (calendar day/week/month in the programme's time zone, or for the member's lifetime)."""

    per: Literal["day", "week", "month", "lifetime"]
    max_count: int | None = Field(default=None, ge=1, le=1_000_000)
    max_points: int | None = Field(default=None, ge=1, le=10**12)

    @model_validator(mode="after")
    def _something(self) -> Limit:
        if self.max_count is None and self.max_points is None:
            raise PydanticCustomError("limit_empty", "a limit needs max_count or max_points")
        return self


MAX_MEMBERS = 10_000
"""The longest member list a rule may name (``RuleSpec.members``); larger audiences are
segments (``member.segments``, docs/segments.md)."""


class RuleSetSettings(_Model):
    """How multipliers on the same points combine: ``additive`` (x2 and x1.5 give x2.5),
    ``multiplicative`` (x3) or ``highest`` (x2)."""

    multiplier_stacking: Literal["additive", "multiplicative", "highest"] = "additive"


# --------------------------------------------------------------------------- rule


def expression_error(field: str, exc: ExpressionError) -> PydanticCustomError:
    """A pydantic error for an expression that does not compile, with its line and
    column (what the API shows in place)."""
    return PydanticCustomError(
        "expression",
        "{message} (line {line}, column {column})",
        {"field": field, **exc.to_dict()},
    )


def checked_condition(value: str | None, scope: Scope, field: str) -> str | None:
    """A condition that compiles to a boolean in ``scope`` (None when blank), or an
    ``expression_error``. Rules, challenges and campaigns check theirs with it."""
    if value is None or not value.strip():
        return None
    try:
        translate(value, scope, {root: root for root in scope.roots}, result=BOOL)
    except ExpressionError as exc:
        raise expression_error(field, exc) from None
    return value


class RuleSpec(_Model):
    """One earning rule: when ``trigger`` happens and ``condition`` holds, apply ``effect``
    (within ``limits`` and ``budget_points``). See docs/rules.md."""

    name: str = Field(min_length=1, max_length=120)
    description: str | None = Field(default=None, max_length=2_000)
    trigger: Trigger
    condition: str | None = Field(
        default=None,
        description="Expression over event and member; empty means always",
        examples=["event.channel == 'app' and event.weekday in [6, 7]"],
    )
    line_condition: str | None = Field(
        default=None,
        description="Expression over event, member and line; only for line-scoped effects",
        examples=["'organic' in line.tags"],
    )
    effect: Effect
    badge: Badge | None = None
    rounding: Rounding | None = Field(
        default=None, description="Rounding of this rule's award; default: the programme's"
    )
    priority: int = Field(default=100, ge=-1_000_000, le=1_000_000)
    stacking: Literal["combinable", "exclusive"] = "combinable"
    limits: list[Limit] = Field(default_factory=list, max_length=4)
    budget_points: int | None = Field(default=None, ge=1, le=10**15)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    members: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MEMBERS,
        description="Only these members (ids), e.g. a campaign's member list; omit for "
        "everybody. Part of the published version, so a return is recomputed with the "
        "list as it was.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("blank", "name must not be blank")
        return value

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        # Sorted and without duplicates: one list is one version, whatever the order.
        return sorted(set(value)) if value is not None else None

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        return checked_condition(value, ORDER_SCOPE, "condition")

    @field_validator("line_condition")
    @classmethod
    def _line_condition(cls, value: str | None) -> str | None:
        return checked_condition(value, LINE_SCOPE, "line_condition")

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        effect = self.effect
        if self.line_condition is not None:
            if effect.type not in LINE_EFFECTS:
                raise PydanticCustomError(
                    "line_condition_effect",
                    "line_condition needs a points_per_unit, multiplier, percent_bonus or "
                    "fixed effect (a {effect} effect applies to the whole event)",
                    {"effect": effect.type},
                )
            if isinstance(effect, PointsPerUnit | Multiplier | Fixed) and effect.scope != "lines":
                raise PydanticCustomError(
                    "line_condition_scope",
                    'line_condition needs the effect\'s scope to be "lines"',
                )
        if self.line_scoped and self.trigger != "purchase":
            raise PydanticCustomError(
                "line_trigger",
                "line conditions and line-scoped effects need the trigger 'purchase' "
                "(other events have no lines)",
            )
        if effect.type == "badge_only" and self.badge is None:
            raise PydanticCustomError("badge_missing", "a badge_only rule needs a badge")
        if (
            self.valid_from is not None
            and self.valid_until is not None
            and self.valid_until <= self.valid_from
        ):
            raise PydanticCustomError("validity", "valid_until must be after valid_from")
        pers = [limit.per for limit in self.limits]
        if len(set(pers)) != len(pers):
            raise PydanticCustomError("limits_duplicate", "at most one limit per period")
        return self

    @property
    def line_scoped(self) -> bool:
        """True if the rule covers individual lines (it may exclude them)."""
        effect = self.effect
        if isinstance(effect, PointsPerUnit | Multiplier | Fixed):
            return effect.scope == "lines"
        return self.line_condition is not None

    def active_at(self, at: datetime) -> bool:
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_until is None or at < self.valid_until


def expression_error_details(error: dict[str, Any]) -> dict[str, Any] | None:
    """From one entry of ``ValidationError.errors()``: the expression position, if the
    error is an expression error (``{"field", "message", "line", "column", "offset"}``)."""
    if error.get("type") != "expression":
        return None
    ctx = error.get("ctx") or {}
    return {key: ctx.get(key) for key in ("field", "message", "line", "column", "offset")}
