"""Errors of the rewards catalogue, redemptions, coupons, pay with points, the wallet and
donations (codes are API contract).

Refusals that have reasons (``reward_locked``, ``out_of_stock``,
``member_limit_reached``, ``coupon_not_applicable``) carry ``reasons``: a list of
``{"code": …, "text": …}`` with the machine code and an English text, the same codes
``GET /v1/members/{id}/rewards`` and ``POST /v1/coupons/validate`` answer with.
"""

from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound
from treu.tiers.errors import UnknownTier as UnknownTier  # a reward's min_tier names none


class RewardNotFound(NotFound):
    code = "reward_not_found"
    title = "Reward not found"


class RewardExists(Conflict):
    code = "reward_exists"
    title = "Reward code already in use"


class RewardLocked(Invalid):
    """The member may not redeem the reward now (tier, membership age, validity, status)."""

    code = "reward_locked"
    title = "Reward not available to this member"


class OutOfStock(Conflict):
    code = "out_of_stock"
    title = "Reward sold out"


class MemberLimitReached(Conflict):
    code = "member_limit_reached"
    title = "Per-member limit reached"


class StockBelowRedeemed(Invalid):
    code = "stock_below_redeemed"
    title = "Stock lower than what is redeemed already"


class StockTooLarge(Invalid):
    code = "stock_too_large"
    title = "Stock too large"


class StockModeChange(Invalid):
    code = "stock_mode_change"
    title = "An unlimited reward cannot be given a stock"


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"
    title = "Redemption not found"


class RedemptionNotCancellable(Conflict):
    code = "redemption_not_cancellable"
    title = "Redemption cannot be cancelled"


class IdempotencyKeyConflict(Conflict):
    """The same code as ``treu.events.errors.IdempotencyConflict``: to a client it is the
    same mistake, a key reused for another request."""

    code = "idempotency_conflict"
    title = "Idempotency key reused"


class IdempotencyKeyReused(Conflict):
    """Pay with points, the wallet and donations: the same code, with the title those
    endpoints have always answered with."""

    code = "idempotency_conflict"
    title = "Idempotency key reused for another request"


class CurrencyMismatch(Invalid):
    code = "currency_mismatch"
    title = "Currency differs from the programme's"


class MemberBlocked(Invalid):
    code = "member_blocked"
    title = "Member is blocked"


class InvalidCouponCode(Invalid):
    """Not a code Treu could have issued: wrong length, a character outside the alphabet
    or a failed check character (a typo). Answered before any database look-up."""

    code = "invalid_coupon_code"
    title = "Not a valid coupon code"


class CouponNotFound(NotFound):
    code = "coupon_not_found"
    title = "Coupon not found"


class CouponNotApplicable(Invalid):
    code = "coupon_not_applicable"
    title = "Coupon cannot be used here"


class CouponAlreadyUsed(Conflict):
    code = "coupon_already_used"
    title = "Coupon already used for another order"
