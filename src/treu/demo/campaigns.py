"""The demo's bonus campaign: "Bio-Woche", three times the points on organic lines."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from treu.programmes.models import Programme

BIO_WOCHE: dict[str, Any] = {
    "code": "bio-woche",
    "name": "Bio-Woche",
    "description": "Dreifache Treuepunkte auf Bio-Produkte, zwei Wochen lang.",
    "boost": {"type": "multiplier", "factor": "3", "line_condition": "'organic' in line.tags"},
    "holdout_percent": 10,
    "budget_points": 20_000,
}


def demo_campaigns(session: Any, programme: Programme, *, now: datetime) -> int:
    """The "Bio-Woche", active from a week ago (local midnight) to a week ahead, created
    before the events are loaded: the last week's purchases show its points, its
    explanation ("Bio-Woche x3: +24" in the ledger) and its exposures, and the checkout offers it.
    Returns the number of campaigns made."""
    from treu.campaigns.schemas import CampaignSpec
    from treu.campaigns.service import campaigns

    zone = ZoneInfo(programme.timezone)
    today = now.astimezone(zone).date()
    starts = datetime(today.year, today.month, today.day, tzinfo=zone) - timedelta(days=7)
    spec = CampaignSpec.model_validate(
        {
            **BIO_WOCHE,
            "window": {
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(days=14)).isoformat(),
            },
        }
    )
    created = campaigns.create(session, programme=programme, spec=spec, actor="demo")
    campaigns.activate(session, created, actor="demo", now=now)
    return 1
