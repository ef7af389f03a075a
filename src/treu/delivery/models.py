from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    """Planned, not tried yet (or claimed by a worker that has not answered yet)."""
    failed = "failed"
    """Tried and failed; tried again at ``next_attempt_at``."""
    delivered = "delivered"
    dead = "dead"
    """Failed its last try; ``treu deliveries retry`` or the API puts it back."""


class Delivery(Base):
    """One message to one receiver over one channel, derived from an outbox row.

    ``id`` is the message's stable id: every retry sends it (``webhook-id``, the e-mail's
    ``Message-ID``), so receivers dedupe on it. ``dedupe_key`` makes planning idempotent:
    a plan repeated after a crash, or by a second worker, writes nothing new."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # What a worker claims: due rows only, oldest due first. Partial, so delivered
        # rows (nearly all of them) cost the index nothing.
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'failed')"),
            sqlite_where=text("status IN ('pending', 'failed')"),
        ),
        Index("ix_deliveries_channel_target", "channel", "target", "id"),
        Index("ix_deliveries_member", "member_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    outbox_id: Mapped[uuid.UUID | None]
    programme_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID | None]
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(320))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    """When a worker may take it next: the first try, the next retry, or the end of the
    lease of a worker that claimed it (a worker killed mid-send leaves it to expire)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None]
    """The receiver's answer to the last try (an HTTP status), where there was one."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
