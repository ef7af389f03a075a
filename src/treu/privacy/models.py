from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin
from treu.kit.time import utc_now


class DeletionStatus(enum.StrEnum):
    open = "open"
    """Asked for, not yet carried out (the erasure itself is a later feature)."""


class DeletionRequest(IdMixin, Base):
    """A member asked for their data to be erased (GDPR Art. 17). At most one open
    request per member (a partial unique index): asking again finds the pending one."""

    __tablename__ = "deletion_requests"
    __table_args__ = (
        Index(
            "uq_deletion_requests_open",
            "member_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_deletion_requests_status", "status", "requested_at"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID]
    requested_at: Mapped[datetime] = mapped_column(default=utc_now)
    source: Mapped[str] = mapped_column(String(32))
    """Where the member asked: portal, api, support, …"""
    status: Mapped[str] = mapped_column(String(16), default=DeletionStatus.open.value)
