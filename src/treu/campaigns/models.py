"""Campaign tables.

* ``campaigns``: one row per campaign of a programme; ``spec`` is the ``CampaignSpec``
  as JSON, ``code`` unique per programme, ``rule_id`` the earning rule the campaign
  manages (created with it, published, paused and ended with it; its postings name it).
  ``revision`` goes up with every change and tells the per-process cache of running
  campaigns that it must rebuild.
* ``campaign_exposures``: who was in the campaign's experiment, in which arm
  (``treated`` or ``held_out``), and when: one row per campaign and member, written the
  first time an event of the member falls in the window while the audience holds it
  (the campaigns reaction of the ingest), never changed afterwards. The experiments work
  reads it. ``member_id`` and ``event_id`` carry no foreign keys, like the other tables
  the ingest writes (migration 0010). An offer writes its rows when it gives
  (``treu.campaigns.offers``): ``first_seen_at`` is then that moment, ``event_id`` null,
  and ``coupon_id`` the coupon a treated member got. The primary key is what makes an
  offer reach each member once, however often and by however many workers it runs.
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


class CampaignStatus(enum.StrEnum):
    draft = "draft"
    """Being prepared: gives nothing, records nothing."""
    active = "active"
    """Its rule is published: inside the window it boosts purchases and records exposures."""
    paused = "paused"
    """Its rule is paused until the campaign is activated again."""
    ended = "ended"
    """Closed for good; its statistics stay."""


class Arm(enum.StrEnum):
    treated = "treated"
    held_out = "held_out"


class Campaign(IdMixin, TimestampMixin, Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("programme_id", "code"),
        Index("ix_campaigns_programme_status", "programme_id", "status"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.draft.value)
    spec: Mapped[dict[str, Any]]
    """The ``CampaignSpec`` as JSON."""
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rules.id"), unique=True)
    budget_points: Mapped[int | None]
    """The spec's budget, copied: the cache of running campaigns compares it with the
    rule's ``budget_used`` in its stamp query, so a spent campaign stops recording."""
    revision: Mapped[int] = mapped_column(default=1)
    activated_at: Mapped[datetime | None]
    """First activation: from then on the control group (holdout, code) cannot change."""
    paused_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    given_at: Mapped[datetime | None]
    """An offer: when it had reached its whole audience, or its budget ran out (the
    worker's job looks no further at it)."""


class CampaignExposure(Base):
    __tablename__ = "campaign_exposures"
    __table_args__ = (Index("ix_campaign_exposures_member", "member_id"),)

    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[uuid.UUID]
    arm: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime]
    """When the member's first event in the window occurred (of those processed first)."""
    event_id: Mapped[uuid.UUID | None]
    """Treu's id of that event (null for an offer's exposure)."""
    coupon_id: Mapped[uuid.UUID | None]
    """The coupon an offer gave the member (treated, with a reward)."""
    recorded_at: Mapped[datetime] = mapped_column(default=utc_now)
