from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, union_all

from treu.api.deps import DB, Admin, MembersRead, MembersWrite, RequestedLang
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.events.models import Event
from treu.events.schemas import BalanceAfter, PostingBrief
from treu.kit.lang import member_language
from treu.kit.pagination import InvalidCursor
from treu.ledger.adjustments import Adjustment, adjustments
from treu.ledger.explain import render
from treu.ledger.models import LedgerAdjustment
from treu.ledger.schemas import (
    AdjustmentIn,
    BalanceOut,
    ExpiringOut,
    LedgerPageOut,
    PostingOut,
    ReleaseOut,
)
from treu.ledger.service import ledger, rule_of
from treu.members.schemas import MemberCreate, MemberOut, MemberUpdate
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(prefix="/v1/members", tags=["members"], responses=PROBLEM_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member"}
}


class MemberList(BaseModel):
    items: list[MemberOut]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    responses={409: {"model": Problem, "description": "An identifier is taken"}},
)
def enrol_member(data: MemberCreate, db: DB, _key: MembersWrite) -> MemberOut:
    """Enrol a member. One identifier (email, phone, card number or external id) is
    enough; a card number is generated when none is given."""
    with db.unit_of_work() as session:
        programme = programmes.get(session, data.programme)
        member = members.enrol(
            session, programme=programme, data=data, writer=ledger.writer(session)
        )
        return members.out(member, programme.slug)


@router.get("", response_model=MemberList)
def find_members(
    db: DB,
    _key: MembersRead,
    identifier: Annotated[
        str,
        Query(
            min_length=1,
            description="Email, phone (E.164), card number, external id or member id",
        ),
    ],
    programme: Annotated[str | None, Query(description="Limit to one programme")] = None,
) -> MemberList:
    with db.unit_of_work(write=False) as session:
        programme_id = programmes.get(session, programme).id if programme else None
        found = members.search(session, identifier=identifier, programme_id=programme_id)
        slugs = _slugs(session, {m.programme_id for m in found})
        return MemberList(items=[members.out(m, slugs[m.programme_id]) for m in found])


@router.get("/{member_id}", response_model=MemberOut, responses=NOT_FOUND)
def get_member(member_id: uuid.UUID, db: DB, _key: MembersRead) -> MemberOut:
    with db.unit_of_work(write=False) as session:
        member = members.get(session, member_id)
        return members.out(member, programmes.get(session, member.programme_id).slug)


@router.patch("/{member_id}", response_model=MemberOut, responses=NOT_FOUND)
def update_member(
    member_id: uuid.UUID, data: MemberUpdate, db: DB, _key: MembersWrite
) -> MemberOut:
    """Progressive profile: send only what changes. ``attributes`` are merged (a null
    value removes one); ``status`` blocks (no points) or closes (no events) a member."""
    with db.unit_of_work() as session:
        member = members.update(session, member=members.get(session, member_id), data=data)
        return members.out(member, programmes.get(session, member.programme_id).slug)


@router.get("/{member_id}/balance", response_model=BalanceOut, responses=NOT_FOUND)
def get_balance(member_id: uuid.UUID, db: DB, _key: MembersRead) -> BalanceOut:
    with db.unit_of_work(write=False) as session:
        members.get(session, member_id)
        balance = ledger.balance(session, member_id=member_id)
        return BalanceOut(
            member_id=member_id,
            available=balance.available,
            pending=balance.pending,
            lifetime_earned=balance.lifetime_earned,
            expiring=[
                ExpiringOut(points=e.points, expires_at=e.expires_at) for e in balance.expiring
            ],
            pending_releases=[
                ReleaseOut(points=e.points, available_at=e.expires_at)
                for e in balance.next_available
            ],
        )


class BadgeOut(BaseModel):
    code: str
    name: str
    description: str | None
    icon: str
    awarded_at: datetime
    rule_id: uuid.UUID | None


class BadgeList(BaseModel):
    items: list[BadgeOut]


@router.get("/{member_id}/badges", response_model=BadgeList, responses=NOT_FOUND)
def get_badges(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    requested: RequestedLang,
) -> BadgeList:
    """Badges the member was awarded (by earning rules), oldest first."""
    from treu.rules.badges import badges_of

    with db.unit_of_work(write=False) as session:
        lang = member_language(requested, members.get(session, member_id).language)
        return BadgeList(
            items=[
                BadgeOut(
                    code=b.code,
                    name=b.name,
                    description=b.description,
                    icon=b.icon,
                    awarded_at=b.awarded_at,
                    rule_id=b.rule_id,
                )
                for b in badges_of(session, member_id=member_id, lang=lang)
            ]
        )


@router.get(
    "/{member_id}/ledger",
    response_model=LedgerPageOut,
    responses=NOT_FOUND | {400: {"model": Problem, "description": "Bad cursor"}},
)
def get_ledger(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    requested: RequestedLang = None,
) -> LedgerPageOut:
    """Postings, newest first, each with its explanation."""
    from treu.errors import Invalid

    with db.unit_of_work(write=False) as session:
        lang = member_language(requested, members.get(session, member_id).language)
        try:
            page = ledger.history(session, member_id=member_id, limit=limit, cursor=cursor)
        except (InvalidCursor, ValueError) as exc:
            raise Invalid("cursor is not valid; use next_cursor from the previous page") from exc
        keys = _event_keys(session, {p.event_id for p in page.items if p.event_id})
        return LedgerPageOut(
            items=[
                PostingOut(
                    id=p.id,
                    kind=p.kind,
                    points=p.points,
                    explanation=p.explanation if lang == "en" else render(p.details, lang),
                    rule=rule_of(p.details),
                    event_id=keys.get(p.event_id) if p.event_id else None,
                    correlation_id=p.correlation_id,
                    reason=p.reason,
                    actor=p.actor,
                    created_at=p.created_at,
                )
                for p in page.items
            ],
            next_cursor=page.next_cursor,
        )


class AdjustedPosting(PostingBrief):
    reason: str
    actor: str = Field(description="Who made the adjustment (the API key's name)")


class AdjustmentOut(BaseModel):
    """What ``POST /v1/members/{id}/adjustments`` answers (201, or 200 for a replay)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": "01a23ca7-2950-73cc-b57d-fae8edcc5f05",
                    "posting": {
                        "id": "01a23ca7-29dd-769a-a011-032abe690122",
                        "kind": "adjust",
                        "points": 500,
                        "explanation": "Manual adjustment: Goodwill: damaged parcel",
                        "correlation_id": "01a23ca7-29dd-769a-a011-032b6c56035a",
                        "created_at": "2026-11-24T10:20:00Z",
                        "reason": "Goodwill: damaged parcel",
                        "actor": "apikey:crm",
                    },
                    "balance": {"available": 500, "pending": 2},
                }
            ]
        }
    )

    member_id: str
    posting: AdjustedPosting
    balance: BalanceAfter


@router.post(
    "/{member_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND
    | {
        201: {"model": AdjustmentOut, "description": "The posting made, and the new balance"},
        200: {
            "model": AdjustmentOut,
            "description": "Replay of an earlier request with the same Idempotency-Key",
        },
        409: {"model": Problem, "description": "Idempotency-Key reused for another request"},
    },
)
def adjust_points(
    member_id: uuid.UUID,
    data: AdjustmentIn,
    db: DB,
    key: Admin,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Makes retries safe: the same key credits once"),
    ] = None,
) -> dict[str, Any]:
    """Goodwill credit or correction (admin scope). The reason is mandatory and the
    change is audit-logged with the API key that made it."""
    with db.unit_of_work() as session:
        member = members.get(session, member_id)
        answer = adjustments.adjust(
            session,
            member=member,
            adjustment=Adjustment(
                points=data.points,
                reason=data.reason,
                key=f"adjustment:{idempotency_key}" if idempotency_key else None,
                allow_negative=data.allow_negative,
            ),
            actor=key.actor,
        )
    response.status_code = answer.http_status
    return answer.result.public()


def _slugs(session: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return dict(
        session.execute(select(Programme.id, Programme.slug).where(Programme.id.in_(ids))).all()
    )


def _event_keys(session: Any, ids: set[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """The keys the callers gave the events and adjustments that postings name by id."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(
        session.execute(
            union_all(
                select(Event.id, Event.key).where(Event.id.in_(wanted)),
                select(LedgerAdjustment.id, LedgerAdjustment.key).where(
                    LedgerAdjustment.id.in_(wanted)
                ),
            )
        ).all()
    )
