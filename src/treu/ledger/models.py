"""Ledger tables.

* ``postings`` are append-only: never updated, never deleted. Their ``points`` add up to
  the member's total balance (available + pending).
* ``lots`` hold earned points until they are spent, reversed or expire. A lot's
  ``remaining`` = ``amount`` + the sum of its ``posting_lots`` allocations, so lots too
  can be rebuilt from postings. Allocations are negative (what a posting took), except a
  ``refund``'s: it gives a spend's points back to the very lots they came from (positive,
  never more than that spend took from the lot, so ``remaining`` stays <= ``amount``).
* ``ledger_adjustments`` remembers each manual adjustment under its idempotency key;
  its postings and lots carry its id in ``event_id``, as an event's carry the event's.
* ``accounts`` caches available/pending per member; it is updated in the same transaction
  as the postings and ``treu ledger verify`` recomputes it from postings and lots.

A negative available balance (a return after the points were spent) is "debt": the sum
of remaining points in lots exceeds the posted total. Debt is settled by the next points
that become available (see ``LedgerService``).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin
from treu.kit.time import utc_now


class PostingKind(enum.StrEnum):
    earn = "earn"
    redeem = "redeem"
    expire = "expire"
    reverse = "reverse"
    adjust = "adjust"
    settle = "settle"
    """Zero-point posting: newly available points pay off a negative balance."""
    refund = "refund"
    """Gives back (part of) what a ``redeem`` posting took, to the same lots
    (``Posting.refund_of`` names that posting)."""


class LotState(enum.StrEnum):
    pending = "pending"
    available = "available"


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("pending >= 0", name="pending_non_negative"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    available: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)
    lifetime_earned: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class Posting(IdMixin, Base):
    __tablename__ = "postings"
    __table_args__ = (
        Index("ix_postings_member_id_id", "member_id", "id"),
        Index(
            "ix_postings_refund_of",
            "refund_of",
            postgresql_where=text("refund_of IS NOT NULL"),
            sqlite_where=text("refund_of IS NOT NULL"),
        ),
    )

    member_id: Mapped[uuid.UUID]
    """With ``event_id``: no foreign key (migration 0010); ``treu ledger verify`` reports
    a posting whose member or event is missing."""
    programme_id: Mapped[uuid.UUID]
    """The member's programme, copied (no foreign key of its own, see migration 0007)."""
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int]
    correlation_id: Mapped[uuid.UUID]
    event_id: Mapped[uuid.UUID | None]
    explanation: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[uuid.UUID | None]
    """The earning rule that produced an ``earn`` posting (no foreign key: the ledger
    does not depend on the rules tables); with ``rule_version`` it names the exact
    specification."""
    rule_version: Mapped[int | None]
    refund_of: Mapped[uuid.UUID | None]
    """The ``redeem`` posting a ``refund`` posting gives points back for. No foreign key,
    like ``rule_id``: postings are append-only and the writer sets it only to a posting
    it has just read; the index finds a posting's earlier refunds."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Lot(IdMixin, Base):
    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_non_negative"),
        CheckConstraint("remaining <= amount", name="remaining_within_amount"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "ix_lots_member_open",
            "member_id",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index(
            "ix_lots_pending_due",
            "available_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        Index(
            "ix_lots_expiry_due",
            "expires_at",
            postgresql_where=text("remaining > 0 AND expires_at IS NOT NULL"),
            sqlite_where=text("remaining > 0 AND expires_at IS NOT NULL"),
        ),
        Index("ix_lots_event_id", "event_id"),
    )

    member_id: Mapped[uuid.UUID]
    """With ``programme_id`` and ``event_id``: the posting's, copied for the open-lots
    and expiry look-ups; no foreign keys of their own (migration 0007)."""
    programme_id: Mapped[uuid.UUID]
    posting_id: Mapped[uuid.UUID]
    """No foreign key (migration 0010); ``treu ledger verify`` reports a lot without its
    posting."""
    event_id: Mapped[uuid.UUID | None]
    state: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    remaining: Mapped[int]
    earned_at: Mapped[datetime]
    available_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]


class PostingLot(Base):
    """How a posting changed a lot (consumption is negative, a refund positive)."""

    __tablename__ = "posting_lots"
    __table_args__ = (Index("ix_posting_lots_lot_id", "lot_id"),)

    posting_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("postings.id"), primary_key=True)
    lot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lots.id"), primary_key=True)
    member_id: Mapped[uuid.UUID]
    """The lot's member, copied (no foreign key of its own, see migration 0007)."""
    points: Mapped[int]


class LedgerAdjustment(IdMixin, Base):
    """A manual adjustment (``treu.ledger.adjustments``), stored once per (programme, key)
    so that a retried request never credits twice; ``result`` is the first answer, given
    again on a replay.

    Its ``id`` is what its postings and lots carry in ``event_id``, as an event's id is
    for an event's: both are new time-ordered UUIDs, so an ``event_id`` names a row of
    one table or the other. Until migration 0013 adjustments were rows of ``events``
    (type ``adjustment``), which kept their service in the events package, above the
    ledger."""

    __tablename__ = "ledger_adjustments"
    __table_args__ = (UniqueConstraint("programme_id", "key"),)

    programme_id: Mapped[uuid.UUID]
    """With ``member_id``: no foreign key, like the postings' (migration 0010); ``treu
    ledger verify`` reports an adjustment whose member is missing or in another
    programme."""
    member_id: Mapped[uuid.UUID]
    key: Mapped[str] = mapped_column(String(200))
    """``adjustment:`` and the request's Idempotency-Key (or a new id without one): the
    member's history shows it as the postings' ``event_id``."""
    payload_hash: Mapped[str] = mapped_column(String(64))
    points: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
