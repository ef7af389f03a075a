"""Tiers: a member's tier and what is missing, the history, and the programme's tiers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query, status
from sqlalchemy import select

from treu.api.deps import DB, Admin, AnyKey, MembersRead, RequestedLang
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.errors import Invalid
from treu.events.models import Event
from treu.kit.lang import member_language
from treu.kit.pagination import InvalidCursor
from treu.members.service import members
from treu.programmes.schemas import TierSettings, TierSettingsPatch
from treu.programmes.service import programmes
from treu.tiers.schemas import (
    HistoryEntryOut,
    HistoryOut,
    MemberTierOut,
    TierCreate,
    TierOut,
    TierPatch,
    TiersOut,
)
from treu.tiers.service import tiers
from treu.web.routing import Router

router = Router(tags=["tiers"], responses=PROBLEM_RESPONSES)

MEMBER_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such member"}
}
PROGRAMME_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such programme (or tier)"}
}


@router.get(
    "/v1/members/{member_id}/tier", response_model=MemberTierOut, responses=MEMBER_NOT_FOUND
)
def get_member_tier(
    member_id: uuid.UUID, db: DB, _key: MembersRead, requested: RequestedLang
) -> MemberTierOut:
    """The member's tier, since when and until when it is certain, whether it was bought,
    the next tier and exactly what is missing for it ("€120.00 spend by 31.12.2026 for
    Gold"), what keeps the current tier and by when, and its benefits."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, member_id)
        lang = member_language(requested, member.language)
        return tiers.status(session, member=member, lang=lang)


@router.get(
    "/v1/members/{member_id}/tier/history",
    response_model=HistoryOut,
    responses=MEMBER_NOT_FOUND | {400: {"model": Problem, "description": "Bad cursor"}},
)
def get_member_tier_history(
    member_id: uuid.UUID,
    db: DB,
    _key: MembersRead,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    requested: RequestedLang = None,
) -> HistoryOut:
    """Every change of the member's tier, newest first, with the reason."""
    with db.unit_of_work(write=False) as session:
        lang = member_language(requested, members.get(session, member_id).language)
        try:
            entries, next_cursor = tiers.history(
                session, member_id=member_id, limit=limit, cursor=cursor, lang=lang
            )
        except InvalidCursor as exc:
            raise Invalid("cursor is not valid; use next_cursor from the previous page") from exc
        ids = {entry.event_id for entry, _ in entries if entry.event_id is not None}
        keys: dict[uuid.UUID, str] = (
            {
                row[0]: row[1]
                for row in session.execute(select(Event.id, Event.key).where(Event.id.in_(ids)))
            }
            if ids
            else {}
        )
        return HistoryOut(
            items=[
                HistoryEntryOut(
                    id=entry.id,
                    from_tier=entry.from_tier,
                    to_tier=entry.to_tier,
                    reason=entry.reason,
                    text=text,
                    event_id=keys.get(entry.event_id) if entry.event_id else None,
                    at=entry.at,
                )
                for entry, text in entries
            ],
            next_cursor=next_cursor,
        )


@router.get(
    "/v1/programmes/{programme}/tiers",
    response_model=TiersOut,
    tags=["programmes"],
    responses=PROGRAMME_NOT_FOUND,
)
def list_tiers(programme: str, db: DB, _key: AnyKey) -> TiersOut:
    """The programme's tiers, lowest first, and how members qualify."""
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        return TiersOut(
            settings=programmes.tier_settings(found),
            tiers=[tiers.out(t) for t in tiers.all(session, found)],
        )


@router.post(
    "/v1/programmes/{programme}/tiers",
    status_code=status.HTTP_201_CREATED,
    response_model=TierOut,
    tags=["programmes"],
    responses=PROGRAMME_NOT_FOUND
    | {409: {"model": Problem, "description": "Code or rank taken (`field` says which)"}},
)
def create_tier(programme: str, data: TierCreate, db: DB, key: Admin) -> TierOut:
    """Add a tier (admin scope). Thresholds must rise with the rank (`tier_order`)."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        return tiers.out(tiers.create(session, programme=found, data=data, actor=key.actor))


@router.patch(
    "/v1/programmes/{programme}/tiers/{code}",
    response_model=TierOut,
    tags=["programmes"],
    responses=PROGRAMME_NOT_FOUND | {409: {"model": Problem, "description": "Rank taken"}},
)
def update_tier(programme: str, code: str, data: TierPatch, db: DB, key: Admin) -> TierOut:
    """Change a tier (admin scope): send only what changes. Members are re-evaluated by
    the next `tiers.reevaluate` run (a lowered threshold upgrades, a raised one starts
    the grace period)."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        tier = tiers.update(session, programme=found, code=code, patch=data, actor=key.actor)
        return tiers.out(tier)


@router.get(
    "/v1/programmes/{programme}/tier-settings",
    response_model=TierSettings,
    tags=["programmes"],
    responses=PROGRAMME_NOT_FOUND,
)
def get_tier_settings(programme: str, db: DB, _key: AnyKey) -> TierSettings:
    with db.unit_of_work(write=False) as session:
        return programmes.tier_settings(programmes.get(session, programme))


@router.patch(
    "/v1/programmes/{programme}/tier-settings",
    response_model=TierSettings,
    tags=["programmes"],
    responses=PROGRAMME_NOT_FOUND,
)
def update_tier_settings(
    programme: str, data: TierSettingsPatch, db: DB, key: Admin
) -> TierSettings:
    """Metric, window, grace period, tiers down per re-evaluation (admin scope)."""
    with db.unit_of_work() as session:
        found = tiers.update_settings(
            session,
            programme=programmes.get(session, programme),
            patch=data,
            actor=key.actor,
        )
        return programmes.tier_settings(found)
