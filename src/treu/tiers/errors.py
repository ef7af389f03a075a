from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class TierNotFound(NotFound):
    code = "tier_not_found"
    title = "Tier not found"


class TierExists(Conflict):
    code = "tier_exists"
    title = "Tier already exists"


class TierOrder(Invalid):
    """Thresholds must rise with the rank, so that "the highest tier whose threshold is
    reached" is one tier and an upgrade never skips a cheaper tier above."""

    code = "tier_order"
    title = "Tier thresholds must rise with the rank"


class TierNotPurchasable(Invalid):
    code = "tier_not_purchasable"
    title = "Tier cannot be bought"


class MembershipDowngrade(Conflict):
    """A bought tier runs; buying a lower one would shorten what was paid for."""

    code = "membership_downgrade"
    title = "A higher paid tier is active"


class UnknownTier(Invalid):
    """A reference to a tier code the programme does not have (a reward's ``min_tier``,
    a membership bought for a tier that does not exist)."""

    code = "unknown_tier"
    title = "Unknown tier"
