from __future__ import annotations

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

from treu.members.models import Channel
from treu.members.schemas import MemberRef

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
