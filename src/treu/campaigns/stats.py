"""A campaign's statistics: who was in it, what it gave, and what the treated members did
compared with the held-out ones.

Everything is read from what the rest of Treu records anyway: the exposures (the arms),
the ledger (the campaign rule's ``earn`` postings), the events (purchases and returns in
the window) and the redemptions. The queries start from the campaign's exposures and
reach the other tables through their member indexes, so their cost grows with the
campaign's members, not with the size of the ledger.

The events table is named here as a Core table of the four columns read (as migrations
name tables): the events package sits above this one (its campaigns reaction imports
it), so its model cannot be imported.

Messages are the deliveries made of the campaign's ``campaign.message`` outbox rows (an
offer's messages): the treated members' deliveries of that type (``deliveries`` has a
member index) whose outbox row's payload names the campaign as its ``source_id``. Only
the channels that reach members count (e-mail, inbox); a webhook subscriber's copy is
not a message sent. The same query runs on SQLite and PostgreSQL (``JSON_EXTRACT`` and
``->>``, as SQLAlchemy's JSON type writes them).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Integer, String, Uuid, and_, case, column, func, select, table
from sqlalchemy.orm import Session

from treu.campaigns.models import Arm, Campaign, CampaignExposure
from treu.campaigns.schemas import (
    ArmStats,
    BudgetStats,
    CampaignSpec,
    CampaignStats,
    MessageStats,
    OfferStats,
)
from treu.db.base import UTCDateTime
from treu.delivery.models import Delivery, DeliveryStatus
from treu.ledger.models import Posting, PostingKind
from treu.members.models import Member, MemberStatus
from treu.outbox.models import OutboxMessage
from treu.programmes.models import Programme
from treu.rewards.models import Redemption, RedemptionStatus
from treu.rules.models import Rule
from treu.segments.membership import members_of
from treu.tiers.models import MemberTier
from treu.tiers.service import tiers

_CHUNK = 1_000
MESSAGE_TYPE = "campaign.message"
MESSAGE_CHANNELS = ("email", "inbox")
"""The channels whose deliveries are messages to members (``treu.messaging``'s names)."""

_EVENTS = table(
    "events",
    column("programme_id", Uuid()),
    column("member_id", Uuid()),
    column("type", String()),
    column("occurred_at", UTCDateTime()),
    column("total_minor", Integer()),
)


def campaign_stats(session: Session, campaign: Campaign, *, now: datetime) -> CampaignStats:
    spec = CampaignSpec.model_validate(campaign.spec)
    programme = session.get_one(Programme, campaign.programme_id)
    rule = session.get_one(Rule, campaign.rule_id)
    start, end = spec.window.starts_at, spec.window.ends_at
    exposed = CampaignExposure
    mine = exposed.campaign_id == campaign.id

    members: dict[str, int] = defaultdict(int)
    for arm, count in session.execute(
        select(exposed.arm, func.count()).where(mine).group_by(exposed.arm)
    ):
        members[arm] = int(count)

    points: dict[str, int] = defaultdict(int)
    credited: dict[str, int] = defaultdict(int)
    for arm, total, count in session.execute(
        select(
            exposed.arm,
            func.coalesce(func.sum(Posting.points), 0),
            func.count(func.distinct(Posting.member_id)),
        )
        .join(Posting, Posting.member_id == exposed.member_id)
        .where(mine, Posting.rule_id == campaign.rule_id, Posting.kind == PostingKind.earn.value)
        .group_by(exposed.arm)
    ):
        points[arm], credited[arm] = int(total), int(count)

    events = _EVENTS.c
    purchases: dict[str, int] = defaultdict(int)
    revenue: dict[str, int] = defaultdict(int)
    for arm, bought, amount in session.execute(
        select(
            exposed.arm,
            func.coalesce(func.sum(case((events.type == "purchase", 1), else_=0)), 0),
            func.coalesce(func.sum(events.total_minor), 0),  # returns are negative
        )
        .join(
            _EVENTS,
            and_(events.member_id == exposed.member_id, events.programme_id == programme.id),
        )
        .where(
            mine,
            events.type.in_(("purchase", "return")),
            events.occurred_at >= start,
            events.occurred_at < end,
        )
        .group_by(exposed.arm)
    ):
        purchases[arm], revenue[arm] = int(bought), int(amount)

    redeemed: dict[str, int] = defaultdict(int)
    for arm, count in session.execute(
        select(exposed.arm, func.count(Redemption.id))
        .join(Redemption, Redemption.member_id == exposed.member_id)
        .where(
            mine,
            Redemption.programme_id == programme.id,
            Redemption.status != RedemptionStatus.cancelled.value,
            Redemption.created_at >= start,
            Redemption.created_at < end,
        )
        .group_by(exposed.arm)
    ):
        redeemed[arm] = int(count)

    budget = spec.budget_points
    issued = sum(points.values())
    used = rule.budget_used if budget is not None else issued  # counted only with a budget
    treated, held_out = members[Arm.treated.value], members[Arm.held_out.value]
    return CampaignStats(
        campaign_id=campaign.id,
        code=campaign.code,
        status=campaign.status,
        currency=programme.currency,
        window=spec.window,
        audience=audience_size(session, programme, spec, now=now),
        exposed=treated + held_out,
        treated=treated,
        held_out=held_out,
        messages=message_stats(session, campaign),
        points_issued=issued,
        budget=BudgetStats(
            points=budget, used=used, left=max(budget - used, 0) if budget is not None else None
        ),
        redemptions=sum(redeemed.values()),
        offer=_offer(session, campaign, points, credited) if spec.is_offer else None,
        arms={
            arm.value: _arm(
                members[arm.value],
                points[arm.value],
                purchases[arm.value],
                revenue[arm.value],
                redeemed[arm.value],
            )
            for arm in Arm
        },
    )


def message_stats(session: Session, campaign: Campaign) -> MessageStats:
    """Deliveries of the campaign's messages, per channel and state (module docstring)."""
    exposed = CampaignExposure
    rows = session.execute(
        select(Delivery.channel, Delivery.status, func.count())
        .select_from(exposed)
        .join(
            Delivery,
            and_(Delivery.member_id == exposed.member_id, Delivery.event_type == MESSAGE_TYPE),
        )
        .join(OutboxMessage, OutboxMessage.id == Delivery.outbox_id)
        .where(
            exposed.campaign_id == campaign.id,
            exposed.arm == Arm.treated.value,
            Delivery.channel.in_(MESSAGE_CHANNELS),
            OutboxMessage.payload["source_id"].as_string() == str(campaign.id),
        )
        .group_by(Delivery.channel, Delivery.status)
    ).all()
    by_channel: dict[str, dict[str, int]] = {}
    states: dict[str, int] = defaultdict(int)
    for channel, state, count in rows:
        by_channel.setdefault(str(channel), {s.value: 0 for s in DeliveryStatus})[state] = int(
            count
        )
        states[str(state)] += int(count)
    return MessageStats(
        tracked=True,
        sent=sum(states.values()),
        delivered=states[DeliveryStatus.delivered.value],
        failed=states[DeliveryStatus.failed.value] + states[DeliveryStatus.dead.value],
        pending=states[DeliveryStatus.pending.value],
        by_channel=by_channel,
    )


def _offer(
    session: Session, campaign: Campaign, points: dict[str, int], credited: dict[str, int]
) -> OfferStats:
    coupons = session.scalar(
        select(func.count()).where(
            CampaignExposure.campaign_id == campaign.id, CampaignExposure.coupon_id.is_not(None)
        )
    )
    return OfferStats(
        points=points[Arm.treated.value],
        members_with_points=credited[Arm.treated.value],
        coupons=int(coupons or 0),
        given_at=campaign.given_at,
    )


def _arm(members: int, points: int, purchases: int, revenue: int, redemptions: int) -> ArmStats:
    per_member = Decimal(purchases) / members if members else Decimal(0)
    revenue_each = Decimal(revenue) / members if members else Decimal(0)
    return ArmStats(
        members=members,
        points=points,
        purchases=purchases,
        revenue_minor=revenue,
        purchases_per_member=per_member.quantize(Decimal("0.01"), ROUND_HALF_UP),
        revenue_per_member_minor=int(revenue_each.quantize(Decimal(1), ROUND_HALF_UP)),
        redemptions=redemptions,
    )


def audience_size(
    session: Session, programme: Programme, spec: CampaignSpec, *, now: datetime
) -> int:
    """Active members the audience holds now. With tiers, members are counted per
    (qualified tier, bought tier still running) in SQL and the tier they hold worked out
    per group, as ``tiers.current`` does for one member."""
    audience = spec.audience
    chunks: list[list[object] | None] = (
        [list(audience.members[i : i + _CHUNK]) for i in range(0, len(audience.members), _CHUNK)]
        if audience.members
        else [None]
    )
    active = and_(Member.programme_id == programme.id, Member.status == MemberStatus.active.value)
    if audience.segments:
        active = and_(
            active,
            Member.id.in_(members_of(programme_id=programme.id, slugs=audience.segments)),
        )
    if not audience.tiers:
        total = 0
        for chunk in chunks:
            query = select(func.count()).select_from(Member).where(active)
            if chunk is not None:
                query = query.where(Member.id.in_(chunk))
            total += int(session.scalar(query) or 0)
        return total
    ladder = tiers.ladder(session, programme)
    wanted = set(audience.tiers)
    paid = case((MemberTier.paid_until > now, MemberTier.paid_tier), else_=None)
    total = 0
    for chunk in chunks:
        query = (
            select(MemberTier.member_id.is_(None), MemberTier.qualified_tier, paid, func.count())
            .select_from(Member)
            .outerjoin(MemberTier, MemberTier.member_id == Member.id)
            .where(active)
            .group_by(MemberTier.member_id.is_(None), MemberTier.qualified_tier, paid)
        )
        if chunk is not None:
            query = query.where(Member.id.in_(chunk))
        groups: list[Any] = list(session.execute(query))
        for no_row, qualified, bought, count in groups:
            if no_row:
                base = ladder.base
                code = base.code if base is not None else None
            else:
                code = ladder.higher(qualified, bought)
            if code in wanted:
                total += int(count)
    return total
