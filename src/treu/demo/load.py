"""Loading the demo through the services, and the summary ``treu demo`` prints."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from treu.db.session import Database
from treu.delivery.service import deliveries
from treu.demo.campaigns import demo_campaigns
from treu.demo.generate import SHOWCASE, generate
from treu.demo.programme import (
    DEMO_SLUG,
    demo_challenges,
    demo_programme,
    demo_rules,
    demo_tiers,
)
from treu.demo.rewards import demo_payments, demo_rewards
from treu.demo.segments import demo_segments
from treu.events.schemas import event_adapter
from treu.events.service import ingest_with_retry
from treu.imports import EVENT_TABLES, MEMBER_TABLES
from treu.journeys.models import JourneyKind
from treu.journeys.service import journeys
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.members.schemas import MemberCreate
from treu.members.service import members as member_service
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rules.service import rules
from treu.rules.spec import RuleSpec
from treu.worker.jobs import activate_pending, expire_points, warn_expiring

BATCH_SIZE = 1000

Progress = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)`` with stage ``members``, ``events`` or ``ledger``."""

# --- loading ------------------------------------------------------------------------------


@dataclass
class DemoSummary:
    programme: str
    members: int = 0
    purchases: int = 0
    returns: int = 0
    engagement: int = 0
    rules: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(event id, reason) of events the service refused (a bug in the generator)."""
    points_earned: int = 0
    points_reversed: int = 0
    activated: int = 0
    expired: int = 0
    tiers: list[tuple[str, int]] = field(default_factory=list)
    """(tier name, members in it), lowest tier first."""
    rewards: int = 0
    """In the catalogue (not archived)."""
    redemptions: int = 0
    coupons_used: int = 0
    points_donated: int = 0
    challenges_active: int = 0
    challenge_completions: int = 0
    showcase: int = 0
    """Members who join as the demo ends, so that their messages are delivered."""
    campaigns_active: int = 0
    campaign_members: int = 0
    """Members recorded in a campaign (treated or held out)."""
    seconds: float = 0.0


def demo_exists(db: Database, slug: str = DEMO_SLUG) -> bool:
    with db.unit_of_work(write=False) as session:
        return bool(programmes.get_many_by_slug(session, {slug}))


def sample_member(db: Database, slug: str = DEMO_SLUG) -> tuple[str, str] | None:
    """(e-mail, card number) of the demo member with the most available points, to try
    the API with; None when no member has an e-mail address."""
    from sqlalchemy import select

    from treu.ledger.models import Account
    from treu.members.models import Member

    with db.unit_of_work(write=False) as session:
        found = programmes.get_many_by_slug(session, {slug})
        if slug not in found:
            return None
        row = session.execute(
            select(Member.email, Member.card_number)
            .join(Account, Account.member_id == Member.id)
            .where(Member.programme_id == found[slug].id, Member.email.is_not(None))
            .order_by(Account.available.desc(), Member.card_number)
            .limit(1)
        ).first()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def load_demo(
    db: Database,
    *,
    members: int = 1000,
    purchases: int = 20_000,
    seed: int | None = None,
    now: datetime | None = None,
    slug: str = DEMO_SLUG,
    on_progress: Progress | None = None,
) -> DemoSummary:
    """Create the demo programme and load generated members and events.

    Raises ``ProgrammeExists`` when the programme is there already (nothing is written).
    Members are enrolled together with the programme in one unit of work, so a failure
    there leaves no half-made demo; events then go in batches of 1,000, each its own unit
    of work. Finally pending points whose window has passed are activated and overdue
    points expired, so balances are current."""
    started = time.perf_counter()
    now = now or utc_now()
    report = on_progress or (lambda stage, done, total: None)
    data = generate(members=members, purchases=purchases, seed=seed, now=now, slug=slug)
    summary = DemoSummary(programme=slug)

    report("members", 0, len(data.members))
    with db.unit_of_work() as session:
        programme: Programme = programmes.create(session, data=demo_programme(slug))
        for spec in demo_rules():
            rule = rules.create(
                session, programme=programme, spec=RuleSpec.model_validate(spec), actor="demo"
            )
            rules.publish(session, rule, actor="demo", now=now)
            summary.rules += 1
        demo_tiers(session, programme, now=now)
        demo_challenges(session, programme, now=now)
        demo_campaigns(session, programme, now=now)
        demo_segments(session, programme)
        writer = ledger.writer(session, now=now)
        for number, person in enumerate(data.members, start=1):
            member_service.enrol(
                session,
                programme=programme,
                data=MemberCreate.model_validate(person.data),
                writer=writer,
            )
            if number % 50 == 0 or number == len(data.members):
                report("members", number, len(data.members))
    summary.members = len(data.members)
    db.analyze(MEMBER_TABLES)  # the events' member look-ups need the new statistics

    total = len(data.events)
    report("events", 0, total)
    for offset in range(0, total, BATCH_SIZE):
        chunk = data.events[offset : offset + BATCH_SIZE]
        parsed = [event_adapter.validate_python(e) for e in chunk]
        for outcome in ingest_with_retry(db, parsed, now=now):
            event = chunk[outcome.index]
            if outcome.error is not None:
                summary.rejected.append((event["id"], outcome.error.detail))
                continue
            assert outcome.body is not None
            points = outcome.body.points
            if event["type"] == "return":
                summary.returns += 1
                summary.points_reversed += points.reversed
            else:
                if event["type"] == "purchase":
                    summary.purchases += 1
                else:
                    summary.engagement += 1
                summary.points_earned += points.earned
        report("events", min(offset + BATCH_SIZE, total), total)

    db.analyze(EVENT_TABLES)
    report("ledger", 0, 1)
    summary.activated = activate_pending(db, now=now)
    summary.expired = expire_points(db, now=now)
    demo_rewards(db, programme.id, now=now, seed=seed)
    demo_payments(db, programme.id, now=now, seed=seed)
    warn_expiring(db, now=now)
    with db.unit_of_work() as session:
        # A year of history is not news: nothing of it is e-mailed or sent to webhooks.
        later = max(now, utc_now()) + timedelta(seconds=1)
        deliveries.skip_history(session, before=later, now=now)
    report("ledger", 1, 1)
    count_features(db, programme.id, summary)
    # Two members who join now (after the counts above, which are the history's) are
    # news: their welcome e-mails, in German and in English, are what the development
    # mailbox shows right after `make run`.
    with db.unit_of_work() as session:
        # Journeys run from now on (the history above fired none): the welcome, birthday
        # greetings and warnings of points about to expire (docs/journeys.md).
        for kind in (JourneyKind.welcome, JourneyKind.birthday, JourneyKind.points_expiring):
            journeys.put(session, programme, kind, enabled=True)
        writer = ledger.writer(session, now=now)
        for joining in SHOWCASE:
            member_service.enrol(
                session,
                programme=programme,
                data=MemberCreate.model_validate({"programme": slug, **joining}),
                writer=writer,
            )
            summary.showcase += 1
    summary.seconds = time.perf_counter() - started
    return summary


def count_features(db: Database, programme_id: Any, summary: DemoSummary) -> None:
    """Tiers, rewards, donations and challenges as the database holds them after the
    load (counted, not tallied while loading: the jobs and the reward and payment steps
    change them, and the summary should show what a user then finds)."""
    from sqlalchemy import func, select

    from treu.campaigns.models import Campaign, CampaignExposure, CampaignStatus
    from treu.challenges.models import Challenge, ChallengeCompletion, ChallengeStatus
    from treu.members.models import Member
    from treu.rewards.donations import Donation
    from treu.rewards.models import Coupon, CouponStatus, Redemption, Reward, RewardStatus
    from treu.tiers.models import MemberTier, Tier

    def count(model: Any, *where: Any) -> int:
        query = select(func.count()).select_from(model)
        return int(session.scalar(query.where(model.programme_id == programme_id, *where)) or 0)

    with db.unit_of_work(write=False) as session:
        in_tier = dict(
            session.execute(
                select(MemberTier.tier, func.count())
                .where(MemberTier.programme_id == programme_id)
                .group_by(MemberTier.tier)
            ).all()
        )
        ladder = session.scalars(
            select(Tier).where(Tier.programme_id == programme_id).order_by(Tier.rank)
        ).all()
        if ladder and ladder[0].threshold == 0:
            # The base tier is everybody's (treu.tiers ``current``), also of members
            # whose tier state was never written because nothing they did counted.
            placed = sum(n for code, n in in_tier.items() if code is not None)
            in_tier[ladder[0].code] = count(Member) - placed + in_tier.get(ladder[0].code, 0)
        summary.tiers = [(str(t.name.get("en", t.code)), in_tier.get(t.code, 0)) for t in ladder]
        summary.rewards = count(Reward, Reward.status != RewardStatus.archived.value)
        summary.redemptions = count(Redemption)
        summary.coupons_used = count(Coupon, Coupon.status == CouponStatus.used.value)
        summary.points_donated = int(
            session.scalar(
                select(func.coalesce(func.sum(Donation.points), 0)).where(
                    Donation.programme_id == programme_id
                )
            )
            or 0
        )
        summary.challenges_active = count(
            Challenge, Challenge.status == ChallengeStatus.active.value
        )
        summary.challenge_completions = count(ChallengeCompletion)
        summary.campaigns_active = count(Campaign, Campaign.status == CampaignStatus.active.value)
        summary.campaign_members = count(CampaignExposure)
