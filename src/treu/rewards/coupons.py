"""Coupons: what a redemption issues, and how a till or web shop checks and uses one.

Life of a coupon::

    active ──redeem(order)──▶ used ──order fully returned (restore_on_return)──▶ active
      │
      ├──expires_at passes (job rewards.expire_coupons)──▶ expired
      └──its redemption is cancelled──────────────────────▶ cancelled

* **Validate** (``validate``) is read-only: is this coupon applicable to this cart, for
  this member, and what discount does it give? Percent discounts are rounded half-up to
  whole minor units (``treu.kit.money``) and capped at the cart total; a fixed amount is
  capped at the cart total; a free product gives one unit of the SKU (the cheapest
  matching line's unit price) and needs it in the cart. ``min_order_minor`` compares the
  cart total before discount.
* **Redeem** (``redeem``) binds the coupon to an order id, once: ``UPDATE … SET
  status = 'used' … WHERE id = :id AND status = 'active' AND expires_at > :now``. Of two
  tills racing, the database lets exactly one update the row; the other sees the row
  used. The same order id again answers the stored result (idempotent per coupon and
  order); another order is ``coupon_already_used``.
* **Restore** (``restore_for_order``): when the order that used a coupon is *fully*
  returned (every line of the purchase whose event id is the order id), the coupon is
  active again with its original expiry, if its reward says ``restore_on_return``. A
  partial return keeps the coupon used: the discount stays with the kept goods.
* Coupons are bearer vouchers: whoever holds the code may use it, unless the cart names
  a member who is not the coupon's owner. The code is a secret: it never goes into
  postings, explanations or logs.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.kit import codes
from treu.kit.money import Rounding, format_money, round_points
from treu.kit.pagination import decode_cursor, encode_cursor
from treu.kit.text import N_, translate
from treu.kit.time import iso, utc_now
from treu.outbox.events import CouponUsed
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.rewards.errors import (
    CouponAlreadyUsed,
    CouponNotApplicable,
    CouponNotFound,
    InvalidCouponCode,
)
from treu.rewards.models import Coupon, CouponStatus, RewardType
from treu.rewards.schemas import (
    DEFAULT_COUPON_DAYS,
    CouponOut,
    CouponUseOut,
    CouponValidationOut,
    Keyed,
    ReasonOut,
)

if TYPE_CHECKING:
    from treu.rewards.catalogue import RewardView

PERCENT_ROUNDING = Rounding.half_up
"""Percent discounts are rounded half-up ("kaufmännisch") to whole minor units."""


# --- carts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartLine:
    sku: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True)
class Cart:
    """What the coupon rules look at: the same lines ``POST /v1/checkout/evaluate``
    takes, without the fields that only earning rules need."""

    currency: str
    lines: tuple[CartLine, ...]
    member_id: uuid.UUID | None = None

    @property
    def total_minor(self) -> int:
        return sum(line.quantity * line.unit_price_minor for line in self.lines)


class _LineLike(Protocol):
    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_price_minor(self) -> int: ...


def coupon_cart(
    currency: str, lines: Iterable[_LineLike], member_id: uuid.UUID | None = None
) -> Cart:
    """A ``Cart`` from checkout lines (anything with sku, quantity, unit_price_minor)."""
    return Cart(
        currency=currency,
        lines=tuple(CartLine(x.sku, x.quantity, x.unit_price_minor) for x in lines),
        member_id=member_id,
    )


# --- texts ---------------------------------------------------------------------------------

_REASONS: dict[str, str] = {
    "insufficient_points": N_("{missing_points} more points needed"),
    "tier_required": N_("For {tier} members and above"),
    "segment_required": N_("Only for selected members"),
    "membership_too_new": N_("Available after {min_days} days of membership, in {days_left} days"),
    "out_of_stock": N_("Sold out"),
    "member_limit_reached": N_("Limit reached: {limit} per member"),
    "not_yet_available": N_("Available from {date}"),
    "no_longer_available": N_("No longer available"),
    "reward_paused": N_("Currently not available"),
    "member_blocked": N_("The membership is blocked"),
    "member_closed": N_("The membership is closed"),
    "coupon_used": N_("Already used"),
    "coupon_expired": N_("Expired on {date}"),
    "coupon_cancelled": N_("Cancelled"),
    "other_member": N_("Belongs to another member"),
    "currency_mismatch": N_("Only for carts in {currency}"),
    "min_order_value": N_("Minimum order value {min_order} not reached ({missing} missing)"),
    "product_not_in_cart": N_("Product {sku} is not in the cart"),
    "not_a_discount": N_("A ticket, not a discount: show it at the event"),
    "cart_required": N_("Send the cart to compute the discount"),
}
"""Reason code (API contract) -> message id of its text (``treu.kit.text``)."""


def format_day(day: date, lang: str) -> str:
    return f"{day.day:02d}.{day.month:02d}.{day.year}" if lang == "de" else f"{day:%d %b %Y}"


def local_day(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Reason:
    """Why something cannot be done: a machine ``code`` and the facts (``params``)
    that the German and English texts are made from."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def text(self, lang: str) -> str:
        msgid = _REASONS[self.code]
        values = dict(self.params)
        if "date" in values:
            values["date"] = format_day(date.fromisoformat(str(values["date"])), lang)
        currency = values.get("currency")
        for key in ("min_order", "missing"):
            if f"{key}_minor" in values and currency:
                values[key] = format_money(int(values[f"{key}_minor"]), str(currency), lang)
        if isinstance(values.get("tier_name"), dict):
            names = values["tier_name"]
            values["tier"] = names.get(lang) or names.get("en") or values.get("tier")
        return translate(lang, msgid, **values)

    def out(self, lang: str) -> ReasonOut:
        public = {k: v for k, v in self.params.items() if k != "tier_name"}
        return ReasonOut(code=self.code, text=self.text(lang), params=public)


def reasons_out(reasons: list[Reason], lang: str = "en") -> list[ReasonOut]:
    return [reason.out(lang) for reason in reasons]


def problem_reasons(reasons: list[Reason], lang: str = "en") -> list[dict[str, Any]]:
    """The reasons as the ``reasons`` member of an error's problem document (an error
    carries JSON, which the API renders as it is)."""
    return [reason.out(lang).model_dump() for reason in reasons]


def local_name(names: Any, lang: str) -> str:
    if not isinstance(names, dict):
        return str(names)
    return str(names.get(lang) or names.get("en") or names.get("de") or "")


def _percent(bp: int, lang: str) -> str:
    value = Decimal(bp) / 100
    text = format(value.normalize(), "f")
    return text.replace(".", ",") if lang == "de" else text


def summary(kind: str, terms: dict[str, Any], lang: str, timezone: str) -> str:
    """One line saying what a reward or coupon gives, in ``lang``."""
    currency = terms.get("currency") or ""
    text: str
    if kind == RewardType.percent_discount:
        pct = _percent(int(terms["percent_bp"]), lang)
        text = translate(lang, "{percent}% off", percent=pct)
    elif kind == RewardType.amount_discount:
        amount = format_money(int(terms["value_minor"]), currency, lang)
        text = translate(lang, "{amount} off", amount=amount)
    elif kind == RewardType.free_product:
        product = local_name(terms.get("product_name"), lang) if terms.get("product_name") else ""
        if not product:  # rewards made before products had names
            product = translate(lang, "item {sku}", sku=terms["sku"])
        text = translate(lang, "1 x {product} free", product=product)
    elif kind == RewardType.experience:
        event = terms.get("event") or {}
        starts = datetime.fromisoformat(str(event["starts_at"])).astimezone(ZoneInfo(timezone))
        when = f"{format_day(starts.date(), lang)}, {starts:%H:%M}"
        if event.get("location"):
            text = translate(
                lang, "Event on {when}, {location}", when=when, location=event["location"]
            )
        else:
            text = translate(lang, "Event on {when}", when=when)
    elif kind == RewardType.donation and "value_minor" not in terms:
        # Worth what its points are worth (the redemption records the amount); the
        # catalogue's summaries fill it in from the point value, old snapshots may not.
        charity = terms.get("charity") or ""
        text = translate(lang, "Donation to {charity}", charity=charity)
    elif kind == RewardType.donation:
        amount = format_money(int(terms["value_minor"]), currency, lang)
        text = translate(lang, "{amount} donation", amount=amount)
    else:
        amount = format_money(int(terms["value_minor"]), currency, lang)
        text = translate(lang, "{amount} wallet credit", amount=amount)
    min_order = terms.get("min_order_minor")
    if min_order and kind in (RewardType.percent_discount, RewardType.amount_discount):
        money = format_money(int(min_order), currency, lang)
        # TRANSLATORS: {offer} is one of the texts above ("10% off", "€5.00 off").
        text = translate(lang, "{offer} on orders of {amount} or more", offer=text, amount=money)
    return text


# --- applicability ---------------------------------------------------------------------------


@dataclass
class Verdict:
    applicable: bool
    discount_minor: int | None
    reasons: list[Reason]


def cart_discount(kind: str, terms: dict[str, Any], cart: Cart) -> Verdict:
    """What a coupon with ``terms`` takes off ``cart``, or why it does not apply. Pure."""
    total = cart.total_minor
    currency = terms.get("currency") or cart.currency
    reasons: list[Reason] = []
    if kind == RewardType.experience:
        return Verdict(False, None, [Reason("not_a_discount")])
    if kind not in (
        RewardType.percent_discount,
        RewardType.amount_discount,
        RewardType.free_product,
    ):
        return Verdict(False, None, [Reason("not_a_discount")])
    if currency != cart.currency:
        reasons.append(Reason("currency_mismatch", {"currency": currency}))
        return Verdict(False, None, reasons)
    min_order = terms.get("min_order_minor")
    if min_order and total < int(min_order):
        reasons.append(
            Reason(
                "min_order_value",
                {
                    "min_order_minor": int(min_order),
                    "missing_minor": int(min_order) - total,
                    "currency": currency,
                },
            )
        )
    discount = 0
    if kind == RewardType.percent_discount:
        exact = Decimal(total) * int(terms["percent_bp"]) / Decimal(10_000)
        discount = min(round_points(exact, PERCENT_ROUNDING), total)
    elif kind == RewardType.amount_discount:
        discount = min(int(terms["value_minor"]), total)
    else:
        prices = [line.unit_price_minor for line in cart.lines if line.sku == terms["sku"]]
        if not prices:
            reasons.append(Reason("product_not_in_cart", {"sku": terms["sku"]}))
        else:
            discount = min(min(prices), total)
    if reasons:
        return Verdict(False, None, reasons)
    return Verdict(True, discount, [])


def status_reasons(coupon: Coupon, now: datetime, timezone: str) -> list[Reason]:
    """Why the coupon cannot be used at all, whatever the cart."""
    if coupon.status == CouponStatus.used:
        return [Reason("coupon_used")]
    if coupon.status == CouponStatus.cancelled:
        return [Reason("coupon_cancelled")]
    if coupon.status == CouponStatus.expired or coupon.expires_at <= now:
        return [
            Reason("coupon_expired", {"date": local_day(coupon.expires_at, timezone).isoformat()})
        ]
    return []


# --- the service -------------------------------------------------------------------------------


def qr_path(code: str) -> str:
    return f"/v1/coupons/{codes.format_code(code)}/qr.svg"


@dataclass(frozen=True, slots=True)
class UsableCoupon:
    """One of the member's coupons that applies to a checkout cart."""

    id: uuid.UUID
    code: str
    """Formatted in groups of four."""
    kind: str
    name: str
    summary: str
    discount_minor: int | None
    expires_at: datetime

    def public(self) -> dict[str, Any]:
        """As ``POST /v1/checkout/evaluate`` lists it (a JSON document: the checkout's
        answer is encoded as it is built)."""
        return {
            "id": str(self.id),
            "code": self.code,
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "discount_minor": self.discount_minor,
            "expires_at": iso(self.expires_at),
        }


def coupon_row(
    *,
    coupon_id: uuid.UUID,
    programme_id: uuid.UUID,
    member_id: uuid.UUID,
    reward_id: uuid.UUID | None,
    redemption_id: uuid.UUID | None,
    kind: str,
    terms: dict[str, Any],
    restore_on_return: bool,
    issued_at: datetime,
    expires_at: datetime,
) -> dict[str, Any]:
    """The row of a new coupon with a fresh code (for a bulk insert). The code is unique
    by construction (2**74 possibilities) and by the database's unique constraint: a
    collision would fail the unit of work, which the entry point retries."""
    return {
        "id": coupon_id,
        "programme_id": programme_id,
        "member_id": member_id,
        "reward_id": reward_id,
        "redemption_id": redemption_id,
        "code": codes.new_code(),
        "kind": kind,
        "status": CouponStatus.active.value,
        "terms": terms,
        "restore_on_return": restore_on_return,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "used_at": None,
        "order_id": None,
        "discount_minor": None,
        "used_by": None,
        "restored_at": None,
        "restore_count": 0,
        "updated_at": issued_at,
    }


class CouponService:
    def find(self, session: Session, code: str, *, programme: Programme) -> Coupon:
        """The coupon with ``code`` (as typed) in ``programme``. A code that cannot be
        one of ours is refused before any look-up; a code of another programme is not
        found (nothing tells a shop that it exists elsewhere)."""
        normalised = codes.normalise(code)
        if not codes.is_valid(normalised):
            raise InvalidCouponCode("this is not a coupon code (check for a typo)", field="code")
        coupon = session.scalar(select(Coupon).where(Coupon.code == normalised))
        if coupon is None or coupon.programme_id != programme.id:
            raise CouponNotFound(f"no coupon {codes.format_code(normalised)} in this programme")
        return coupon

    def by_code(self, session: Session, code: str) -> Coupon:
        normalised = codes.normalise(code)
        if not codes.is_valid(normalised):
            raise InvalidCouponCode("this is not a coupon code (check for a typo)", field="code")
        coupon = session.scalar(select(Coupon).where(Coupon.code == normalised))
        if coupon is None:
            raise CouponNotFound(f"no coupon {codes.format_code(normalised)}")
        return coupon

    def verdict(
        self,
        coupon: Coupon,
        *,
        cart: Cart | None,
        programme: Programme,
        now: datetime,
    ) -> Verdict:
        reasons = status_reasons(coupon, now, programme.timezone)
        if cart is not None and cart.member_id is not None and cart.member_id != coupon.member_id:
            reasons.append(Reason("other_member"))
        if reasons:
            return Verdict(False, None, reasons)
        if cart is None:
            if coupon.kind == RewardType.experience:
                return Verdict(True, None, [])
            return Verdict(False, None, [Reason("cart_required")])
        if coupon.kind == RewardType.experience:
            # A ticket is admitted whatever is bought alongside; it takes nothing off.
            return Verdict(True, None, [])
        return cart_discount(coupon.kind, coupon.terms, cart)

    def validate(
        self,
        session: Session,
        *,
        code: str,
        programme: Programme,
        cart: Cart,
        lang: str = "en",
        now: datetime | None = None,
    ) -> CouponValidationOut:
        """Read-only: whether the coupon applies to ``cart`` and what it takes off."""
        now = now or utc_now()
        coupon = self.find(session, code, programme=programme)
        verdict = self.verdict(coupon, cart=cart, programme=programme, now=now)
        if coupon.kind == RewardType.experience and verdict.applicable:
            # For a cart, a ticket is never a discount: say so rather than "0 off".
            verdict = Verdict(False, None, [Reason("not_a_discount")])
        return CouponValidationOut(
            code=codes.format_code(coupon.code),
            applicable=verdict.applicable,
            discount_minor=verdict.discount_minor,
            currency=cart.currency,
            reasons=reasons_out(verdict.reasons, lang),
            coupon=self.public(coupon, lang=lang, timezone=programme.timezone),
        )

    def redeem(
        self,
        session: Session,
        *,
        code: str,
        order_id: str,
        programme: Programme,
        cart: Cart | None,
        actor: str | None,
        lang: str = "en",
        now: datetime | None = None,
    ) -> Keyed[CouponUseOut]:
        """Use the coupon for ``order_id``; the same order again is a replay with the
        same answer, another order ``coupon_already_used``. The order id is the
        idempotency key."""
        now = now or utc_now()
        coupon = self.find(session, code, programme=programme)
        if coupon.status == CouponStatus.used:
            return self._replay(coupon, order_id, programme, lang)
        verdict = self.verdict(coupon, cart=cart, programme=programme, now=now)
        if not verdict.applicable:
            raise CouponNotApplicable(
                "; ".join(r.text("en") for r in verdict.reasons),
                reasons=problem_reasons(verdict.reasons, lang),
            )
        done = cast(
            CursorResult[Any],
            session.execute(
                update(Coupon)
                .where(
                    Coupon.id == coupon.id,
                    Coupon.status == CouponStatus.active.value,
                    Coupon.expires_at > now,
                )
                .values(
                    status=CouponStatus.used.value,
                    order_id=order_id,
                    used_at=now,
                    discount_minor=verdict.discount_minor,
                    used_by=actor,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            ),
        )
        session.expire(coupon)
        if done.rowcount != 1:
            # Another till got there first (or the coupon just expired): read what won.
            session.refresh(coupon)
            if coupon.status == CouponStatus.used:
                return self._replay(coupon, order_id, programme, lang)
            reasons = status_reasons(coupon, now, programme.timezone)
            raise CouponNotApplicable(
                "; ".join(r.text("en") for r in reasons), reasons=problem_reasons(reasons, lang)
            )
        session.refresh(coupon)
        outbox.record(
            session,
            CouponUsed(
                programme_id=coupon.programme_id,
                member_id=coupon.member_id,
                occurred_at=now,
                coupon_id=coupon.id,
                order_id=order_id,
                discount_minor=verdict.discount_minor,
            ),
        )
        return Keyed(self._used(coupon, programme, lang))

    def _replay(
        self, coupon: Coupon, order_id: str, programme: Programme, lang: str
    ) -> Keyed[CouponUseOut]:
        if coupon.order_id != order_id:
            raise CouponAlreadyUsed(
                "the coupon was used for another order", used_at=iso(coupon.used_at)
            )
        return Keyed(self._used(coupon, programme, lang), replayed=True)

    def _used(self, coupon: Coupon, programme: Programme, lang: str) -> CouponUseOut:
        """The answer to a successful redeem, built from the stored row only, so that a
        repeat for the same order is byte-for-byte the same."""
        return CouponUseOut(
            code=codes.format_code(coupon.code),
            order_id=coupon.order_id,
            status=coupon.status,
            discount_minor=coupon.discount_minor,
            currency=coupon.terms.get("currency") or programme.currency,
            used_at=iso(coupon.used_at),
            coupon=self.public(coupon, lang=lang, timezone=programme.timezone),
        )

    def restore_for_order(
        self, session: Session, *, programme_id: uuid.UUID, order_id: str, now: datetime
    ) -> list[uuid.UUID]:
        """Make coupons used for ``order_id`` active again (the order was fully
        returned), where the reward's policy says so. They keep their expiry: one that
        has passed meanwhile is expired by the next ``rewards.expire_coupons`` run, with
        that policy's refund. One statement; no points move, no stock moves (a used
        coupon still holds its unit)."""
        rows = session.execute(
            update(Coupon)
            .where(
                Coupon.programme_id == programme_id,
                Coupon.order_id == order_id,
                Coupon.status == CouponStatus.used.value,
                Coupon.restore_on_return.is_(True),
            )
            .values(
                status=CouponStatus.active.value,
                order_id=None,
                used_at=None,
                discount_minor=None,
                used_by=None,
                restored_at=now,
                restore_count=Coupon.restore_count + 1,
                updated_at=now,
            )
            .returning(Coupon.id)
            .execution_options(synchronize_session=False)
        ).all()
        return [row[0] for row in rows]

    def usable_for_cart(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        cart: Cart,
        programme: Programme,
        lang: str,
        now: datetime,
    ) -> list[UsableCoupon]:
        """The member's active coupons that apply to ``cart``, largest discount first
        (one indexed query; for the checkout)."""
        rows = session.execute(
            select(Coupon.id, Coupon.code, Coupon.kind, Coupon.terms, Coupon.expires_at)
            .where(
                Coupon.member_id == member_id,
                Coupon.status == CouponStatus.active.value,
                Coupon.expires_at > now,
            )
            .order_by(Coupon.expires_at)
        ).all()
        usable = []
        for coupon_id, code, kind, terms, expires_at in rows:
            verdict = cart_discount(kind, terms, cart)
            if not verdict.applicable:
                continue
            usable.append(
                UsableCoupon(
                    id=coupon_id,
                    code=codes.format_code(code),
                    kind=kind,
                    name=local_name(terms.get("name"), lang),
                    summary=summary(kind, terms, lang, programme.timezone),
                    discount_minor=verdict.discount_minor,
                    expires_at=expires_at,
                )
            )
        usable.sort(key=lambda c: -(c.discount_minor or 0))
        return usable

    def for_member(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Coupon], str | None]:
        """Newest first, keyset-paginated on the time-ordered id."""
        query = select(Coupon).where(Coupon.member_id == member_id)
        if status is not None:
            query = query.where(Coupon.status == status)
        if cursor:
            query = query.where(Coupon.id < uuid.UUID(str(decode_cursor(cursor).get("before"))))
        rows = list(session.scalars(query.order_by(Coupon.id.desc()).limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"before": str(rows[-1].id)})
        return rows, next_cursor

    def public(self, coupon: Coupon, *, lang: str, timezone: str) -> CouponOut:
        return CouponOut(
            id=coupon.id,
            code=codes.format_code(coupon.code),
            kind=RewardType(coupon.kind),
            status=coupon.status,
            name=local_name(coupon.terms.get("name"), lang),
            summary=summary(coupon.kind, coupon.terms, lang, timezone),
            reward_id=coupon.reward_id,
            redemption_id=coupon.redemption_id,
            issued_at=iso(coupon.issued_at),
            expires_at=iso(coupon.expires_at),
            used_at=iso(coupon.used_at),
            order_id=coupon.order_id,
            discount_minor=coupon.discount_minor,
            qr_url=qr_path(coupon.code),
        )

    def qr_svg(self, code: str, *, scale: int = 4) -> str:
        """The coupon code as a QR code (SVG). It encodes the printed form
        (``7KQM-XH3R-T9PW-BC2E``): upper-case letters, digits and dashes fit QR's compact
        alphanumeric mode, and a scanner types exactly what ``normalise`` accepts."""
        import segno

        qr = segno.make(codes.format_code(code), error="m", micro=False)
        out = io.BytesIO()
        qr.save(out, kind="svg", scale=scale, border=4, xmldecl=False, svgns=True)
        return out.getvalue().decode()


coupons = CouponService()


def gift_coupons(
    session: Session,
    *,
    programme: Programme,
    reward: RewardView,
    gifts: Iterable[tuple[uuid.UUID, uuid.UUID]],
    now: datetime,
) -> int:
    """Coupons of ``reward`` given, not redeemed (a journey's birthday present, a
    targeted offer): one per ``(coupon id, member id)``, valid for the reward's
    ``coupon_valid_days`` (default ``DEFAULT_COUPON_DAYS``), no points burnt, no stock
    taken, no ``coupon.issued`` event (the message that brings the gift names the
    coupon), never restored on a return. One multi-row insert."""
    days = reward.coupon_valid_days or DEFAULT_COUPON_DAYS
    rows = [
        coupon_row(
            coupon_id=coupon_id,
            programme_id=programme.id,
            member_id=member_id,
            reward_id=reward.id,
            redemption_id=None,
            kind=reward.type,
            terms=reward.terms(programme.currency),
            restore_on_return=False,
            issued_at=now,
            expires_at=now + timedelta(days=days),
        )
        for coupon_id, member_id in gifts
    ]
    if rows:
        session.connection().execute(table_of(Coupon).insert(), rows)
    return len(rows)
