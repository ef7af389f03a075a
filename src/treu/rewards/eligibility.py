"""Who may redeem what, and why not: the reasons a reward is locked for a member."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from treu.ledger.errors import InsufficientPoints
from treu.members.models import MemberStatus
from treu.rewards.catalogue import RewardView, TierInfo
from treu.rewards.coupons import (
    Reason,
    local_day,
    problem_reasons,
)
from treu.rewards.errors import (
    MemberLimitReached,
    OutOfStock,
    RewardLocked,
)
from treu.rewards.models import (
    RewardStatus,
)
from treu.segments.membership import slugs_of
from treu.tiers.service import tiers as tier_service


@dataclass
class MemberFacts:
    """What eligibility looks at, read once per request."""

    member_id: uuid.UUID
    status: str
    enrolled_at: datetime
    available_points: int
    tier: str | None
    held: dict[uuid.UUID, int]
    """Redemptions per reward that hold a unit (status ``redeemed``)."""
    segments: frozenset[str] = frozenset()
    """The member's active segments (read only when a reward names segments)."""


def lock_reasons(
    view: RewardView,
    facts: MemberFacts,
    tiers: dict[str, TierInfo],
    now: datetime,
    timezone: str,
) -> list[Reason]:
    """Why ``facts``' member cannot redeem ``view`` now (empty: they can). Pure."""
    reasons: list[Reason] = []
    if view.status == RewardStatus.paused:
        reasons.append(Reason("reward_paused"))
    if view.valid_from is not None and now < view.valid_from:
        reasons.append(
            Reason("not_yet_available", {"date": local_day(view.valid_from, timezone).isoformat()})
        )
    until = view.available_until
    if until is not None and now >= until:
        reasons.append(Reason("no_longer_available"))
    if facts.status == MemberStatus.blocked:
        reasons.append(Reason("member_blocked"))
    elif facts.status == MemberStatus.closed:
        reasons.append(Reason("member_closed"))
    if view.min_tier is not None:
        needed = tiers.get(view.min_tier)
        have = tiers.get(facts.tier) if facts.tier is not None else None
        if needed is None or have is None or have.rank < needed.rank:
            reasons.append(
                Reason(
                    "tier_required",
                    {
                        "tier": view.min_tier,
                        "tier_name": needed.name if needed is not None else view.min_tier,
                        "current_tier": facts.tier,
                    },
                )
            )
    if view.min_membership_days:
        days = (now - facts.enrolled_at).days
        if days < view.min_membership_days:
            reasons.append(
                Reason(
                    "membership_too_new",
                    {
                        "min_days": view.min_membership_days,
                        "days_left": view.min_membership_days - days,
                    },
                )
            )
    if view.segments and facts.segments.isdisjoint(view.segments):
        reasons.append(Reason("segment_required", {"segments": list(view.segments)}))
    held = facts.held.get(view.id, 0)
    if view.per_member_limit is not None and held >= view.per_member_limit:
        reasons.append(Reason("member_limit_reached", {"limit": view.per_member_limit}))
    if view.stock_left is not None and view.stock_left <= 0:
        reasons.append(Reason("out_of_stock"))
    if facts.available_points < view.points_cost:
        reasons.append(
            Reason(
                "insufficient_points",
                {
                    "missing_points": view.points_cost - max(facts.available_points, 0),
                    "points_cost": view.points_cost,
                    "available_points": facts.available_points,
                },
            )
        )
    return reasons


def member_segments(
    session: Session, member_id: uuid.UUID, views: Iterable[RewardView]
) -> frozenset[str]:
    """The member's segments when one of ``views`` is for segments only (one indexed
    query), else nothing read."""
    if any(view.segments for view in views):
        return slugs_of(session, member_id=member_id)
    return frozenset()


def refusal(reasons: list[Reason], view: RewardView, facts: MemberFacts) -> Exception:
    """The error for a refused redemption: the most fundamental reason decides the code,
    and every reason is listed."""
    codes = {r.code for r in reasons}
    detail = "; ".join(r.text("en") for r in reasons)
    listed = problem_reasons(reasons)
    if codes <= {"insufficient_points"}:
        return InsufficientPoints(
            f"{view.points_cost} points needed, {max(facts.available_points, 0)} available",
            needed=view.points_cost,
            available=max(facts.available_points, 0),
            reasons=listed,
        )
    if codes <= {"insufficient_points", "out_of_stock"}:
        return OutOfStock(detail, reasons=listed)
    if codes <= {"insufficient_points", "out_of_stock", "member_limit_reached"}:
        return MemberLimitReached(detail, reasons=listed)
    return RewardLocked(detail, reasons=listed)


def request_hash(reward_id: uuid.UUID) -> str:
    canonical = json.dumps({"reward_id": str(reward_id)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def member_tier(session: Session, member_id: uuid.UUID, now: datetime) -> str | None:
    """The member's tier code now (None: none), as the tiers feature decides it (a
    bought tier counts while it lasts)."""
    current = tier_service.current(session, member_id, now=now)
    return None if current is None else current.code
