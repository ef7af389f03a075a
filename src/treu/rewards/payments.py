"""Pay with points: a member pays (part of) an order with points at the programme's
point value, and the shop can refund such a payment, whole or in part.

Point value: ``Programme.point_value_minor`` minor units per point (a Decimal such as
``1`` = one cent per point, ``0.5``, ``2.5``). All arithmetic is exact integer maths on
that Decimal's fraction, and rounding never goes against the member:

* the points can cover at most ``floor(points_available * value)`` minor units, and never
  more than the amount asked for;
* the member pays the *fewest* points that are worth the covered amount
  (``ceil(covered / value)``), so a point is never spent for a fraction of a cent;
* what is left (``remaining_to_pay_minor``) is paid another way; with ``partial=false``
  the points must cover the whole amount up to less than one point's worth (when one
  point is worth 3 cents, 10 cents take 3 points and 1 cent remains).

A refund of ``amount`` out of a payment gives back ``ceil(refunded_so_far * points /
covered)`` minus what earlier refunds gave: cumulative, so any sequence of partial
refunds adds up to exactly the points paid, and each one rounds in the member's favour.

The shop decides how a returned order is refunded (to points, to the card, a voucher),
so a ``return`` event does not refund a points payment by itself: the shop calls
``POST /v1/point-payments/{id}/refund`` for the part it pays back in points.

Concurrency: a payment and its refunds run under the member's points-account lock
(``LedgerWriter.lock``), so twenty concurrent payments of one member see each other's
spending and never overspend; the idempotency key is checked under that lock too, so a
retry that races the original waits for it and answers its result.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.errors import Invalid, NotFound
from treu.kit.ids import new_id
from treu.kit.time import iso, utc_now
from treu.ledger.errors import InsufficientPoints
from treu.ledger.models import PostingKind
from treu.ledger.service import AccountState, ledger
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards._common import check_currency, check_member, digest, find_keyed
from treu.rewards.schemas import (
    Keyed,
    PaymentRefundOut,
    PointPaymentDetail,
    PointPaymentOut,
    RefundSummary,
)


class PointsHaveNoValue(Invalid):
    code = "points_have_no_value"
    title = "Points have no cash value in this programme"


class PaymentNotFound(NotFound):
    code = "point_payment_not_found"
    title = "Points payment not found"


class RefundExceedsPayment(Invalid):
    code = "refund_exceeds_payment"
    title = "More refunded than was paid"


# --- point value maths (pure) ---------------------------------------------------------


class Cover(NamedTuple):
    points: int
    """The fewest points worth ``amount_minor``."""
    amount_minor: int
    """What those points pay: at most the amount asked for."""


def _ratio(point_value_minor: Decimal) -> tuple[int, int]:
    if point_value_minor <= 0:
        raise PointsHaveNoValue("points have no cash value in this programme")
    numerator, denominator = point_value_minor.as_integer_ratio()
    return numerator, denominator


def worth(points: int, point_value_minor: Decimal) -> int:
    """What ``points`` are worth in whole minor units (rounded down: a fraction of a
    cent cannot be paid out)."""
    if points <= 0 or point_value_minor <= 0:
        return 0
    numerator, denominator = point_value_minor.as_integer_ratio()
    return points * numerator // denominator


def cover(amount_minor: int, point_value_minor: Decimal, available: int | None = None) -> Cover:
    """How much of ``amount_minor`` points can pay, and with how few points.

    ``available``: the member's spendable points (``None``: unlimited). Exact integer
    maths on the point value's fraction ``p / q`` (minor units per point)."""
    if amount_minor <= 0:
        return Cover(0, 0)
    p, q = _ratio(point_value_minor)
    most = amount_minor * q // p  # points whose value does not exceed the amount
    if available is not None:
        most = min(most, max(available, 0))
    covered = most * p // q  # what they are worth, in whole minor units
    if covered == 0:
        return Cover(0, 0)
    points = -(-covered * q // p)  # the fewest points worth that much
    return Cover(points, covered)


def refund_points(
    *, paid_points: int, covered_minor: int, refunded_minor: int, refunded_points: int, amount: int
) -> int:
    """Points to give back for refunding ``amount`` more of a payment (cumulative, so
    partial refunds add up to exactly ``paid_points``; rounded up for the member)."""
    total = refunded_minor + amount
    return -(-total * paid_points // covered_minor) - refunded_points


# --- models ---------------------------------------------------------------------------


class PointPayment(IdMixin, TimestampMixin, Base):
    """Points a member paid (part of) an order with. ``refunded_*`` grow with refunds
    (each one a ``PointPaymentRefund`` row); the ledger's ``redeem`` posting and its
    ``refund`` postings are the truth about the points."""

    __tablename__ = "point_payments"
    __table_args__ = (
        UniqueConstraint("member_id", "key"),
        Index("ix_point_payments_member_id_id", "member_id", "id"),
        Index("ix_point_payments_programme_order", "programme_id", "order_id"),
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint(
            "amount_covered_minor > 0 AND amount_covered_minor <= amount_requested_minor",
            name="covered_within_requested",
        ),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_covered_minor",
            name="refunded_within_covered",
        ),
        CheckConstraint(
            "refunded_points >= 0 AND refunded_points <= points", name="refunded_within_points"
        ),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    key: Mapped[str] = mapped_column(String(200))
    payload_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    amount_requested_minor: Mapped[int]
    amount_covered_minor: Mapped[int]
    points: Mapped[int]
    point_value_minor: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    """The point value the payment was made at (the programme's may change later)."""
    posting_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("postings.id"))
    refunded_minor: Mapped[int] = mapped_column(default=0)
    refunded_points: Mapped[int] = mapped_column(default=0)
    actor: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The answer given the first time (a ``PointPaymentOut``), returned unchanged on a
    replay of the key."""


class PointPaymentRefund(IdMixin, Base):
    __tablename__ = "point_payment_refunds"
    __table_args__ = (
        UniqueConstraint("member_id", "key"),
        Index("ix_point_payment_refunds_payment_id", "payment_id"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("points >= 0", name="points_non_negative"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("point_payments.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    key: Mapped[str] = mapped_column(String(200))
    payload_hash: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int]
    points: Mapped[int]
    """0 when a small partial refund is already covered by earlier rounding up."""
    posting_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("postings.id"))
    actor: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


# --- service --------------------------------------------------------------------------


def _balance(account: AccountState) -> dict[str, int]:
    return {"available": account.available, "pending": account.pending}


class PaymentService:
    def pay(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        key: str,
        order_id: str,
        amount_minor: int,
        currency: str,
        partial: bool = False,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Keyed[PointPaymentOut]:
        """Pay up to ``amount_minor`` of order ``order_id`` with points, FIFO by expiry;
        a replay of ``key`` answers the first result.

        Without ``partial`` the balance must cover the whole amount (``insufficient_points``
        otherwise); with it, as much as the balance covers."""
        now = now or utc_now()
        member = members.get(session, member_id)
        programme = programmes.get(session, member.programme_id)
        currency = currency.upper()
        payload = {
            "member_id": str(member_id),
            "order_id": order_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "partial": partial,
        }
        writer = ledger.writer(session, now=now)
        account = writer.account(member.id)  # locks first: a concurrent retry waits here
        replay = self._replay(session, PointPayment, member.id, key, digest(payload))
        if replay is not None:
            return Keyed(PointPaymentOut.model_validate(replay), replayed=True)
        check_member(member)
        check_currency(programme, currency)
        if amount_minor <= 0:
            raise Invalid("amount_minor must be positive")
        value = programme.point_value_minor
        full = cover(amount_minor, value)
        if full.points == 0:
            raise PointsHaveNoValue(
                f"{amount_minor} minor units are worth less than one point "
                f"({value} minor units per point)"
            )
        can = cover(amount_minor, value, account.available)
        if can.points == 0 or (not partial and can.amount_minor < full.amount_minor):
            raise InsufficientPoints(
                f"{full.points} points needed, {max(account.available, 0)} available",
                needed=full.points,
                available=max(account.available, 0),
            )
        payment_id = new_id()
        posting = writer.spend(
            account,
            points=can.points,
            kind=PostingKind.redeem,
            details={
                "template": "payment",
                "params": {
                    "points": can.points,
                    "amount_minor": can.amount_minor,
                    "currency": currency,
                    "order": order_id,
                },
            },
            correlation_id=payment_id,
            actor=actor,
        )
        writer.flush()
        result = {
            "id": str(payment_id),
            "member_id": str(member.id),
            "order_id": order_id,
            "currency": currency,
            "amount_requested_minor": amount_minor,
            "points_used": can.points,
            "amount_covered_minor": can.amount_minor,
            "remaining_to_pay_minor": amount_minor - can.amount_minor,
            "point_value_minor": str(value.normalize()),
            "posting": posting.public(),
            "balance": _balance(account),
            "created_at": iso(now),
        }
        session.add(
            PointPayment(
                id=payment_id,
                programme_id=programme.id,
                member_id=member.id,
                key=key,
                payload_hash=digest(payload),
                order_id=order_id,
                currency=currency,
                amount_requested_minor=amount_minor,
                amount_covered_minor=can.amount_minor,
                points=can.points,
                point_value_minor=value,
                posting_id=posting.id,
                refunded_minor=0,
                refunded_points=0,
                actor=actor,
                result=result,
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        return Keyed(PointPaymentOut.model_validate(result))

    def refund(
        self,
        session: Session,
        *,
        payment_id: uuid.UUID,
        key: str,
        amount_minor: int | None = None,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> Keyed[PaymentRefundOut]:
        """Refund ``amount_minor`` (default: all that is not refunded yet) of a payment:
        the points go back to the lots they were paid from (``LedgerWriter.refund``)."""
        now = now or utc_now()
        member_id = session.scalar(
            select(PointPayment.member_id).where(PointPayment.id == payment_id)
        )
        if member_id is None:
            raise PaymentNotFound(f"no points payment {payment_id}")
        writer = ledger.writer(session, now=now)
        account = writer.account(member_id)  # the lock orders refunds of one member
        payload = {"payment_id": str(payment_id), "amount_minor": amount_minor}
        replay = self._replay(session, PointPaymentRefund, member_id, key, digest(payload))
        if replay is not None:
            return Keyed(PaymentRefundOut.model_validate(replay), replayed=True)
        # Read after the lock, so earlier refunds of this payment are seen.
        payment = session.scalars(
            select(PointPayment)
            .where(PointPayment.id == payment_id)
            .execution_options(populate_existing=True)
        ).one()
        open_minor = payment.amount_covered_minor - payment.refunded_minor
        amount = open_minor if amount_minor is None else amount_minor
        if amount <= 0 or amount > open_minor:
            raise RefundExceedsPayment(
                f"{amount} minor units to refund, {open_minor} refundable",
                refundable_minor=open_minor,
            )
        points = refund_points(
            paid_points=payment.points,
            covered_minor=payment.amount_covered_minor,
            refunded_minor=payment.refunded_minor,
            refunded_points=payment.refunded_points,
            amount=amount,
        )
        refund_id = new_id()
        posting = None
        if points > 0:
            posting = writer.refund(
                account,
                posting_id=payment.posting_id,
                points=points,
                details={
                    "template": "refund.payment",
                    "params": {
                        "points": points,
                        "amount_minor": amount,
                        "currency": payment.currency,
                        "order": payment.order_id,
                    },
                },
                correlation_id=payment.id,
                actor=actor,
            )
            writer.flush()
        payment.refunded_minor += amount
        payment.refunded_points += points
        payment.updated_at = now
        result = {
            "id": str(refund_id),
            "payment_id": str(payment.id),
            "order_id": payment.order_id,
            "currency": payment.currency,
            "amount_minor": amount,
            "points": points,
            "points_expired": posting.expired if posting is not None else 0,
            "posting": posting.public() if posting is not None else None,
            "payment": {
                "points_used": payment.points,
                "amount_covered_minor": payment.amount_covered_minor,
                "refunded_minor": payment.refunded_minor,
                "refunded_points": payment.refunded_points,
            },
            "balance": _balance(account),
            "created_at": iso(now),
        }
        session.add(
            PointPaymentRefund(
                id=refund_id,
                payment_id=payment.id,
                member_id=member_id,
                key=key,
                payload_hash=digest(payload),
                amount_minor=amount,
                points=points,
                posting_id=posting.id if posting is not None else None,
                actor=actor,
                result=result,
                created_at=now,
            )
        )
        session.flush()
        return Keyed(PaymentRefundOut.model_validate(result))

    def get(self, session: Session, payment_id: uuid.UUID) -> PointPaymentDetail:
        """The payment as it stands now, with its refunds."""
        payment = session.get(PointPayment, payment_id)
        if payment is None:
            raise PaymentNotFound(f"no points payment {payment_id}")
        refunds = session.scalars(
            select(PointPaymentRefund)
            .where(PointPaymentRefund.payment_id == payment_id)
            .order_by(PointPaymentRefund.id)
        ).all()
        return PointPaymentDetail(
            id=payment.id,
            member_id=payment.member_id,
            order_id=payment.order_id,
            currency=payment.currency,
            amount_requested_minor=payment.amount_requested_minor,
            points_used=payment.points,
            amount_covered_minor=payment.amount_covered_minor,
            remaining_to_pay_minor=payment.amount_requested_minor - payment.amount_covered_minor,
            point_value_minor=str(payment.point_value_minor.normalize()),
            refunded_minor=payment.refunded_minor,
            refunded_points=payment.refunded_points,
            refunds=[
                RefundSummary(
                    id=r.id,
                    amount_minor=r.amount_minor,
                    points=r.points,
                    created_at=iso(r.created_at),
                )
                for r in refunds
            ],
            created_at=iso(payment.created_at),
        )

    def _replay(
        self,
        session: Session,
        model: type[PointPayment] | type[PointPaymentRefund],
        member_id: uuid.UUID,
        key: str,
        payload_hash: str,
    ) -> dict[str, Any] | None:
        """The stored answer to an earlier request with ``key``, or ``None``."""
        row = find_keyed(
            session,
            model,
            member_id=member_id,
            key=key,
            payload_hash=payload_hash,
            shown_key=key,
        )
        return None if row is None else dict(row.result)


payments = PaymentService()


def capacity(programme: Programme, *, available: int, amount_minor: int) -> Cover:
    """What the member's points could pay of ``amount_minor`` (the checkout's hint);
    nothing when points have no cash value."""
    if programme.point_value_minor <= 0:
        return Cover(0, 0)
    return cover(amount_minor, programme.point_value_minor, available)
