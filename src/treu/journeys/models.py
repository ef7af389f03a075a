from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class JourneyKind(enum.StrEnum):
    welcome = "welcome"
    first_purchase = "first_purchase"
    birthday = "birthday"
    inactivity = "inactivity"
    points_expiring = "points_expiring"
    tier_upgrade = "tier_upgrade"
    tier_at_risk = "tier_at_risk"
    thank_you = "thank_you"


class Arm(enum.StrEnum):
    treated = "treated"
    held_out = "held_out"


class Journey(IdMixin, TimestampMixin, Base):
    """One journey of one programme: whether it runs, what it sends, what it gives, and
    how many members it holds out. One row per programme and kind; a kind without a row
    is switched off."""

    __tablename__ = "journeys"
    __table_args__ = (
        UniqueConstraint("programme_id", "kind"),
        CheckConstraint("holdout_pct >= 0 AND holdout_pct <= 100", name="holdout_pct"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(default=False)
    template: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The kind's numbers: ``days_before``, ``inactive_days``, ``second_step_days``, …"""
    reward_id: Mapped[uuid.UUID | None]
    """A coupon reward issued with the message (without points), if any."""
    holdout_pct: Mapped[int] = mapped_column(default=0)
    segments: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    """Segment slugs: when not empty, the journey reaches only members of one of these
    active segments (migration 0026)."""


class JourneyExposure(IdMixin, Base):
    """Who a journey treated or held out, for which occasion, when: read by the
    experiments work to compare the arms. One row per journey, member, occasion and
    step, ever — the row is also what makes a journey fire once per occasion (written
    ``ON CONFLICT DO NOTHING``, and only the members whose row this run wrote get a
    message or a reward)."""

    __tablename__ = "journey_exposures"
    __table_args__ = (
        UniqueConstraint("journey_id", "member_id", "occasion", "step"),
        Index("ix_journey_exposures_member", "member_id", "at"),
        Index("ix_journey_exposures_journey_at", "journey_id", "at"),
    )

    journey_id: Mapped[uuid.UUID]
    programme_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(32))
    occasion: Mapped[str] = mapped_column(String(100))
    """What the member was reached for: ``2027`` (a birthday), ``2026-11-03`` (the last
    purchase before an inactivity), an expiry instant, ``once``."""
    step: Mapped[int] = mapped_column(default=1)
    arm: Mapped[str] = mapped_column(String(16))
    coupon_id: Mapped[uuid.UUID | None]
    at: Mapped[datetime] = mapped_column(default=utc_now)


class JourneyProgramme(Base):
    """A programme's marketing quiet hours (local time of the programme); a programme
    without a row has 21:00 to 08:00."""

    __tablename__ = "journey_programmes"

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"), primary_key=True)
    quiet_start: Mapped[str] = mapped_column(String(5), default="21:00")
    quiet_end: Mapped[str] = mapped_column(String(5), default="08:00")
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
