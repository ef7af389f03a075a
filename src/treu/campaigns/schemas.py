"""A campaign as marketing staff write it (``CampaignSpec``), the earning rule it becomes,
and what the API answers.

A **bonus** campaign (the default ``kind``) is a boost on the earning rules, so it is
written as one: its window becomes the rule's validity, its boost the rule's effect
(with the boost's own conditions), its audience and control group the rule's condition
and member list, its budget the rule's budget. ``CampaignSpec.rule_spec`` is that
translation, and the only place that knows it.

A targeted **offer** (``kind: "offer"``) gives points, a reward's coupon or both to its
audience once, with a message (``treu.campaigns.offers``). It manages a rule too, but
one that is never published: the rule names the offer's points in the ledger (its
postings carry the rule's id, as a bonus campaign's do) and holds its budget
(``budget_used``), so statistics and budgets read the same columns for both kinds.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from treu.rules.spec import (
    LINE_SCOPE,
    MAX_MEMBERS,
    ORDER_SCOPE,
    Fixed,
    Multiplier,
    RuleSpec,
    checked_condition,
)

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TEMPLATE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
OFFER_TEMPLATE = "offer"
"""The built-in template of an offer's message (``treu/messaging/templates/*/offer.*``)."""
TIER_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
MAX_HOLDOUT = 90
MAX_CONDITION_CHARS = 1_000
"""A boost's condition; the rule's condition adds the audience and the control group to
it and must stay within the expression language's 2,000 characters."""
CAMPAIGN_PRIORITY = 50
"""Before the programme's own rules (100): only matters for exclusive rules, which a
campaign never is."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Model):
    """When the campaign runs: from ``starts_at`` up to (not including) ``ends_at``."""

    starts_at: AwareDatetime = Field(examples=["2026-05-04T00:00:00+02:00"])
    ends_at: AwareDatetime = Field(examples=["2026-05-11T00:00:00+02:00"])

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.ends_at <= self.starts_at:
            raise PydanticCustomError("window", "ends_at must be after starts_at")
        return self

    def contains(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


class _Boost(_Model):
    condition: str | None = Field(
        default=None,
        max_length=MAX_CONDITION_CHARS,
        description="Expression over event and member (docs/rules.md): only purchases "
        "where it holds are boosted",
        examples=["event.weekday in [6, 7]", "event.channel == 'app'"],
    )
    line_condition: str | None = Field(
        default=None,
        max_length=MAX_CONDITION_CHARS,
        description="Expression over event, member and line: only these lines are boosted",
        examples=["'organic' in line.tags"],
    )

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        return checked_condition(value, ORDER_SCOPE, "boost.condition")

    @field_validator("line_condition")
    @classmethod
    def _line_condition(cls, value: str | None) -> str | None:
        return checked_condition(value, LINE_SCOPE, "boost.line_condition")


class MultiplierBoost(_Boost):
    """x ``factor`` on the base points of the purchase (or of the lines matching
    ``line_condition``): x2 at the weekend, x3 on organic lines, x1.5 in the app."""

    type: Literal["multiplier"] = "multiplier"
    factor: Decimal = Field(gt=1, le=100, decimal_places=4, examples=["3", "1.5"])


class PointsBoost(_Boost):
    """``points`` per purchase or, with ``line_condition``, per matching line (+50 on
    each line tagged ``near_best_before``)."""

    type: Literal["points"] = "points"
    points: int = Field(ge=1, le=1_000_000, examples=[50])


Boost = Annotated[MultiplierBoost | PointsBoost, Field(discriminator="type")]


class Offer(_Model):
    """What a targeted offer gives each treated member of its audience, once: ``points``
    (credited at once, not pending), a coupon of ``reward_id`` (a reward that issues
    coupons), or both; and the message that says so."""

    points: int | None = Field(default=None, ge=1, le=1_000_000, examples=[200])
    reward_id: uuid.UUID | None = Field(
        default=None, description="A reward of the programme that issues a coupon"
    )
    template: str = Field(
        default=OFFER_TEMPLATE,
        pattern=TEMPLATE_PATTERN,
        description="The message: a built-in template, or one the programme stored under "
        "this key (/v1/templates)",
        examples=["offer"],
    )

    @model_validator(mode="after")
    def _gives_something(self) -> Offer:
        if self.points is None and self.reward_id is None:
            raise PydanticCustomError("offer", "an offer gives points, a reward_id, or both")
        return self


class Audience(_Model):
    """Who the campaign is for; every field left out means everybody, each field given
    narrows it (tiers and segments and the member list)."""

    tiers: list[Annotated[str, Field(pattern=TIER_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=20, examples=[["silber", "gold"]]
    )
    members: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MEMBERS,
        description=f"A member list (ids, at most {MAX_MEMBERS:,})",
    )

    segments: list[Annotated[str, Field(pattern=CODE_PATTERN)]] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Segment slugs: members of any of these active segments (docs/segments.md)",
        examples=[["valuable-at-risk"]],
    )

    @field_validator("tiers", "segments")
    @classmethod
    def _tiers(cls, value: list[str] | None) -> list[str] | None:
        return sorted(set(value)) if value is not None else None

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return sorted(set(value)) if value is not None else None


class CampaignSpec(_Model):
    """One campaign: a bonus (``boost``) or a targeted offer (``offer``). See
    docs/campaigns.md."""

    kind: Literal["bonus", "offer"] = Field(
        default="bonus",
        description="bonus: a boost on purchases in the window; offer: points, a coupon or "
        "both, given to the audience once, with a message",
    )
    code: str = Field(pattern=CODE_PATTERN, examples=["bio-woche"])
    name: str = Field(
        min_length=1,
        max_length=120,
        description="Shown in explanations: “Bio-Woche \u00d73: +24”",
        examples=["Bio-Woche"],
    )
    description: str | None = Field(default=None, max_length=2_000)
    window: Window
    boost: Boost | None = Field(default=None, description="A bonus campaign's boost")
    offer: Offer | None = Field(default=None, description="What an offer gives")
    audience: Audience = Field(default_factory=Audience)
    holdout_percent: int = Field(
        default=10,
        ge=0,
        le=MAX_HOLDOUT,
        description="The control group: this share of the audience gets nothing from the "
        "campaign, chosen by a stable hash of member and campaign (0 to 90)",
    )
    budget_points: int | None = Field(
        default=None,
        ge=1,
        le=10**15,
        description="The campaign stops when it has given this many points",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("blank", "name must not be blank")
        return value

    @model_validator(mode="after")
    def _kind(self) -> CampaignSpec:
        if self.kind == "bonus":
            if self.boost is None:
                raise PydanticCustomError("boost", "a bonus campaign needs a boost")
            if self.offer is not None:
                raise PydanticCustomError("offer", 'an offer needs "kind": "offer"')
        else:
            if self.offer is None:
                raise PydanticCustomError("offer", "an offer campaign needs an offer")
            if self.boost is not None:
                raise PydanticCustomError("boost", "an offer campaign has no boost")
        return self

    @property
    def is_offer(self) -> bool:
        return self.kind == "offer"

    def rule_spec(self, campaign_id: uuid.UUID) -> RuleSpec:
        """The earning rule that gives the campaign's points. Held-out members fail its
        condition (``bucket(member.id, salt) >= holdout``), so they get nothing. An
        offer's rule is never published and could award nothing if it were (its
        condition is ``False``): it names the offer's postings and holds its budget."""
        if self.offer is not None:
            return RuleSpec(
                name=self.name,
                description=f"Offer {self.code} (managed through /v1/campaigns; its points "
                "are given by the offer, never by an event)",
                trigger="purchase",
                condition="False",
                effect=Fixed(points=self.offer.points or 0),
                priority=CAMPAIGN_PRIORITY,
                budget_points=self.budget_points,
                valid_from=self.window.starts_at,
                valid_until=self.window.ends_at,
            )
        boost = self.boost
        assert boost is not None  # a bonus campaign has one (``_kind``)
        lined = boost.line_condition is not None
        effect: Multiplier | Fixed
        if isinstance(boost, MultiplierBoost):
            effect = Multiplier(factor=boost.factor, scope="lines" if lined else "order")
        else:
            effect = Fixed(points=boost.points, scope="lines" if lined else None)
        parts: list[str] = []
        if self.audience.tiers:
            parts.append(f"member.tier in [{', '.join(repr(t) for t in self.audience.tiers)}]")
        if self.audience.segments:
            listed = ", ".join(repr(s) for s in self.audience.segments)
            parts.append(f"has_any(member.segments, [{listed}])")
        if boost.condition is not None:
            parts.append(f"({boost.condition}\n)")  # the line break ends a trailing comment
        if self.holdout_percent > 0:
            parts.append(f"bucket(member.id, {salt(campaign_id)!r}) >= {self.holdout_percent}")
        return RuleSpec(
            name=self.name,
            description=f"Campaign {self.code} (managed through /v1/campaigns)",
            trigger="purchase",
            condition=" and ".join(parts) if parts else None,
            line_condition=boost.line_condition,
            effect=effect,
            priority=CAMPAIGN_PRIORITY,
            budget_points=self.budget_points,
            valid_from=self.window.starts_at,
            valid_until=self.window.ends_at,
            members=self.audience.members,
        )


def salt(campaign_id: uuid.UUID) -> str:
    """The control group's hash salt: the campaign's own, so that a member's arm in one
    campaign says nothing about the next."""
    return f"campaign:{campaign_id}"


EXAMPLE_CAMPAIGN: dict[str, Any] = {
    "programme": "demo",
    "code": "bio-woche",
    "name": "Bio-Woche",
    "description": "Dreifache Punkte auf Bio-Produkte, eine Woche lang.",
    "window": {"starts_at": "2026-05-04T00:00:00+02:00", "ends_at": "2026-05-11T00:00:00+02:00"},
    "boost": {"type": "multiplier", "factor": "3", "line_condition": "'organic' in line.tags"},
    "holdout_percent": 10,
    "budget_points": 250000,
}
EXAMPLE_WEEKEND: dict[str, Any] = {
    "programme": "demo",
    "code": "wochenende-x2",
    "name": "Wochenende \u00d72",
    "window": {"starts_at": "2026-06-01T00:00:00+02:00", "ends_at": "2026-07-01T00:00:00+02:00"},
    "boost": {"type": "multiplier", "factor": "2", "condition": "event.weekday in [6, 7]"},
    "audience": {"tiers": ["silber", "gold"]},
    "holdout_percent": 10,
}
EXAMPLE_OFFER: dict[str, Any] = {
    "programme": "demo",
    "kind": "offer",
    "code": "herbst-geschenk",
    "name": "Herbst-Geschenk",
    "window": {"starts_at": "2026-10-01T00:00:00+02:00", "ends_at": "2026-10-31T00:00:00+01:00"},
    "offer": {"points": 200},
    "audience": {"tiers": ["gold"]},
    "holdout_percent": 10,
    "budget_points": 100000,
}
EXAMPLE_BEST_BEFORE: dict[str, Any] = {
    "programme": "demo",
    "code": "kurz-vor-mhd",
    "name": "Retten statt wegwerfen",
    "window": {"starts_at": "2026-06-01T00:00:00+02:00", "ends_at": "2026-06-15T00:00:00+02:00"},
    "boost": {"type": "points", "points": 50, "line_condition": "'near_best_before' in line.tags"},
    "holdout_percent": 20,
    "budget_points": 100000,
}

# --------------------------------------------------------------------------- answers


class CampaignOut(BaseModel):
    id: uuid.UUID
    programme: str
    kind: str = Field(description="bonus or offer")
    code: str
    name: str
    status: str = Field(description="draft, active, paused or ended")
    spec: dict[str, Any] = Field(description="The campaign's specification")
    revision: int = Field(description="Goes up with every change")
    rule_id: uuid.UUID = Field(
        description="The earning rule the campaign manages (its postings name it)"
    )
    running: bool = Field(description="Active, inside its window and with budget left")
    budget_used: int = Field(
        description="Points counted against the budget (0 for a campaign without one; "
        "its points issued are in the statistics)"
    )
    activated_at: datetime | None
    paused_at: datetime | None
    ended_at: datetime | None
    given_at: datetime | None = Field(
        default=None,
        description="An offer: when it had reached its whole audience (or its budget ran out)",
    )
    created_at: datetime
    updated_at: datetime


class CampaignList(BaseModel):
    items: list[CampaignOut]


class ArmStats(BaseModel):
    """One arm of the experiment over the campaign's window."""

    members: int = Field(description="Members recorded in this arm (exposures)")
    points: int = Field(description="Points the campaign gave them (0 for the held-out arm)")
    purchases: int
    revenue_minor: int = Field(description="Purchases minus returns in the window, in minor units")
    purchases_per_member: Decimal = Field(description="Rounded to 2 decimal places")
    revenue_per_member_minor: int = Field(description="Rounded half up to whole minor units")
    redemptions: int = Field(description="Rewards redeemed in the window")


class MessageStats(BaseModel):
    """The deliveries made of the campaign's ``campaign.message`` outbox rows to its
    members (e-mail and inbox; webhooks are not messages to members)."""

    tracked: bool = Field(description="True: the counts come from the deliveries")
    sent: int = Field(
        default=0,
        description="Deliveries planned (one per channel that carries the message), in any state",
    )
    delivered: int = Field(default=0, description="Deliveries that arrived")
    failed: int = Field(
        default=0, description="Deliveries dead, or failing now (a failing one is retried)"
    )
    pending: int = Field(default=0, description="Deliveries not tried yet")
    by_channel: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description='Per channel, deliveries per state: {"email": {"delivered": 90, …}}',
    )


class OfferStats(BaseModel):
    """What an offer gave."""

    points: int = Field(description="Points credited to treated members")
    members_with_points: int
    coupons: int = Field(description="Coupons issued to treated members")
    given_at: datetime | None = Field(
        description="When the offer had reached its whole audience (or its budget ran out)"
    )


class BudgetStats(BaseModel):
    points: int | None = Field(description="The budget; null: no budget")
    used: int = Field(description="Counted against the budget; without one, the points issued")
    left: int | None = Field(description="null: no budget")


class CampaignStats(BaseModel):
    campaign_id: uuid.UUID
    code: str
    status: str
    currency: str
    window: Window
    audience: int = Field(description="Active members the audience holds now")
    exposed: int = Field(description="Members recorded in either arm")
    treated: int
    held_out: int
    messages: MessageStats
    points_issued: int = Field(
        description="Points the campaign's rule credited (returns are not attributed to a rule)"
    )
    budget: BudgetStats
    redemptions: int = Field(description="Rewards redeemed by exposed members in the window")
    offer: OfferStats | None = Field(default=None, description="An offer's gifts; null: bonus")
    arms: dict[str, ArmStats] = Field(description="treated and held_out")
