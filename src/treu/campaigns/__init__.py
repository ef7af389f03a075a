"""Bonus campaigns: a boost on the earning rules for a time window and an audience, with
a points budget and a control group (see docs/campaigns.md)."""
