from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base


class OutboxMessage(Base):
    """One domain event, written in the transaction of the change it reports.

    Append-only but for ``dispatched_at``: ``treu.delivery`` reads it (e-mail, webhooks,
    inbox), and every delivery made from a row has its own stable id.
    ``payload`` carries ids and amounts, never personal data (e-mail addresses, names,
    phone numbers live only in the member tables, so erasure is one place)."""

    __tablename__ = "outbox"
    __table_args__ = (
        # Only the few keyed rows are indexed: every index is paid for by every purchase,
        # and readers walk the table by id (the primary key). A per-member index comes
        # with the first reader that needs one (the inbox).
        Index(
            "uq_outbox_key",
            "key",
            unique=True,
            postgresql_where=text("key IS NOT NULL"),
            sqlite_where=text("key IS NOT NULL"),
        ),
        # What the delivery has not planned yet: a small, moving set of recent rows.
        Index(
            "ix_outbox_undispatched",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    """UUIDv7: time-ordered, so delivery can walk the table in id order."""
    type: Mapped[str] = mapped_column(String(64))
    programme_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    """``json``, not ``jsonb``, on PostgreSQL: written once and read once as a whole by
    the delivery, so the text is kept as it is rather than parsed on every insert."""
    occurred_at: Mapped[datetime]
    """When the change took effect (the unit of work's clock)."""
    created_at: Mapped[datetime]
    key: Mapped[str | None] = mapped_column(String(200))
    """Set by producers that may record the same fact twice (a job run again): the
    second row is not written."""
    dispatched_at: Mapped[datetime | None]
    """When delivery planned this row's deliveries (``treu.delivery``); None until then.
    The one column ever updated: the row's facts stay as written."""
