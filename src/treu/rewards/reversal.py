"""Cancelling and expiring redemptions: the half of the redemption service that gives
stock and points back (``RedemptionService`` inherits it, so ``redemptions.cancel`` and
``redemptions.expire_coupons`` are what the API, the worker and the demo call).

**Cancelling** gives the stock back and, where the reward's ``refund_on_cancel`` says so,
the points (``LedgerWriter.refund``: to the very lots they came from). A used coupon
cannot be cancelled: the coupon is set ``cancelled`` by a conditional UPDATE, which
loses against a till using it at the same moment. **Expiry** (``expire_coupons``, job
``rewards.expire_coupons``) does the same for unused coupons past their expiry, with the
reward's ``refund_on_expiry``. Donations and wallet credits are fulfilled inside the
redemption and cannot be cancelled.

Both follow the lock order of ``treu.rewards.redemption``: the members' points accounts
first (expiry: several, in member-id order), then the rewards' rows, in reward-id order,
to give the stock back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from treu.audit.service import audit
from treu.kit.time import utc_now
from treu.ledger.service import AccountState, LedgerWriter, ledger
from treu.rewards.errors import RedemptionNotCancellable, RedemptionNotFound
from treu.rewards.models import (
    COUPON_TYPES,
    Coupon,
    CouponStatus,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardType,
)


class Reversals:
    """Cancel and expire redemptions (see the module docstring)."""

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
            refund = _refund(writer, account, redemption, why="cancelled", actor=actor)
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
                    redemption.refund_posting_id = _refund(
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


def _refund(
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
