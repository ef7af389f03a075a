from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from treu.delivery.models import Delivery

Status = Literal["pending", "failed", "delivered", "dead"]


class DeliveryOut(BaseModel):
    """One delivery of an outbox event over one channel."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The message's stable id (receivers dedupe on it)")
    channel: str = Field(examples=["webhook"])
    target: str = Field(description="Endpoint id or address, in the channel's terms")
    event_type: str = Field(examples=["points.earned"])
    status: Status
    attempts: int
    next_attempt_at: datetime | None = Field(
        description="When it is tried next (pending and failed deliveries)"
    )
    last_status: int | None = Field(description="The receiver's last answer (HTTP status)")
    last_error: str | None
    outbox_id: uuid.UUID | None = Field(description="The domain event it delivers")
    member_id: uuid.UUID | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: Delivery) -> DeliveryOut:
        out = cls.model_validate(row)
        if row.status not in ("pending", "failed"):
            out.next_attempt_at = None
        return out


class DepthOut(BaseModel):
    undispatched: int = Field(description="Outbox events not planned into deliveries yet")
    pending: int
    failed: int = Field(description="Failed at least once, to be retried")
    dead: int = Field(description="Failed their last try; retry them by hand")
    delivered: int
    lag_seconds: float = Field(
        description="How long the oldest waiting event or due delivery has waited"
    )


class OutboxPageOut(BaseModel):
    depth: DepthOut
    items: list[DeliveryOut]
    next_cursor: str | None = None
