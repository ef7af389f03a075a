"""The insights tables: scores per member, segments and their members, trained models.

``member_scores`` holds one row per member, written by several computations (RFM,
lifetime value, churn, personas), each updating only its own columns through
``treu.segments.scores.save_scores``. ``segment_members`` is the materialised
membership of each segment; ``segment_changes`` its history (who entered or left, when).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, BigIntId, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class RfmSegment(enum.StrEnum):
    champions = "champions"
    loyal = "loyal"
    potential_loyalists = "potential_loyalists"
    new = "new"
    promising = "promising"
    need_attention = "need_attention"
    at_risk = "at_risk"
    cant_lose = "cant_lose"
    hibernating = "hibernating"
    lost = "lost"


class SegmentStatus(enum.StrEnum):
    active = "active"
    paused = "paused"


class InsightKind(enum.StrEnum):
    clv = "clv"
    churn = "churn"
    rfm = "rfm"
    personas = "personas"
    recommend = "recommend"


SCORE_COLUMNS = (
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "clv_365_minor",
    "p_alive",
    "churn_risk",
    "persona",
)
"""The columns ``save_scores`` may write (besides the key, programme and time)."""


class MemberScore(Base):
    """A member's latest scores. A column is None until the computation that owns it
    has run for this member (a member without purchases has no RFM scores). The
    metrics RFM is computed from (recency, frequency and spend) are not stored here:
    they are ``MemberMetrics``, kept by the same refresh; RFM rewrites a row only when
    one of its four values changes (so that a daily refresh does not rewrite a million
    rows because everyone's recency grew by a day)."""

    __tablename__ = "member_scores"
    __table_args__ = (
        Index("ix_member_scores_programme", "programme_id"),
        CheckConstraint("rfm_r BETWEEN 1 AND 5", name="rfm_r"),
        CheckConstraint("rfm_f BETWEEN 1 AND 5", name="rfm_f"),
        CheckConstraint("rfm_m BETWEEN 1 AND 5", name="rfm_m"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    computed_at: Mapped[datetime] = mapped_column(default=utc_now)
    """When one of the row's columns last changed (RFM writes only changed rows)."""
    rfm_r: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_f: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_m: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    clv_365_minor: Mapped[int | None]
    p_alive: Mapped[float | None] = mapped_column(Float)
    churn_risk: Mapped[float | None] = mapped_column(Float)
    persona: Mapped[str | None] = mapped_column(String(64))


class RecommendationSource(enum.StrEnum):
    """Why a stored recommendation was made: the member bought the product (``again``),
    members with the same basket buy it (``similar``), or it is popular (``popular``)."""

    again = "again"
    similar = "similar"
    popular = "popular"


class MemberRecommendation(Base):
    """A member's products, best first, as the nightly ``treu insights train`` computed them
    (``treu.insights.train``, step ``recommend``); replaced per programme at each training
    (``treu.segments.recommendations.save_recommendations``). ``name`` and ``category`` are
    product data copied at training time (not personal), so that serving needs no join.

    No foreign keys, on purpose: the rows are derived and replaced whole each night, the
    training writes only ids it read from the programme's own lines, and PostgreSQL checks
    a foreign key with a trigger per row — measured on 300,000 rows, the two keys made the
    write three times slower (17.4 s against 6.1 s, busy 2-core machine)."""

    __tablename__ = "member_recommendations"
    __table_args__ = (
        Index("ix_member_recommendations_programme", "programme_id"),
        CheckConstraint("rank >= 1", name="rank"),
        CheckConstraint("source IN ('again', 'similar', 'popular')", name="source"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    programme_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    computed_at: Mapped[datetime]


class Segment(IdMixin, TimestampMixin, Base):
    """A dynamic segment: the members for whom ``expression`` (the rules expression
    language over ``member``, ``metrics`` and ``scores``) is true, materialised in
    ``segment_members`` by the refresh job or on demand."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("programme_id", "slug"),)

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    expression: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=SegmentStatus.active.value)
    member_count: Mapped[int] = mapped_column(default=0)
    computed_at: Mapped[datetime | None]


class SegmentMember(Base):
    """A member in a segment, as the last refresh found it. Derived, and written only by
    the refresh (from the programme's active members): no foreign keys, which it would
    check on every row it writes (migration 0032). Deleting a segment deletes its rows;
    deleting a member must too."""

    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_member", "member_id"),)

    segment_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[uuid.UUID]
    entered_at: Mapped[datetime]


class SegmentChange(Base):
    """A member entering or leaving a segment (``change``: ``entered`` | ``left``);
    derived like ``SegmentMember``, without foreign keys."""

    __tablename__ = "segment_changes"
    __table_args__ = (Index("ix_segment_changes_segment_at", "segment_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    segment_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID]
    change: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime]


class InsightModel(IdMixin, Base):
    """One trained version of a model (``kind``) of a programme, with its metrics and
    parameters; ``artifact`` is the fitted model when it is worth keeping (pickled or
    otherwise serialised by the insight that made it)."""

    __tablename__ = "insight_models"
    __table_args__ = (UniqueConstraint("programme_id", "kind", "version"),)

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    kind: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    trained_at: Mapped[datetime] = mapped_column(default=utc_now)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary)


class MemberMetrics(Base):
    """A member's purchase aggregates as of ``member_metrics_state.computed_for`` of the
    programme, kept by the segment refresh (``treu.insights.member_metrics``) so that it
    reads one row per member instead of every event. Windowed columns are those of the
    90 / 365 days before that instant; the first and last purchase are instants, so
    recency is counted against the refresh's own ``now``. A member without events has no
    row.

    No foreign keys: the rows are derived and rewritten per member (see
    ``MemberRecommendation`` on the cost of per-row key checks)."""

    __tablename__ = "member_metrics"
    __table_args__ = (Index("ix_member_metrics_programme", "programme_id"),)

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[uuid.UUID]
    first_purchase_at: Mapped[datetime | None]
    last_purchase_at: Mapped[datetime | None]
    purchases: Mapped[int] = mapped_column(Integer)
    purchases_90: Mapped[int] = mapped_column(Integer)
    purchases_365: Mapped[int] = mapped_column(Integer)
    spend_90: Mapped[int]
    spend_365: Mapped[int]
    returns_365: Mapped[int] = mapped_column(Integer)
    engagements_90: Mapped[int] = mapped_column(Integer)
    engagements_365: Mapped[int] = mapped_column(Integer)


class MemberMetricValue(Base):
    """The set-valued metrics of the last 365 days, one row per (member, kind, value):
    ``kind`` is ``category`` or ``tag`` (of purchase lines), ``channel`` (of purchases)
    or ``engagement_type``; ``n`` counts the lines or events that carry the value, so
    that one leaving the window takes one off (the value goes at 0)."""

    __tablename__ = "member_metric_values"
    __table_args__ = (Index("ix_member_metric_values_programme", "programme_id"),)

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    programme_id: Mapped[uuid.UUID]
    n: Mapped[int] = mapped_column(Integer)


class MemberMetricsState(Base):
    """How far ``member_metrics`` of a programme is kept: the ``now`` of its last update
    (``computed_for``) and the event id below which every event is folded in
    (``events_from``; ids are UUIDv7, time-ordered, see ``treu.insights.member_metrics``
    on why this is safe when transactions commit out of order)."""

    __tablename__ = "member_metrics_state"

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"), primary_key=True)
    computed_for: Mapped[datetime]
    events_from: Mapped[uuid.UUID]
    rebuilt_at: Mapped[datetime]
    """When the table was last rebuilt from every event of the programme."""
    definition: Mapped[str] = mapped_column(String(32))
    """The metrics' definition the rows were computed with (``member_metrics.DEFINITION``):
    another one (a new channel, a changed window) rebuilds them."""
    updated_at: Mapped[datetime]


class MemberMetricsFolded(Base):
    """The events at or above ``member_metrics_state.events_from`` that the kept rows
    already count (every event below it is counted): the next update adds only the
    others, once each. Events made in the last minutes (the mark's settling margin) and
    by transactions still open at the last update."""

    __tablename__ = "member_metrics_folded"

    programme_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
