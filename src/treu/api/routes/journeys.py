"""A programme's journeys (``/v1/programmes/{slug}/journeys``) and marketing quiet hours."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from treu.api.deps import DB, Admin, AnyKey
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.journeys.models import JourneyKind
from treu.journeys.schemas import JourneyIn, JourneyOut, JourneysOut, QuietHours
from treu.journeys.service import journeys
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(prefix="/v1/programmes", tags=["journeys"], responses=PROBLEM_RESPONSES)

NO_PROGRAMME: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such programme"}
}


def _all(session: Session, programme: Programme) -> JourneysOut:
    start, end = journeys.quiet_hours(session, programme.id)
    return JourneysOut(
        programme=programme.slug,
        quiet_hours=QuietHours(start=start, end=end),
        journeys=[
            JourneyOut.of(j, journeys.stats(session, j.id) if j.id is not None else {})
            for j in journeys.all(session, programme.id)
        ],
    )


@router.get("/{programme}/journeys", response_model=JourneysOut, responses=NO_PROGRAMME)
def list_journeys(programme: str, db: DB, _key: AnyKey) -> JourneysOut:
    """Every journey kind with its settings (switched off where never set) and how many
    members each step treated and held out."""
    with db.unit_of_work(write=False) as session:
        return _all(session, programmes.get(session, programme))


@router.put("/{programme}/quiet-hours", response_model=QuietHours, responses=NO_PROGRAMME)
def put_quiet_hours(programme: str, data: QuietHours, db: DB, _key: Admin) -> QuietHours:
    """When marketing messages wait (the programme's local time; they are delayed to
    the end, never dropped)."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        row = journeys.set_quiet_hours(session, found.id, start=data.start, end=data.end)
        return QuietHours(start=row.quiet_start, end=row.quiet_end)


@router.put("/{programme}/journeys/{kind}", response_model=JourneyOut, responses=NO_PROGRAMME)
def put_journey(
    programme: str, kind: JourneyKind, data: JourneyIn, db: DB, _key: Admin
) -> JourneyOut:
    """Switch a journey on or off and set its template, numbers, reward and holdout
    (admin scope)."""
    with db.unit_of_work() as session:
        found = programmes.get(session, programme)
        row = journeys.put(
            session,
            found,
            kind,
            enabled=data.enabled,
            template=data.template,
            params=data.params,
            reward_id=data.reward_id,
            holdout_pct=data.holdout_pct,
            segments=data.segments,
        )
        return JourneyOut.of(row, journeys.stats(session, row.id))
