"""Challenges tables.

* ``challenges``: one row per challenge of a programme; ``spec`` is the
  ``ChallengeSpec`` as JSON, ``code`` unique per programme. ``revision`` goes up with
  every change and tells the per-process cache of active challenges that it must
  recompile. Once activated, the part of the spec that gives progress its meaning
  (trigger, conditions, goal, window, max completions) is frozen; names and the reward
  stay editable.
* ``challenge_progress``: per member and period (``window`` for a fixed window,
  ``week:2026-W21`` / ``month:2026-05`` for a repeating one) the progress towards the
  goal (``current``; for ``distinct`` goals ``items`` holds each value with the number of
  events that brought it, so a return can take a value away again) and whether the period
  was completed. Repeating windows with a completion cap also keep a row ``all`` whose
  ``completions`` counts the member's completions over all periods. Written in the
  transaction of the event, under the member's account lock.
* ``challenge_completions``: one per completed period (unique), with what it gave.
  ``posting_id`` names the earn posting (written in the same batch; not a foreign key
  because the batch writes it after this row's table).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class ChallengeStatus(enum.StrEnum):
    draft = "draft"
    """Being prepared: counts nothing yet, everything may change."""
    active = "active"
    """Counts events; its goal, trigger, conditions and window are frozen."""
    paused = "paused"
    """Counts nothing until activated again; progress made so far is kept."""
    ended = "ended"
    """Closed for good: counts nothing, shown in the members' history only."""


class Challenge(IdMixin, TimestampMixin, Base):
    __tablename__ = "challenges"
    __table_args__ = (
        UniqueConstraint("programme_id", "code"),
        Index("ix_challenges_programme_status", "programme_id", "status"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ChallengeStatus.draft.value)
    spec: Mapped[dict[str, Any]]
    """The ``ChallengeSpec`` as JSON."""
    revision: Mapped[int] = mapped_column(default=1)
    activated_at: Mapped[datetime | None]
    """First activation: from then on the frozen part of the spec cannot change."""
    paused_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class ChallengeProgress(Base):
    __tablename__ = "challenge_progress"
    __table_args__ = (Index("ix_challenge_progress_member", "member_id", "challenge_id"),)

    challenge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("challenges.id"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(24), primary_key=True)
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    current: Mapped[int] = mapped_column(default=0)
    items: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Distinct goals: value -> number of counted events that brought it."""
    completions: Mapped[int] = mapped_column(default=0)
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class ChallengeCompletion(IdMixin, Base):
    __tablename__ = "challenge_completions"
    __table_args__ = (
        UniqueConstraint("challenge_id", "member_id", "period"),
        Index("ix_challenge_completions_member", "member_id", "completed_at"),
    )

    challenge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("challenges.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    period: Mapped[str] = mapped_column(String(24))
    event_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id"))
    """The event that completed it."""
    completed_at: Mapped[datetime]
    """When the completing event occurred."""
    points: Mapped[int] = mapped_column(default=0)
    posting_id: Mapped[uuid.UUID | None]
    badge_code: Mapped[str | None] = mapped_column(String(64))
    """The badge awarded, if it was new to the member."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
