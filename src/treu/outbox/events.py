"""The domain events Treu records, one typed class per ``type``.

An event names what changed with ids and amounts only. Every event has the programme,
the member (where there is one) and when the change took effect; ``payload()`` is the
rest, as JSON. Types are ``<aggregate>.<past tense>``; adding one is a class here."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from treu.kit.time import iso


def _json(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    type: ClassVar[str]
    programme_id: uuid.UUID
    member_id: uuid.UUID | None
    occurred_at: datetime

    def payload(self) -> dict[str, Any]:
        return {name: _json(getattr(self, name)) for name in _payload_fields(type(self))}

    def key(self) -> str | None:
        """A stable key for an event that may be recorded twice (see ``OutboxMessage``)."""
        return None


_ENVELOPE = frozenset({"programme_id", "member_id", "occurred_at"})


_FIELDS: dict[type[DomainEvent], tuple[str, ...]] = {}


def _payload_fields(cls: type[DomainEvent]) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(
            f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE
        )
    return names


# --- members ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEnrolled(DomainEvent):
    type: ClassVar[str] = "member.enrolled"
    channel: str
    enrolled_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberUpdated(DomainEvent):
    type: ClassVar[str] = "member.updated"
    fields: list[str]
    """The names of the fields that changed (their values stay in the member row)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInCodeSent(DomainEvent):
    """A member asked for a portal sign-in code. The code itself is in no row: it is
    derived from ``nonce`` with the server's key (``treu.auth.codes.derive``) by the
    e-mail channel, so neither the outbox nor a webhook receiver can read it."""

    type: ClassVar[str] = "member.sign_in_code"
    nonce: str
    expires_at: datetime


# --- points ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsChanged(DomainEvent):
    """What one unit of work did to one member's points, of one kind, for one cause
    (an event, a redemption, an adjustment): ``points`` is signed as the postings are.

    The cause is ``event_id`` where an event caused it, else ``correlation_id`` (the
    redemption's, the refund's); the postings themselves are in the member's ledger
    (``GET /v1/members/{id}/ledger``), found by either."""

    points: int
    event_id: uuid.UUID | None = None
    """Treu's id of the event (purchase, return, engagement) behind it, if any."""
    correlation_id: uuid.UUID | None = None

    def payload(self) -> dict[str, Any]:
        # Written for every purchase: spelled out rather than walked field by field, and
        # one id (a UUID's text costs a microsecond).
        if self.event_id is not None:
            return {"points": self.points, "event_id": str(self.event_id)}
        if self.correlation_id is not None:
            return {"points": self.points, "correlation_id": str(self.correlation_id)}
        return {"points": self.points}


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsEarned(PointsChanged):
    type: ClassVar[str] = "points.earned"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsPending(PointsChanged):
    type: ClassVar[str] = "points.pending"
    available_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        out = PointsChanged.payload(self)
        out["available_at"] = _json(self.available_at)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsActivated(PointsChanged):
    type: ClassVar[str] = "points.activated"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsRedeemed(PointsChanged):
    type: ClassVar[str] = "points.redeemed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsReversed(PointsChanged):
    type: ClassVar[str] = "points.reversed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsRefunded(PointsChanged):
    type: ClassVar[str] = "points.refunded"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsAdjusted(PointsChanged):
    type: ClassVar[str] = "points.adjusted"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpired(PointsChanged):
    type: ClassVar[str] = "points.expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsExpiring(DomainEvent):
    """Points that will expire soon (the ``ledger.warn_expiring`` job): once per member
    and expiry instant, however often the job runs."""

    type: ClassVar[str] = "points.expiring"
    points: int
    expires_at: datetime

    def key(self) -> str:
        return f"{self.type}:{self.member_id}:{_json(self.expires_at)}"


# --- tiers, rewards, coupons, challenges, badges ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TierChanged(DomainEvent):
    type: ClassVar[str] = "tier.changed"
    from_tier: str | None
    to_tier: str | None
    reason: str
    """qualified, requalification_failed, membership_purchased, membership_renewed,
    membership_expired"""
    event_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardRedeemed(DomainEvent):
    type: ClassVar[str] = "reward.redeemed"
    redemption_id: uuid.UUID
    reward_id: uuid.UUID
    reward_code: str
    reward_type: str
    points: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponIssued(DomainEvent):
    type: ClassVar[str] = "coupon.issued"
    coupon_id: uuid.UUID
    kind: str
    expires_at: datetime | None
    reward_id: uuid.UUID | None = None
    redemption_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CouponUsed(DomainEvent):
    type: ClassVar[str] = "coupon.used"
    coupon_id: uuid.UUID
    order_id: str | None
    discount_minor: int | None
    event_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeCompleted(DomainEvent):
    type: ClassVar[str] = "challenge.completed"
    challenge_id: uuid.UUID
    challenge_code: str
    period: str
    points: int
    event_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BadgeAwarded(DomainEvent):
    type: ClassVar[str] = "badge.awarded"
    badge: str
    rule_id: str | None = None
    challenge_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None


# --- journeys and campaigns ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignMessage(DomainEvent):
    """A journey (or a campaign) reached a member on one occasion: the channels say it
    with ``template``. Recorded once per ``dedupe_key`` (``journey:<programme>:birthday:
    2027:<member>``), so a job run twice, or by two workers at once, records one."""

    type: ClassVar[str] = "campaign.message"
    source: str
    """``journey`` or ``campaign``."""
    source_id: uuid.UUID
    kind: str
    """The journey's kind (``birthday``, ``inactivity``, …) or the campaign's code."""
    step: int
    occasion: str
    template: str
    message_kind: str
    """``transactional`` or ``marketing``: which consent and pressure rules apply."""
    dedupe_key: str
    not_before: datetime | None = None
    """Quiet hours: deliver no earlier than this."""
    reward_id: uuid.UUID | None = None
    coupon_id: uuid.UUID | None = None
    points: int | None = None
    expires_at: datetime | None = None
    tier: str | None = None
    previous_tier: str | None = None
    missing: int | None = None
    """What a tier at risk still needs (in the tier metric's unit)."""
    until: datetime | None = None

    def key(self) -> str:
        return self.dedupe_key


TYPES: dict[str, type[DomainEvent]] = {
    cls.type: cls
    for cls in (
        MemberEnrolled,
        MemberUpdated,
        SignInCodeSent,
        PointsEarned,
        PointsPending,
        PointsActivated,
        PointsRedeemed,
        PointsReversed,
        PointsRefunded,
        PointsAdjusted,
        PointsExpired,
        PointsExpiring,
        TierChanged,
        RewardRedeemed,
        CouponIssued,
        CouponUsed,
        ChallengeCompleted,
        BadgeAwarded,
        CampaignMessage,
    )
}
"""Every type an outbox row can have."""
