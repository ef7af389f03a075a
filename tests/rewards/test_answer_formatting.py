"""One spelling for what members and integrations read: free products by name, amounts
with their currency, multipliers and rates without the database's trailing zeros."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f
from tests.api_helpers import Api
from tests.support.tiers_api import setup_programme
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.rewards.coupons import summary


@pytest.mark.parametrize(
    ("kind", "terms", "lang", "text"),
    [
        (
            "free_product",
            {"sku": "7006", "product_name": {"de": "Cappuccino", "en": "cappuccino"}},
            "de",
            "1 x Cappuccino gratis",
        ),
        (
            "free_product",
            {"sku": "7006", "product_name": {"de": "Cappuccino", "en": "cappuccino"}},
            "en",
            "1 x cappuccino free",
        ),
        ("free_product", {"sku": "7006"}, "en", "1 x item 7006 free"),
        ("free_product", {"sku": "7006"}, "de", "1 x Artikel 7006 gratis"),
        (
            "percent_discount",
            {"percent_bp": 1000, "min_order_minor": 2000, "currency": "EUR"},
            "en",
            "10% off on orders of €20.00 or more",
        ),
        (
            "percent_discount",
            {"percent_bp": 1250, "min_order_minor": 2000, "currency": "EUR"},
            "de",
            "12,5 % Rabatt ab 20,00\xa0€",
        ),
    ],
)
def test_summaries(kind: str, terms: dict[str, Any], lang: str, text: str) -> None:
    assert summary(kind, terms, lang, "Europe/Berlin") == text


def test_a_percentage_reward_names_its_minimum_order_with_the_currency(
    api: Api, db: Database
) -> None:
    prog = f.programme(db)
    for body in (
        {
            "code": f.unique("pct"),
            "type": "percent_discount",
            "name": {"de": "10 % Rabatt", "en": "10% off"},
            "points_cost": 100,
            "percent_bp": 1000,
            "min_order_minor": 2000,
        },
        {
            "code": f.unique("free"),
            "type": "free_product",
            "name": {"de": "Cappuccino gratis", "en": "Free cappuccino"},
            "points_cost": 100,
            "sku": "7006",
            "product_name": {"de": "Cappuccino to go", "en": "cappuccino to go"},
        },
    ):
        created = api.client.post(
            f"/v1/programmes/{prog.slug}/rewards", json=body, headers=api.headers("admin")
        )
        assert created.status_code == 201, created.text
        assert created.json().get("product_name") == body.get("product_name")
    anna = f.member(db, prog, language="en")
    f.earn(db, prog, anna, 500, at=utc_now())
    read = api.headers("members:read")
    listed = api.client.get(f"/v1/members/{anna.id}/rewards", headers=read).json()
    assert sorted(r["summary"] for r in listed["redeemable"]) == [
        "1 x cappuccino to go free",
        "10% off on orders of €20.00 or more",
    ]
    german = api.client.get(f"/v1/members/{anna.id}/rewards?lang=de", headers=read).json()
    assert sorted(r["summary"] for r in german["redeemable"]) == [
        "1 x Cappuccino to go gratis",
        "10 % Rabatt ab 20,00\xa0€",
    ]
    free = next(r for r in listed["redeemable"] if r["type"] == "free_product")
    redeemed = api.client.post(
        f"/v1/members/{anna.id}/redemptions",
        json={"reward_id": free["id"]},
        headers=api.headers("members:write") | {"Idempotency-Key": f.unique("k")},
    )
    assert redeemed.status_code == 201, redeemed.text
    [coupon] = api.client.get(f"/v1/members/{anna.id}/coupons", headers=read).json()["items"]
    assert coupon["summary"] == "1 x cappuccino to go free"  # the coupon keeps the name


def test_multipliers_and_rates_read_the_same_before_and_after_the_database(api: Api) -> None:
    slug = setup_programme(api)  # Gold posted with multiplier "1.5"; the rate as 1
    read = api.headers("members:read")
    tiers = api.client.get(f"/v1/programmes/{slug}/tiers", headers=read).json()["tiers"]
    assert [t["multiplier"] for t in tiers] == ["1", "1", "1.5"]
    programme = api.client.get(f"/v1/programmes/{slug}", headers=api.headers("admin")).json()
    assert programme["points_per_currency_unit"] == "1"
    patched = api.client.patch(
        f"/v1/programmes/{slug}/tiers/gold",
        json={"multiplier": "2.250"},
        headers=api.headers("admin"),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["multiplier"] == "2.25"
