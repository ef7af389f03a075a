from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ExpiringOut(BaseModel):
    points: int
    expires_at: datetime


class ReleaseOut(BaseModel):
    points: int
    available_at: datetime


class BalanceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": "01a208e9-2fdb-76dd-973a-afae417770f8",
                    "available": 0,
                    "pending": 2,
                    "lifetime_earned": 11,
                    "expiring": [{"points": 2, "expires_at": "2028-11-24T10:15:00Z"}],
                    "pending_releases": [{"points": 2, "available_at": "2026-12-08T10:15:00Z"}],
                }
            ]
        }
    )

    member_id: uuid.UUID
    available: int = Field(description="Spendable now; negative after a return of spent points")
    pending: int = Field(description="Earned, released when the return window has passed")
    lifetime_earned: int
    expiring: list[ExpiringOut] = Field(description="Next expiries, soonest first")
    pending_releases: list[ReleaseOut] = Field(description="When pending points become available")


class PostingRule(BaseModel):
    """The rule that produced a posting, at the version that produced it."""

    id: str = Field(
        description="An earning rule's id, `base` (the programme's earn rate) or "
        "`tier.<code>` (a tier's multiplier)",
        examples=["base"],
    )
    version: int | None = Field(examples=[1])


class PostingOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(examples=["earn"])
    points: int
    explanation: str = Field(examples=["1 point per €1 on €42.90: +42"])
    rule: PostingRule | None = Field(
        default=None, description="The rule that produced the points (earn postings)"
    )
    event_id: str | None = Field(description="Your id of the event that caused the posting")
    correlation_id: uuid.UUID
    reason: str | None = None
    actor: str | None = None
    created_at: datetime


class LedgerPageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": "01a23ca7-29dd-769a-a011-032abe690122",
                            "kind": "adjust",
                            "points": 500,
                            "explanation": "Manual adjustment: Goodwill: damaged parcel",
                            "rule": None,
                            "event_id": "adjustment:crm-2026-11-24-0042",
                            "correlation_id": "01a23ca7-29dd-769a-a011-032b6c56035a",
                            "reason": "Goodwill: damaged parcel",
                            "actor": "apikey:crm",
                            "created_at": "2026-11-24T10:20:00Z",
                        },
                        {
                            "id": "01a23ca7-29ce-7067-9b36-ecc3727ac632",
                            "kind": "reverse",
                            "points": -9,
                            "explanation": "Return of 1 x 7002 from order pos-4711-0001: -9",
                            "rule": None,
                            "event_id": "pos-4711-0002",
                            "correlation_id": "01a23ca7-29ce-7067-9b36-ecc46366d7b0",
                            "reason": None,
                            "actor": None,
                            "created_at": "2026-11-25T09:00:00Z",
                        },
                    ],
                    "next_cursor": (
                        "eyJiZWZvcmUiOiIwMWEyM2NhNy0yOWNlLTcwNjctOWIzNi1lY2MzNzI3YWM2MzIifQ"
                    ),
                }
            ]
        }
    )

    items: list[PostingOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"points": 500, "reason": "Goodwill: damaged parcel"}]},
    )

    points: int = Field(description="Positive credits, negative debits; never 0")
    reason: str = Field(min_length=3, max_length=500)
    allow_negative: bool = Field(
        default=False, description="Let a debit take the balance below zero (corrections)"
    )

    @field_validator("points")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("points must not be 0")
        return value
