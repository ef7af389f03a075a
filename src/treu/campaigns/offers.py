"""Targeted offers: points, a reward's coupon or both, given once to each member of an
audience, with a message (see docs/campaigns.md, "Targeted offers").

An offer is given when it is activated inside its window, or by the worker's
``campaigns.offers`` job once its window starts. ``give`` walks the audience a page
(``PAGE`` members, in member id order) at a time, each page its own unit of work, so a
100,000-member audience never holds one long transaction and a crash loses at most the
page in flight, which the next run gives again. Per page, set-based:

1. the page's members (active, in the programme, held by the audience now);
2. one exposure row each, treated or held out by the campaign's sticky ``arm_of``,
   written ``INSERT … ON CONFLICT DO NOTHING RETURNING``: only the rows this unit of
   work wrote go on. The exposure's primary key (campaign, member) is therefore the
   idempotency key of the gift: a rerun, or a second worker on the same offer, gives
   nobody anything twice (on PostgreSQL the second writer waits on the key until the
   first commits, then writes nothing);
3. for the treated rows written: the points (one ``earn`` posting each, available at
   once, naming the campaign's rule and the campaign: "Herbst-Geschenk: +200"), the
   coupons (one bulk insert, as journeys issue theirs) and one ``campaign.message``
   outbox event each (marketing, keyed ``campaign:<campaign>:offer:<member>``, delayed
   past the programme's quiet hours). Held-out members get their exposure row only.

**Budget.** With ``budget_points`` the campaign's rule row is locked for the page (only
offers lock it: the rule is never published, so no purchase does) and the page gives at
most what is left, in member id order: the member who reaches the budget gets the rest,
and the offer stops there — the members after them, held out or treated, are not
recorded, so the two arms stay comparable. Points given count in the rule's
``budget_used`` (with or without a budget), as a bonus campaign's do.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, Uuid, column, select, table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.campaigns.models import Arm, Campaign, CampaignExposure, CampaignStatus
from treu.campaigns.schemas import CampaignSpec, Offer
from treu.campaigns.service import arm_of
from treu.db.base import WriteBatch, table_of
from treu.db.session import Database
from treu.kit.ids import new_id
from treu.kit.time import QUIET_END, QUIET_START, quiet_until, utc_now
from treu.ledger.service import ledger
from treu.members.models import Member, MemberStatus
from treu.outbox.events import CampaignMessage
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.rewards.catalogue import VIEW_COLUMNS, RewardView
from treu.rewards.coupons import gift_coupons
from treu.rewards.models import Reward
from treu.rules import budgets
from treu.segments.membership import members_of
from treu.tiers.models import MemberTier
from treu.tiers.service import tiers

PAGE = 1_000
MAX_PAGES = 100_000
"""A guard against a loop that keeps finding work it cannot finish."""
OCCASION = "offer"

_EXPOSURES = table_of(CampaignExposure)
_QUIET = table(
    "journey_programmes",
    column("programme_id", Uuid()),
    column("quiet_start", String()),
    column("quiet_end", String()),
)
"""A programme's quiet hours (``treu.journeys.models.JourneyProgramme``, named here as a
Core table of the columns read: the journeys package sits above this one)."""


def message_key(campaign_id: uuid.UUID, member_id: uuid.UUID) -> str:
    """The outbox key of an offer's message to a member: one, ever."""
    return f"campaign:{campaign_id}:{OCCASION}:{member_id}"


def correlation(campaign_id: uuid.UUID, member_id: uuid.UUID) -> uuid.UUID:
    """The correlation id of an offer's posting: the same for a campaign and member
    every time, so the ledger itself shows the one gift per member."""
    return uuid.uuid5(campaign_id, str(member_id))


@dataclass(frozen=True, slots=True)
class Page:
    treated: int = 0
    held_out: int = 0
    points: int = 0
    coupons: int = 0
    after: uuid.UUID | None = None
    """The last member id looked at; the next page starts behind it."""
    done: bool = False
    """The audience is exhausted, or the budget."""


@dataclass(slots=True)
class Given:
    """What ``give`` did (this run; earlier runs' members are not counted again)."""

    treated: int = 0
    held_out: int = 0
    points: int = 0
    coupons: int = 0
    finished: bool = False
    """The offer has reached its whole audience (or its budget)."""

    def add(self, page: Page) -> None:
        self.treated += page.treated
        self.held_out += page.held_out
        self.points += page.points
        self.coupons += page.coupons


def _insert(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert


class OfferService:
    # --- which offers, which members -----------------------------------------------------

    def due(self, session: Session, *, now: datetime) -> list[uuid.UUID]:
        """Active offers inside their window that have not reached their audience yet."""
        rows = session.scalars(
            select(Campaign)
            .where(Campaign.status == CampaignStatus.active.value, Campaign.given_at.is_(None))
            .order_by(Campaign.id)
        ).all()
        out = []
        for campaign in rows:
            spec = CampaignSpec.model_validate(campaign.spec)
            if spec.is_offer and spec.window.contains(now):
                out.append(campaign.id)
        return out

    def audience_page(
        self,
        session: Session,
        programme: Programme,
        spec: CampaignSpec,
        *,
        after: uuid.UUID | None,
        limit: int,
        now: datetime,
    ) -> tuple[list[uuid.UUID], uuid.UUID | None]:
        """The audience's next members in id order (active members of the programme;
        with tiers, those holding one now, worked out as ``tiers.current`` does), and the
        last id looked at (None: nothing was left to look at)."""
        audience = spec.audience
        query = (
            select(Member.id)
            .where(
                Member.programme_id == programme.id,
                Member.status == MemberStatus.active.value,
            )
            .order_by(Member.id)
        )
        if audience.segments:
            query = query.where(
                Member.id.in_(members_of(programme_id=programme.id, slugs=audience.segments))
            )
        last: uuid.UUID | None
        if audience.members:
            # the list is sorted by the UUID's value, as the database orders the ids
            listed = [m for m in audience.members if after is None or m.int > after.int]
            chunk = listed[:limit]
            if not chunk:
                return [], None
            query = query.where(Member.id.in_(chunk))
            last = chunk[-1]
        else:
            if after is not None:
                query = query.where(Member.id > after)
            query = query.limit(limit)
            last = None
        if not audience.tiers:
            found = list(session.scalars(query))
            return found, (last if audience.members else (found[-1] if found else None))
        ladder = tiers.ladder(session, programme)
        wanted = set(audience.tiers)
        base = ladder.base.code if ladder.base is not None else None
        paid = MemberTier.paid_tier
        rows = session.execute(
            query.outerjoin(MemberTier, MemberTier.member_id == Member.id).add_columns(
                MemberTier.member_id.is_(None),
                MemberTier.qualified_tier,
                paid,
                MemberTier.paid_until,
            )
        ).all()
        out = []
        for member_id, no_row, qualified, bought, paid_until in rows:
            if no_row:
                code = base
            else:
                running = bought if paid_until is not None and paid_until > now else None
                code = ladder.higher(qualified, running)
            if code in wanted:
                out.append(member_id)
        if not audience.members:
            last = rows[-1][0] if rows else None
        return out, last

    # --- giving ---------------------------------------------------------------------------

    def give_page(
        self,
        session: Session,
        campaign: Campaign,
        *,
        after: uuid.UUID | None,
        now: datetime,
        limit: int = PAGE,
    ) -> Page:
        """Give the offer to the next page of its audience (see the module docstring)."""
        spec = CampaignSpec.model_validate(campaign.spec)
        offer = spec.offer
        if offer is None:
            raise ValueError(f"campaign {campaign.id} is not an offer")
        programme = session.get_one(Programme, campaign.programme_id)
        left: int | None = None
        slots: list[budgets.Slot] | None = None
        if spec.budget_points is not None and offer.points:
            rule = str(campaign.rule_id)
            slots = budgets.lock(session.connection(), [rule])[rule]
            left = max(spec.budget_points - budgets.used_of(slots), 0)
            if left == 0:
                return Page(done=True)
        members, last = self.audience_page(
            session, programme, spec, after=after, limit=limit, now=now
        )
        if last is None:
            return Page(done=True)
        seen = (
            set(
                session.scalars(
                    select(CampaignExposure.member_id).where(
                        CampaignExposure.campaign_id == campaign.id,
                        CampaignExposure.member_id.in_(members),
                    )
                )
            )
            if members
            else set()
        )
        reward = self._reward(session, offer)
        rows: list[dict[str, Any]] = []
        gifts: dict[uuid.UUID, int] = {}
        spent = False
        for member_id in members:
            if member_id in seen:
                continue
            arm = arm_of(campaign.id, member_id, spec.holdout_percent)
            if arm is Arm.treated and offer.points:
                points = offer.points if left is None else min(offer.points, left)
                gifts[member_id] = points
                if left is not None:
                    left -= points
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "member_id": member_id,
                    "programme_id": campaign.programme_id,
                    "arm": arm.value,
                    "first_seen_at": now,
                    "event_id": None,
                    "coupon_id": new_id() if reward and arm is Arm.treated else None,
                    "recorded_at": now,
                }
            )
            last = member_id
            if left == 0:
                spent = True
                break
        written = (
            session.connection()
            .execute(
                _insert(session)(_EXPOSURES)
                .on_conflict_do_nothing()
                .returning(_EXPOSURES.c.member_id, _EXPOSURES.c.arm, _EXPOSURES.c.coupon_id),
                rows,
            )
            .all()
            if rows
            else []
        )
        treated = [w for w in written if w.arm == Arm.treated.value]
        given = self._points(
            session,
            campaign,
            programme,
            treated,
            gifts,
            now=now,
            cap=spec.budget_points,
            slots=slots,
        )
        coupons = self._coupons(session, programme, reward, treated, now=now)
        self._messages(session, campaign, programme, offer, treated, gifts, now=now)
        return Page(
            treated=len(treated),
            held_out=len(written) - len(treated),
            points=given,
            coupons=coupons,
            after=last,
            # Spent unless a row planned here was written by another run meanwhile
            # (then its points were not given here, and the next page goes on).
            done=spent and given == sum(gifts.values()),
        )

    def give(
        self,
        db: Database,
        campaign_id: uuid.UUID,
        *,
        now: datetime | None = None,
        page: int = PAGE,
    ) -> Given:
        """Give an active offer inside its window to the members of its audience not
        given it yet, a page per unit of work; the offer is marked given when its
        audience (or its budget) is exhausted. Does nothing for a campaign that is not
        such an offer (paused, ended, a bonus, not in its window, given already)."""
        now = now or utc_now()
        total = Given()
        after: uuid.UUID | None = None
        for _ in range(MAX_PAGES):
            with db.unit_of_work() as session:
                campaign = session.get(Campaign, campaign_id)
                if campaign is None or not self._giving(campaign, now):
                    return total
                step = self.give_page(session, campaign, after=after, now=now, limit=page)
                total.add(step)
                if step.done:
                    self._finish(session, campaign, total, now=now)
                    total.finished = True
                    return total
            after = step.after
        return total

    def give_due(self, db: Database, *, now: datetime | None = None) -> int:
        """Every due offer (the worker's ``campaigns.offers`` job); members reached."""
        now = now or utc_now()
        with db.unit_of_work(write=False) as session:
            due = self.due(session, now=now)
        total = 0
        for campaign_id in due:
            given = self.give(db, campaign_id, now=now)
            total += given.treated + given.held_out
        return total

    # --- helpers --------------------------------------------------------------------------

    def _giving(self, campaign: Campaign, now: datetime) -> bool:
        if campaign.status != CampaignStatus.active.value or campaign.given_at is not None:
            return False
        spec = CampaignSpec.model_validate(campaign.spec)
        return spec.is_offer and spec.window.contains(now)

    def _finish(self, session: Session, campaign: Campaign, total: Given, *, now: datetime) -> None:
        campaign.given_at = now
        session.flush()
        audit.record(
            session,
            actor="worker",
            action="campaign.given",
            subject_type="campaign",
            subject_id=str(campaign.id),
            programme_id=campaign.programme_id,
            data={
                "treated": total.treated,
                "held_out": total.held_out,
                "points": total.points,
                "coupons": total.coupons,
            },
        )

    def _reward(self, session: Session, offer: Offer) -> RewardView | None:
        if offer.reward_id is None:
            return None
        row = session.execute(select(*VIEW_COLUMNS).where(Reward.id == offer.reward_id)).first()
        return RewardView(*row) if row is not None else None

    def _points(
        self,
        session: Session,
        campaign: Campaign,
        programme: Programme,
        treated: Sequence[Any],
        gifts: dict[uuid.UUID, int],
        *,
        now: datetime,
        cap: int | None,
        slots: list[budgets.Slot] | None,
    ) -> int:
        """``slots``: the budget's slots as ``give_page`` locked them (None: no budget)."""
        ids = [w.member_id for w in treated if w.member_id in gifts]
        if not ids:
            return 0
        writer = ledger.writer(session, now=now)
        accounts = writer.lock(ids)
        reason = f"Offer {campaign.code}: {campaign.name}"
        for member_id in ids:
            points = gifts[member_id]
            writer.earn(
                accounts[member_id],
                programme=programme,
                points=points,
                earned_at=now,
                details={
                    "template": "rules.fixed",
                    "params": {"name": campaign.name, "points": points},
                    "rule_id": str(campaign.rule_id),
                    "rule_version": None,
                },
                correlation_id=correlation(campaign.id, member_id),
                actor=f"campaign:{campaign.code}",
                reason=reason,
                pending=False,
                rule_id=campaign.rule_id,
            )
        writer.flush()
        given = sum(gifts[m] for m in ids)
        # Counted with or without a budget (statistics read it); an offer without one
        # locks its slots only now.
        rule = str(campaign.rule_id)
        connection = session.connection()
        if slots is None:
            slots = budgets.lock(connection, [rule])[rule]
        batch = WriteBatch()
        budgets.write(batch, budgets.rebalanced(rule, slots, given=given, cap=cap))
        batch.flush(connection)
        return given

    def _coupons(
        self,
        session: Session,
        programme: Programme,
        reward: RewardView | None,
        treated: Sequence[Any],
        *,
        now: datetime,
    ) -> int:
        if reward is None:
            return 0
        return gift_coupons(
            session,
            programme=programme,
            reward=reward,
            gifts=[(w.coupon_id, w.member_id) for w in treated],
            now=now,
        )

    def _messages(
        self,
        session: Session,
        campaign: Campaign,
        programme: Programme,
        offer: Offer,
        treated: Sequence[Any],
        gifts: dict[uuid.UUID, int],
        *,
        now: datetime,
    ) -> None:
        if not treated:
            return
        quiet = session.execute(
            select(_QUIET.c.quiet_start, _QUIET.c.quiet_end).where(
                _QUIET.c.programme_id == programme.id
            )
        ).first()
        start, end = (quiet[0], quiet[1]) if quiet is not None else (QUIET_START, QUIET_END)
        not_before = quiet_until(now, programme.timezone, start, end)
        outbox.record(
            session,
            *(
                CampaignMessage(
                    programme_id=programme.id,
                    member_id=w.member_id,
                    occurred_at=now,
                    source="campaign",
                    source_id=campaign.id,
                    kind=campaign.code,
                    step=1,
                    occasion=OCCASION,
                    template=offer.template,
                    message_kind="marketing",
                    dedupe_key=message_key(campaign.id, w.member_id),
                    not_before=not_before,
                    reward_id=offer.reward_id,
                    coupon_id=w.coupon_id,
                    points=gifts.get(w.member_id),
                )
                for w in treated
            ),
        )


offers = OfferService()
