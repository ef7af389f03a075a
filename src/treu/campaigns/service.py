"""Campaigns: editing and status, the earning rule each one manages, and the running
campaigns the ingest's reaction reads.

Life of a campaign: ``create`` stores a draft together with a draft earning rule (the
translation is ``CampaignSpec.rule_spec``); ``update`` changes both; ``activate``
publishes the rule, ``pause`` pauses it, ``end`` pauses it for good. Points, budget,
explanations and the checkout preview are therefore the rules engine's: a campaign adds
no code path to earning. Once activated, the control group cannot change
(``CampaignLocked``): the holdout share, and the code. Everything else may, and an active
campaign's rule is published again with the change.

The control group is part of the rule's condition, ``bucket(member.id, 'campaign:<id>')
>= holdout``: a stable hash, so a member is in the same arm in every process, on every
day, for the checkout and for the purchase. The campaigns reaction of the ingest
(``treu.events.reactions.campaigns``) records who was in which arm; it reads the running
campaigns through ``live``, cached per process like the earning rules, which costs a
dictionary look-up per unit of work while a programme runs no campaign.

An **offer** (``spec.kind == "offer"``) goes through the same life, but its rule is never
published (it names the offer's postings and holds its budget) and it is not among the
running campaigns the ingest records exposures for: an offer records its exposures
when it gives (``treu.campaigns.offers``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.campaigns.errors import (
    CampaignExists,
    CampaignLocked,
    CampaignNotFound,
    CampaignStatusConflict,
    CampaignWindowOver,
    RuleManagedByCampaign,
    UnknownTier,
)
from treu.campaigns.models import Arm, Campaign, CampaignStatus
from treu.campaigns.schemas import CampaignSpec, salt
from treu.db.base import one_by_id
from treu.errors import Invalid
from treu.kit.cache import StampedCache
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rewards.catalogue import VIEW_COLUMNS, RewardView
from treu.rewards.models import COUPON_TYPES, Reward, RewardType
from treu.rules.errors import NothingToPublish
from treu.rules.expr import bucket_of
from treu.rules.models import Rule, RuleStatus
from treu.rules.service import rules
from treu.segments.models import Segment
from treu.tiers.service import tiers

CACHE_SECONDS = 5.0
_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class LiveCampaign:
    """An active campaign as the ingest's reaction needs it, worked out once per
    revision."""

    id: uuid.UUID
    rule_id: str
    salt: str
    holdout: int
    starts_at: datetime
    ends_at: datetime
    tiers: frozenset[str] | None
    members: frozenset[uuid.UUID] | None
    segments: frozenset[str] | None = None

    def holds(
        self, member_id: uuid.UUID, tier: str | None, segments: frozenset[str] = frozenset()
    ) -> bool:
        """The audience holds the member (whatever the arm)."""
        if self.members is not None and member_id not in self.members:
            return False
        if self.segments is not None and self.segments.isdisjoint(segments):
            return False
        return self.tiers is None or tier in self.tiers

    def arm(self, member_id: uuid.UUID) -> Arm:
        """The same arm as the rule's condition: held out below the holdout."""
        if self.holdout and bucket_of(str(member_id), self.salt) < self.holdout:
            return Arm.held_out
        return Arm.treated


def arm_of(campaign_id: uuid.UUID, member_id: uuid.UUID, holdout_percent: int) -> Arm:
    """A member's arm in a campaign (deterministic, sticky: see ``bucket_of``)."""
    if holdout_percent and bucket_of(str(member_id), salt(campaign_id)) < holdout_percent:
        return Arm.held_out
    return Arm.treated


def parse_spec(data: dict[str, Any]) -> CampaignSpec:
    """Validate a specification from outside; expression errors keep their line and
    column (``{"field": "boost.condition", "message": ..., "line": 1, "column": 9}``)."""
    from treu.rules.spec import expression_error_details

    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            item: dict[str, Any] = {"field": where, "message": error["msg"]}
            position = expression_error_details(dict(error))
            if position is not None:
                item["field"] = position["field"] or where
                item.update({k: position[k] for k in ("line", "column", "offset")})
            errors.append(item)
        raise Invalid("the campaign is not valid", errors=errors) from None


class CampaignService:
    def __init__(self) -> None:
        self._cache: StampedCache[uuid.UUID, tuple[LiveCampaign, ...]] = StampedCache(CACHE_SECONDS)

    # --- editing ------------------------------------------------------------------------

    def create(
        self, session: Session, *, programme: Programme, spec: CampaignSpec, actor: str
    ) -> Campaign:
        self._check_code_free(session, programme.id, spec.code)
        self._check_audience(session, programme, spec)
        self._check_offer(session, programme, spec)
        campaign_id = new_id()
        rule = rules.create(
            session, programme=programme, spec=spec.rule_spec(campaign_id), actor=actor
        )
        campaign = Campaign(
            id=campaign_id,
            programme_id=programme.id,
            code=spec.code,
            name=spec.name,
            status=CampaignStatus.draft.value,
            spec=self._json(spec),
            rule_id=rule.id,
            budget_points=spec.budget_points,
            revision=1,
        )
        session.add(campaign)
        session.flush()
        self._audit(session, campaign, actor, "campaign.create", {"spec": campaign.spec})
        return campaign

    def update(
        self,
        session: Session,
        campaign: Campaign,
        *,
        spec: CampaignSpec,
        actor: str,
        now: datetime | None = None,
    ) -> Campaign:
        """Replace the specification; an active campaign's rule is published again at
        once. After the first activation the holdout and the code are frozen."""
        self._lock_row(session, campaign)
        if campaign.status == CampaignStatus.ended.value:
            raise CampaignStatusConflict("an ended campaign cannot change")
        current = self.spec_of(campaign)
        if campaign.activated_at is not None:
            changed = [
                name
                for name in ("kind", "code", "holdout_percent")
                if getattr(spec, name) != getattr(current, name)
            ]
            if changed:
                raise CampaignLocked(
                    f"the campaign was activated: {', '.join(changed)} cannot change any more "
                    "(members would change arms; end it and create a new one)",
                    fields=changed,
                )
        programme = session.get_one(Programme, campaign.programme_id)
        if spec.code != campaign.code:
            self._check_code_free(session, programme.id, spec.code)
        self._check_audience(session, programme, spec)
        self._check_offer(session, programme, spec)
        rule = rules.get(session, campaign.rule_id)
        rules.update(session, rule, spec=spec.rule_spec(campaign.id), actor=actor)
        if campaign.status == CampaignStatus.active.value and not spec.is_offer:
            self._publish(session, rule, actor=actor, now=now)
        campaign.spec = self._json(spec)
        campaign.code = spec.code
        campaign.name = spec.name
        campaign.budget_points = spec.budget_points
        if spec.is_offer:
            # A larger budget or a wider audience: the offer goes on with the members it
            # has not reached (exposures keep anyone from getting it twice).
            campaign.given_at = None
        campaign.revision += 1
        session.flush()
        self._audit(session, campaign, actor, "campaign.update", {"spec": campaign.spec})
        self.invalidate(campaign.programme_id)
        return campaign

    def activate(
        self, session: Session, campaign: Campaign, *, actor: str, now: datetime | None = None
    ) -> Campaign:
        """Start the campaign (or resume a paused one): its rule is published."""
        now = now or utc_now()
        self._lock_row(session, campaign)
        if campaign.status == CampaignStatus.active.value:
            return campaign
        if campaign.status == CampaignStatus.ended.value:
            raise CampaignStatusConflict("an ended campaign cannot be activated again")
        spec = self.spec_of(campaign)
        if spec.window.ends_at <= now:
            raise CampaignWindowOver(
                f"the window ended at {spec.window.ends_at.isoformat()}: "
                "the campaign could give nothing any more"
            )
        programme = session.get_one(Programme, campaign.programme_id)
        self._check_audience(session, programme, spec)  # a tier may be gone since
        if spec.is_offer:
            self._check_offer(session, programme, spec)  # the reward may be gone since
        else:
            self._publish(session, rules.get(session, campaign.rule_id), actor=actor, now=now)
        campaign.status = CampaignStatus.active.value
        campaign.activated_at = campaign.activated_at or now
        campaign.paused_at = None
        campaign.revision += 1
        session.flush()
        self._audit(session, campaign, actor, "campaign.activate", {})
        self.invalidate(campaign.programme_id)
        return campaign

    def pause(
        self, session: Session, campaign: Campaign, *, actor: str, now: datetime | None = None
    ) -> Campaign:
        """Stop boosting until activated again; exposures and points stay."""
        self._lock_row(session, campaign)
        if campaign.status == CampaignStatus.paused.value:
            return campaign
        if campaign.status != CampaignStatus.active.value:
            raise CampaignStatusConflict(f"a {campaign.status} campaign cannot be paused")
        now = now or utc_now()
        if not self.spec_of(campaign).is_offer:
            rules.pause(session, rules.get(session, campaign.rule_id), actor=actor, now=now)
        campaign.status = CampaignStatus.paused.value
        campaign.paused_at = now
        campaign.revision += 1
        session.flush()
        self._audit(session, campaign, actor, "campaign.pause", {})
        self.invalidate(campaign.programme_id)
        return campaign

    def end(
        self, session: Session, campaign: Campaign, *, actor: str, now: datetime | None = None
    ) -> Campaign:
        """Close for good: the rule stays paused; points, exposures and statistics stay."""
        self._lock_row(session, campaign)
        if campaign.status == CampaignStatus.ended.value:
            return campaign
        now = now or utc_now()
        rule = rules.get(session, campaign.rule_id)
        if rule.status == RuleStatus.active.value:
            rules.pause(session, rule, actor=actor, now=now)
        campaign.status = CampaignStatus.ended.value
        campaign.ended_at = now
        campaign.revision += 1
        session.flush()
        self._audit(session, campaign, actor, "campaign.end", {})
        self.invalidate(campaign.programme_id)
        return campaign

    # --- reading ------------------------------------------------------------------------

    def get(self, session: Session, campaign_id: uuid.UUID | str) -> Campaign:
        return one_by_id(session, Campaign, campaign_id, missing=CampaignNotFound, what="campaign")

    def all(
        self, session: Session, *, programme_id: uuid.UUID, status: str | None = None
    ) -> list[Campaign]:
        query = select(Campaign).where(Campaign.programme_id == programme_id)
        if status is not None:
            query = query.where(Campaign.status == status)
        return list(session.scalars(query.order_by(Campaign.created_at, Campaign.id)))

    def refuse_managed(self, session: Session, rule: Rule) -> None:
        """Raise ``RuleManagedByCampaign`` if ``rule`` is a campaign's (for the rules API:
        such a rule changes only with its campaign)."""
        owner = session.scalar(select(Campaign.id).where(Campaign.rule_id == rule.id))
        if owner is not None:
            raise RuleManagedByCampaign(
                f"rule {str(rule.id)!r} gives the points of campaign {str(owner)!r}: change, "
                "activate or pause the campaign instead",
                campaign_id=str(owner),
            )

    def spec_of(self, campaign: Campaign) -> CampaignSpec:
        return CampaignSpec.model_validate(campaign.spec)

    def budgets_used(self, session: Session, campaigns: Sequence[Campaign]) -> dict[uuid.UUID, int]:
        """Points each campaign's rule has given (its ``budget_used``), by campaign id."""
        if not campaigns:
            return {}
        by_rule = {c.rule_id: c.id for c in campaigns}
        rows = session.execute(select(Rule.id, Rule.budget_used).where(Rule.id.in_(by_rule)))
        return {by_rule[rule_id]: used for rule_id, used in rows}

    def running(self, campaign: Campaign, *, budget_used: int, now: datetime) -> bool:
        """Active, inside its window, and with budget left (an offer: and not given to
        its whole audience yet)."""
        if campaign.status != CampaignStatus.active.value or campaign.given_at is not None:
            return False
        spec = self.spec_of(campaign)
        if not spec.window.contains(now):
            return False
        return spec.budget_points is None or budget_used < spec.budget_points

    # --- the running campaigns, for the ingest ---------------------------------------------

    def invalidate(self, programme_id: uuid.UUID) -> None:
        self._cache.invalidate(programme_id)

    def live(self, session: Session, programme: Programme) -> tuple[LiveCampaign, ...]:
        """The programme's running campaigns: active, budget not spent (cached per
        process for ``CACHE_SECONDS``; after that one light query tells whether they, or
        whether their budgets are spent, changed). The window is the caller's to check."""
        return self._cache.get(
            programme.id,
            stamp=lambda: tuple(
                session.execute(
                    select(
                        Campaign.id,
                        Campaign.revision,
                        case((Rule.budget_used >= Campaign.budget_points, True), else_=False),
                    )
                    .join(Rule, Rule.id == Campaign.rule_id)
                    .where(
                        Campaign.programme_id == programme.id,
                        Campaign.status == CampaignStatus.active.value,
                    )
                    .order_by(Campaign.id)
                ).all()
            ),
            build=lambda stamp: self._live(session, [row[0] for row in stamp or () if not row[2]]),
        )

    def _live(self, session: Session, ids: list[uuid.UUID]) -> tuple[LiveCampaign, ...]:
        if not ids:
            return ()
        found = session.scalars(select(Campaign).where(Campaign.id.in_(ids))).all()
        out = []
        for campaign in sorted(found, key=lambda c: c.id):
            spec = self.spec_of(campaign)
            if spec.is_offer:
                continue  # an offer records its exposures when it gives
            audience = spec.audience
            out.append(
                LiveCampaign(
                    id=campaign.id,
                    rule_id=str(campaign.rule_id),
                    salt=salt(campaign.id),
                    holdout=spec.holdout_percent,
                    starts_at=spec.window.starts_at,
                    ends_at=spec.window.ends_at,
                    tiers=frozenset(audience.tiers) if audience.tiers else None,
                    members=frozenset(audience.members) if audience.members else None,
                    segments=frozenset(audience.segments) if audience.segments else None,
                )
            )
        return tuple(out)

    # --- helpers ------------------------------------------------------------------------

    def _publish(self, session: Session, rule: Rule, *, actor: str, now: datetime | None) -> None:
        try:
            rules.publish(session, rule, actor=actor, now=now)
        except NothingToPublish:
            pass  # the change did not touch the rule (a description, say)

    def _json(self, spec: CampaignSpec) -> dict[str, Any]:
        return spec.model_dump(mode="json", exclude_none=True)

    def _check_code_free(self, session: Session, programme_id: uuid.UUID, code: str) -> None:
        taken = session.scalar(
            select(Campaign.id).where(Campaign.programme_id == programme_id, Campaign.code == code)
        )
        if taken is not None:
            raise CampaignExists(
                f"a campaign with code {code!r} exists in this programme",
                errors=[{"field": "code", "message": "taken"}],
            )

    def _check_audience(self, session: Session, programme: Programme, spec: CampaignSpec) -> None:
        """Tiers the programme has, members of the programme."""
        audience = spec.audience
        if audience.tiers:
            ladder = tiers.ladder(session, programme)
            unknown = [code for code in audience.tiers if ladder.get(code) is None]
            if unknown:
                raise UnknownTier(
                    f"programme {programme.slug!r} has no tier {', '.join(map(repr, unknown))}",
                    errors=[
                        {"field": "audience.tiers", "message": f"unknown tier {code!r}"}
                        for code in unknown
                    ],
                )
        if audience.segments:
            have = set(
                session.scalars(
                    select(Segment.slug).where(
                        Segment.programme_id == programme.id, Segment.slug.in_(audience.segments)
                    )
                )
            )
            unknown_segments = [slug for slug in audience.segments if slug not in have]
            if unknown_segments:
                raise Invalid(
                    f"programme {programme.slug!r} has no segment "
                    f"{', '.join(map(repr, unknown_segments))}",
                    errors=[
                        {"field": "audience.segments", "message": f"unknown segment {slug!r}"}
                        for slug in unknown_segments
                    ],
                )
        if audience.members:
            known: set[uuid.UUID] = set()
            for chunk in _chunks(audience.members):
                known.update(
                    session.scalars(
                        select(Member.id).where(
                            Member.programme_id == programme.id, Member.id.in_(chunk)
                        )
                    )
                )
            missing = [m for m in audience.members if m not in known]
            if missing:
                raise Invalid(
                    f"{len(missing)} of the listed members are not members of programme "
                    f"{programme.slug!r}",
                    errors=[
                        {"field": "audience.members", "message": f"no member {str(m)!r}"}
                        for m in missing[:10]
                    ],
                )

    def _check_offer(self, session: Session, programme: Programme, spec: CampaignSpec) -> None:
        """An offer's reward is the programme's and issues a coupon."""
        offer = spec.offer
        if offer is None or offer.reward_id is None:
            return
        row = session.execute(select(*VIEW_COLUMNS).where(Reward.id == offer.reward_id)).first()
        reward = RewardView(*row) if row is not None else None
        if reward is None or reward.programme_id != programme.id:
            raise Invalid(
                f"programme {programme.slug!r} has no reward {str(offer.reward_id)!r}",
                errors=[{"field": "offer.reward_id", "message": "no such reward"}],
            )
        if RewardType(reward.type) not in COUPON_TYPES:
            raise Invalid(
                f"reward {str(offer.reward_id)!r} issues no coupon: an offer gives a coupon",
                errors=[{"field": "offer.reward_id", "message": "not a coupon reward"}],
            )

    def _lock_row(self, session: Session, campaign: Campaign) -> None:
        session.refresh(campaign, with_for_update=True)

    def _audit(
        self, session: Session, campaign: Campaign, actor: str, action: str, data: dict[str, Any]
    ) -> None:
        audit.record(
            session,
            actor=actor,
            action=action,
            subject_type="campaign",
            subject_id=str(campaign.id),
            programme_id=campaign.programme_id,
            data=data,
        )


def _chunks(items: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


campaigns = CampaignService()
