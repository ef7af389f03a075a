"""The tiers endpoints over HTTP: a programme with a three-tier ladder set up by an admin."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.api_helpers import Api

GOLD: dict[str, Any] = {
    "code": "gold",
    "rank": 2,
    "name": {"en": "Gold", "de": "Gold"},
    "threshold": 20_000,
    "multiplier": "1.5",
    "flags": ["free_shipping"],
    "benefits": [{"en": "Free shipping", "de": "Kostenloser Versand"}],
    "purchasable": True,
}


def setup_programme(api: Api) -> str:
    slug = f.unique("t")
    admin = api.headers("admin")
    r = api.client.post(
        "/v1/programmes",
        json={
            "slug": slug,
            "name": "Tiers",
            "currency": "EUR",
            "points_per_currency_unit": 1,
            "tier_settings": {"metric": "spend", "window": "calendar_year", "grace_days": 0},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json()["tier_settings"]["metric"] == "spend"
    for body in (
        {"code": "bronze", "rank": 0, "name": {"en": "Bronze"}, "threshold": 0},
        {
            "code": "silber",
            "rank": 1,
            "name": {"en": "Silver", "de": "Silber"},
            "threshold": 10_000,
        },
        GOLD,
    ):
        r = api.client.post(f"/v1/programmes/{slug}/tiers", json=body, headers=admin)
        assert r.status_code == 201, r.text
    return slug
