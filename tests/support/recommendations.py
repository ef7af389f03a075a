"""Purchases of named products some days ago, and the recommendations endpoint, for the
next-best-offer tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme


def buy(
    db: Database, prog: Programme, who: Member, days_ago: int, *products: dict[str, Any]
) -> None:
    """One purchase of each product once at 1.99, `days_ago` days (and an hour) before now."""
    lines = [{**p, "quantity": 1, "unit_price_minor": 199} for p in products]
    at = utc_now() - timedelta(days=days_ago, hours=1)
    f.ingest(db, f.purchase_payload(prog, who, lines=lines, occurred_at=at))


def get(api: Api, who: Member, query: str = "") -> dict[str, Any]:
    """GET /v1/members/{id}/recommendations, asserting a 200."""
    r = api.client.get(
        f"/v1/members/{who.id}/recommendations{query}", headers=api.headers("members:read")
    )
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found
