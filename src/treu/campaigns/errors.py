from __future__ import annotations

from treu.errors import Conflict, Invalid, NotFound


class CampaignNotFound(NotFound):
    code = "campaign_not_found"
    title = "Campaign not found"


class CampaignExists(Conflict):
    code = "campaign_exists"
    title = "A campaign with this code exists"


class CampaignLocked(Conflict):
    """The holdout or the code of an activated campaign would change: members would move
    between the arms of an experiment already running."""

    code = "campaign_locked"
    title = "The campaign was activated: its control group cannot change"


class CampaignStatusConflict(Conflict):
    code = "campaign_status"
    title = "Not possible in the campaign's status"


class CampaignWindowOver(Invalid):
    code = "campaign_window_over"
    title = "The campaign's window has ended"


class UnknownTier(Invalid):
    code = "unknown_tier"
    title = "No such tier in the programme"


class RuleManagedByCampaign(Conflict):
    """The rule gives a campaign's points: editing, publishing or pausing it directly
    would take it out of step with the campaign (its window, audience, control group)."""

    code = "rule_managed_by_campaign"
    title = "The rule belongs to a campaign: change it through /v1/campaigns"
