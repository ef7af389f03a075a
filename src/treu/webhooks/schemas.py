from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from treu.delivery.models import DeliveryStatus

_ID = "01938a7e-5c1d-7b3a-9f1e-2a4b6c8d0e1f"
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw7Lm2Ue4Dw4c="

WEBHOOK_EXAMPLE: dict[str, Any] = {
    "id": _ID,
    "url": "https://shop.example.com/hooks/treu",
    "events": ["points.earned", "reward.redeemed"],
    "description": "Shop backend",
    "programme": "demo",
    "enabled": True,
    "consecutive_failures": 0,
    "disabled_at": None,
    "disabled_reason": None,
    "previous_secret_expires_at": None,
    "created_at": "2026-12-06T10:00:00Z",
    "updated_at": "2026-12-06T10:00:00Z",
}


class WebhookIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example.com/hooks/treu",
                    "events": ["points.earned", "reward.redeemed"],
                    "description": "Shop backend",
                    "programme": "demo",
                }
            ]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="http or https (https expected); outside development mode the host "
        "must resolve to public addresses only",
    )
    events: list[str] = Field(
        min_length=1,
        max_length=100,
        description="Event types to receive (`GET /v1/webhooks/event-types` lists them)",
    )
    description: str = Field(default="", max_length=500)
    programme: str | None = Field(
        default=None, description="Only this programme's events (slug or id); default: all"
    )


class WebhookPatch(BaseModel):
    """Only what changes. `enabled: true` re-enables a disabled endpoint (and resets its
    count of failures); `programme: null` subscribes to every programme."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None
    programme: str | None = None


class WebhookOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [WEBHOOK_EXAMPLE]})

    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    programme: str | None
    enabled: bool
    consecutive_failures: int = Field(
        description="Failed sends since the last one that arrived; at "
        "TREU_WEBHOOK_DISABLE_AFTER (default 20) the endpoint is disabled"
    )
    disabled_at: datetime | None
    disabled_reason: str | None = Field(
        description="Why it is disabled: the last error of the failures, or an admin's edit"
    )
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until then requests carry a signature with the old "
        "secret too"
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**WEBHOOK_EXAMPLE, "secret": _SECRET}]}
    )

    secret: str = Field(
        description="The signing secret (`whsec_…`): shown in this answer only, keep it"
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None = None


class WebhookSecret(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _ID,
                    "secret": _SECRET,
                    "previous_secret_expires_at": "2026-12-07T10:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    secret: str = Field(description="The new signing secret: shown in this answer only")
    previous_secret_expires_at: datetime = Field(
        description="Until then every request is signed with the old secret too"
    )


class EventTypes(BaseModel):
    items: list[str]


class WebhookDeliveryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01938a7f-0b2c-7d4e-8f60-718293a4b5c6",
                    "message_id": "msg_01938a7f0b2c7d4e8f60718293a4b5c6",
                    "event_type": "points.earned",
                    "status": "failed",
                    "attempts": 2,
                    "last_status": 503,
                    "last_error": "HTTP 503: Service Unavailable",
                    "created_at": "2026-12-06T10:00:00Z",
                    "delivered_at": None,
                    "next_attempt_at": "2026-12-06T10:00:30Z",
                }
            ]
        }
    )

    id: uuid.UUID
    message_id: str = Field(description="The `webhook-id` header of every try")
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(description="The receiver's HTTP status on the last try")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime = Field(
        description="When it is tried next (pending, failed); for others when it last was"
    )


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None = None
