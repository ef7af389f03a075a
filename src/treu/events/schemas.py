from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    TypeAdapter,
    field_validator,
)

from treu.challenges import book as challenges_book
from treu.ledger.schemas import PostingRule
from treu.members.models import Channel
from treu.members.schemas import MemberRef
from treu.rules.spec import Badge
from treu.tiers import book as tiers_book

EventKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="Your idempotency key: the same id is only ever processed once",
    ),
]


EXAMPLE_LINES: list[JsonValue] = [
    {
        "sku": "4001",
        "name": "Bio Vollmilch",
        "category": "dairy",
        "quantity": 2,
        "unit_price_minor": 129,
        "tags": ["organic"],
    },
    {
        "sku": "7002",
        "name": "Kaffee",
        "category": "coffee",
        "quantity": 1,
        "unit_price_minor": 899,
        "tags": [],
    },
]
"""The contract example's cart (docs/api.md), shared by the OpenAPI examples."""


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=100)
    quantity: int = Field(ge=1, le=100_000)
    unit_price_minor: int = Field(ge=0, le=10**11, description="Unit price in minor units (cents)")
    tags: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=20
    )


class PurchaseEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "pos-4711-0001",
                    "type": "purchase",
                    "programme": "demo",
                    "member": {"email": "anna@example.com"},
                    "occurred_at": "2026-11-24T10:15:00Z",
                    "channel": "pos",
                    "store": "berlin-01",
                    "currency": "EUR",
                    "lines": EXAMPLE_LINES,
                }
            ]
        },
    )

    id: EventKey
    type: Literal["purchase"]
    programme: str = Field(min_length=1, max_length=64)
    member: MemberRef | None = Field(
        default=None, description="Omit for an anonymous purchase (recorded, earns nothing)"
    )
    occurred_at: AwareDatetime
    channel: Channel
    store: str | None = Field(default=None, max_length=64)
    currency: str = Field(min_length=3, max_length=3)
    lines: list[LineIn] = Field(min_length=1, max_length=500)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=100_000)


class ReturnEvent(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "pos-4711-0002",
                    "type": "return",
                    "programme": "demo",
                    "member": {"email": "anna@example.com"},
                    "occurred_at": "2026-11-25T09:00:00Z",
                    "original_event_id": "pos-4711-0001",
                    "lines": [{"sku": "7002", "quantity": 1}],
                }
            ]
        },
    )

    id: EventKey
    type: Literal["return"]
    programme: str = Field(min_length=1, max_length=64)
    member: MemberRef | None = Field(
        default=None, description="Optional: checked against the purchase's member"
    )
    occurred_at: AwareDatetime
    original_event_id: EventKey
    channel: Channel | None = None
    store: str | None = Field(default=None, max_length=64)
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)


ENGAGEMENT_TYPE = r"^[a-z][a-z0-9_]{1,63}$"


class EngagementEvent(BaseModel):
    """Anything a member does that is not a purchase or a return: a review, a social
    share, an app install, a store visit, a completed profile, or a custom event type of
    the programme. ``attributes`` are checked against the event type's JSON Schema."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": "review-88123",
                    "type": "review_submitted",
                    "programme": "demo",
                    "member": {"email": "anna@example.com"},
                    "occurred_at": "2026-11-24T18:02:00Z",
                    "channel": "web",
                    "attributes": {"product_sku": "4001", "rating": 5, "length": 240},
                }
            ]
        },
    )

    id: EventKey
    type: str = Field(
        pattern=ENGAGEMENT_TYPE,
        description="A built-in engagement type (see GET /v1/event-types) or a custom one",
    )
    programme: str = Field(min_length=1, max_length=64)
    member: MemberRef
    occurred_at: AwareDatetime
    channel: Channel | None = None
    store: str | None = Field(default=None, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _not_commerce(cls, value: str) -> str:
        if value in ("purchase", "return"):
            raise ValueError(f"a {value} needs the {value} event's fields")
        return value


def _event_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("purchase", "return") else "engagement"


AnyEvent = PurchaseEvent | ReturnEvent | EngagementEvent
EventIn = Annotated[
    Annotated[PurchaseEvent, Tag("purchase")]
    | Annotated[ReturnEvent, Tag("return")]
    | Annotated[EngagementEvent, Tag("engagement")],
    Discriminator(_event_kind),
]
event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(EventIn)


# --- what ingesting an event answers (any entry point: API, CLI import, demo) -------


class PointsOut(BaseModel):
    earned: int = Field(description="Points this event credited")
    available: int = Field(description="Of those, available at once")
    pending: int = Field(description="Of those, pending until the return window has passed")
    reversed: int = Field(description="Points this event took back (returns)")


class BalanceAfter(BaseModel):
    available: int
    pending: int


class PostingBrief(BaseModel):
    id: str
    kind: str
    points: int
    explanation: str
    rule: PostingRule | None = Field(
        default=None, description="The rule that produced the points (earn postings)"
    )
    correlation_id: str
    created_at: str


class LocalizedOut(BaseModel):
    en: str
    de: str | None = None


class BadgeAwarded(BaseModel):
    """A badge the event gave the member for the first time (by a rule or a challenge)."""

    code: str
    name: LocalizedOut
    icon: str = Field(description="An https URL or an emoji")
    description: LocalizedOut | None = None


class LimitedRule(BaseModel):
    """An earning rule a limit or budget stopped or capped for this event."""

    rule_id: str
    rule: str = Field(description="The rule's name")
    reason: str = Field(examples=["daily limit reached", "capped: budget used up"])


class TierChange(BaseModel):
    """The member's tier changed with this event (an upgrade or a bought membership)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str | None = Field(alias="from", description="The previous tier's code")
    to: str | None = Field(description="The new tier's code")
    rank: int | None
    name: dict[str, str] | None = Field(description="The new tier's name by language")
    flags: list[str]
    reason: str = Field(
        examples=["qualified", "membership_purchased", "membership_renewed"],
    )
    text: str = Field(description="Why, in English")
    since: str | None = Field(description="In the tier since (UTC, ISO 8601)")
    paid_until: str | None = Field(
        default=None, description="End of a bought membership (UTC, ISO 8601)"
    )


class ChallengeProgressBrief(BaseModel):
    current: int
    target: int


class ChallengeReward(BaseModel):
    points: int
    posting: PostingBrief | None = Field(default=None, description="The points' posting")
    badge: BadgeAwarded | None = Field(default=None, description="A badge not held before")


class ChallengeStep(BaseModel):
    """How the event moved one challenge (a return can move it back)."""

    challenge_id: str
    code: str
    period: str = Field(description="The challenge period the event counted in")
    progress: ChallengeProgressBrief
    change: int = Field(description="Progress this event added (negative for returns)")
    completed: bool
    reward: ChallengeReward | None = Field(
        default=None, description="Given when this event completed the challenge"
    )


PURCHASE_RESULT_EXAMPLE: dict[str, Any] = {
    "event_id": "pos-4711-0001",
    "type": "purchase",
    "member_id": "01a23ca7-2950-73cc-b57d-fae8edcc5f05",
    "points": {"earned": 11, "available": 0, "pending": 11, "reversed": 0},
    "balance": {"available": 0, "pending": 11},
    "postings": [
        {
            "id": "01a23ca7-295f-70b8-a4a8-f5aa9a840595",
            "kind": "earn",
            "points": 11,
            "explanation": "1 point per €1 on €11.57: +11",
            "rule": {"id": "base", "version": 1},
            "correlation_id": "01a23ca7-295f-70b8-a4a8-f5ab1e7f55af",
            "created_at": "2026-11-24T10:20:00Z",
        }
    ],
}
RETURN_RESULT_EXAMPLE: dict[str, Any] = {
    "event_id": "pos-4711-0002",
    "type": "return",
    "member_id": "01a23ca7-2950-73cc-b57d-fae8edcc5f05",
    "points": {"earned": 0, "available": 0, "pending": 0, "reversed": 9},
    "balance": {"available": 0, "pending": 2},
    "postings": [
        {
            "id": "01a23ca7-29ce-7067-9b36-ecc3727ac632",
            "kind": "reverse",
            "points": -9,
            "explanation": "Return of 1 x 7002 from order pos-4711-0001: -9",
            "correlation_id": "01a23ca7-29ce-7067-9b36-ecc46366d7b0",
            "created_at": "2026-11-25T09:00:00Z",
        }
    ],
}


class EventResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [PURCHASE_RESULT_EXAMPLE, RETURN_RESULT_EXAMPLE]}
    )

    event_id: str
    type: str
    member_id: str | None
    points: PointsOut
    balance: BalanceAfter | None = Field(description="The member's balance after the event")
    postings: list[PostingBrief]
    badges: list[BadgeAwarded] | None = Field(
        default=None, description="Badges awarded by this event"
    )
    limited: list[LimitedRule] | None = Field(
        default=None, description="Rules a limit or budget stopped or capped"
    )
    tier: TierChange | None = Field(default=None, description="A tier change caused by the event")
    challenges: list[ChallengeStep] | None = Field(
        default=None, description="Challenges the event counted towards"
    )
    coupons_restored: list[str] | None = Field(
        default=None,
        description="Returns: ids of coupons usable again because their order came back in full",
    )
    note: str | None = None


# --- the answer in memory: ``EventResult`` is its JSON (``public``) ------------------
# Dataclasses, not the models above: building and dumping those cost 25-40 µs an event,
# 4-7 % of a batch's CPU; these cost about 2 µs. tests/events/test_answers.py checks
# that ``public`` is what the models describe.


@dataclass(frozen=True, slots=True)
class Points:
    earned: int
    available: int
    pending: int
    reversed: int

    def public(self) -> dict[str, Any]:
        return {
            "earned": self.earned,
            "available": self.available,
            "pending": self.pending,
            "reversed": self.reversed,
        }


@dataclass(frozen=True, slots=True)
class Balance:
    available: int
    pending: int


@dataclass(frozen=True, slots=True)
class Limited:
    """An earning rule a limit or budget stopped or capped (``LimitedRule``)."""

    rule_id: str
    rule: str
    reason: str

    def public(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "rule": self.rule, "reason": self.reason}


@dataclass(slots=True)
class EventAnswer:
    """What ingesting one event answers: the core fills the first fields, reactions add
    theirs (``tier``, ``challenges``, …). ``public()`` is the JSON stored with the event
    and answered again on a replay (``from_public``); what is empty is left out."""

    event_id: str
    type: str
    member_id: uuid.UUID | None
    points: Points
    balance: Balance | None
    """The member's balance after the event."""
    postings: tuple[dict[str, Any], ...]
    """As the ledger shows postings in an answer (``PostingBrief``)."""
    badges: tuple[Badge, ...] = ()
    limited: tuple[Limited, ...] = ()
    note: str | None = None
    coupons_restored: tuple[uuid.UUID, ...] = ()
    tier: tiers_book.TierChange | None = None
    challenges: tuple[challenges_book.ChallengeStep, ...] = ()

    def public(self) -> dict[str, Any]:
        balance = self.balance
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "type": self.type,
            "member_id": None if self.member_id is None else str(self.member_id),
            "points": self.points.public(),
            "balance": None
            if balance is None
            else {"available": balance.available, "pending": balance.pending},
            "postings": list(self.postings),
        }
        if self.badges:
            out["badges"] = [b.model_dump(mode="json", exclude_none=True) for b in self.badges]
        if self.limited:
            out["limited"] = [x.public() for x in self.limited]
        if self.note is not None:
            out["note"] = self.note
        if self.coupons_restored:
            out["coupons_restored"] = [str(x) for x in self.coupons_restored]
        if self.tier is not None:
            out["tier"] = self.tier.public()
        if self.challenges:
            out["challenges"] = [x.public() for x in self.challenges]
        return out

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> EventAnswer:
        member_id, balance, tier = data["member_id"], data["balance"], data.get("tier")
        return cls(
            data["event_id"],
            data["type"],
            None if member_id is None else uuid.UUID(member_id),
            Points(**data["points"]),
            None if balance is None else Balance(balance["available"], balance["pending"]),
            tuple(data["postings"]),
            tuple(Badge.model_validate(x) for x in data.get("badges") or ()),
            tuple(Limited(**x) for x in data.get("limited") or ()),
            data.get("note"),
            tuple(uuid.UUID(x) for x in data.get("coupons_restored") or ()),
            None if tier is None else tiers_book.TierChange.from_public(tier),
            tuple(
                challenges_book.ChallengeStep.from_public(x) for x in data.get("challenges") or ()
            ),
        )
