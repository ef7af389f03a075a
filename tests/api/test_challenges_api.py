"""The challenges API: admin editing with problem+json errors, status changes, and the
member's progress view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.kit.time import frozen, utc_now
from treu.programmes.models import Programme


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "code": f.unique("c"),
        "name": {"de": "Kaufe aus 3 Kategorien", "en": "Buy from 3 categories"},
        "description": {"de": "Jeden Monat neu", "en": "New every month"},
        "trigger": ["purchase"],
        "goal": {"type": "distinct", "target": 3, "value": "line.category"},
        "window": {"type": "repeating", "every": "month"},
        "max_completions": None,
        "reward": {
            "points": 150,
            "badge": {
                "code": "entdecker",
                "name": {"en": "Explorer", "de": "Entdecker"},
                "icon": "🧭",
            },
        },
    }
    data.update(overrides)
    return data


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    data = dict(response.json())
    assert data["code"] == code
    return data


def create(api: Api, prog: Programme, **overrides: Any) -> dict[str, Any]:
    response = api.client.post(
        f"/v1/programmes/{prog.slug}/challenges",
        json=body(**overrides),
        headers=api.headers("admin"),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_activate_pause_end(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")
    created = create(api, prog)
    assert created["status"] == "draft"
    assert created["locked"] is False
    assert created["spec"]["goal"] == {"type": "distinct", "target": 3, "value": "line.category"}
    assert created["spec"]["max_completions"] is None
    cid = created["id"]
    url = f"/v1/challenges/{cid}"
    assert (
        api.client.get(url, headers=api.headers("members:read")).json()["code"] == created["code"]
    )

    # A draft may change everything.
    patched = api.client.patch(url, json={"goal": {"type": "count", "target": 2}}, headers=admin)
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["goal"] == {"type": "count", "target": 2}
    assert patched.json()["spec"]["max_completions"] is None  # kept

    problem(api.client.post(f"{url}/pause", headers=admin), 409, "challenge_status")
    active = api.client.post(f"{url}/activate", headers=admin).json()
    assert (active["status"], active["locked"]) == ("active", True)
    assert active["activated_at"] is not None

    # Once active, what counts is frozen ...
    locked = problem(
        api.client.patch(url, json={"goal": {"type": "count", "target": 5}}, headers=admin),
        409,
        "challenge_locked",
    )
    assert locked["fields"] == ["goal"]
    problem(
        api.client.patch(url, json={"condition": "event.total_minor > 1"}, headers=admin),
        409,
        "challenge_locked",
    )
    # ... but texts and the reward may change.
    renamed = api.client.patch(
        url,
        json={"name": {"en": "Two buys", "de": "Zwei Einkäufe"}, "reward": {"points": 20}},
        headers=admin,
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["spec"]["reward"] == {"points": 20, "badge": None}

    paused = api.client.post(f"{url}/pause", headers=admin).json()
    assert paused["status"] == "paused"
    assert api.client.post(f"{url}/activate", headers=admin).json()["status"] == "active"
    ended = api.client.post(f"{url}/end", headers=admin).json()
    assert ended["status"] == "ended"
    problem(api.client.post(f"{url}/activate", headers=admin), 409, "challenge_status")
    problem(
        api.client.patch(url, json={"reward": {"points": 1}}, headers=admin),
        409,
        "challenge_status",
    )

    listed = api.client.get(f"/v1/programmes/{prog.slug}/challenges", headers=admin).json()
    assert [c["id"] for c in listed["items"]] == [cid]
    assert api.client.get(
        f"/v1/programmes/{prog.slug}/challenges?status=active", headers=admin
    ).json() == {"items": []}


def test_expression_errors_name_line_and_column(api: Api, db: Database) -> None:
    prog = f.programme(db)
    response = api.client.post(
        f"/v1/programmes/{prog.slug}/challenges",
        json=body(
            condition="event.channel == 'app' and event.total_minor > 'x'",
            goal={"type": "distinct", "target": 3, "value": "line.categry"},
        ),
        headers=api.headers("admin"),
    )
    data = problem(response, 422, "validation_error")
    by_field = {e["field"]: e for e in data["errors"]}
    assert set(by_field) == {"condition"}  # the goal is checked once the fields are valid
    assert by_field["condition"]["line"] == 1
    assert by_field["condition"]["column"] == 48
    assert by_field["condition"]["offset"] == 47
    assert "compare" in by_field["condition"]["message"]
    response = api.client.post(
        f"/v1/programmes/{prog.slug}/challenges",
        json=body(goal={"type": "distinct", "target": 3, "value": "line.categry"}),
        headers=api.headers("admin"),
    )
    [error] = problem(response, 422, "validation_error")["errors"]
    assert (error["field"], error["line"], error["column"]) == ("goal.value", 1, 6)
    assert "line.category" in error["message"]


def test_other_errors(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")
    url = f"/v1/programmes/{prog.slug}/challenges"
    first = create(api, prog)
    problem(
        api.client.post(url, json=body(code=first["code"]), headers=admin), 409, "challenge_exists"
    )
    problem(
        api.client.post(
            url,
            json=body(trigger=["workshop_attended"], goal={"type": "count", "target": 1}),
            headers=admin,
        ),
        422,
        "unknown_trigger",
    )
    missing = problem(
        api.client.post(url, json={"code": "x"}, headers=admin), 422, "validation_error"
    )
    assert {"name", "trigger", "goal", "window", "reward"} <= {
        e["field"] for e in missing["errors"]
    }
    problem(
        api.client.post(url, json=body(), headers=api.headers("members:read")), 403, "missing_scope"
    )
    problem(api.client.post(url, json=body()), 401, "invalid_api_key")
    problem(
        api.client.get("/v1/programmes/nope/challenges", headers=admin), 404, "programme_not_found"
    )
    problem(api.client.get("/v1/challenges/nope", headers=admin), 404, "challenge_not_found")
    problem(
        api.client.get(f"/v1/challenges/{f.programme(db).id}", headers=admin),
        404,
        "challenge_not_found",
    )
    over = create(
        api,
        prog,
        window={
            "type": "fixed",
            "starts_at": "2020-05-01T00:00:00+02:00",
            "ends_at": "2020-06-01T00:00:00+02:00",
        },
        max_completions=1,
    )
    problem(
        api.client.post(f"/v1/challenges/{over['id']}/activate", headers=admin),
        422,
        "challenge_window_over",
    )


def test_member_progress_and_history(api: Api, db: Database) -> None:
    with frozen(datetime(2026, 11, 18, 12, 0, tzinfo=UTC)):  # a Wednesday
        member_progress_and_history(api, db)


def member_progress_and_history(api: Api, db: Database) -> None:
    prog = f.programme(db)
    admin = api.headers("admin")
    categories = create(api, prog)
    reviews = create(
        api,
        prog,
        name={"en": "Write 2 reviews", "de": "Schreibe 2 Bewertungen"},
        trigger=["review_submitted"],
        goal={"type": "count", "target": 2},
        window={"type": "repeating", "every": "week"},
        max_completions=4,
        reward={"points": 100},
    )
    draft = create(api, prog)
    for challenge in (categories, reviews):
        assert api.client.post(
            f"/v1/challenges/{challenge['id']}/activate", headers=admin
        ).is_success
    anna = f.member(db, prog)
    now = utc_now()
    f.ingest_one(
        db,
        f.purchase_payload(
            prog,
            anna,
            lines=[
                {"sku": "1", "category": "dairy", "quantity": 1, "unit_price_minor": 100},
                {"sku": "2", "category": "coffee", "quantity": 1, "unit_price_minor": 100},
                {"sku": "3", "category": "bakery", "quantity": 1, "unit_price_minor": 100},
                {"sku": "4", "category": "drinks", "quantity": 1, "unit_price_minor": 100},
            ],
            occurred_at=now - timedelta(minutes=5),
        ),
    )
    f.ingest_one(
        db,
        {
            "id": f.unique("review"),
            "type": "review_submitted",
            "programme": prog.slug,
            "member": {"member_id": str(anna.id)},
            "occurred_at": (now - timedelta(minutes=1)).isoformat(),
            "attributes": {"product_sku": "1", "rating": 4},
        },
    )
    response = api.client.get(
        f"/v1/members/{anna.id}/challenges?lang=de", headers=api.headers("members:read")
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["lang"] == "de"
    by_code = {c["code"]: c for c in data["active"]}
    assert set(by_code) == {categories["code"], reviews["code"]}  # not the draft
    assert draft["code"] not in by_code
    done = by_code[categories["code"]]
    assert done["name"] == "Kaufe aus 3 Kategorien"
    assert done["description"] == "Jeden Monat neu"
    assert (done["current"], done["target"], done["percent"]) == (3, 3, 100)  # 4 of 3: 3
    assert done["values"] == ["bakery", "coffee", "dairy", "drinks"]
    assert (done["completed"], done["completions"], done["can_progress"]) == (True, 1, False)
    assert done["period"]["repeats"] == "month"
    assert done["period"]["key"].startswith("month:")
    assert done["reward"]["badge"]["name"] == "Entdecker"
    open_ = by_code[reviews["code"]]
    assert (open_["current"], open_["target"], open_["percent"]) == (1, 2, 50)
    assert (open_["completed"], open_["completions"], open_["max_completions"]) == (False, 0, 4)
    assert open_["can_progress"] is True
    assert open_["values"] is None
    assert open_["period"]["key"].startswith("week:")
    ends = datetime.fromisoformat(open_["ends_at"])
    assert ends == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # Monday 00:00 in Berlin
    assert datetime.fromisoformat(done["ends_at"]) == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    [history] = data["completed"]
    assert history["code"] == categories["code"]
    assert history["name"] == "Kaufe aus 3 Kategorien"
    assert (history["points"], history["badge"]) == (150, "entdecker")
    assert history["period"] == done["period"]

    english = api.client.get(
        f"/v1/members/{anna.id}/challenges", headers=api.headers("members:read")
    )
    assert {c["name"] for c in english.json()["active"]} == {
        "Buy from 3 categories",
        "Write 2 reviews",
    }
    ledger = api.client.get(
        f"/v1/members/{anna.id}/ledger?lang=de", headers=api.headers("members:read")
    ).json()
    assert "Challenge „Kaufe aus 3 Kategorien“ geschafft: +150" in [
        p["explanation"] for p in ledger["items"]
    ]
    badges = api.client.get(f"/v1/members/{anna.id}/badges", headers=api.headers("members:read"))
    assert [b["code"] for b in badges.json()["items"]] == ["entdecker"]
    problem(
        api.client.get(f"/v1/members/{prog.id}/challenges", headers=api.headers("members:read")),
        404,
        "member_not_found",
    )
    problem(
        api.client.get(f"/v1/members/{anna.id}/challenges", headers=api.headers("events:write")),
        403,
        "missing_scope",
    )
