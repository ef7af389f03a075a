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

**Cancelling** and **expiry** give stock and points back: ``treu.rewards.reversal``,
whose ``Reversals`` this service inherits (``redemptions.cancel``,
``redemptions.expire_coupons``).

Rewards of type ``donation`` and ``wallet_credit`` are fulfilled inside the redemption
(a donation record, a wallet credit: ``treu.rewards.donations``, ``treu.rewards.wallet``)
and issue no coupon; they cannot be cancelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, String, Uuid, bindparam, func, select, update
from sqlalchemy.orm import Session

from treu.db.base import WriteBatch, table_of
from treu.errors import TreuError
from treu.kit.codes import format_code
from treu.kit.ids import new_id
from treu.kit.pagination import decode_cursor, encode_cursor
from treu.kit.time import iso, utc_now
from treu.ledger.models import Account, PostingKind
from treu.ledger.service import AccountState, LedgerWriter, ledger
from treu.members.errors import MemberClosed, MemberNotFound
from treu.members.models import Member, MemberStatus
from treu.outbox.events import CouponIssued, DomainEvent, RewardRedeemed
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.catalogue import VIEW_COLUMNS, RewardView, catalogue
from treu.rewards.coupons import (
    Cart,
    Reason,
    UsableCoupon,
    cart_discount,
    coupon_row,
    coupons,
    local_name,
    problem_reasons,
    qr_path,
    reasons_out,
    summary,
)
from treu.rewards.donations import donations
from treu.rewards.eligibility import (
    MemberFacts,
    lock_reasons,
    member_segments,
    member_tier,
    refusal,
    request_hash,
)
from treu.rewards.errors import (
    IdempotencyKeyConflict,
    OutOfStock,
    RedemptionNotFound,
    RewardNotFound,
)
from treu.rewards.models import (
    COUPON_TYPES,
    Coupon,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardStatus,
    RewardType,
)
from treu.rewards.payments import worth
from treu.rewards.reversal import Reversals
from treu.rewards.schemas import (
    DEFAULT_COUPON_DAYS,
    EventInfo,
    Keyed,
    MemberRewardOut,
    MemberRewardsOut,
    RedemptionOut,
    RedemptionResult,
)
from treu.rewards.wallet import wallet

# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RewardOffer:
    """A reward the member can redeem now, as the checkout offers it."""

    id: uuid.UUID
    code: str
    type: str
    name: str
    summary: str
    points_cost: int
    discount_minor: int | None
    """Discounts and free products: what the reward's coupon would take off the cart (0
    when it would not apply); ``None`` for other rewards."""

    def public(self) -> dict[str, Any]:
        """As ``POST /v1/checkout/evaluate`` lists it (a JSON document: the checkout's
        answer is encoded as it is built); ``discount_minor`` only for discounts."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "code": self.code,
            "type": self.type,
            "name": self.name,
            "summary": self.summary,
            "points_cost": self.points_cost,
        }
        if self.discount_minor is not None:
            out["discount_minor"] = self.discount_minor
        return out


@dataclass(frozen=True, slots=True)
class CheckoutOffers:
    coupons: list[UsableCoupon]
    """The member's coupons usable on the cart, largest discount first."""
    rewards: list[RewardOffer]


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
            *VIEW_COLUMNS,
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


class RedemptionService(Reversals):
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
    ) -> MemberRewardsOut:
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
            segments=member_segments(session, member.id, views),
        )
        redeemable: list[MemberRewardOut] = []
        locked: list[MemberRewardOut] = []
        for view in views:
            reasons = lock_reasons(view, facts, tiers, now, programme.timezone)
            item = self._listed(view, programme, lang, reasons)
            (locked if reasons else redeemable).append(item)
        return MemberRewardsOut(
            member_id=member.id,
            available_points=balance.available,
            tier=facts.tier,
            redeemable=redeemable,
            locked=locked,
        )

    def _listed(
        self, view: RewardView, programme: Programme, lang: str, reasons: list[Reason]
    ) -> MemberRewardOut:
        event = view.event()
        return MemberRewardOut(
            id=view.id,
            code=view.code,
            type=RewardType(view.type),
            name=local_name(view.name, lang),
            description=local_name(view.description, lang) or None,
            summary=self.summary_of(view, programme, lang),
            image_url=view.image_url,
            points_cost=view.points_cost,
            valid_until=iso(view.available_until),
            stock_left=view.stock_left,
            event=EventInfo.model_validate(event) if event is not None else None,
            reasons=reasons_out(reasons, lang),
        )

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
    ) -> CheckoutOffers:
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
        offers: list[RewardOffer] = []
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
                segments=member_segments(session, member_id, cached.rewards),
            )
            for view in cached.rewards:
                if lock_reasons(view, facts, cached.tiers, now, programme.timezone):
                    continue
                discount = None
                if view.type in (
                    RewardType.percent_discount,
                    RewardType.amount_discount,
                    RewardType.free_product,
                ):
                    verdict = cart_discount(view.type, view.terms(programme.currency), cart)
                    discount = (verdict.discount_minor or 0) if verdict.applicable else 0
                offers.append(
                    RewardOffer(
                        id=view.id,
                        code=view.code,
                        type=view.type,
                        name=local_name(view.name, lang),
                        summary=self.summary_of(view, programme, lang),
                        points_cost=view.points_cost,
                        discount_minor=discount,
                    )
                )
        return CheckoutOffers(coupons=usable, rewards=offers)

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
    ) -> Keyed[RedemptionResult]:
        """Redeem one reward for the member; a repeated Idempotency-Key replays the
        stored answer (see the module docstring for the steps).

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
                return Keyed(stored, replayed=True)
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
                segments=member_segments(session, member.id, [view]),
            )
            reasons = lock_reasons(view, facts, tiers, now, programme.timezone)
            if reasons:
                raise refusal(reasons, view, facts)
        except TreuError:
            stored = self._stored(session, member_id, key, digest) if optimistic else None
            if stored is not None:
                return Keyed(stored, replayed=True)
            raise
        # 4. points, redemption, coupon or fulfilment
        result = self._book(session, writer, account, view, programme, member, key, digest, actor)
        # 5. stock, last: the hot row is locked from here to the commit only
        if view.stock_total is not None:
            taken = cast(
                CursorResult[Any],
                session.connection().execute(_TAKE_STOCK, {"reward_id": view.id}),
            )
            if taken.rowcount != 1:
                raise OutOfStock(
                    "the reward sold out", reasons=problem_reasons([Reason("out_of_stock")])
                )
        return Keyed(result)

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
    ) -> RedemptionResult | None:
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
        return RedemptionResult.model_validate(stored.result)

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
    ) -> RedemptionResult:
        """4. Burn the points and write the redemption, its coupon or its fulfilment and
        the outbox messages. The answer is stored with the redemption (``result``, for
        replays) and validated from that stored document, as a replay is."""
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
        body: dict[str, Any] = {
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
        return RedemptionResult.model_validate(body)

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

    def summary_of(self, view: RewardView, programme: Programme, lang: str) -> str:
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
    ) -> RedemptionOut:
        snapshot = redemption.reward
        return RedemptionOut(
            id=redemption.id,
            member_id=redemption.member_id,
            reward={
                "id": snapshot.get("id"),
                "code": snapshot.get("code"),
                "type": snapshot.get("type"),
                "name": local_name(snapshot.get("name"), lang),
                "summary": summary(
                    str(snapshot.get("type")), dict(snapshot.get("terms", {})), lang, timezone
                ),
            },
            points=redemption.points,
            status=redemption.status,
            created_at=iso(redemption.created_at),
            ended_at=iso(redemption.ended_at),
            coupon=(
                coupons.public(coupon, lang=lang, timezone=timezone) if coupon is not None else None
            ),
        )


redemptions = RedemptionService()
