"""The rewards catalogue: what points buy, managed by admins and cached per process for
the checkout (``CatalogueService``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.errors import Invalid
from treu.kit.cache import StampedCache
from treu.kit.money import is_known_currency
from treu.kit.time import iso
from treu.programmes.models import Programme
from treu.rewards.donations import CharityNotFound, donations
from treu.rewards.errors import (
    RewardExists,
    RewardNotFound,
    StockBelowRedeemed,
    StockModeChange,
    StockTooLarge,
    UnknownTier,
)
from treu.rewards.models import (
    COUPON_TYPES,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardStatus,
    RewardType,
)
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
from treu.tiers.models import Tier

CACHE_SECONDS = 5.0
MAX_STOCK = 1_000_000_000
"""A reward's total stock at most (as ``RewardIn`` allows when it is created)."""

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
    segments: list[Any]
    """Slugs of segments: when not empty, only members of one of them may redeem."""

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


VIEW_COLUMNS = tuple(getattr(Reward, f.name) for f in fields(RewardView))


@dataclass(frozen=True)
class TierInfo:
    code: str
    rank: int
    name: dict[str, Any]


DISCOUNT_KINDS = frozenset(
    {
        RewardType.percent_discount.value,
        RewardType.amount_discount.value,
        RewardType.free_product.value,
    }
)
"""Coupons of these types can take something off a cart."""


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

    def add_stock(
        self,
        session: Session,
        *,
        programme: Programme,
        reward_id: uuid.UUID,
        units: int,
        actor: str,
    ) -> Reward:
        """Top up a limited reward by ``units`` (negative: take units out, never below
        what is redeemed). Relative to the locked row, so two top-ups at once both count
        and a redemption in flight is not overwritten."""
        reward = session.scalar(
            select(Reward)
            .where(Reward.id == reward_id, Reward.programme_id == programme.id)
            .with_for_update()
        )
        if reward is None or reward.status == RewardStatus.archived:
            raise RewardNotFound(f"no reward {reward_id} in programme {programme.slug!r}")
        if reward.stock_total is None:
            raise StockModeChange("an unlimited reward has no stock to top up", field="stock")
        before = reward.stock_total
        self._restock(reward, before + units)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="reward.update",
            subject_type="reward",
            subject_id=str(reward.id),
            programme_id=programme.id,
            data={"changes": {"stock": reward.stock_total}, "added": units},
        )
        self.invalidate(session, programme.id)
        return reward

    def redemption_counts(
        self, session: Session, reward_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[int, int]]:
        """Per reward: redemptions in all, and those still holding a unit (redeemed, not
        cancelled or expired). One grouped query."""
        ids = list(reward_ids)
        if not ids:
            return {}
        holding = func.sum(case((Redemption.status == RedemptionStatus.redeemed.value, 1), else_=0))
        rows = session.execute(
            select(Redemption.reward_id, func.count(), holding)
            .where(Redemption.reward_id.in_(ids))
            .group_by(Redemption.reward_id)
        ).all()
        return {reward_id: (int(total), int(held or 0)) for reward_id, total, held in rows}

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
        if stock > MAX_STOCK:
            raise StockTooLarge(
                f"a stock of {stock:,} is more than {MAX_STOCK:,} units", field="stock"
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
            select(*VIEW_COLUMNS)
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
