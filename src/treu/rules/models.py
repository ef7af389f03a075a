"""Earning rules, their published versions, limit counters, event types and badges.

* ``rules``: one row per rule; ``draft`` is the specification being edited, ``version``
  the latest published one (``rule_versions`` keeps every published version unchanged,
  so a posting's rule id + version always names the exact specification that produced it,
  and a return months later is recomputed under it).
* ``rule_usage``: per member and period (``day:2026-11-23``, ``week:2026-W48``,
  ``month:2026-11``, ``lifetime``) how often a rule awarded and how many points, for the
  per-member limits. Updated in the transaction of the event, under the member's account
  lock, so two concurrent events of one member cannot both pass a limit.
* ``rule_budget_slots``: points a rule has awarded in total, for its budget, kept in
  ``treu.rules.budgets.SLOTS`` rows per rule (``Rule.budget_used`` is their sum). Each
  slot may grow up to its ``allowance``, and the allowances add up to the budget, so
  purchases add to different rows concurrently and together never pass the budget
  (``treu.rules.budgets``).
* ``event_types``: custom engagement event types of a programme, with a JSON Schema for
  their attributes (the built-in types live in code, ``treu.rules.event_types``).
* ``member_badges``: badges awarded to members, at most once per member and badge code.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    cast,
    func,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class RuleStatus(enum.StrEnum):
    draft = "draft"
    """Never published: does nothing yet."""
    active = "active"
    """Its latest published version applies to new events."""
    paused = "paused"
    """Published, but applies to nothing until published again."""


class RuleBudgetSlot(Base):
    """One of a rule's budget counters (``treu.rules.budgets``)."""

    __tablename__ = "rule_budget_slots"

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    used: Mapped[int] = mapped_column(default=0)
    """Points given through this slot."""
    allowance: Mapped[int] = mapped_column(default=0)
    """How far ``used`` may grow without the rule's other slots being looked at."""
    cap: Mapped[int | None]
    """The budget the allowances were shared out for (None: none)."""


class Rule(IdMixin, TimestampMixin, Base):
    __tablename__ = "rules"
    __table_args__ = (Index("ix_rules_programme_status", "programme_id", "status"),)

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default=RuleStatus.draft.value)
    draft: Mapped[dict[str, Any]]
    """The specification being edited (``RuleSpec`` as JSON)."""
    draft_revision: Mapped[int] = mapped_column(default=1)
    version: Mapped[int | None]
    """Latest published version; None while the rule was never published."""
    trigger: Mapped[str | None] = mapped_column(String(64))
    """Event type of the latest published version (for indexing)."""
    published_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]

    if TYPE_CHECKING:  # mapped below, once the slots are
        budget_used: Mapped[int]
        """Points the rule has given in total (its budget slots' sum): read-only,
        written through ``treu.rules.budgets``."""


Rule.budget_used = column_property(
    # bigint, not numeric: PostgreSQL's sum of bigints would come back as a Decimal
    select(cast(func.coalesce(func.sum(RuleBudgetSlot.used), 0), BigInteger))
    .where(RuleBudgetSlot.rule_id == Rule.id)
    .correlate_except(RuleBudgetSlot)
    .scalar_subquery()
)


class RuleVersion(Base):
    __tablename__ = "rule_versions"

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id"), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    spec: Mapped[dict[str, Any]]
    published_at: Mapped[datetime] = mapped_column(default=utc_now)
    published_by: Mapped[str | None] = mapped_column(String(200))


class RuleUsage(Base):
    __tablename__ = "rule_usage"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    """First in the key: reads are one member's counters (migration 0009)."""
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(24), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    points: Mapped[int] = mapped_column(default=0)


class EventType(IdMixin, TimestampMixin, Base):
    __tablename__ = "event_types"
    __table_args__ = (UniqueConstraint("programme_id", "name"),)

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    attributes_schema: Mapped[dict[str, Any]]
    """JSON Schema (draft 2020-12) of the event's ``attributes``."""


class MemberBadge(IdMixin, Base):
    __tablename__ = "member_badges"
    __table_args__ = (UniqueConstraint("member_id", "code"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    code: Mapped[str] = mapped_column(String(64))
    badge: Mapped[dict[str, Any]]
    """Name and description (en/de) and icon, as the rule defined them when awarded."""
    rule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("rules.id"))
    rule_version: Mapped[int | None]
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id"))
    awarded_at: Mapped[datetime] = mapped_column(default=utc_now)
