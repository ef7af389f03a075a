"""``/v1/segments``: dynamic segments (create, list, read, change, pause, delete), their
refresh on demand, members and history; ``GET /v1/members/{id}/scores``. See
docs/segments.md."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Response, status
from pydantic import BaseModel, Field

from treu.api.deps import DB, Admin, MembersRead, require
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.auth.service import Principal
from treu.errors import Invalid
from treu.insights.segmenting import Refreshed, SegmentIn, SegmentPatch, segments
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.kit.time import utc_now
from treu.members.service import members
from treu.programmes.service import programmes
from treu.segments.errors import SegmentNotFound
from treu.segments.membership import slugs_of
from treu.segments.models import SCORE_COLUMNS, Segment
from treu.segments.scores import rfm_metrics_of, scores_of
from treu.web.routing import Router

router = Router(prefix="/v1/segments", tags=["segments"], responses=PROBLEM_RESPONSES)
scores_router = Router(prefix="/v1/members", tags=["segments"], responses=PROBLEM_RESPONSES)
SegmentsRead = Annotated[Principal, Depends(require("admin|members:read"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such segment"}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "invalid_segment: the expression, with its position"}
}


class SegmentCreate(SegmentIn):
    programme: str = Field(description="Programme slug or id", examples=["demo"])


class SegmentOut(BaseModel):
    id: uuid.UUID
    programme: str
    slug: str
    name: str
    description: str
    expression: str
    status: str = Field(description="active or paused (a paused segment holds no one)")
    member_count: int = Field(description="Members at the last refresh")
    computed_at: datetime | None = Field(description="The last refresh (None: never)")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, segment: Segment, programme: str) -> SegmentOut:
        return cls(
            id=segment.id,
            programme=programme,
            slug=segment.slug,
            name=segment.name,
            description=segment.description,
            expression=segment.expression,
            status=segment.status,
            member_count=segment.member_count,
            computed_at=segment.computed_at,
            created_at=segment.created_at,
            updated_at=segment.updated_at,
        )


class SegmentList(BaseModel):
    items: list[SegmentOut]


class RefreshOut(BaseModel):
    segment: SegmentOut
    entered: int = Field(description="Members who entered at this refresh")
    left: int = Field(description="Members who left at this refresh")


class SegmentMemberOut(BaseModel):
    member_id: uuid.UUID
    entered_at: datetime


class SegmentMembersPage(BaseModel):
    items: list[SegmentMemberOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page")


class SegmentChangeOut(BaseModel):
    member_id: uuid.UUID
    change: str = Field(description="entered or left")
    at: datetime


class SegmentChangesPage(BaseModel):
    items: list[SegmentChangeOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page")


class ScoresOut(BaseModel):
    member_id: uuid.UUID
    computed_at: datetime | None = Field(description="The last time one of the scores changed")
    metrics_as_of: datetime | None = Field(
        description="The moment the last segment refresh computed RFM and the frequency "
        "and spend below for (None: the programme was never refreshed)"
    )
    recency_days: int | None = Field(
        description="Whole days from the latest purchase (as of metrics_as_of) to now"
    )
    frequency_365: int | None = Field(description="Purchases in the 365 days before metrics_as_of")
    spend_365_minor: int | None = Field(
        description="Net spend in the 365 days before metrics_as_of"
    )
    rfm_r: int | None = Field(description="1-5")
    rfm_f: int | None
    rfm_m: int | None
    rfm_segment: str | None = Field(
        description="champions, loyal, potential_loyalists, new, promising, need_attention, "
        "at_risk, cant_lose, hibernating or lost"
    )
    clv_365_minor: int | None = Field(description="Expected value in the next 365 days")
    p_alive: float | None
    churn_risk: float | None
    persona: str | None
    segments: list[str] = Field(description="Slugs of the active segments the member is in")


def _cursor(cursor: str | None, key: str) -> Any:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)[key]
    except (InvalidCursor, KeyError) as exc:
        raise Invalid("cursor is not valid; use next_cursor from the previous page") from exc


@router.get("", response_model=SegmentList)
def list_segments(
    db: DB,
    _key: SegmentsRead,
    programme: Annotated[str, Query(description="Programme slug or id")],
) -> SegmentList:
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        items = segments.all(session, programme_id=found.id)
        return SegmentList(items=[SegmentOut.of(s, found.slug) for s in items])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SegmentOut, responses=INVALID)
def create_segment(data: SegmentCreate, db: DB, _key: Admin) -> SegmentOut:
    """A new segment; its members are worked out at the next refresh (the
    ``segments.refresh`` job, or ``POST /v1/segments/{id}/refresh``). An expression with
    a syntax or type error is refused with its line and column."""
    with db.unit_of_work() as session:
        programme = programmes.get(session, data.programme)
        segment = segments.create(
            session,
            programme=programme,
            data=SegmentIn.model_validate(data.model_dump(exclude={"programme"})),
        )
        return SegmentOut.of(segment, programme.slug)


@router.get("/{segment_id}", response_model=SegmentOut, responses=NOT_FOUND)
def get_segment(segment_id: uuid.UUID, db: DB, _key: SegmentsRead) -> SegmentOut:
    with db.unit_of_work(write=False) as session:
        segment = segments.get(session, segment_id)
        return SegmentOut.of(segment, programmes.get(session, segment.programme_id).slug)


@router.patch("/{segment_id}", response_model=SegmentOut, responses={**NOT_FOUND, **INVALID})
def update_segment(segment_id: uuid.UUID, data: SegmentPatch, db: DB, _key: Admin) -> SegmentOut:
    """Change the name, description, expression or status (``paused``: the segment
    holds no one for rules, rewards and audiences, and is not refreshed). A new
    expression takes effect at the next refresh."""
    with db.unit_of_work() as session:
        segment = segments.update(session, segment=segments.get(session, segment_id), data=data)
        return SegmentOut.of(segment, programmes.get(session, segment.programme_id).slug)


@router.delete("/{segment_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_segment(segment_id: uuid.UUID, db: DB, _key: Admin) -> Response:
    """The segment, its members and its history. Rules, rewards and audiences that
    name its slug then hold no one through it."""
    with db.unit_of_work() as session:
        segments.delete(session, segment=segments.get(session, segment_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{segment_id}/refresh", response_model=RefreshOut, responses=NOT_FOUND)
def refresh_segment(segment_id: uuid.UUID, db: DB, _key: Admin) -> RefreshOut:
    """Work out the segment's members now (and the programme's RFM scores, which
    segments may use), recording who entered and who left."""
    with db.unit_of_work() as session:
        segment = segments.get(session, segment_id)
        programme = programmes.get(session, segment.programme_id)
        done: list[Refreshed] = segments.refresh(
            session, programme=programme, segment_ids=[segment.id]
        )
        if not done:  # deleted while this refresh waited for its lock
            raise SegmentNotFound(f"no segment {segment_id}")
        return RefreshOut(
            segment=SegmentOut.of(segment, programme.slug),
            entered=done[0].entered,
            left=done[0].left,
        )


@router.get("/{segment_id}/members", response_model=SegmentMembersPage, responses=NOT_FOUND)
def segment_members(
    segment_id: uuid.UUID,
    db: DB,
    _key: SegmentsRead,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> SegmentMembersPage:
    """The members at the last refresh, by member id."""
    after = _cursor(cursor, "after")
    try:
        after_id = uuid.UUID(str(after)) if after is not None else None
    except ValueError as exc:
        raise Invalid("cursor is not valid; use next_cursor from the previous page") from exc
    with db.unit_of_work(write=False) as session:
        segment = segments.get(session, segment_id)
        rows = segments.member_page(session, segment=segment, after=after_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return SegmentMembersPage(
        items=[SegmentMemberOut(member_id=r.member_id, entered_at=r.entered_at) for r in rows],
        next_cursor=encode_cursor({"after": str(rows[-1].member_id)}) if more else None,
    )


@router.get("/{segment_id}/changes", response_model=SegmentChangesPage, responses=NOT_FOUND)
def segment_changes(
    segment_id: uuid.UUID,
    db: DB,
    _key: SegmentsRead,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> SegmentChangesPage:
    """Who entered and who left, newest first."""
    before = _cursor(cursor, "before")
    if before is not None and (
        not isinstance(before, int) or isinstance(before, bool) or not 0 < before < 2**63
    ):
        raise Invalid("cursor is not valid; use next_cursor from the previous page")
    with db.unit_of_work(write=False) as session:
        segment = segments.get(session, segment_id)
        rows = segments.change_page(session, segment=segment, before=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return SegmentChangesPage(
        items=[SegmentChangeOut(member_id=r.member_id, change=r.change, at=r.at) for r in rows],
        next_cursor=encode_cursor({"before": rows[-1].id}) if more else None,
    )


@scores_router.get(
    "/{member_id}/scores",
    response_model=ScoresOut,
    responses={404: {"model": Problem, "description": "No such member"}},
)
def member_scores(member_id: uuid.UUID, db: DB, _key: MembersRead) -> ScoresOut:
    """The member's latest scores (None: not computed yet) and active segments."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, member_id)
        row = scores_of(session, member_id=member_id)
        kept = rfm_metrics_of(session, member_id=member_id, programme_id=member.programme_id)
        found = sorted(slugs_of(session, member_id=member_id))
    out: dict[str, Any] = dict.fromkeys(ScoresOut.model_fields, None)
    if row is not None:
        out |= {name: getattr(row, name) for name in ("computed_at", *SCORE_COLUMNS)}
    if kept is not None:
        out |= {
            "metrics_as_of": kept.as_of,
            "recency_days": kept.recency_days(utc_now()),
            "frequency_365": kept.frequency_365,
            "spend_365_minor": kept.spend_365_minor,
        }
    return ScoresOut.model_validate({**out, "member_id": member_id, "segments": found})
