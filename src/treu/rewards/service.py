"""The rewards catalogue and redemptions: what points buy, and buying it safely.

**Redeeming** (``RedemptionService.redeem``) is one transaction:

1. lock the member's points account (``LedgerWriter.lock``: ``SELECT … FOR UPDATE``; on
   SQLite the database write lock of ``BEGIN IMMEDIATE``);
2. look for an earlier redemption with the same Idempotency-Key (under the lock, so a
   concurrent retry waits and then finds it): same request → the stored answer, another
   request → ``idempotency_conflict``;
3. read the reward and check eligibility: status, validity window, member status, tier,
   membership age, per-member limit (counted under the account lock, so exact), stock,
   points;
4. burn the points earliest-expiry-first (``LedgerWriter.spend``, kind ``redeem``) and
   write the redemption and its coupon (or the donation / wallet credit);
5. last, take one unit of stock: ``UPDATE rewards SET stock_left = stock_left - 1 WHERE
   id = :id AND stock_left > 0``. No row updated means sold out, and the whole unit of
   work rolls back: the member keeps every point.

**Lock order**: always the member's account first, then the reward row (stock). Every
writer here (redeem, cancel, the expiry job, which locks several accounts in member-id
order and then rewards in reward-id order) follows it, so they never deadlock; the admin
stock edit locks only the reward. Taking the stock last keeps the hot reward's row lock
for the shortest time — from that UPDATE to the commit — which is what limits how many
redemptions of one popular reward commit per second. Unlimited rewards never touch the
reward row, so they do not contend at all.

**Cancelling** gives the stock back and, where the reward's ``refund_on_cancel`` says so,
the points (``LedgerWriter.refund``: to the very lots they came from). A used coupon
cannot be cancelled: the coupon is set ``cancelled`` by a conditional UPDATE, which
loses against a till using it at the same moment. **Expiry** (``expire_coupons``, job
``rewards.expire_coupons``) does the same for unused coupons past their expiry, with the
reward's ``refund_on_expiry``.

Rewards of type ``donation`` and ``wallet_credit`` are fulfilled inside the redemption
(a donation record, a wallet credit: ``treu.rewards.donations``, ``treu.rewards.wallet``)
and issue no coupon; they cannot be cancelled.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, String, Uuid, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.db.base import WriteBatch, table_of
from treu.errors import Invalid, TreuError
from treu.kit.cache import StampedCache
from treu.kit.codes import format_code
from treu.kit.ids import new_id
from treu.kit.money import is_known_currency
from treu.kit.pagination import decode_cursor, encode_cursor
from treu.kit.time import iso, utc_now
from treu.ledger.errors import InsufficientPoints
from treu.ledger.models import Account, PostingKind
from treu.ledger.service import AccountState, LedgerWriter, ledger
from treu.members.errors import MemberClosed, MemberNotFound
from treu.members.models import Member, MemberStatus
from treu.outbox.events import CouponIssued, DomainEvent, RewardRedeemed
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.coupons import (
    Cart,
    Reason,
    cart_discount,
    coupon_row,
    coupons,
    local_day,
    local_name,
    qr_path,
    reasons_out,
    summary,
)
from treu.rewards.donations import CharityNotFound, donations
from treu.rewards.errors import (
    IdempotencyKeyConflict,
    MemberLimitReached,
    OutOfStock,
    RedemptionNotCancellable,
    RedemptionNotFound,
    RewardExists,
    RewardLocked,
    RewardNotFound,
    StockBelowRedeemed,
    StockModeChange,
    UnknownTier,
)
from treu.rewards.models import (
    COUPON_TYPES,
    Coupon,
    CouponStatus,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardStatus,
    RewardType,
)
from treu.rewards.payments import worth
from treu.rewards.schemas import (
    DEFAULT_COUPON_DAYS,
    Eligibility,
    EventInfo,
    Policies,
    RewardIn,
    RewardOut,
    RewardPatch,
    StockOut,
)
from treu.rewards.wallet import wallet
from treu.tiers.models import Tier
from treu.tiers.service import tiers as tier_service

CACHE_SECONDS = 5.0

# --- the catalogue as plain values -----------------------------------------------------------


@dataclass(frozen=True)
class RewardView:
    """A reward's row as plain values: cached per process, read without a session."""

    id: uuid.UUID
    programme_id: uuid.UUID
    code: str
    type: str
    status: str
    name: dict[str, Any]
    description: dict[str, Any]
    image_url: str | None
    points_cost: int
    valid_from: datetime | None
    valid_until: datetime | None
    min_tier: str | None
    min_membership_days: int | None
    stock_total: int | None
    stock_left: int | None
    per_member_limit: int | None
    coupon_valid_days: int | None
    min_order_minor: int | None
    percent_bp: int | None
    value_minor: int | None
    currency: str | None
    sku: str | None
    product_name: dict[str, Any] | None
    event_starts_at: datetime | None
    event_ends_at: datetime | None
    event_location: str | None
    charity_code: str | None
    refund_on_cancel: bool
    refund_on_expiry: bool
    restore_on_return: bool

    @property
    def available_until(self) -> datetime | None:
        """The end of the validity window; an experience cannot be booked once it began."""
        ends = [t for t in (self.valid_until, self.event_starts_at) if t is not None]
        return min(ends) if ends else None

    def event(self) -> dict[str, Any] | None:
        if self.event_starts_at is None:
            return None
        return {
            "starts_at": iso(self.event_starts_at),
            "ends_at": iso(self.event_ends_at),
            "location": self.event_location,
        }

    def terms(self, currency: str) -> dict[str, Any]:
        """What a coupon or a summary needs to know: copied onto every coupon issued.
        An amount always comes with its currency (the programme's, ``currency``, where the
        reward names none: a percentage's minimum order)."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("percent_bp", "value_minor", "currency", "sku", "min_order_minor"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if "currency" not in out and ("value_minor" in out or "min_order_minor" in out):
            out["currency"] = currency
        if self.product_name:
            out["product_name"] = self.product_name
        if self.event_starts_at is not None:
            out["event"] = self.event()
        if self.charity_code is not None:
            out["charity"] = self.charity_code
        return out

    def snapshot(self, currency: str) -> dict[str, Any]:
        """What a redemption keeps of the reward: its terms and policies at the time."""
        return {
            "id": str(self.id),
            "code": self.code,
            "type": self.type,
            "name": self.name,
            "points_cost": self.points_cost,
            "terms": self.terms(currency),
            "policies": {
                "refund_on_cancel": self.refund_on_cancel,
                "refund_on_expiry": self.refund_on_expiry,
                "restore_on_return": self.restore_on_return,
            },
        }


_VIEW_COLUMNS = tuple(getattr(Reward, f.name) for f in fields(RewardView))


@dataclass(frozen=True)
class TierInfo:
    code: str
    rank: int
    name: dict[str, Any]


@dataclass
class _Catalogue:
    rewards: list[RewardView]
    tiers: dict[str, TierInfo]
    kinds: frozenset[str] = frozenset()
    """Every reward type the programme has had, archived ones included: the checkout
    skips the coupon look-up when no discount coupon can exist, and the wallet read
    when no reward ever gave wallet credit."""

    @property
    def has_discount_coupons(self) -> bool:
        return not self.kinds.isdisjoint(DISCOUNT_KINDS)

    @property
    def has_wallet_credit(self) -> bool:
        return RewardType.wallet_credit.value in self.kinds


DISCOUNT_KINDS = frozenset(
    {
        RewardType.percent_discount.value,
        RewardType.amount_discount.value,
        RewardType.free_product.value,
    }
)
"""Coupons of these types can take something off a cart."""


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


def refusal(reasons: list[Reason], view: RewardView, facts: MemberFacts) -> Exception:
    """The error for a refused redemption: the most fundamental reason decides the code,
    and every reason is listed."""
    codes = {r.code for r in reasons}
    detail = "; ".join(r.text("en") for r in reasons)
    listed = reasons_out(reasons)
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


# --- the catalogue -----------------------------------------------------------------------------


class CatalogueService:
    def __init__(self) -> None:
        self._cache: StampedCache[tuple[str, uuid.UUID], _Catalogue] = StampedCache(CACHE_SECONDS)

    def create(
        self, session: Session, *, programme: Programme, data: RewardIn, actor: str
    ) -> Reward:
        self._check(session, programme, data)
        if session.scalar(
            select(Reward.id).where(Reward.programme_id == programme.id, Reward.code == data.code)
        ):
            raise RewardExists(f"programme {programme.slug!r} has a reward {data.code!r} already")
        reward = Reward(programme_id=programme.id, code=data.code, type=data.type.value)
        self._apply(reward, data, programme)
        reward.stock_total = data.stock
        reward.stock_left = data.stock
        session.add(reward)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            raise RewardExists(
                f"programme {programme.slug!r} has a reward {data.code!r} already"
            ) from None
        audit.record(
            session,
            actor=actor,
            action="reward.create",
            subject_type="reward",
            subject_id=str(reward.id),
            programme_id=programme.id,
            data=data.model_dump(mode="json"),
        )
        self.invalidate(session, programme.id)
        return reward

    def update(
        self,
        session: Session,
        *,
        programme: Programme,
        reward_id: uuid.UUID,
        patch: RewardPatch,
        actor: str,
    ) -> Reward:
        """Apply ``patch`` (the fields sent). The reward row is locked, so a stock change
        and concurrent redemptions (which decrement relative to what is there) add up."""
        reward = session.scalar(
            select(Reward)
            .where(Reward.id == reward_id, Reward.programme_id == programme.id)
            .with_for_update()
        )
        if reward is None or reward.status == RewardStatus.archived:
            raise RewardNotFound(f"no reward {reward_id} in programme {programme.slug!r}")
        changes = patch.model_dump(mode="json", exclude_unset=True)
        merged = self.as_input(reward) | changes
        data = RewardIn.model_validate(merged)
        self._check(session, programme, data)
        if "stock" in changes:
            self._restock(reward, data.stock)
        self._apply(reward, data, programme)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="reward.update",
            subject_type="reward",
            subject_id=str(reward.id),
            programme_id=programme.id,
            data={"changes": changes},
        )
        self.invalidate(session, programme.id)
        return reward

    def archive(
        self, session: Session, *, programme: Programme, reward_id: uuid.UUID, actor: str
    ) -> Reward:
        """Take a reward out of the catalogue. Its row stays (redemptions refer to it) and
        coupons already issued stay valid."""
        reward = session.scalar(
            select(Reward)
            .where(Reward.id == reward_id, Reward.programme_id == programme.id)
            .with_for_update()
        )
        if reward is None:
            raise RewardNotFound(f"no reward {reward_id} in programme {programme.slug!r}")
        reward.status = RewardStatus.archived.value
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="reward.archive",
            subject_type="reward",
            subject_id=str(reward.id),
            programme_id=programme.id,
        )
        self.invalidate(session, programme.id)
        return reward

    def _restock(self, reward: Reward, stock: int | None) -> None:
        if stock is None:
            reward.stock_total = None
            reward.stock_left = None
            return
        if reward.stock_total is None or reward.stock_left is None:
            raise StockModeChange(
                "an unlimited reward cannot be given a stock (redemptions in flight would "
                "not be counted); pause it and create a reward with a stock",
                field="stock",
            )
        left = reward.stock_left + (stock - reward.stock_total)
        if left < 0:
            raise StockBelowRedeemed(
                f"{reward.stock_total - reward.stock_left} units are redeemed already; "
                f"the stock cannot be {stock}",
                field="stock",
                redeemed=reward.stock_total - reward.stock_left,
            )
        reward.stock_total = stock
        reward.stock_left = left

    def _check(self, session: Session, programme: Programme, data: RewardIn) -> None:
        currency = data.currency or programme.currency
        if data.currency is not None and not is_known_currency(currency):
            raise Invalid(f"unknown currency {currency!r}", field="currency")
        if data.currency is not None and currency != programme.currency:
            raise Invalid(
                f"programme {programme.slug!r} runs in {programme.currency}, not {currency}",
                field="currency",
            )
        if data.charity is not None:
            try:
                donations.charity(session, programme_id=programme.id, ref=data.charity)
            except CharityNotFound:
                raise Invalid(
                    f"programme {programme.slug!r} has no charity {data.charity!r} "
                    "(create it under /v1/programmes/{slug}/charities first)",
                    field="charity",
                ) from None
        tier = data.eligibility.min_tier
        if tier is not None and tier not in self.tiers(session, programme.id):
            raise UnknownTier(
                f"programme {programme.slug!r} has no tier {tier!r}",
                field="eligibility.min_tier",
            )

    def _apply(self, reward: Reward, data: RewardIn, programme: Programme) -> None:
        reward.status = data.status
        reward.name = {str(lang): text for lang, text in data.name.items()}
        reward.description = {str(lang): text for lang, text in data.description.items()}
        reward.image_url = data.image_url
        reward.points_cost = data.points_cost
        reward.valid_from = data.valid_from
        reward.valid_until = data.valid_until
        reward.min_tier = data.eligibility.min_tier
        reward.min_membership_days = data.eligibility.min_membership_days
        reward.segments = list(data.eligibility.segments)
        reward.per_member_limit = data.per_member_limit
        kind = RewardType(data.type)
        reward.coupon_valid_days = data.coupon_valid_days
        if (
            kind in COUPON_TYPES
            and kind != RewardType.experience
            and data.coupon_valid_days is None
        ):
            reward.coupon_valid_days = DEFAULT_COUPON_DAYS
        reward.min_order_minor = data.min_order_minor
        reward.percent_bp = data.percent_bp
        reward.value_minor = data.value_minor
        reward.currency = (
            (data.currency or programme.currency)
            if kind in (RewardType.amount_discount, RewardType.wallet_credit, RewardType.donation)
            else None
        )
        reward.sku = data.sku
        reward.product_name = (
            {str(lang): text for lang, text in data.product_name.items()}
            if data.product_name
            else None
        )
        reward.event_starts_at = data.event.starts_at if data.event else None
        reward.event_ends_at = data.event.ends_at if data.event else None
        reward.event_location = data.event.location if data.event else None
        reward.charity_code = data.charity
        reward.refund_on_cancel = data.policies.refund_on_cancel
        reward.refund_on_expiry = data.policies.refund_on_expiry
        reward.restore_on_return = data.policies.restore_on_return

    def as_input(self, reward: Reward) -> dict[str, Any]:
        """The reward as a ``RewardIn`` document (a patch is merged into it)."""
        out = self.out(reward, "").model_dump(mode="json")
        data = {k: out[k] for k in RewardIn.model_fields if k in out}
        data["stock"] = reward.stock_total
        if reward.status == RewardStatus.archived:
            data["status"] = RewardStatus.paused.value
        return data

    def get(self, session: Session, reward_id: uuid.UUID) -> Reward:
        reward = session.get(Reward, reward_id)
        if reward is None:
            raise RewardNotFound(f"no reward {reward_id}")
        return reward

    def all(
        self, session: Session, *, programme: Programme, include_archived: bool = False
    ) -> list[Reward]:
        query = select(Reward).where(Reward.programme_id == programme.id)
        if not include_archived:
            query = query.where(Reward.status != RewardStatus.archived.value)
        return list(session.scalars(query.order_by(Reward.points_cost, Reward.code)))

    def out(self, reward: Reward, programme_slug: str) -> RewardOut:
        return RewardOut(
            id=reward.id,
            programme=programme_slug,
            code=reward.code,
            type=RewardType(reward.type),
            status=reward.status,
            name=dict(reward.name),
            description=dict(reward.description or {}),
            image_url=reward.image_url,
            points_cost=reward.points_cost,
            valid_from=reward.valid_from,
            valid_until=reward.valid_until,
            eligibility=Eligibility(
                min_tier=reward.min_tier,
                min_membership_days=reward.min_membership_days,
                segments=list(reward.segments or []),
            ),
            stock=(
                StockOut(total=reward.stock_total, left=reward.stock_left)
                if reward.stock_total is not None and reward.stock_left is not None
                else None
            ),
            per_member_limit=reward.per_member_limit,
            coupon_valid_days=reward.coupon_valid_days,
            min_order_minor=reward.min_order_minor,
            percent_bp=reward.percent_bp,
            value_minor=reward.value_minor,
            currency=reward.currency,
            sku=reward.sku,
            product_name=dict(reward.product_name) if reward.product_name else None,
            event=(
                EventInfo(
                    starts_at=reward.event_starts_at,
                    ends_at=reward.event_ends_at,
                    location=reward.event_location,
                )
                if reward.event_starts_at is not None
                else None
            ),
            charity=reward.charity_code,
            policies=Policies(
                refund_on_cancel=reward.refund_on_cancel,
                refund_on_expiry=reward.refund_on_expiry,
                restore_on_return=reward.restore_on_return,
            ),
            created_at=reward.created_at,
            updated_at=reward.updated_at,
        )

    # --- reading the catalogue ---------------------------------------------------------

    def views(
        self, session: Session, programme_id: uuid.UUID, *, include_paused: bool = False
    ) -> list[RewardView]:
        """The programme's rewards as values, fresh from the database."""
        states = [RewardStatus.active.value]
        if include_paused:
            states.append(RewardStatus.paused.value)
        rows = session.execute(
            select(*_VIEW_COLUMNS)
            .where(Reward.programme_id == programme_id, Reward.status.in_(states))
            .order_by(Reward.points_cost, Reward.code)
        ).all()
        return [RewardView(*row) for row in rows]

    def tiers(self, session: Session, programme_id: uuid.UUID) -> dict[str, TierInfo]:
        return {
            code: TierInfo(code, rank, name)
            for code, rank, name in session.execute(
                select(Tier.code, Tier.rank, Tier.name).where(Tier.programme_id == programme_id)
            ).all()
        }

    def cached(self, session: Session, programme_id: uuid.UUID) -> _Catalogue:
        """Active rewards and tier ranks, cached per process for ``CACHE_SECONDS`` (the
        checkout reads them on every cart). A change is seen at once in the process that
        made it and within ``CACHE_SECONDS`` elsewhere; stock shown from the cache may
        be that old, and the redemption itself always reads the row."""
        # No stamp: stock changes with every redemption, so a stamp query would cost
        # what the rebuild costs; the catalogue is simply read again when it expires.
        return self._cache.get(
            (str(session.get_bind().engine.url), programme_id),
            build=lambda _: _Catalogue(
                self.views(session, programme_id),
                self.tiers(session, programme_id),
                frozenset(
                    session.scalars(
                        select(Reward.type).where(Reward.programme_id == programme_id).distinct()
                    )
                ),
            ),
        )

    def invalidate(self, session: Session, programme_id: uuid.UUID) -> None:
        self._cache.invalidate((str(session.get_bind().engine.url), programme_id))


catalogue = CatalogueService()


# --- redemptions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _MemberRow:
    id: uuid.UUID
    programme_id: uuid.UUID
    status: str
    enrolled_at: datetime
    slug: str


def _lock_statement(reward_condition: Any) -> Any:
    return (
        select(
            Member.id,
            Member.programme_id,
            Member.status,
            Member.enrolled_at,
            Programme.slug,
            Account.available,
            Account.pending,
            Account.lifetime_earned,
            *_VIEW_COLUMNS,
        )
        .join(Programme, Programme.id == Member.programme_id)
        .join(Account, Account.member_id == Member.id)
        .join(Reward, Reward.programme_id == Member.programme_id)
        .where(
            Member.id == bindparam("member_id", type_=Uuid()),
            reward_condition,
            Reward.status != RewardStatus.archived.value,
        )
        .with_for_update(of=Account)
    )


# Hot-path statements, built once (building a select per call costs more than running it).
_LOCK_BY_ID = _lock_statement(Reward.id == bindparam("reward", type_=Uuid()))
_LOCK_BY_CODE = _lock_statement(Reward.code == bindparam("reward", type_=String()))
_STORED_REDEMPTION = select(Redemption.request_hash, Redemption.result).where(
    Redemption.member_id == bindparam("member_id", type_=Uuid()),
    Redemption.key == bindparam("key", type_=String()),
)
_TAKE_STOCK = (
    update(table_of(Reward))
    .where(
        table_of(Reward).c.id == bindparam("reward_id", type_=Uuid()),
        table_of(Reward).c.stock_left.is_(None) | (table_of(Reward).c.stock_left > 0),
    )
    .values(stock_left=table_of(Reward).c.stock_left - 1)
)
"""Take one unit; ``stock_left IS NULL``: the reward was made unlimited meanwhile."""


class RedemptionService:
    def _member(self, session: Session, member_id: uuid.UUID) -> tuple[_MemberRow, Programme]:
        row = session.execute(
            select(
                Member.id, Member.programme_id, Member.status, Member.enrolled_at, Programme.slug
            )
            .join(Programme, Programme.id == Member.programme_id)
            .where(Member.id == member_id)
        ).one_or_none()
        if row is None:
            raise MemberNotFound(f"no member {member_id}")
        member = _MemberRow(*row)
        programme = programmes.cached_by_slug(session, {member.slug})[member.slug]
        return member, programme

    def _held(
        self, session: Session, member_id: uuid.UUID, reward_id: uuid.UUID | None = None
    ) -> dict[uuid.UUID, int]:
        query = select(Redemption.reward_id, func.count()).where(
            Redemption.member_id == member_id,
            Redemption.status == RedemptionStatus.redeemed.value,
        )
        if reward_id is not None:
            query = query.where(Redemption.reward_id == reward_id)
        return {rid: int(n) for rid, n in session.execute(query.group_by(Redemption.reward_id))}

    def member_rewards(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        lang: str = "en",
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """What the member can redeem now and what is locked, with the reasons."""
        now = now or utc_now()
        member, programme = self._member(session, member_id)
        balance = ledger.balance(session, member_id=member_id, expiring_limit=0)
        views = catalogue.views(session, programme.id)
        tiers = catalogue.tiers(session, programme.id) if any(v.min_tier for v in views) else {}
        facts = MemberFacts(
            member_id=member.id,
            status=member.status,
            enrolled_at=member.enrolled_at,
            available_points=balance.available,
            tier=member_tier(session, member.id, now) if tiers else None,
            held=self._held(session, member.id) if views else {},
        )
        redeemable: list[dict[str, Any]] = []
        locked: list[dict[str, Any]] = []
        for view in views:
            reasons = lock_reasons(view, facts, tiers, now, programme.timezone)
            item = self._listed(view, programme, lang) | {"reasons": reasons_out(reasons, lang)}
            (locked if reasons else redeemable).append(item)
        return {
            "member_id": str(member.id),
            "available_points": balance.available,
            "tier": facts.tier,
            "redeemable": redeemable,
            "locked": locked,
        }

    def _listed(self, view: RewardView, programme: Programme, lang: str) -> dict[str, Any]:
        return {
            "id": str(view.id),
            "code": view.code,
            "type": view.type,
            "name": local_name(view.name, lang),
            "description": local_name(view.description, lang) or None,
            "summary": self._summary(view, programme, lang),
            "image_url": view.image_url,
            "points_cost": view.points_cost,
            "valid_until": iso(view.available_until),
            "stock_left": view.stock_left,
            "event": view.event(),
        }

    def checkout_offers(
        self,
        session: Session,
        *,
        programme: Programme,
        member_id: uuid.UUID,
        member_status: str,
        enrolled_at: datetime | None,
        tier: str | None,
        available_points: int,
        cart: Cart,
        lang: str,
        now: datetime,
    ) -> dict[str, list[dict[str, Any]]]:
        """For ``POST /v1/checkout/evaluate``: the member's coupons usable on this cart
        (one query) and the rewards redeemable now (the cached catalogue; ``tier`` is
        what the checkout knows already; a count of held redemptions only if some reward
        has a per-member limit)."""
        cached = catalogue.cached(session, programme.id)
        usable = (
            coupons.usable_for_cart(
                session, member_id=member_id, cart=cart, programme=programme, lang=lang, now=now
            )
            if cached.has_discount_coupons
            else []
        )
        offers: list[dict[str, Any]] = []
        if cached.rewards:
            facts = MemberFacts(
                member_id=member_id,
                status=member_status,
                enrolled_at=enrolled_at or now,
                available_points=available_points,
                tier=tier,
                held=(
                    self._held(session, member_id)
                    if any(v.per_member_limit for v in cached.rewards)
                    else {}
                ),
            )
            for view in cached.rewards:
                if lock_reasons(view, facts, cached.tiers, now, programme.timezone):
                    continue
                offer = {
                    "id": str(view.id),
                    "code": view.code,
                    "type": view.type,
                    "name": local_name(view.name, lang),
                    "summary": self._summary(view, programme, lang),
                    "points_cost": view.points_cost,
                }
                if view.type in (
                    RewardType.percent_discount,
                    RewardType.amount_discount,
                    RewardType.free_product,
                ):
                    verdict = cart_discount(view.type, view.terms(programme.currency), cart)
                    offer["discount_minor"] = verdict.discount_minor if verdict.applicable else 0
                offers.append(offer)
        return {"coupons": usable, "rewards": offers}

    # --- redeem ---------------------------------------------------------------------------

    def redeem(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        key: str,
        reward_id: uuid.UUID | None = None,
        reward_code: str | None = None,
        actor: str | None = None,
        now: datetime | None = None,
        optimistic: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Redeem one reward for the member: 201 and the answer, or 200 and the stored
        answer for a repeated Idempotency-Key (see the module docstring for the steps).

        ``optimistic``: do not look for an earlier request with this key first. A replay
        then either fails on the unique ``(member, key)`` constraint when the redemption
        is written — the caller retries without ``optimistic`` (the API does) — or is
        refused by a check, and a refusal looks for the earlier request before it is
        raised. Replays are rare, so a redemption saves a round trip."""
        now = now or utc_now()
        writer = ledger.writer(session, now=now)
        member, programme, view = self._lock(
            session, writer, member_id=member_id, reward_id=reward_id, code=reward_code
        )
        account = writer.accounts[member_id]
        digest = request_hash(view.id)
        if not optimistic:
            stored = self._stored(session, member_id, key, digest)  # 2. idempotency
            if stored is not None:
                return 200, stored
        try:
            if member.status == MemberStatus.closed:
                raise MemberClosed(f"member {member_id} is closed")
            # 3. eligibility
            tiers = catalogue.tiers(session, programme.id) if view.min_tier else {}
            facts = MemberFacts(
                member_id=member.id,
                status=member.status,
                enrolled_at=member.enrolled_at,
                available_points=account.available,
                tier=member_tier(session, member.id, now) if view.min_tier else None,
                held=self._held(session, member.id, view.id) if view.per_member_limit else {},
            )
            reasons = lock_reasons(view, facts, tiers, now, programme.timezone)
            if reasons:
                raise refusal(reasons, view, facts)
        except TreuError:
            stored = self._stored(session, member_id, key, digest) if optimistic else None
            if stored is not None:
                return 200, stored
            raise
        # 4. points, redemption, coupon or fulfilment
        body = self._book(session, writer, account, view, programme, member, key, digest, actor)
        # 5. stock, last: the hot row is locked from here to the commit only
        if view.stock_total is not None:
            taken = cast(
                CursorResult[Any],
                session.connection().execute(_TAKE_STOCK, {"reward_id": view.id}),
            )
            if taken.rowcount != 1:
                raise OutOfStock(
                    "the reward sold out", reasons=reasons_out([Reason("out_of_stock")])
                )
        return 201, body

    def _lock(
        self,
        session: Session,
        writer: LedgerWriter,
        *,
        member_id: uuid.UUID,
        reward_id: uuid.UUID | None,
        code: str | None,
    ) -> tuple[_MemberRow, Programme, RewardView]:
        """1. One statement: the member, their account locked (``FOR UPDATE OF
        accounts``), and the reward in their programme. No row: find out what is missing."""
        statement = _LOCK_BY_ID if reward_id is not None else _LOCK_BY_CODE
        row = (
            session.connection()
            .execute(statement, {"member_id": member_id, "reward": reward_id or code})
            .one_or_none()
        )
        if row is None:
            member, programme = self._member(session, member_id)
            writer.account(member_id)  # no account: AccountNotFound
            raise RewardNotFound(f"no reward {reward_id or code!s} in programme {programme.slug!r}")
        member = _MemberRow(*row[:5])
        programme = programmes.cached_by_slug(session, {member.slug})[member.slug]
        writer.adopt(AccountState(member.id, member.programme_id, *row[5:8]))
        return member, programme, RewardView(*row[8:])

    def _stored(
        self, session: Session, member_id: uuid.UUID, key: str, digest: str
    ) -> dict[str, Any] | None:
        """The answer to an earlier request with this key (under the account lock, so a
        concurrent first request has committed or rolled back by now)."""
        stored = (
            session.connection()
            .execute(_STORED_REDEMPTION, {"member_id": member_id, "key": key})
            .one_or_none()
        )
        if stored is None:
            return None
        if stored.request_hash != digest:
            raise IdempotencyKeyConflict(
                f"idempotency key {key!r} was already used for another redemption"
            )
        return dict(stored.result)

    def _book(
        self,
        session: Session,
        writer: LedgerWriter,
        account: AccountState,
        view: RewardView,
        programme: Programme,
        member: _MemberRow,
        key: str,
        digest: str,
        actor: str | None,
    ) -> dict[str, Any]:
        now = writer.now
        redemption_id = new_id()
        posting = writer.spend(
            account,
            points=view.points_cost,
            kind=PostingKind.redeem,
            details={
                "template": "rewards.redeem",
                "params": {"reward": view.name, "points": view.points_cost},
            },
            correlation_id=redemption_id,
            actor=actor,
        )
        kind = RewardType(view.type)
        coupon: dict[str, Any] | None = None
        fulfilment: dict[str, Any] | None = None
        if kind in COUPON_TYPES:
            coupon = coupon_row(
                coupon_id=new_id(),
                programme_id=programme.id,
                member_id=member.id,
                reward_id=view.id,
                redemption_id=redemption_id,
                kind=kind.value,
                terms=view.terms(programme.currency),
                restore_on_return=view.restore_on_return,
                issued_at=now,
                expires_at=self._coupon_expiry(view, programme, now),
            )
        elif kind == RewardType.donation:
            fulfilment = {
                "type": kind.value,
                "charity": view.charity_code,
                "value_minor": self._donated(view, programme),
                "currency": view.currency or programme.currency,
            }
        else:
            fulfilment = {
                "type": kind.value,
                "amount_minor": view.value_minor,
                "currency": view.currency or programme.currency,
            }
        body = {
            "id": str(redemption_id),
            "member_id": str(member.id),
            "reward": {"id": str(view.id), "code": view.code, "type": view.type, "name": view.name},
            "points": view.points_cost,
            "status": RedemptionStatus.redeemed.value,
            "created_at": iso(now),
            "coupon": (
                {
                    "id": str(coupon["id"]),
                    "code": format_code(coupon["code"]),
                    "kind": kind.value,
                    "expires_at": iso(coupon["expires_at"]),
                    "qr_url": qr_path(coupon["code"]),
                }
                if coupon is not None
                else None
            ),
            "fulfilment": fulfilment,
            "posting": posting.public(),
            "balance": {"available": account.available, "pending": account.pending},
        }
        batch = WriteBatch()
        writer.flush(batch)
        batch.insert(
            table_of(Redemption),
            [
                {
                    "id": redemption_id,
                    "programme_id": programme.id,
                    "member_id": member.id,
                    "reward_id": view.id,
                    "key": key,
                    "request_hash": digest,
                    "status": RedemptionStatus.redeemed.value,
                    "points": view.points_cost,
                    "posting_id": posting.id,
                    "refund_posting_id": None,
                    "reward": view.snapshot(programme.currency),
                    "result": body,
                    "actor": actor,
                    "ended_at": None,
                    "end_reason": None,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        if coupon is not None:
            batch.insert(table_of(Coupon), [coupon])
        outbox.add_to(batch, self._events(view, member.id, redemption_id, coupon, now), now=now)
        batch.flush(session.connection())
        if fulfilment is not None and kind == RewardType.donation:
            donations.record(
                session,
                member_id=member.id,
                programme_id=programme.id,
                charity=str(view.charity_code),
                points=view.points_cost,
                value_minor=int(fulfilment["value_minor"]),
                currency=str(fulfilment["currency"]),
                redemption_id=redemption_id,
                posting_id=posting.id,
                now=now,
            )
        elif fulfilment is not None:
            wallet.credit(
                session,
                member_id=member.id,
                programme_id=programme.id,
                amount_minor=int(fulfilment["amount_minor"]),
                currency=str(fulfilment["currency"]),
                redemption_id=redemption_id,
                now=now,
            )
        return body

    def _events(
        self,
        view: RewardView,
        member_id: uuid.UUID,
        redemption_id: uuid.UUID,
        coupon: dict[str, Any] | None,
        now: datetime,
    ) -> list[DomainEvent]:
        """``reward.redeemed``, and ``coupon.issued`` for a reward that issues one."""
        events: list[DomainEvent] = [
            RewardRedeemed(
                programme_id=view.programme_id,
                member_id=member_id,
                occurred_at=now,
                redemption_id=redemption_id,
                reward_id=view.id,
                reward_code=view.code,
                reward_type=view.type,
                points=view.points_cost,
            )
        ]
        if coupon is not None:
            events.append(
                CouponIssued(
                    programme_id=view.programme_id,
                    member_id=member_id,
                    occurred_at=now,
                    coupon_id=coupon["id"],
                    kind=coupon["kind"],
                    expires_at=coupon["expires_at"],
                    reward_id=view.id,
                    redemption_id=redemption_id,
                )
            )
        return events

    def _summary(self, view: RewardView, programme: Programme, lang: str) -> str:
        """The reward in one line; a donation without a fixed amount says what its points
        are worth now."""
        terms = view.terms(programme.currency)
        if view.type == RewardType.donation and "value_minor" not in terms:
            terms["value_minor"] = self._donated(view, programme)
            terms.setdefault("currency", programme.currency)
        return summary(view.type, terms, lang, programme.timezone)

    def _donated(self, view: RewardView, programme: Programme) -> int:
        """What a donation reward gives the charity: its ``value_minor``, or what the
        points are worth at the programme's point value (rounded down)."""
        if view.value_minor is not None:
            return view.value_minor
        return worth(view.points_cost, programme.point_value_minor)

    def _coupon_expiry(self, view: RewardView, programme: Programme, now: datetime) -> datetime:
        """Discounts and free products: ``coupon_valid_days`` after redemption. A ticket:
        until its event ends (the end of the event's day when no end is given), or
        ``coupon_valid_days`` if that is sooner."""
        days = view.coupon_valid_days
        if view.type != RewardType.experience:
            return now + timedelta(days=days or DEFAULT_COUPON_DAYS)
        assert view.event_starts_at is not None
        end = view.event_ends_at
        if end is None:
            zone = ZoneInfo(programme.timezone)
            day = view.event_starts_at.astimezone(zone).date() + timedelta(days=1)
            end = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(ZoneInfo("UTC"))
        if days is not None:
            end = min(end, now + timedelta(days=days))
        return end

    # --- cancel and expiry --------------------------------------------------------------

    def cancel(
        self,
        session: Session,
        *,
        redemption_id: uuid.UUID,
        actor: str | None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Redemption:
        """Cancel a redemption whose coupon is unused: stock back, points back if the
        reward's ``refund_on_cancel`` says so. Cancelling again answers the cancelled
        redemption unchanged."""
        now = now or utc_now()
        owner = session.scalar(select(Redemption.member_id).where(Redemption.id == redemption_id))
        if owner is None:
            raise RedemptionNotFound(f"no redemption {redemption_id}")
        writer = ledger.writer(session, now=now)
        account = writer.account(owner)  # the account first, always
        redemption = session.scalar(
            select(Redemption).where(Redemption.id == redemption_id).with_for_update()
        )
        assert redemption is not None
        if redemption.status == RedemptionStatus.cancelled:
            return redemption
        if redemption.status == RedemptionStatus.expired:
            raise RedemptionNotCancellable("its coupon expired; the redemption is closed")
        kind = RewardType(redemption.reward["type"])
        if kind not in COUPON_TYPES:
            raise RedemptionNotCancellable(
                f"a {kind.value} is fulfilled at once and cannot be cancelled"
            )
        cancelled = _run(
            session,
            update(Coupon)
            .where(
                Coupon.redemption_id == redemption.id,
                Coupon.status == CouponStatus.active.value,
                Coupon.expires_at > now,
            )
            .values(status=CouponStatus.cancelled.value, updated_at=now)
            .execution_options(synchronize_session=False),
        )
        if cancelled.rowcount != 1:
            state = session.scalar(
                select(Coupon.status).where(Coupon.redemption_id == redemption.id)
            )
            what = "used" if state == CouponStatus.used else "no longer active"
            raise RedemptionNotCancellable(f"the coupon is {what}", coupon_status=state)
        if redemption.reward.get("policies", {}).get("refund_on_cancel", True):
            refund = self._refund(writer, account, redemption, why="cancelled", actor=actor)
            redemption.refund_posting_id = refund
        writer.flush()
        redemption.status = RedemptionStatus.cancelled.value
        redemption.ended_at = now
        redemption.end_reason = reason or "cancelled"
        redemption.updated_at = now
        session.flush()
        _give_back_stock(session, {redemption.reward_id: 1})
        audit.record(
            session,
            actor=actor or "system",
            action="redemption.cancel",
            subject_type="redemption",
            subject_id=str(redemption.id),
            programme_id=redemption.programme_id,
            data={"reason": reason, "refunded": redemption.refund_posting_id is not None},
        )
        return redemption

    def _refund(
        self,
        writer: LedgerWriter,
        account: AccountState,
        redemption: Redemption,
        *,
        why: str,
        actor: str | None,
    ) -> uuid.UUID:
        posting = writer.refund(
            account,
            posting_id=redemption.posting_id,
            details={
                "template": "rewards.refund",
                "params": {
                    "reward": redemption.reward.get("name", {}),
                    "points": redemption.points,
                    "why": why,
                },
            },
            correlation_id=redemption.id,
            actor=actor,
        )
        return posting.id

    def expire_coupons(self, session: Session, *, now: datetime, limit: int = 500) -> int:
        """Expire unused coupons past their expiry (a batch of ``limit``): the stock goes
        back, and the points too where the reward's ``refund_on_expiry`` says so. Safe to
        run twice or concurrently: a coupon changes only by ``UPDATE … WHERE status =
        'active'``, under its member's account lock."""
        due = session.execute(
            select(Coupon.id, Coupon.member_id)
            .where(Coupon.status == CouponStatus.active.value, Coupon.expires_at <= now)
            .order_by(Coupon.expires_at)
            .limit(limit)
        ).all()
        if not due:
            return 0
        writer = ledger.writer(session, now=now)
        writer.lock(sorted({member_id for _, member_id in due}))
        expired = session.execute(
            update(Coupon)
            .where(
                Coupon.id.in_([coupon_id for coupon_id, _ in due]),
                Coupon.status == CouponStatus.active.value,
                Coupon.expires_at <= now,
            )
            .values(status=CouponStatus.expired.value, updated_at=now)
            .returning(Coupon.redemption_id)
            .execution_options(synchronize_session=False)
        ).all()
        redemption_ids = [row[0] for row in expired if row[0] is not None]
        stock: dict[uuid.UUID, int] = {}
        if redemption_ids:
            for redemption in session.scalars(
                select(Redemption)
                .where(
                    Redemption.id.in_(redemption_ids),
                    Redemption.status == RedemptionStatus.redeemed.value,
                )
                .order_by(Redemption.member_id, Redemption.id)
            ):
                if redemption.reward.get("policies", {}).get("refund_on_expiry", False):
                    account = writer.account(redemption.member_id)
                    redemption.refund_posting_id = self._refund(
                        writer, account, redemption, why="expired", actor="rewards.expire_coupons"
                    )
                redemption.status = RedemptionStatus.expired.value
                redemption.ended_at = now
                redemption.end_reason = "coupon expired unused"
                redemption.updated_at = now
                stock[redemption.reward_id] = stock.get(redemption.reward_id, 0) + 1
        writer.flush()
        session.flush()
        _give_back_stock(session, stock)
        return len(expired)

    # --- reading ----------------------------------------------------------------------------

    def get(self, session: Session, redemption_id: uuid.UUID) -> Redemption:
        redemption = session.get(Redemption, redemption_id)
        if redemption is None:
            raise RedemptionNotFound(f"no redemption {redemption_id}")
        return redemption

    def coupon_of(self, session: Session, redemption_id: uuid.UUID) -> Coupon | None:
        return session.scalar(select(Coupon).where(Coupon.redemption_id == redemption_id))

    def for_member(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[tuple[Redemption, Coupon | None]], str | None]:
        """Newest first, keyset-paginated, each with its coupon (two queries)."""
        query = select(Redemption).where(Redemption.member_id == member_id)
        if cursor:
            before = uuid.UUID(str(decode_cursor(cursor).get("before")))
            query = query.where(Redemption.id < before)
        rows = list(session.scalars(query.order_by(Redemption.id.desc()).limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"before": str(rows[-1].id)})
        by_redemption = (
            {
                c.redemption_id: c
                for c in session.scalars(
                    select(Coupon).where(Coupon.redemption_id.in_([r.id for r in rows]))
                )
            }
            if rows
            else {}
        )
        return [(r, by_redemption.get(r.id)) for r in rows], next_cursor

    def public(
        self,
        redemption: Redemption,
        coupon: Coupon | None,
        *,
        lang: str,
        timezone: str,
    ) -> dict[str, Any]:
        snapshot = redemption.reward
        return {
            "id": str(redemption.id),
            "member_id": str(redemption.member_id),
            "reward": {
                "id": snapshot.get("id"),
                "code": snapshot.get("code"),
                "type": snapshot.get("type"),
                "name": local_name(snapshot.get("name"), lang),
                "summary": summary(
                    str(snapshot.get("type")), dict(snapshot.get("terms", {})), lang, timezone
                ),
            },
            "points": redemption.points,
            "status": redemption.status,
            "created_at": iso(redemption.created_at),
            "ended_at": iso(redemption.ended_at),
            "coupon": (
                coupons.public(coupon, lang=lang, timezone=timezone) if coupon is not None else None
            ),
        }


def _run(session: Session, statement: Any) -> CursorResult[Any]:
    """Execute a DML statement and keep its row count (typed)."""
    return cast(CursorResult[Any], session.execute(statement))


def _give_back_stock(session: Session, counts: dict[uuid.UUID, int]) -> None:
    """Return units to limited rewards, in reward-id order (after the accounts)."""
    for reward_id in sorted(counts):
        session.execute(
            update(Reward)
            .where(Reward.id == reward_id, Reward.stock_left.is_not(None))
            .values(stock_left=Reward.stock_left + counts[reward_id])
            .execution_options(synchronize_session=False)
        )


redemptions = RedemptionService()
