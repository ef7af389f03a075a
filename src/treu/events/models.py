from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, BigIntId
from treu.kit.ids import new_id
from treu.kit.time import utc_now


class Event(Base):
    """An external event, stored once per (programme, key).

    ``data`` is the payload *without* the member identifier (personal data stays in the
    member table); ``payload_hash`` covers the whole payload, so a replay with another
    member or other lines is detected as a conflict. ``result`` is the answer given the
    first time, returned unchanged on a replay.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("programme_id", "key"),
        Index("ix_events_member_occurred", "member_id", "occurred_at"),
        Index("ix_events_programme_occurred", "programme_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    programme_id: Mapped[uuid.UUID]
    """Like ``member_id`` and ``original_event_id``: no foreign key (migration 0010);
    ``treu ledger verify`` reports an event whose programme, member or original purchase
    is missing."""
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID | None]
    payload_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utc_now)
    channel: Mapped[str | None] = mapped_column(String(16))
    store: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(3))
    total_minor: Mapped[int | None]
    original_event_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PurchaseLine(Base):
    """One line of a purchase, queryable by member, SKU, category and time."""

    __tablename__ = "purchase_lines"
    __table_args__ = (
        Index("ix_purchase_lines_event_id", "event_id"),
        Index("ix_purchase_lines_member_occurred", "member_id", "occurred_at"),
        Index("ix_purchase_lines_programme_category", "programme_id", "category", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID]
    """No foreign key (migration 0010; ``treu ledger verify`` reports a line without its
    event): a large batch writes its lines before its events
    (``EventService._lines_first``)."""
    programme_id: Mapped[uuid.UUID]
    """The event's programme and member, copied for look-ups by member, category and
    time; no foreign keys (migrations 0007 and 0010)."""
    member_id: Mapped[uuid.UUID | None]
    occurred_at: Mapped[datetime]
    line_no: Mapped[int]
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(100))
    quantity: Mapped[int]
    unit_price_minor: Mapped[int]
    tags: Mapped[list[Any]] = mapped_column(default=list)
    returned_quantity: Mapped[int] = mapped_column(default=0)
