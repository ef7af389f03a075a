"""The event result's OpenAPI model documents everything an event answer can carry
(badges, limited rules, a tier change, challenge progress, restored coupons), and real
answers that carry them validate against it and serialise back unchanged."""

from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.api_helpers import Api
from tests.support.rewards_api import cart, create, redeem, rich
from treu.api.routes.events import EventResult
from treu.db.session import Database
from treu.programmes.models import Programme
from treu.rules.service import rules
from treu.rules.spec import RuleSpec

NEW_FIELDS = ("badges", "limited", "tier", "challenges", "coupons_restored")


def _round_trip(body: dict[str, Any]) -> dict[str, Any]:
    """What FastAPI would send for ``body`` through the route's response model."""
    return EventResult.model_validate(body).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The component a property points to, through ``anyOf [X, null]`` and arrays."""
    for option in node.get("anyOf", [node]):
        if option.get("type") == "array":
            option = option["items"]
        if "$ref" in option:
            name = option["$ref"].rsplit("/", 1)[1]
            return dict(schema["components"]["schemas"][name])
    return node


def test_openapi_documents_the_new_result_fields(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    result = schema["components"]["schemas"]["EventResult"]
    properties = result["properties"]
    for name in NEW_FIELDS:
        assert name in properties, name
        assert name not in result["required"], name  # left out when empty
    assert properties["coupons_restored"]["anyOf"][0] == {
        "type": "array",
        "items": {"type": "string"},
    }
    badge = _resolve(schema, properties["badges"])
    assert {"code", "name", "icon"} <= set(badge["required"])
    limited = _resolve(schema, properties["limited"])
    assert set(limited["required"]) == {"rule_id", "rule", "reason"}
    tier = _resolve(schema, properties["tier"])
    assert "from" in tier["properties"]  # the alias, not the Python name
    assert "from_" not in tier["properties"]
    assert {"from", "to", "reason", "text", "flags"} <= set(tier["required"])
    step = _resolve(schema, properties["challenges"])
    assert {"challenge_id", "code", "period", "progress", "change", "completed"} <= set(
        step["required"]
    )
    reward = _resolve(schema, step["properties"]["reward"])
    assert set(reward["properties"]) == {"points", "posting", "badge"}
    # The batch answer reuses the same model.
    item = schema["components"]["schemas"]["BatchItem"]["properties"]["result"]
    assert _resolve(schema, item)["properties"].keys() == properties.keys()


def _publish(db: Database, prog: Programme, **spec: Any) -> None:
    with db.unit_of_work() as session:
        rule = rules.create(
            session, programme=prog, spec=RuleSpec.model_validate(spec), actor="test"
        )
        rules.publish(session, rule, actor="test")


def _loyal_programme(api: Api, db: Database) -> Programme:
    """A programme where one purchase earns a capped badge rule, reaches Silver and
    completes a challenge."""
    admin = api.headers("admin")
    prog = f.programme(db, tier_settings={"metric": "purchases", "window": "calendar_year"})
    for tier in (
        {"code": "bronze", "rank": 0, "name": {"en": "Bronze"}, "threshold": 0},
        {"code": "silber", "rank": 1, "name": {"en": "Silver", "de": "Silber"}, "threshold": 1},
    ):
        r = api.client.post(f"/v1/programmes/{prog.slug}/tiers", json=tier, headers=admin)
        assert r.status_code == 201, r.text
    _publish(
        db,
        prog,
        name="Welcome bonus",
        trigger="purchase",
        effect={"type": "fixed", "points": 50},
        limits=[{"per": "day", "max_points": 30}],
        badge={"code": "first-buy", "name": {"en": "First buy", "de": "Erstkauf"}, "icon": "🛒"},
    )
    challenge = {
        "code": f.unique("c"),
        "name": {"en": "Shop once", "de": "Einmal einkaufen"},
        "trigger": ["purchase"],
        "goal": {"type": "count", "target": 1},
        "window": {"type": "repeating", "every": "month"},
        "reward": {
            "points": 20,
            "badge": {"code": "starter", "name": {"en": "Starter"}, "icon": "🚀"},
        },
    }
    r = api.client.post(f"/v1/programmes/{prog.slug}/challenges", json=challenge, headers=admin)
    assert r.status_code == 201, r.text
    r = api.client.post(f"/v1/challenges/{r.json()['id']}/activate", headers=admin)
    assert r.status_code == 200, r.text
    return prog


def test_a_purchase_answer_with_every_extra_validates_and_serialises_unchanged(
    api: Api, db: Database
) -> None:
    prog = _loyal_programme(api, db)
    anna = f.member(db, prog)
    purchase = f.purchase_payload(prog, anna, amount_minor=2500)
    r = api.client.post("/v1/events", json=purchase, headers=api.headers("events:write"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert {"badges", "limited", "tier", "challenges"} <= body.keys()
    assert [b["code"] for b in body["badges"]] == ["first-buy"]
    assert body["limited"][0]["rule"] == "Welcome bonus"
    assert body["limited"][0]["reason"].startswith("capped")
    assert (body["tier"]["from"], body["tier"]["to"]) == ("bronze", "silber")
    step = body["challenges"][0]
    assert (step["completed"], step["reward"]["points"]) == (True, 20)
    assert step["reward"]["badge"]["code"] == "starter"
    assert step["reward"]["posting"]["points"] == 20

    parsed = EventResult.model_validate(body)
    assert parsed.tier is not None
    assert parsed.tier.from_ == "bronze"
    assert parsed.challenges is not None
    assert parsed.challenges[0].reward is not None
    assert _round_trip(body) == body

    # A replay answers the stored result, which validates the same way.
    again = api.client.post("/v1/events", json=purchase, headers=api.headers("events:write"))
    assert again.status_code == 200
    assert _round_trip(again.json()) == again.json() == body

    # The batch endpoint nests the same result.
    batch = api.client.post(
        "/v1/events/batch",
        json={"events": [f.purchase_payload(prog, anna, amount_minor=1200)]},
        headers=api.headers("events:write"),
    )
    assert batch.status_code == 200, batch.text
    nested = batch.json()["results"][0]["result"]
    assert "limited" in nested  # the day's cap is used up now
    assert _round_trip(nested) == nested


def test_a_return_answer_with_restored_coupons_serialises_unchanged(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = rich(db, prog)
    reward = create(api, prog)
    code = redeem(api, anna, reward, f.unique("k")).json()["coupon"]["code"]
    order = f.purchase_payload(prog, anna, amount_minor=3000)
    used = api.client.post(
        "/v1/coupons/redeem",
        json={
            "code": code,
            "order_id": order["id"],
            "programme": prog.slug,
            "cart": cart(prog, None, ("sku-1", 1, 3000)),
        },
        headers=api.headers("events:write"),
    )
    assert used.status_code == 201, used.text
    events = api.headers("events:write")
    assert api.client.post("/v1/events", json=order, headers=events).status_code == 201
    back = api.client.post(
        "/v1/events",
        json=f.return_payload(prog, order["id"], [{"sku": "sku-1", "quantity": 1}]),
        headers=events,
    )
    assert back.status_code == 201, back.text
    body = back.json()
    assert len(body["coupons_restored"]) == 1
    assert EventResult.model_validate(body).coupons_restored == body["coupons_restored"]
    assert _round_trip(body) == body
