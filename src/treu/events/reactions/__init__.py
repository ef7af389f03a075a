"""What reacts to ingested events, in the order it runs (see ``treu.events.seam``).

Adding a reaction is one module here and one line in ``REACTIONS``."""

from __future__ import annotations

from treu.events.reactions.badges import BadgeReaction
from treu.events.reactions.campaigns import CampaignReaction
from treu.events.reactions.challenges import ChallengeReaction
from treu.events.reactions.coupons import CouponReaction
from treu.events.reactions.tiers import TierReaction
from treu.events.seam import Reaction

REACTIONS: tuple[Reaction, ...] = (
    CouponReaction(),  # a fully returned order's coupons are usable again
    TierReaction(),  # activity towards tiers, upgrades, bought tiers (feeds member.tier)
    BadgeReaction(),  # the earning rules' badges, each code once per member (run.badges)
    ChallengeReaction(),  # progress, completions, their points and badges
    CampaignReaction(),  # who was treated or held out by a running campaign (exposures)
)
