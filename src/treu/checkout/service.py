"""What a cart earns, before it is bought: the real-time answer for the till and the
web-shop checkout.

``evaluate`` runs the programme's published rules over the cart exactly as ingestion
will run them over the purchase (the same views, the same compiled rule set, the same
limit counters), so the ``purchase`` event for this cart credits what the checkout
promised — unless something changes in between (another purchase uses up a limit, a
rule is published). No side effects: nothing is locked or written.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from treu.checkout.schemas import (
    CartBalance,
    CartMember,
    CartPoints,
    CartTier,
    CheckoutAnswer,
    Hint,
    LinePoints,
    RuleApplied,
    RuleNotApplied,
)
from treu.events.errors import CurrencyMismatch, EventInFuture
from treu.events.schemas import EXAMPLE_LINES, LineIn
from treu.events.views import line_views, purchase_view
from treu.kit.money import format_money
from treu.kit.text import N_, translate
from treu.kit.time import CLOCK_SKEW, utc_now
from treu.ledger.explain import render
from treu.ledger.service import ledger
from treu.members.errors import MemberNotFound
from treu.members.models import Channel, MemberStatus
from treu.members.schemas import MemberRef
from treu.members.service import MemberKey, members
from treu.programmes.errors import ProgrammeNotFound
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.coupons import coupon_cart
from treu.rewards.payments import capacity
from treu.rewards.service import catalogue, redemptions
from treu.rewards.wallet import wallet
from treu.rules.engine import Award, Evaluation, EventView, MemberView
from treu.rules.service import Usage, award_details, member_view, rules, segments_for
from treu.tiers.common import TierInfo
from treu.tiers.service import tiers
from treu.tiers.texts import quantity

EXPIRY_HINT_DAYS = 60
"""Points expiring within this many days are mentioned at the checkout."""


EXAMPLE_CART: dict[str, Any] = {
    "programme": "demo",
    "member": {"card_number": "9276000000000001"},
    "channel": "pos",
    "store": "berlin-01",
    "currency": "EUR",
    "lines": EXAMPLE_LINES,
}
"""A cart as the till sends it (also the example of the carts the coupon endpoints take)."""


class CartIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [EXAMPLE_CART | {"lang": "de"}]},
    )

    programme: str = Field(min_length=1, max_length=64)
    member: MemberRef | None = Field(default=None, description="Omit for an anonymous cart")
    channel: Channel
    store: str | None = Field(default=None, max_length=64)
    currency: str = Field(min_length=3, max_length=3)
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the purchase will happen; default: now"
    )
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    lang: Literal["en", "de"] = Field(default="en", description="Language of texts and hints")

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


def check_cart_currency(cart: CartIn, programme: Programme) -> None:
    """A cart is priced in the programme's currency: amounts are never converted."""
    if cart.currency != programme.currency:
        raise CurrencyMismatch(
            f"programme {programme.slug!r} runs in {programme.currency}, "
            f"the cart is in {cart.currency}"
        )


class CheckoutService:
    def evaluate(
        self, session: Session, cart: CartIn, *, now: datetime | None = None
    ) -> CheckoutAnswer:
        """What ``cart`` earns now; ``public()`` of the answer is the API's JSON."""
        now = now or utc_now()
        at = cart.occurred_at or now
        programme = programmes.cached_by_slug(session, {cart.programme}).get(cart.programme)
        if programme is None:
            raise ProgrammeNotFound(f"no programme {cart.programme!r}")
        check_cart_currency(cart, programme)
        if at > now + CLOCK_SKEW:
            raise EventInFuture("occurred_at lies in the future")
        member = self.resolve_member(session, programme, cart.member)
        active = rules.active(session, programme)
        view = purchase_view(
            programme,
            occurred_at=at,
            currency=cart.currency,
            lines=line_views(cart.lines),
            channel=cart.channel.value,
            store=cart.store,
        )
        blocked = member is not None and member.status == MemberStatus.blocked.value
        usage = Usage(session, dict(active.limited))
        if member is not None and usage.specs:
            usage.load([(member.id, view.date)], lock_budgets=False)
        tier = tiers.code_of(session, programme, member.id, now=at) if member else None
        mview = (
            member_view(
                member,
                programme,
                at,
                tier=tier.code if tier else None,
                segments=segments_for(session, active.rule_set, {member.id}).get(member.id, ()),
            )
            if member
            else MemberView.anonymous()
        )
        evaluation: Evaluation = active.rule_set.evaluate(
            view, mview, usage.view(member.id if member else None, view.date)
        )
        points = 0 if blocked else evaluation.points
        lang = cart.lang
        cart_member = None if member is None else CartMember(member.id, member.status)
        cart_points = CartPoints(
            points,
            programmes.available_at(programme, at) if points and programme.pending_days else None,
        )
        lines = tuple(
            [
                LinePoints(i, line.sku, 0 if blocked else evaluation.line_points[i])
                for i, line in enumerate(cart.lines)
            ]
        )
        applied = (
            ()
            if blocked
            else tuple(
                [
                    RuleApplied(
                        award.rule_id,
                        award.version,
                        award.rule_name,
                        award.effect,
                        award.points,
                        self._explain(award, programme, lang),
                        award.limited_by,
                    )
                    for award in evaluation.awards
                ]
            )
        )
        not_applied = tuple(
            [
                RuleNotApplied(skip.rule_id, skip.rule_name, skip.reason, skip.text(lang))
                for skip in evaluation.skipped
                if skip.reason != "condition_false" and skip.reason != "no_matching_lines"
            ]
        )
        badges = tuple([award.badge for award in evaluation.badges])
        cart_tier = (  # for the shop: free shipping and the like
            None
            if tier is None
            else CartTier(tier.code, tier.rank, tier.label(lang), tuple(tier.flags), tier.paid)
        )
        hints: list[Hint] = []
        if member is None:
            hints.append(
                self._hint(
                    "not_a_member",
                    lang,
                    N_("Not a member yet: this cart would earn {points} points"),
                    points=evaluation.points,
                )
            )
            return CheckoutAnswer(
                programme.slug,
                None,
                cart_points,
                lines,
                applied,
                not_applied,
                badges,
                None,
                tuple(hints),
            )
        if blocked:
            hints.append(
                self._hint(
                    "member_blocked", lang, N_("Member is blocked: this purchase earns no points")
                )
            )
        balance = ledger.balance(session, member_id=member.id)
        # What the points could pay of this cart at the point value (pure maths on the
        # balance) and the e-wallet credit (one primary-key read).
        can_pay = capacity(
            programme,
            available=0 if blocked else balance.available,
            amount_minor=sum(line.quantity * line.unit_price_minor for line in cart.lines),
        )
        wallet_minor = (
            wallet.balance_minor(session, member_id=member.id)
            if catalogue.cached(session, programme.id).has_wallet_credit
            else 0
        )
        offers = redemptions.checkout_offers(  # usable coupons, rewards redeemable now
            session,
            programme=programme,
            member_id=member.id,
            member_status=member.status,
            enrolled_at=member.enrolled_at,
            tier=tier.code if tier is not None else None,
            available_points=balance.available,
            cart=coupon_cart(cart.currency, cart.lines),
            lang=lang,
            now=at,
        )
        if member.birthday is not None and member.birthday.month == view.date.month:
            hints.append(self._hint("birthday_month", lang, N_("Birthday this month")))
        horizon = at + timedelta(days=EXPIRY_HINT_DAYS)
        for expiring in balance.expiring:
            if expiring.expires_at <= horizon and expiring.points > 0:
                day = self._last_day(expiring.expires_at, programme.timezone)
                hints.append(
                    self._hint(
                        "points_expiring",
                        lang,
                        N_("{points} points expire on {date}"),
                        points=expiring.points,
                        date=self._date(day, lang),
                    )
                )
                break
        if tier is not None and not blocked:
            hint = self._tier_hint(session, programme, member.id, tier, evaluation, view, at, lang)
            if hint is not None:
                hints.append(hint)
        for skip in evaluation.skipped:
            if skip.reason.startswith("limit") or skip.reason == "budget":
                hints.append(
                    self._hint(
                        f"rule_{skip.reason}",
                        lang,
                        # TRANSLATORS: an earning rule's name and why it gives nothing now.
                        N_("{rule}: {reason}"),
                        rule=skip.rule_name,
                        reason=skip.text(lang),
                    )
                )
        return CheckoutAnswer(
            programme.slug,
            cart_member,
            cart_points,
            lines,
            applied,
            not_applied,
            badges,
            CartBalance(
                balance.available,
                balance.pending,
                tuple(balance.expiring[:3]),
                can_pay,
                wallet_minor,
            ),
            tuple(hints),
            tuple(offers.coupons),
            tuple(offers.rewards),
            cart_tier,
        )

    def resolve_member(
        self, session: Session, programme: Programme, ref: MemberRef | None
    ) -> MemberKey | None:
        """The cart's member (``None``: an anonymous cart); ``member_not_found`` when the
        reference matches nobody in the programme."""
        if ref is None:
            return None
        found = members.resolve_many(session, programme_id=programme.id, refs=[ref])
        member = found.get((ref.kind, ref.value))
        if member is None:
            raise MemberNotFound(
                f"no member with {ref.kind} {ref.value!r} in programme {programme.slug!r}"
            )
        return member

    def _explain(self, award: Award, programme: Programme, lang: str) -> str:
        """The text the ledger will show for this award."""
        return render(award_details(award, programme), lang)

    def _last_day(self, expires_at: datetime, timezone: str) -> date:
        """The last day the points can be used: a lot expiring at local midnight (the end
        of the year, say) is usable until the day before."""
        local = expires_at.astimezone(ZoneInfo(timezone))
        if (local.hour, local.minute, local.second) == (0, 0, 0):
            return local.date() - timedelta(days=1)
        return local.date()

    def _tier_hint(
        self,
        session: Session,
        programme: Programme,
        member_id: uuid.UUID,
        tier: TierInfo,
        evaluation: Evaluation,
        view: EventView,
        at: datetime,
        lang: str,
    ) -> Hint | None:
        """ "€18.00 more to reach Gold" (what is still missing once this cart counts), or
        "With this purchase: Gold!" when the cart itself gets the member there. The cart
        counts as the ingest will count it: its points, its total, one purchase."""
        missing = tiers.to_next(session, programme, member_id, tier.code, now=at)
        if missing is None or missing.amount <= 0:
            return None
        metric = programme.tier_metric
        adds = {"points": evaluation.points, "spend": view.total_minor, "purchases": 1}[metric]
        name = missing.tier.label(lang)
        if adds >= missing.amount:
            return self._hint(
                "tier_reached_with_cart", lang, N_("With this purchase: {tier}!"), tier=name
            )
        left = missing.amount - adds
        amount = (
            format_money(left, programme.currency, lang)  # "€18.00", not "€18.00 spend"
            if metric == "spend"
            else quantity(metric, left, currency=None, points_name=programme.points_name, lang=lang)
        )
        return self._hint(
            "tier_progress", lang, N_("{amount} more to reach {tier}"), amount=amount, tier=name
        )

    def _hint(self, code: str, lang: str, msgid: str, **params: object) -> Hint:
        return Hint(code, translate(lang, msgid, **params))

    def _date(self, day: date, lang: str) -> str:
        return f"{day.day:02d}.{day.month:02d}." if lang == "de" else f"{day:%d %b}"


checkout = CheckoutService()
