"""The tiers API: a member's tier and history, the admin endpoints, their errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests import factories as f
from tests.api_helpers import Api, assert_problem
from tests.support.tiers_api import GOLD, setup_programme
from treu.db.session import Database
from treu.kit.time import frozen, utc_now


def test_admin_defines_tiers_and_settings(api: Api) -> None:
    slug = setup_programme(api)
    r = api.client.get(f"/v1/programmes/{slug}/tiers", headers=api.headers("members:read"))
    assert r.status_code == 200
    body = r.json()
    assert [t["code"] for t in body["tiers"]] == ["bronze", "silber", "gold"]
    assert body["tiers"][2]["flags"] == ["free_shipping"]
    assert body["settings"] == {
        "metric": "spend",
        "window": "calendar_year",
        "grace_days": 0,
        "max_drop": 1,
    }
    r = api.client.patch(
        f"/v1/programmes/{slug}/tiers/gold",
        json={"threshold": 25_000, "flags": ["free_shipping", "lounge"]},
        headers=api.headers("admin"),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["threshold"], r.json()["flags"]) == (25_000, ["free_shipping", "lounge"])
    r = api.client.patch(
        f"/v1/programmes/{slug}/tier-settings",
        json={"grace_days": 45, "max_drop": 2},
        headers=api.headers("admin"),
    )
    assert r.status_code == 200, r.text
    r = api.client.get(f"/v1/programmes/{slug}/tier-settings", headers=api.headers("admin"))
    assert (r.json()["grace_days"], r.json()["max_drop"]) == (45, 2)


def test_admin_errors_are_problems(api: Api) -> None:
    slug = setup_programme(api)
    admin = api.headers("admin")
    r = api.client.post(f"/v1/programmes/{slug}/tiers", json=GOLD, headers=admin)
    body = assert_problem(r, 409, "tier_exists")
    assert body["field"] == "code"
    r = api.client.post(
        f"/v1/programmes/{slug}/tiers",
        json=GOLD | {"code": "platin", "rank": 3, "threshold": 5_000},
        headers=admin,
    )
    assert_problem(r, 422, "tier_order")
    r = api.client.post(
        f"/v1/programmes/{slug}/tiers",
        json=GOLD | {"code": "Platin!", "multiplier": "0.5", "flags": ["a", "a"]},
        headers=admin,
    )
    body = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in body["errors"]} >= {"code", "multiplier", "flags"}
    r = api.client.patch(f"/v1/programmes/{slug}/tiers/platin", json={}, headers=admin)
    assert_problem(r, 404, "tier_not_found")
    r = api.client.patch(
        f"/v1/programmes/{slug}/tier-settings", json={"max_drop": 0}, headers=admin
    )
    assert_problem(r, 422, "validation_error")
    r = api.client.post(
        f"/v1/programmes/{slug}/tiers",
        json=GOLD | {"code": "x", "rank": 9},
        headers=api.headers("members:write"),
    )
    assert r.status_code == 403
    r = api.client.get("/v1/programmes/nope/tiers", headers=admin)
    assert_problem(r, 404, "programme_not_found")


def test_member_tier_and_history(api: Api, db: Database) -> None:
    slug = setup_programme(api)
    r = api.client.post(
        "/v1/members",
        json={"programme": slug, "email": f"{f.unique('m')}@example.com"},
        headers=api.headers("members:write"),
    )
    member_id = r.json()["id"]
    read = api.headers("members:read")
    now = utc_now()
    with frozen(now):
        for n, amount in enumerate((6_000, 6_000)):
            r = api.client.post(
                "/v1/events",
                json={
                    "id": f"t-{member_id}-{n}",
                    "type": "purchase",
                    "programme": slug,
                    "member": {"member_id": member_id},
                    "occurred_at": (now - timedelta(minutes=5 - n)).isoformat(),
                    "channel": "web",
                    "currency": "EUR",
                    "lines": [{"sku": "s", "quantity": 1, "unit_price_minor": amount}],
                },
                headers=api.headers("events:write"),
            )
            assert r.status_code == 201, r.text
        assert r.json()["tier"]["to"] == "silber"
        r = api.client.get(f"/v1/members/{member_id}/tier?lang=de", headers=read)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tier"] == {"code": "silber", "rank": 1, "name": "Silber"}
    assert body["paid"] is False
    assert (body["metric"], body["value"]) == ("spend", 12_000)
    # The qualification year is the programme's calendar year: on New Year's Eve after
    # 23:00 UTC it is already next year in Berlin.
    zone = api.client.get(f"/v1/programmes/{slug}", headers=api.headers("admin")).json()["timezone"]
    year = now.astimezone(ZoneInfo(zone)).year
    assert body["next"]["missing"] == 8_000
    assert body["next"]["deadline"] == f"{year}-12-31"
    assert body["next"]["text"] == f"80,00\xa0€ Umsatz bis 31.12.{year} für Gold"
    assert body["keep"]["missing"] == 0  # reached this year: kept through next year
    assert body["valid_until"] == f"{year + 1}-12-31"
    assert body["keep"]["text"] == f"Silber bleibt Ihnen bis 31.12.{year + 1}"

    r = api.client.get(f"/v1/members/{member_id}/tier/history?limit=1", headers=read)
    assert r.status_code == 200
    page = r.json()
    assert [(e["from_tier"], e["to_tier"], e["reason"]) for e in page["items"]] == [
        ("bronze", "silber", "qualified")
    ]
    assert page["items"][0]["event_id"] == f"t-{member_id}-1"
    assert page["next_cursor"] is None
    r = api.client.get(f"/v1/members/{member_id}/tier/history?cursor=nonsense", headers=read)
    assert_problem(r, 422, "validation_error")
    r = api.client.get(f"/v1/members/{uuid.uuid4()}/tier", headers=read)
    assert_problem(r, 404, "member_not_found")
    r = api.client.get(f"/v1/members/{member_id}/tier", headers=api.headers("events:write"))
    assert r.status_code == 403


def test_a_programme_without_tiers_answers_no_tier(api: Api, db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=500, occurred_at=datetime.now(UTC)))
    r = api.client.get(f"/v1/members/{who.id}/tier", headers=api.headers("members:read"))
    assert r.status_code == 200
    body = r.json()
    assert (body["tier"], body["next"], body["keep"]) == (None, None, None)
    r = api.client.get(f"/v1/programmes/{prog.slug}/tiers", headers=api.headers("admin"))
    assert r.json()["tiers"] == []
