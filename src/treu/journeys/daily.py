"""The daily journeys: who is due today, found set-based, a page of members at a time.

Each ``due_*`` answers one page of ``Target``s of one journey, walking member ids
upwards from ``after``; ``run_daily`` fires each page in its own unit of work. A page
only *proposes* members: ``JourneyService.fire`` writes each exposure once, so a page
repeated (a rerun, a second worker) reaches nobody twice.

Tier at risk and thank-you are set-based in the same way: SQL picks the few members who
can be due (a tier whose hold ends within the window; the members at or above the month's
engagement threshold), and only those are looked at in Python, a page at a time."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, exists, extract, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from treu.db.base import table_of
from treu.db.session import Database
from treu.events.models import Event
from treu.journeys.models import Journey, JourneyExposure, JourneyKind
from treu.journeys.service import Target, journeys
from treu.kit.time import iso, local_date, utc_now
from treu.ledger.models import Lot
from treu.members.models import Member, MemberStatus
from treu.programmes.models import Programme
from treu.tiers import maths
from treu.tiers.models import MemberTier, TierActivity
from treu.tiers.service import tiers

PAGE = 1000
Due = Callable[[Session, Journey, Programme, datetime, uuid.UUID | None, int], list[Target]]

_EXPOSURES = table_of(JourneyExposure)
_OPEN = Member.status != MemberStatus.closed.value

FIRST = "first"
"""The first-purchase journey's one occasion: a member is thanked once, ever."""

FIRST_PURCHASE_WITHIN = timedelta(days=2)
"""A purchase that happened further back than this is history (an import of past
purchases), not news to thank for; it is also how far back the daily job looks for first
purchases the outbox said nothing about."""

ENGAGEMENT = timedelta(days=90)
"""The window the thank-you journey counts a member's events in."""


def first_purchases(programme_id: uuid.UUID, now: datetime) -> Select[uuid.UUID, uuid.UUID]:
    """Purchases of open members of the programme within ``FIRST_PURCHASE_WITHIN``
    before ``now`` with no purchase of the same member before them (the same instant:
    the smaller id is first), as ``(member_id, event_id)``: at most one a
    member. Each candidate costs one probe of ``ix_events_member_occurred``."""
    before = aliased(Event)
    earlier = exists().where(
        before.member_id == Event.member_id,
        before.type == "purchase",
        or_(
            before.occurred_at < Event.occurred_at,
            and_(before.occurred_at == Event.occurred_at, before.id < Event.id),
        ),
    )
    return (
        select(Member.id, Event.id)
        .join(Member, Member.id == Event.member_id)
        .where(
            Event.programme_id == programme_id,
            Event.type == "purchase",
            Event.occurred_at > now - FIRST_PURCHASE_WITHIN,
            _OPEN,
            ~earlier,
        )
    )


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
    and lapses again is reached again).

    Walks the programme's members a page at a time and reads only the page's purchases
    and exposures (both by the member's index), so a run costs one pass over the events
    whatever the number of pages. (A first version aggregated every purchase of the
    programme for each page, and on SQLite, without planner statistics, looked for
    earlier exposures through the journey's index, all of them for every candidate: at
    100,000 members one page took minutes.)"""
    inactive = timedelta(days=int(journey.params.get("inactive_days", 90)))
    page = select(Member.id).where(Member.programme_id == programme.id, _OPEN)
    if after is not None:
        page = page.where(Member.id > after)
    member_ids = list(session.scalars(page.order_by(Member.id).limit(limit)))
    if not member_ids:
        return []
    last: dict[uuid.UUID, datetime] = {
        member_id: at
        for member_id, at in session.execute(
            select(Event.member_id, func.max(Event.occurred_at))
            .where(Event.member_id.in_(member_ids), Event.type == "purchase")
            .group_by(Event.member_id)
        ).all()
        if member_id is not None
    }
    # Every journey's step-1 exposures of the page, filtered here: with the journey in the
    # WHERE clause SQLite may take the journey's index and read all of its exposures.
    reached: dict[uuid.UUID, datetime] = {}
    for member_id, journey_id, at in session.execute(
        select(JourneyExposure.member_id, JourneyExposure.journey_id, func.max(JourneyExposure.at))
        .where(JourneyExposure.member_id.in_(list(last)), JourneyExposure.step == 1)
        .group_by(JourneyExposure.member_id, JourneyExposure.journey_id)
    ).all():
        if journey_id == journey.id:
            reached[member_id] = at
    found = [
        Target(member_id, local_date(at, programme.timezone).isoformat())
        for member_id, at in sorted(last.items())
        if at <= now - inactive and (reached.get(member_id) is None or reached[member_id] < at)
    ]
    # The page's last member, reached or not: the walk goes on after them.
    if not found or found[-1].member_id != member_ids[-1]:
        found.append(Target(member_ids[-1], "", step=0))
    return found


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
        .join(Member, Member.id == step_one.c.member_id)
        .where(
            _OPEN,  # a member who closed the account since gets no second step
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


def _first_without_points(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """First purchases within ``FIRST_PURCHASE_WITHIN`` that earned no points, not
    reached yet. A purchase that earned points recorded a ``points.earned`` or
    ``points.pending`` row, and the reactor answered that row (or the row was history,
    marked dispatched, and must stay unanswered); one that earned nothing recorded no row
    for the reactor to see, so this is its only way. The filter on the stored answer is in
    SQL: the many purchases that earned points are never paged through."""
    reached = exists().where(
        JourneyExposure.journey_id == journey.id,
        JourneyExposure.member_id == Event.member_id,
        JourneyExposure.occasion == FIRST,
    )
    earned = func.coalesce(Event.result[("points", "earned")].as_integer(), 0)
    query = (
        first_purchases(programme.id, now)
        .where(earned == 0, ~reached)
        .order_by(Event.member_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Event.member_id > after)
    return [Target(member_id, FIRST) for member_id, _ in session.execute(query).all()]


def _end_of_day(day: date, tz: str) -> datetime:
    """The last instant of ``day`` in the zone ``tz`` (the "by" of a deadline)."""
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(tz))
    return (midnight - timedelta(microseconds=1)).astimezone(UTC)


def _tier_at_risk(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """Members whose qualified tier (above the base) is certain for at most
    ``days_before`` more days: the qualification ends within the window
    (``member_tiers.valid_until``), or the member is in the grace period and it ends
    within the window. The message says what ``GET /v1/members/{id}/tier`` says under
    ``keep`` (``tiers.maths.to_keep``): how much more, by when.

    The occasion is the last day the member holds the tier if nothing happens
    (``valid_until`` plus the grace days; in the grace period its end), which stays the
    same when the grace period starts: one message per risk period, however many days
    of the window the job runs. A member who keeps the tier has a later end, hence a new
    occasion next time. A running bought tier at least as high is no risk."""
    ladder = tiers.ladder(session, programme)
    held = [t.code for t in ladder.tiers if t.threshold > 0]
    if not held:
        return []
    today = local_date(now, programme.timezone)
    horizon = today + timedelta(days=int(journey.params.get("days_before", 30)))
    grace = programme.tier_grace_days
    # as tiers.status: the grace period's last day (grace_days 0: the day it started)
    to_grace_end = timedelta(days=max(grace - 1, 0))
    query = (
        select(
            MemberTier.member_id,
            MemberTier.qualified_tier,
            MemberTier.valid_until,
            MemberTier.grace_started_on,
            MemberTier.paid_tier,
            MemberTier.paid_until,
        )
        .join(Member, Member.id == MemberTier.member_id)
        .where(
            MemberTier.programme_id == programme.id,
            _OPEN,
            MemberTier.qualified_tier.in_(held),
            or_(
                and_(
                    MemberTier.grace_started_on.is_(None),
                    MemberTier.valid_until >= today,
                    MemberTier.valid_until <= horizon,
                ),
                and_(
                    MemberTier.grace_started_on >= today - to_grace_end,
                    MemberTier.grace_started_on <= horizon - to_grace_end,
                ),
            ),
        )
        .order_by(MemberTier.member_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(MemberTier.member_id > after)
    rows = session.execute(query).all()
    if not rows:
        return []
    metric, window = programme.tier_metric, programme.tier_window
    activity: dict[uuid.UUID, dict[date, maths.DayActivity]] = {r.member_id: {} for r in rows}
    for member_id, day, points, spend, purchases in session.execute(
        select(
            TierActivity.member_id,
            TierActivity.day,
            TierActivity.points,
            TierActivity.spend_minor,
            TierActivity.purchases,
        ).where(
            TierActivity.member_id.in_(list(activity)),
            TierActivity.day >= maths.load_from([today], window),
        )
    ):
        activity[member_id][day] = maths.DayActivity(points, spend, purchases)
    found: list[Target] = []
    for row in rows:
        tier = ladder.get(row.qualified_tier)
        paid = row.paid_tier if row.paid_until is not None and row.paid_until > now else None
        if tier is None or (paid is not None and ladder.rank(paid) >= tier.rank):
            continue
        if row.grace_started_on is not None:
            ends = grace_until = row.grace_started_on + to_grace_end
        else:
            assert row.valid_until is not None  # the query's first branch
            ends, grace_until = row.valid_until + timedelta(days=grace), None
        keep = maths.to_keep(
            tier, activity[row.member_id], metric, window, today, held_until=grace_until
        )
        if keep is None or keep.amount <= 0:
            continue  # kept after all (activity since the row was written)
        until = _end_of_day(keep.deadline or ends, programme.timezone)
        found.append(
            Target(
                row.member_id,
                ends.isoformat(),
                facts={"tier": tier.code, "missing": keep.amount, "until": until},
            )
        )
    if not found or found[-1].member_id != rows[-1].member_id:
        found.append(Target(rows[-1].member_id, "", step=0))
    return found


def _most_active(
    session: Session,
    journey: Journey,
    programme: Programme,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> list[Target]:
    """The top ``top_percent`` % of the programme's open members by engagement: their
    events of any type in the last 90 days, ties at the threshold included (members
    without an event are never among them). The occasion is the local month
    (``2026-12``), and the thanks go out on the first day of the month the job runs:
    reruns that day finish the walk, later days of the month add nobody (the top of the
    10th is not thanked a second time in a month, nor the top of every day)."""
    zone = ZoneInfo(programme.timezone)
    today = local_date(now, programme.timezone)
    month = f"{today.year:04d}-{today.month:02d}"
    day_start = datetime.combine(today, time(0), tzinfo=zone).astimezone(UTC)
    done_before = session.scalar(
        select(
            exists().where(
                JourneyExposure.journey_id == journey.id,
                JourneyExposure.occasion == month,
                JourneyExposure.at < day_start,
            )
        )
    )
    if done_before:
        return []
    members = session.scalar(select(func.count()).where(Member.programme_id == programme.id, _OPEN))
    percent = int(journey.params.get("top_percent", 5))
    share = (int(members or 0) * percent + 99) // 100  # rounded up: 5 % of 10 is 1
    if share <= 0:
        return []
    counts = (
        select(Event.member_id.label("member_id"), func.count().label("events"))
        .join(Member, Member.id == Event.member_id)
        .where(
            Event.programme_id == programme.id,
            Event.occurred_at > now - ENGAGEMENT,
            Event.occurred_at <= now,
            _OPEN,
        )
        .group_by(Event.member_id)
        .cte("engagement")
    )
    # the share-th highest count; fewer active members than the share: all of them
    threshold = (
        select(counts.c.events)
        .order_by(counts.c.events.desc())
        .offset(share - 1)
        .limit(1)
        .scalar_subquery()
    )
    reached = exists().where(
        JourneyExposure.journey_id == journey.id,
        JourneyExposure.member_id == counts.c.member_id,
        JourneyExposure.occasion == month,
    )
    query = (
        select(counts.c.member_id)
        .where(counts.c.events >= func.coalesce(threshold, literal(1)), ~reached)
        .order_by(counts.c.member_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(counts.c.member_id > after)
    return [Target(member_id, month) for member_id in session.scalars(query)]


DUE: dict[JourneyKind, tuple[Due, ...]] = {
    JourneyKind.first_purchase: (_first_without_points,),
    JourneyKind.birthday: (_birthdays,),
    JourneyKind.points_expiring: (_expiring,),
    JourneyKind.inactivity: (_inactive, _still_inactive),
    JourneyKind.tier_at_risk: (_tier_at_risk,),
    JourneyKind.thank_you: (_most_active,),
}
"""The journeys ``journeys.daily`` runs, every daily kind in one list (the benchmark
enables each). Welcome, tier upgrade and the first purchase react to the outbox
(``treu.journeys.reactor``); the first purchase is here too, for purchases that earned
nothing and so recorded no outbox row to react to."""


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
