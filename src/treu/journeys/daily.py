"""The daily journeys: who is due today, found set-based, a page of members at a time.

Each ``due_*`` answers one page of ``Target``s of one journey, walking member ids
upwards from ``after``; ``run_daily`` fires each page in its own unit of work. A page
only *proposes* members: ``JourneyService.fire`` writes each exposure once, so a page
repeated (a rerun, a second worker) reaches nobody twice."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import and_, exists, extract, func, select
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.db.session import Database
from treu.events.models import Event
from treu.journeys.models import Journey, JourneyExposure, JourneyKind
from treu.journeys.service import Target, journeys
from treu.kit.time import iso, local_date, utc_now
from treu.ledger.models import Lot
from treu.members.models import Member, MemberStatus
from treu.programmes.models import Programme

PAGE = 1000
Due = Callable[[Session, Journey, Programme, datetime, uuid.UUID | None, int], list[Target]]

_EXPOSURES = table_of(JourneyExposure)
_OPEN = Member.status != MemberStatus.closed.value


def _birthdays(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """Members whose birthday is within ``days_before`` days from today (the
    programme's date): each is reached once for the year of that birthday. A 29 February
    birthday is on 28 February in other years."""
    today = local_date(now, programme.timezone)
    days = int(journey.params.get("days_before", 0))
    upcoming: dict[int, date] = {}
    for offset in range(days + 1):
        day = today + timedelta(days=offset)
        upcoming[day.month * 100 + day.day] = day
        if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
            upcoming[229] = day
    month_day = extract("month", Member.birthday) * 100 + extract("day", Member.birthday)
    query = (
        select(Member.id, month_day)
        .where(
            Member.programme_id == programme.id,
            _OPEN,
            Member.birthday.is_not(None),
            month_day.in_(list(upcoming)),
        )
        .order_by(Member.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Member.id > after)
    return [
        Target(member_id, str(upcoming[int(key)].year))
        for member_id, key in session.execute(query).all()
    ]


def _expiring(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """Points expiring within ``days_before`` days: per member and expiry instant, the
    points that ``ledger.expire_due`` will take then (what is left of those lots now).
    The occasion is the instant, so a member with two expiry dates hears of each."""
    days = int(journey.params.get("days_before", 14))
    due = (
        Lot.programme_id == programme.id,
        Lot.remaining > 0,
        Lot.expires_at.is_not(None),
        Lot.expires_at > now,
        Lot.expires_at <= now + timedelta(days=days),
    )
    page = select(Lot.member_id).where(*due).group_by(Lot.member_id).order_by(Lot.member_id)
    if after is not None:
        page = page.where(Lot.member_id > after)
    member_ids = list(session.scalars(page.limit(limit)))
    if not member_ids:
        return []
    rows = session.execute(
        select(Lot.member_id, Lot.expires_at, func.sum(Lot.remaining))
        .join(Member, Member.id == Lot.member_id)
        .where(Lot.member_id.in_(member_ids), _OPEN, *due)
        .group_by(Lot.member_id, Lot.expires_at)
        .order_by(Lot.member_id)
    ).all()
    found = [
        Target(member_id, iso(expires_at), facts={"points": int(points), "expires_at": expires_at})
        for member_id, expires_at, points in rows
        if expires_at is not None
    ]
    # The page's last member, even if closed: the walk must go on past them.
    if not found or found[-1].member_id != member_ids[-1]:
        found.append(Target(member_ids[-1], "", step=0))
    return found


def _inactive(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """Step 1: members whose last purchase is ``inactive_days`` or more ago and who were
    not reached since it (the occasion is that purchase's date: a member who comes back
    and lapses again is reached again)."""
    inactive = timedelta(days=int(journey.params.get("inactive_days", 90)))
    last = (
        select(Event.member_id.label("member_id"), func.max(Event.occurred_at).label("last"))
        .where(Event.programme_id == programme.id, Event.type == "purchase")
        .group_by(Event.member_id)
        .subquery()
    )
    reached = exists().where(
        JourneyExposure.journey_id == journey.id,
        JourneyExposure.member_id == last.c.member_id,
        JourneyExposure.step == 1,
        JourneyExposure.at >= last.c.last,
    )
    first = (
        select(last.c.member_id, last.c.last)
        .join(Member, Member.id == last.c.member_id)
        .where(_OPEN, last.c.last <= now - inactive, ~reached)
        .order_by(last.c.member_id)
        .limit(limit)
    )
    if after is not None:
        first = first.where(last.c.member_id > after)
    return [
        Target(member_id, local_date(at, programme.timezone).isoformat())
        for member_id, at in session.execute(first).all()
    ]


def _still_inactive(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """Inactivity's second step: members reached by the first ``second_step_days`` or
    more ago who have not bought since (held-out members stay held out: same bucket)."""
    days = int(journey.params.get("second_step_days", 30))
    if days <= 0:
        return []
    step_one = _EXPOSURES.alias("step_one")
    step_two = _EXPOSURES.alias("step_two")
    bought = exists().where(
        Event.programme_id == programme.id,
        Event.member_id == step_one.c.member_id,
        Event.type == "purchase",
        Event.occurred_at > step_one.c.at,
    )
    done = exists().where(
        and_(
            step_two.c.journey_id == journey.id,
            step_two.c.member_id == step_one.c.member_id,
            step_two.c.occasion == step_one.c.occasion,
            step_two.c.step == 2,
        )
    )
    follow = (
        select(step_one.c.member_id, step_one.c.occasion)
        .where(
            step_one.c.journey_id == journey.id,
            step_one.c.step == 1,
            step_one.c.at <= now - timedelta(days=days),
            ~bought,
            ~done,
        )
        .order_by(step_one.c.member_id)
        .limit(limit)
    )
    if after is not None:
        follow = follow.where(step_one.c.member_id > after)
    return [Target(m, occasion, step=2) for m, occasion in session.execute(follow).all()]


DUE: dict[JourneyKind, tuple[Due, ...]] = {
    JourneyKind.birthday: (_birthdays,),
    JourneyKind.points_expiring: (_expiring,),
    JourneyKind.inactivity: (_inactive, _still_inactive),
}
"""The journeys ``journeys.daily`` runs (the event-triggered ones react to the outbox:
``treu.journeys.reactor``)."""


def run_daily(
    db: Database,
    *,
    now: datetime | None = None,
    page: int = PAGE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Fire every enabled daily journey for the members due now; returns how many
    members were reached (treated or held out) by this run."""
    now = now or utc_now()
    with db.unit_of_work(write=False) as session:
        ids = [(j.id, JourneyKind(j.kind)) for j in journeys.enabled(session, DUE)]
    total = 0
    for journey_id, due in ((i, d) for i, k in ids for d in DUE[k]):
        after: uuid.UUID | None = None
        while True:
            with db.unit_of_work() as session:
                journey = session.get_one(Journey, journey_id)
                programme = session.get_one(Programme, journey.programme_id)
                found = due(session, journey, programme, now, after, page)
                if not found:
                    break
                after = found[-1].member_id
                fired = journeys.fire(
                    session, journey, programme, [t for t in found if t.step > 0], now=now
                )
            done = fired.treated + fired.held_out
            total += done
            if on_batch is not None and done:
                on_batch(done)
    return total
