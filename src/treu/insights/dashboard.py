"""The dashboard's figures for a programme and a date range: tiles (members, active
members, points issued, redeemed and expired, points outstanding and what they are worth)
and weekly series for the charts, plus the most redeemed rewards.

Weeks are ISO weeks (Monday to Sunday) of the UTC date; the range is whole days,
``start`` to ``end`` inclusive. Points come from the ledger's postings (``earn`` issued,
``redeem`` minus ``refund`` redeemed, ``expire`` expired), so the figures add up with
``GET /v1/members/{id}/ledger``. One query per figure and one per week for active
members (distinct members cannot be added up across days)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from treu.campaigns.models import Arm, Campaign, CampaignStatus
from treu.campaigns.schemas import CampaignSpec, CampaignStats
from treu.campaigns.stats import campaign_stats
from treu.events.models import Event
from treu.kit.money import liability_minor
from treu.ledger.models import Account, Posting, PostingKind
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rewards.models import Redemption, RedemptionStatus

MAX_DAYS = 400
TOP_REWARDS = 5
MAX_CAMPAIGNS = 12
"""Campaign results on the dashboard: the latest this many overlapping the range."""


@dataclass(frozen=True, slots=True)
class Week:
    start: date
    """The Monday."""
    enrolled: int = 0
    active: int = 0
    issued: int = 0
    redeemed: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True)
class TopReward:
    name: str
    redemptions: int
    points: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    programme: str
    currency: str
    start: date
    end: date
    members: int
    """Members now (not closed)."""
    enrolled: int
    active: int
    """Members with at least one event in the range."""
    issued: int
    redeemed: int
    expired: int
    outstanding: int
    """Available and pending points now."""
    liability_minor: int
    """What the outstanding points are worth at the programme's point value."""
    weeks: list[Week] = field(default_factory=list)
    top_rewards: list[TopReward] = field(default_factory=list)


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _instant(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def dashboard(session: Session, programme: Programme, *, start: date, end: date) -> Dashboard:
    if end < start:
        start, end = end, start
    start = max(start, end - timedelta(days=MAX_DAYS))
    since, until = _instant(start), _instant(end + timedelta(days=1))
    pid = programme.id

    weeks: dict[date, dict[str, int]] = {}
    day = monday(start)
    while day <= end:
        weeks[day] = defaultdict(int)
        day += timedelta(days=7)

    posted = session.execute(
        select(Posting.kind, func.date(Posting.created_at), func.sum(Posting.points))
        .where(
            Posting.programme_id == pid,
            Posting.created_at >= since,
            Posting.created_at < until,
            Posting.kind.in_(
                [PostingKind.earn, PostingKind.redeem, PostingKind.refund, PostingKind.expire]
            ),
        )
        .group_by(Posting.kind, func.date(Posting.created_at))
    ).all()
    for kind, on, points in posted:
        week = weeks[monday(_as_date(on))]
        if kind == PostingKind.earn:
            week["issued"] += int(points)
        elif kind in (PostingKind.redeem, PostingKind.refund):
            week["redeemed"] -= int(points)  # redeem postings are negative, refunds positive
        else:
            week["expired"] -= int(points)

    for on, count in session.execute(
        select(func.date(Member.enrolled_at), func.count())
        .where(Member.programme_id == pid, Member.enrolled_at >= since, Member.enrolled_at < until)
        .group_by(func.date(Member.enrolled_at))
    ).all():
        weeks[monday(_as_date(on))]["enrolled"] += int(count)

    for week_start, week in weeks.items():
        week["active"] = _active(session, pid, max(_instant(week_start), since),
                                 min(_instant(week_start + timedelta(days=7)), until))  # fmt: skip
    active = _active(session, pid, since, until)
    members = session.scalar(
        select(func.count()).where(Member.programme_id == pid, Member.status != "closed")
    )
    outstanding = session.scalar(
        select(func.coalesce(func.sum(Account.available + Account.pending), 0)).where(
            Account.programme_id == pid
        )
    )
    top = session.execute(
        select(
            Redemption.reward_id,
            func.max(Redemption.reward["name"].as_string()),
            func.count(),
            func.sum(Redemption.points),
        )
        .where(
            Redemption.programme_id == pid,
            Redemption.created_at >= since,
            Redemption.created_at < until,
            Redemption.status != RedemptionStatus.cancelled.value,
        )
        .group_by(Redemption.reward_id)
        .order_by(func.count().desc(), Redemption.reward_id)
        .limit(TOP_REWARDS)
    ).all()
    series = [Week(start=d, **w) for d, w in sorted(weeks.items())]
    return Dashboard(
        programme=programme.slug,
        currency=programme.currency,
        start=start,
        end=end,
        members=int(members or 0),
        enrolled=sum(w.enrolled for w in series),
        active=active,
        issued=sum(w.issued for w in series),
        redeemed=sum(w.redeemed for w in series),
        expired=sum(w.expired for w in series),
        outstanding=int(outstanding or 0),
        liability_minor=liability_minor(int(outstanding or 0), programme.point_value_minor),
        weeks=series,
        top_rewards=[
            TopReward(_name(name), int(count), int(points or 0)) for _, name, count, points in top
        ],
    )


def _active(session: Session, programme_id: uuid.UUID, since: datetime, until: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(Event.member_id))).where(
                Event.programme_id == programme_id,
                Event.occurred_at >= since,
                Event.occurred_at < until,
                Event.member_id.is_not(None),
            )
        )
        or 0
    )


def _as_date(value: object) -> date:
    """``date(…)`` answers a date on PostgreSQL and its text on SQLite."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _name(value: object) -> str:
    """A reward snapshot's name: a JSON text of the names per language, or a name."""
    text = str(value or "")
    if text.startswith("{"):
        names = json.loads(text)
        return str(names.get("de") or names.get("en") or next(iter(names.values()), ""))
    return text


# --- campaign results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Uplift:
    """What the treated arm did beyond the control group, per member over the window.

    ``purchases`` and ``revenue_minor`` are differences (treated minus held out) of the
    per-member figures; ``revenue_percent`` is the treated revenue per member relative to
    the control group's, in per cent (``None`` without a control group or control
    revenue: there is nothing to compare with). Whether a difference is more than chance
    is the experiments work's to say."""

    purchases: Decimal | None
    revenue_minor: int | None
    revenue_percent: Decimal | None


def uplift(stats: CampaignStats) -> Uplift:
    treated = stats.arms[Arm.treated.value]
    control = stats.arms[Arm.held_out.value]
    if not treated.members or not control.members:
        return Uplift(None, None, None)
    percent = None
    if control.revenue_per_member_minor > 0:
        percent = (
            Decimal(treated.revenue_per_member_minor - control.revenue_per_member_minor)
            * 100
            / control.revenue_per_member_minor
        ).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return Uplift(
        purchases=treated.purchases_per_member - control.purchases_per_member,
        revenue_minor=treated.revenue_per_member_minor - control.revenue_per_member_minor,
        revenue_percent=percent,
    )


@dataclass(frozen=True, slots=True)
class CampaignResult:
    id: uuid.UUID
    code: str
    name: str
    kind: str
    status: str
    treated: int
    held_out: int
    points: int
    delivered: int
    revenue_treated_minor: int
    """Revenue per member of each arm over the window."""
    revenue_control_minor: int
    uplift: Uplift


def campaign_results(
    session: Session, programme: Programme, *, start: date, end: date, now: datetime
) -> list[CampaignResult]:
    """The campaigns (not drafts) whose window overlaps ``start``..``end`` (whole UTC
    days), latest window first, at most ``MAX_CAMPAIGNS``, with their statistics."""
    if end < start:
        start, end = end, start
    since, until = _instant(start), _instant(end + timedelta(days=1))
    found = []
    for campaign in session.scalars(
        select(Campaign).where(
            Campaign.programme_id == programme.id,
            Campaign.status != CampaignStatus.draft.value,
        )
    ):
        window = CampaignSpec.model_validate(campaign.spec).window
        if window.starts_at < until and window.ends_at > since:
            found.append((window.starts_at, campaign))
    found.sort(key=lambda pair: (pair[0], pair[1].id), reverse=True)
    results = []
    for _, campaign in found[:MAX_CAMPAIGNS]:
        stats = campaign_stats(session, campaign, now=now)
        results.append(
            CampaignResult(
                id=campaign.id,
                code=campaign.code,
                name=campaign.name,
                kind=str(campaign.spec.get("kind", "bonus")),
                status=campaign.status,
                treated=stats.treated,
                held_out=stats.held_out,
                points=stats.points_issued,
                delivered=stats.messages.delivered,
                revenue_treated_minor=stats.arms[Arm.treated.value].revenue_per_member_minor,
                revenue_control_minor=stats.arms[Arm.held_out.value].revenue_per_member_minor,
                uplift=uplift(stats),
            )
        )
    return results
