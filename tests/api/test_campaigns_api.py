"""The campaigns API: create, update, activate, pause, end and stats, with problem+json
errors for what a campaign cannot be."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from tests import factories as f
from tests.api_helpers import Api, assert_problem
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.programmes.models import Programme


def body(prog: Programme, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "programme": prog.slug,
        "code": f.unique("bio"),
        "name": "Bio-Woche",
        "window": f.campaign_window(),
        "boost": {"type": "multiplier", "factor": "3", "line_condition": "'organic' in line.tags"},
        "holdout_percent": 10,
        "budget_points": 5_000,
    }
    data.update(overrides)
    return data


def create(api: Api, prog: Programme, **overrides: Any) -> dict[str, Any]:
    response = api.client.post(
        "/v1/campaigns", json=body(prog, **overrides), headers=api.headers("admin")
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_activate_pause_end_and_stats(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")
    created = create(api, prog)
    assert (created["status"], created["running"], created["budget_used"]) == ("draft", False, 0)
    assert created["spec"]["boost"]["factor"] == "3"
    url = f"/v1/campaigns/{created['id']}"
    rule = api.client.get(f"/v1/rules/{created['rule_id']}", headers=admin).json()
    assert (rule["status"], rule["name"]) == ("draft", "Bio-Woche")
    assert rule["draft"]["budget_points"] == 5_000

    listed = api.client.get(
        "/v1/campaigns", params={"programme": prog.slug}, headers=api.headers("members:read")
    )
    assert [c["id"] for c in listed.json()["items"]] == [created["id"]]

    assert_problem(api.client.post(f"{url}/pause", headers=admin), 409, "campaign_status")
    active = api.client.post(f"{url}/activate", headers=admin).json()
    assert (active["status"], active["running"]) == ("active", True)
    assert api.client.get(f"/v1/rules/{created['rule_id']}", headers=admin).json()["version"] == 1

    # Anything but the control group may change while it runs; the rule follows.
    patched = api.client.patch(url, json={"budget_points": 9_000}, headers=admin)
    assert patched.status_code == 200, patched.text
    rule = api.client.get(f"/v1/rules/{created['rule_id']}", headers=admin).json()
    assert (rule["version"], rule["published"]["budget_points"]) == (2, 9_000)
    locked = api.client.patch(url, json={"holdout_percent": 20}, headers=admin)
    assert assert_problem(locked, 409, "campaign_locked")["fields"] == ["holdout_percent"]

    who = f.member(db, prog)
    f.ingest_one(
        db,
        f.purchase_payload(
            prog,
            who,
            lines=[{"sku": "bio", "quantity": 1, "unit_price_minor": 1000, "tags": ["organic"]}],
            occurred_at=utc_now() - timedelta(minutes=10),
        ),
    )

    paused = api.client.post(f"{url}/pause", headers=admin).json()
    assert (paused["status"], paused["running"]) == ("paused", False)
    resumed = api.client.post(f"{url}/activate", headers=admin).json()
    assert resumed["status"] == "active"
    ended = api.client.post(f"{url}/end", headers=admin).json()
    assert (ended["status"], ended["ended_at"] is not None) == ("ended", True)
    assert api.client.get(f"/v1/rules/{created['rule_id']}", headers=admin).json()["status"] == (
        "paused"
    )
    assert_problem(api.client.post(f"{url}/activate", headers=admin), 409, "campaign_status")
    assert_problem(api.client.patch(url, json={"name": "x"}, headers=admin), 409, "campaign_status")

    stats = api.client.get(f"{url}/stats", headers=admin)
    assert stats.status_code == 200, stats.text
    data = stats.json()
    assert data["exposed"] == 1
    assert data["treated"] + data["held_out"] == 1
    assert data["messages"] == {
        "tracked": True,
        "sent": 0,
        "delivered": 0,
        "failed": 0,
        "pending": 0,
        "by_channel": {},
    }
    assert (data["offer"], created["kind"]) == (None, "bonus")
    assert data["budget"]["points"] == 9_000
    assert data["budget"]["left"] == 9_000 - data["points_issued"]
    assert set(data["arms"]) == {"treated", "held_out"}
    assert data["currency"] == "EUR"
    assert_problem(
        api.client.get(f"{url}/stats", headers=api.headers("members:read")), 403, "missing_scope"
    )


def test_what_a_campaign_cannot_be(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")

    def post(**overrides: Any) -> Any:
        return api.client.post("/v1/campaigns", json=body(prog, **overrides), headers=admin)

    now = utc_now()
    backwards = {"starts_at": now.isoformat(), "ends_at": (now - timedelta(days=1)).isoformat()}
    problem = assert_problem(post(window=backwards), 422, "validation_error")
    assert problem["errors"][0]["field"] == "window"
    assert "ends_at must be after starts_at" in problem["errors"][0]["message"]

    naive = {"starts_at": "2026-05-04T00:00:00", "ends_at": "2026-05-11T00:00:00"}
    assert_problem(post(window=naive), 422, "validation_error")

    for holdout in (-1, 91):
        problem = assert_problem(post(holdout_percent=holdout), 422, "validation_error")
        assert problem["errors"][0]["field"] == "holdout_percent"

    problem = assert_problem(post(audience={"tiers": ["platin"]}), 422, "unknown_tier")
    assert problem["errors"] == [{"field": "audience.tiers", "message": "unknown tier 'platin'"}]

    stranger = f.member(db, f.programme(db))
    problem = assert_problem(
        post(audience={"members": [str(stranger.id)]}), 422, "validation_error"
    )
    assert problem["errors"][0]["field"] == "audience.members"

    bad = {"type": "multiplier", "factor": "2", "condition": "event.weekday in [6, 7] and"}
    problem = assert_problem(post(boost=bad), 422, "validation_error")
    error = problem["errors"][0]
    assert error["field"] == "boost.condition"
    assert (error["line"], error["column"]) == (1, 28)  # the end: something is missing

    assert_problem(post(boost={"type": "multiplier", "factor": "1"}), 422, "validation_error")
    assert_problem(post(boost={"type": "points", "points": 0}), 422, "validation_error")
    assert_problem(post(unknown=1), 422, "validation_error")
    assert_problem(
        api.client.post("/v1/campaigns", json={"code": "x"}, headers=admin), 422, "validation_error"
    )

    taken = create(api, prog)
    assert_problem(post(code=taken["code"]), 409, "campaign_exists")
    assert_problem(
        api.client.post("/v1/campaigns", json=body(prog), headers=api.headers("members:read")),
        403,
        "missing_scope",
    )
    assert_problem(
        api.client.get(f"/v1/campaigns/{f.unique('x')}", headers=admin), 404, "campaign_not_found"
    )

    # A window that is over cannot start.
    past = {
        "starts_at": (now - timedelta(days=10)).isoformat(),
        "ends_at": (now - timedelta(days=3)).isoformat(),
    }
    over = create(api, prog, window=past)
    assert_problem(
        api.client.post(f"/v1/campaigns/{over['id']}/activate", headers=admin),
        422,
        "campaign_window_over",
    )


def test_a_tier_audience_is_checked_against_the_ladder(api: Api, db: Database) -> None:
    prog = f.tiered(db)
    created = create(api, prog, audience={"tiers": ["gold", "silber"]})
    assert created["spec"]["audience"] == {"tiers": ["gold", "silber"]}
    rule = api.client.get(f"/v1/rules/{created['rule_id']}", headers=api.headers("admin")).json()
    assert rule["draft"]["condition"].startswith("member.tier in ['gold', 'silber'] and bucket(")
    assert isinstance(datetime.fromisoformat(created["created_at"]), datetime)


def test_the_documented_examples_are_valid() -> None:
    from treu.campaigns.schemas import (
        EXAMPLE_BEST_BEFORE,
        EXAMPLE_CAMPAIGN,
        EXAMPLE_OFFER,
        EXAMPLE_WEEKEND,
    )
    from treu.campaigns.service import parse_spec

    for example in (EXAMPLE_CAMPAIGN, EXAMPLE_WEEKEND, EXAMPLE_BEST_BEFORE, EXAMPLE_OFFER):
        spec = parse_spec({k: v for k, v in example.items() if k != "programme"})
        assert spec.rule_spec(uuid.uuid4()).trigger == "purchase"


def test_the_campaign_rule_changes_only_with_its_campaign(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")
    created = create(api, prog)
    url = f"/v1/rules/{created['rule_id']}"
    for response in (
        api.client.patch(url, json={"condition": None}, headers=admin),
        api.client.post(f"{url}/publish", headers=admin),
        api.client.post(f"{url}/pause", headers=admin),
    ):
        problem = assert_problem(response, 409, "rule_managed_by_campaign")
        assert problem["campaign_id"] == created["id"]
    assert api.client.get(url, headers=admin).json()["status"] == "draft"


def offer_body(prog: Programme, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "programme": prog.slug,
        "kind": "offer",
        "code": f.unique("offer"),
        "name": "Herbst-Geschenk",
        "window": f.campaign_window(),
        "offer": {"points": 200},
        "holdout_percent": 0,
    }
    data.update(overrides)
    return data


def test_an_offer_is_given_when_it_is_activated(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")
    people = [f.member(db, prog) for _ in range(2)]
    created = api.client.post("/v1/campaigns", json=offer_body(prog), headers=admin)
    assert created.status_code == 201, created.text
    offer = created.json()
    assert (offer["kind"], offer["status"], offer["given_at"]) == ("offer", "draft", None)
    url = f"/v1/campaigns/{offer['id']}"

    active = api.client.post(f"{url}/activate", headers=admin)
    assert active.status_code == 200, active.text
    assert active.json()["given_at"] is not None
    assert active.json()["running"] is False  # given: nothing left to do
    for who in people:
        balance = api.client.get(f"/v1/members/{who.id}/balance", headers=admin).json()
        assert balance["available"] == 200
    # The offer's rule is never published: no purchase earns from it.
    rule = api.client.get(f"/v1/rules/{offer['rule_id']}", headers=admin).json()
    assert rule["status"] == "draft"

    data = api.client.get(f"{url}/stats", headers=admin).json()
    assert (data["treated"], data["held_out"], data["points_issued"]) == (2, 0, 400)
    assert data["offer"]["points"] == 400
    assert data["offer"]["coupons"] == 0
    assert data["messages"]["tracked"] is True

    # Paused and activated again, it gives nobody anything twice.
    api.client.post(f"{url}/pause", headers=admin)
    again = api.client.post(f"{url}/activate", headers=admin)
    assert again.status_code == 200, again.text
    data = api.client.get(f"{url}/stats", headers=admin).json()
    assert data["points_issued"] == 400


def test_what_an_offer_cannot_be(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")

    def post(**overrides: Any) -> Any:
        return api.client.post("/v1/campaigns", json=offer_body(prog, **overrides), headers=admin)

    problem = assert_problem(post(offer={"template": "offer"}), 422, "validation_error")
    assert "points, a reward_id, or both" in problem["errors"][0]["message"]
    problem = assert_problem(post(offer={"points": 5, "template": "nope"}), 422, "validation_error")
    assert problem["errors"][0]["field"] == "offer.template"
    assert_problem(
        post(boost={"type": "points", "points": 5}), 422, "validation_error"
    )  # an offer has no boost
    assert_problem(post(kind="bonus"), 422, "validation_error")  # a bonus needs a boost
    elsewhere = f.reward(db, f.programme(db))
    problem = assert_problem(post(offer={"reward_id": str(elsewhere.id)}), 422, "validation_error")
    assert problem["errors"][0]["field"] == "offer.reward_id"
    credit = f.reward(db, prog, type="wallet_credit", value_minor=1500, points_cost=100)
    problem = assert_problem(post(offer={"reward_id": str(credit.id)}), 422, "validation_error")
    assert problem["errors"] == [{"field": "offer.reward_id", "message": "not a coupon reward"}]
