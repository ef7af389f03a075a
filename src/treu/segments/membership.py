"""Reading memberships where features decide: rule conditions (``member.segments``),
reward eligibility, campaign and journey audiences. Each read is one small query on the
``segment_members`` index by member (or by segment for audiences)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from treu.segments.models import Segment, SegmentMember, SegmentStatus


def slugs_of(session: Session, *, member_id: uuid.UUID) -> frozenset[str]:
    """The slugs of the active segments ``member_id`` is in (paused segments count as
    no one's: pausing a segment switches off what uses it)."""
    rows = session.execute(
        select(Segment.slug)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.member_id == member_id, Segment.status == SegmentStatus.active.value)
    ).scalars()
    return frozenset(rows)


def slugs_of_many(
    session: Session, *, member_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, frozenset[str]]:
    """``slugs_of`` for several members in one query (a batch of events)."""
    if not member_ids:
        return {}
    found: dict[uuid.UUID, set[str]] = {}
    for member_id, slug in session.execute(
        select(SegmentMember.member_id, Segment.slug)
        .join(Segment, SegmentMember.segment_id == Segment.id)
        .where(
            SegmentMember.member_id.in_(list(member_ids)),
            Segment.status == SegmentStatus.active.value,
        )
    ):
        found.setdefault(member_id, set()).add(slug)
    return {member_id: frozenset(slugs) for member_id, slugs in found.items()}


def members_of(*, programme_id: uuid.UUID, slugs: Iterable[str]) -> Select[uuid.UUID]:
    """A subquery of the member ids in any of the programme's active segments ``slugs``
    (for audiences: ``Member.id.in_(members_of(...))``)."""
    return (
        select(SegmentMember.member_id)
        .join(Segment, SegmentMember.segment_id == Segment.id)
        .where(
            Segment.programme_id == programme_id,
            Segment.slug.in_(list(slugs)),
            Segment.status == SegmentStatus.active.value,
        )
    )
