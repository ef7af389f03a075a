from __future__ import annotations

import re
from typing import Any

import pytest

from tests import factories as f
from tests.api_helpers import Api, assert_problem, make_api
from treu.db.session import Database


def _programme(api: Api, **overrides: Any) -> dict[str, Any]:
    body = {
        "slug": f.unique("api"),
        "name": "Treu Demo",
        "currency": "EUR",
        "points_per_currency_unit": 1,
        "pending_days": 14,
        "expiry": {"policy": "rolling", "months": 24},
        "auto_enrol": False,
    }
    body.update(overrides)
    r = api.client.post("/v1/programmes", json=body, headers=api.headers("admin"))
    assert r.status_code == 201, r.text
    return dict(r.json())


# --- auth -------------------------------------------------------------------------------


def test_requests_without_key_get_401_problem(api: Api) -> None:
    r = api.client.get("/v1/programmes")
    body = assert_problem(r, 401, "invalid_api_key")
    assert "Bearer" in body["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_key_and_malformed_key_get_401(api: Api) -> None:
    bad = "treu_" + "x" * 44
    assert_problem(
        api.client.get("/v1/programmes", headers={"Authorization": f"Bearer {bad}"}),
        401,
        "invalid_api_key",
    )
    assert_problem(
        api.client.get("/v1/programmes", headers={"Authorization": "Bearer nope"}),
        401,
        "invalid_api_key",
    )


def test_wrong_scope_gets_403(api: Api) -> None:
    r = api.client.post(
        "/v1/programmes",
        json={"slug": "x", "name": "x", "currency": "EUR", "points_per_currency_unit": 1},
        headers=api.headers("events:write"),
    )
    body = assert_problem(r, 403, "missing_scope")
    assert body["scope"] == "admin"
    prog = _programme(api)
    r = api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "email": "a@example.com"},
        headers=api.headers("members:read"),
    )
    assert_problem(r, 403, "missing_scope")


def test_revoked_key_is_refused(api: Api, db: Database) -> None:
    from treu.auth.service import api_keys

    with db.unit_of_work() as session:
        row, key = api_keys.create(session, name="temp", scopes=["members:read"])
    headers = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/v1/programmes", headers=headers).status_code == 200
    with db.unit_of_work() as session:
        assert api_keys.revoke(session, lookup=row.lookup)
    assert_problem(api.client.get("/v1/programmes", headers=headers), 401, "invalid_api_key")


def test_keys_are_stored_only_as_hashes(api: Api, db: Database) -> None:
    from sqlalchemy import select

    from treu.auth.models import ApiKey

    key = api.keys["admin"]
    assert key.startswith("treu_")
    with db.unit_of_work(write=False) as session:
        stored = session.scalars(select(ApiKey.secret_hash)).all()
    assert key not in stored
    assert all(len(h) == 64 for h in stored)


# --- programmes -------------------------------------------------------------------------


def test_programme_contract_example(api: Api) -> None:
    prog = _programme(api)
    assert prog["currency"] == "EUR"
    assert prog["expiry"] == {"policy": "rolling", "months": 24, "years": None}
    assert prog["points_name"]["de"] == {"one": "Punkt", "other": "Punkte"}
    r = api.client.get(f"/v1/programmes/{prog['slug']}", headers=api.headers("members:read"))
    assert r.status_code == 200
    assert r.json()["id"] == prog["id"]
    r = api.client.get(f"/v1/programmes/{prog['id']}", headers=api.headers("members:read"))
    assert r.json()["slug"] == prog["slug"]


def test_programme_validation_names_fields(api: Api) -> None:
    r = api.client.post(
        "/v1/programmes",
        json={
            "slug": "Bad Slug",
            "name": "x",
            "currency": "XYZ",
            "points_per_currency_unit": -1,
            "expiry": {"policy": "rolling"},
        },
        headers=api.headers("admin"),
    )
    body = assert_problem(r, 422, "validation_error")
    fields = {e["field"] for e in body["errors"]}
    assert {"slug", "currency", "points_per_currency_unit", "expiry"} <= fields


def test_duplicate_programme_is_409(api: Api) -> None:
    prog = _programme(api)
    r = api.client.post(
        "/v1/programmes",
        json={"slug": prog["slug"], "name": "x", "currency": "EUR", "points_per_currency_unit": 1},
        headers=api.headers("admin"),
    )
    assert_problem(r, 409, "programme_exists")


def test_unknown_programme_is_404(api: Api) -> None:
    assert_problem(
        api.client.get("/v1/programmes/nope", headers=api.headers("members:read")),
        404,
        "programme_not_found",
    )


# --- members ----------------------------------------------------------------------------


def test_enrol_and_find_member_by_every_identifier(api: Api) -> None:
    prog = _programme(api)
    r = api.client.post(
        "/v1/members",
        json={
            "programme": prog["slug"],
            "email": "Anna@Example.com",
            "phone": "+49 151 12345678",
            "external_id": "crm-1",
            "language": "de",
        },
        headers=api.headers("members:write"),
    )
    assert r.status_code == 201, r.text
    anna = r.json()
    assert anna["email"] == "anna@example.com"
    assert anna["phone"] == "+4915112345678"
    assert len(anna["card_number"]) == 16
    for identifier in (
        "anna@example.com",
        "+4915112345678",
        anna["card_number"],
        "crm-1",
        anna["id"],
    ):
        r = api.client.get(
            "/v1/members",
            params={"identifier": identifier, "programme": prog["slug"]},
            headers=api.headers("members:read"),
        )
        assert r.status_code == 200
        assert [m["id"] for m in r.json()["items"]] == [anna["id"]], identifier
    r = api.client.get(f"/v1/members/{anna['id']}", headers=api.headers("members:read"))
    assert r.json()["programme"] == prog["slug"]


def test_enrolment_needs_an_identifier_and_unique_ones(api: Api) -> None:
    prog = _programme(api)
    r = api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "language": "de"},
        headers=api.headers("members:write"),
    )
    body = assert_problem(r, 422, "validation_error")
    assert "identifier" in body["detail"]
    ok = {"programme": prog["slug"], "email": "dup@example.com"}
    assert (
        api.client.post("/v1/members", json=ok, headers=api.headers("members:write")).status_code
        == 201
    )
    r = api.client.post("/v1/members", json=ok, headers=api.headers("members:write"))
    body = assert_problem(r, 409, "identifier_taken")
    assert body["field"] == "email"


def test_invalid_phone_and_card_are_refused_with_field(api: Api) -> None:
    prog = _programme(api)
    r = api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "phone": "0151 123", "card_number": "1234567890123456"},
        headers=api.headers("members:write"),
    )
    body = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"phone", "card_number"}
    # Luhn-valid but longer than a card number can be (it answered 500 on PostgreSQL),
    # or digits of another script
    from treu.kit.ids import luhn_check_digit

    long = "1" * 39
    for card in (
        long + str(luhn_check_digit(long)),
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",
    ):
        r = api.client.post(
            "/v1/members",
            json={"programme": prog["slug"], "card_number": card},
            headers=api.headers("members:write"),
        )
        body = assert_problem(r, 422, "validation_error")
        assert [e["field"] for e in body["errors"]] == ["card_number"]


def test_patch_member_progressive_profile(api: Api) -> None:
    prog = _programme(api)
    anna = api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "email": "p@example.com"},
        headers=api.headers("members:write"),
    ).json()
    r = api.client.patch(
        f"/v1/members/{anna['id']}",
        json={"birthday": "1990-05-17", "first_name": "Anna", "attributes": {"size": "M"}},
        headers=api.headers("members:write"),
    )
    assert r.status_code == 200, r.text
    r = api.client.patch(
        f"/v1/members/{anna['id']}",
        json={"attributes": {"shoe": 39}, "phone": "+4917612345678"},
        headers=api.headers("members:write"),
    )
    body = r.json()
    assert body["attributes"] == {"size": "M", "shoe": 39}
    assert body["birthday"] == "1990-05-17"
    assert body["first_name"] == "Anna"
    assert body["phone"] == "+4917612345678"


def test_unknown_member_is_404_and_bad_uuid_is_422(api: Api) -> None:
    assert_problem(
        api.client.get(
            "/v1/members/01a208e9-2fdb-76dd-973a-afae417770f8", headers=api.headers("members:read")
        ),
        404,
        "member_not_found",
    )
    body = assert_problem(
        api.client.get("/v1/members/not-a-uuid", headers=api.headers("members:read")),
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "path.member_id"


# --- events, balance, ledger ------------------------------------------------------------


def _contract_purchase(prog: dict[str, Any], email: str, event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "purchase",
        "programme": prog["slug"],
        "member": {"email": email},
        "occurred_at": "2026-11-20T10:15:00Z",
        "channel": "pos",
        "store": "berlin-01",
        "currency": "EUR",
        "lines": f.contract_lines(),
    }


def test_contract_purchase_replay_return_balance(api: Api) -> None:
    from treu.kit.time import frozen, utc_now

    prog = _programme(api)
    email = f"{f.unique('anna')}@example.com"
    member = api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "email": email},
        headers=api.headers("members:write"),
    ).json()
    event = _contract_purchase(prog, email, f.unique("pos-4711"))
    del utc_now
    from datetime import UTC, datetime

    with frozen(datetime(2026, 11, 24, 12, 0, tzinfo=UTC)):
        r = api.client.post("/v1/events", json=event, headers=api.headers("events:write"))
        assert r.status_code == 201, r.text
        first = r.json()
        assert first["member_id"] == member["id"]
        assert first["points"]["earned"] == 11
        assert first["points"]["pending"] == 11
        assert first["points"]["available"] == 0
        assert first["postings"][0]["explanation"] == "1 point per €1 on €11.57: +11"
        replay = api.client.post("/v1/events", json=event, headers=api.headers("events:write"))
        assert replay.status_code == 200
        assert replay.json() == first
        changed = dict(event, store="hamburg-01")
        assert_problem(
            api.client.post("/v1/events", json=changed, headers=api.headers("events:write")),
            409,
            "idempotency_conflict",
        )
        ret = {
            "id": event["id"] + "-r",
            "type": "return",
            "programme": prog["slug"],
            "member": {"email": email},
            "occurred_at": "2026-11-21T09:00:00Z",
            "original_event_id": event["id"],
            "lines": [{"sku": "7002", "quantity": 1}],
        }
        r = api.client.post("/v1/events", json=ret, headers=api.headers("events:write"))
        assert r.status_code == 201, r.text
        assert r.json()["points"]["reversed"] == 9
        r = api.client.get(
            f"/v1/members/{member['id']}/balance", headers=api.headers("members:read")
        )
        bal = r.json()
        assert bal["available"] == 0
        assert bal["pending"] == 2
        assert bal["expiring"] == [{"points": 2, "expires_at": "2028-11-20T10:15:00Z"}]
        assert bal["pending_releases"] == [{"points": 2, "available_at": "2026-12-04T10:15:00Z"}]
        r = api.client.get(
            f"/v1/members/{member['id']}/ledger", headers=api.headers("members:read")
        )
        kinds = [(p["kind"], p["points"], p["event_id"]) for p in r.json()["items"]]
        assert kinds == [("reverse", -9, ret["id"]), ("earn", 11, event["id"])]
        r = api.client.get(
            f"/v1/members/{member['id']}/ledger",
            params={"lang": "de"},
            headers=api.headers("members:read"),
        )
        assert r.json()["items"][1]["explanation"] == "1 Punkt pro 1\u00a0€ auf 11,57\u00a0€: +11"


def test_event_validation_errors_name_field_paths(api: Api) -> None:
    prog = _programme(api)
    event = _contract_purchase(prog, "x@example.com", "e-1")
    event["lines"][1]["quantity"] = 0
    event["occurred_at"] = "2026-11-24T10:15:00"  # no zone
    r = api.client.post("/v1/events", json=event, headers=api.headers("events:write"))
    body = assert_problem(r, 422, "validation_error")
    fields = {e["field"] for e in body["errors"]}
    assert "purchase.lines.1.quantity" in fields or "lines.1.quantity" in fields
    assert any(fld.endswith("occurred_at") for fld in fields)


def test_unknown_member_event_is_404_and_writes_nothing(api: Api) -> None:
    prog = _programme(api)
    event = _contract_purchase(prog, "ghost@example.com", f.unique("e"))
    assert_problem(
        api.client.post("/v1/events", json=event, headers=api.headers("events:write")),
        404,
        "member_not_found",
    )
    api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "email": "ghost@example.com"},
        headers=api.headers("members:write"),
    )
    # The same id can now be used: the failed attempt left nothing behind.
    r = api.client.post("/v1/events", json=event, headers=api.headers("events:write"))
    assert r.status_code == 201


def test_batch_isolates_bad_events(api: Api) -> None:
    prog = _programme(api, pending_days=0)
    email = f"{f.unique('b')}@example.com"
    api.client.post(
        "/v1/members",
        json={"programme": prog["slug"], "email": email},
        headers=api.headers("members:write"),
    )
    good = _contract_purchase(prog, email, f.unique("g"))
    invalid = dict(_contract_purchase(prog, email, f.unique("i")), lines=[])
    unknown = _contract_purchase(prog, "nobody@example.com", f.unique("u"))
    r = api.client.post(
        "/v1/events/batch",
        json={"events": [good, invalid, unknown, good]},
        headers=api.headers("events:write"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["summary"] == {"processed": 1, "replayed": 1, "failed": 2}
    statuses = [(x["index"], x["status"]) for x in body["results"]]
    assert statuses == [(0, 201), (1, 422), (2, 404), (3, 200)]
    assert body["results"][1]["problem"]["errors"][0]["field"] == "lines"
    assert body["results"][2]["problem"]["code"] == "member_not_found"
    assert body["results"][0]["result"]["points"]["available"] == 11


def test_batch_limit_is_1000(api: Api) -> None:
    prog = _programme(api)
    event = _contract_purchase(prog, "x@example.com", "e")
    r = api.client.post(
        "/v1/events/batch", json={"events": [event] * 1001}, headers=api.headers("events:write")
    )
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "events"


def test_ledger_pagination_walks_all_postings(api: Api, db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    f.ingest(db, *[f.purchase_payload(prog, who, amount_minor=100 * (i + 1)) for i in range(7)])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = api.client.get(
            f"/v1/members/{who.id}/ledger", params=params, headers=api.headers("members:read")
        )
        assert r.status_code == 200
        page = r.json()
        seen.extend(p["points"] for p in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert_problem(
        api.client.get(
            f"/v1/members/{who.id}/ledger",
            params={"cursor": "garbage"},
            headers=api.headers("members:read"),
        ),
        422,
        "validation_error",
    )


# --- adjustments ------------------------------------------------------------------------


def test_adjustment_needs_admin_and_reason_and_is_idempotent(api: Api, db: Database) -> None:
    from sqlalchemy import select

    from treu.audit.models import AuditEvent

    prog = f.programme(db)
    who = f.member(db, prog)
    url = f"/v1/members/{who.id}/adjustments"
    assert_problem(
        api.client.post(
            url, json={"points": 50, "reason": "goodwill"}, headers=api.headers("members:write")
        ),
        403,
        "missing_scope",
    )
    body = assert_problem(
        api.client.post(url, json={"points": 50}, headers=api.headers("admin")),
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "reason"
    headers = api.headers("admin") | {"Idempotency-Key": f.unique("adj")}
    r = api.client.post(url, json={"points": 50, "reason": "Parcel damaged"}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == {"available": 50, "pending": 0}
    again = api.client.post(url, json={"points": 50, "reason": "Parcel damaged"}, headers=headers)
    assert again.status_code == 200
    assert again.json() == r.json()
    assert_problem(
        api.client.post(url, json={"points": 60, "reason": "Parcel damaged"}, headers=headers),
        409,
        "idempotency_conflict",
    )
    assert_problem(
        api.client.post(
            url, json={"points": -80, "reason": "correction"}, headers=api.headers("admin")
        ),
        422,
        "insufficient_points",
    )
    assert f.balance(db, who).available == 50
    with db.unit_of_work(write=False) as session:
        entries = session.scalars(
            select(AuditEvent).where(AuditEvent.subject_id == str(who.id))
        ).all()
    assert [(e.actor, e.action, e.data["reason"]) for e in entries] == [
        ("apikey:test-admin", "ledger.adjust", "Parcel damaged")
    ]
    r = api.client.get(f"/v1/members/{who.id}/ledger", headers=api.headers("members:read"))
    item = r.json()["items"][0]
    assert item["kind"] == "adjust"
    assert item["reason"] == "Parcel damaged"
    assert item["actor"] == "apikey:test-admin"


def test_openapi_documents_every_route_with_examples(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/programmes",
        "/v1/programmes/{programme}",
        "/v1/members",
        "/v1/members/{member_id}",
        "/v1/members/{member_id}/balance",
        "/v1/members/{member_id}/ledger",
        "/v1/members/{member_id}/adjustments",
        "/v1/events",
        "/v1/events/batch",
    ):
        assert path in paths, path
    body = paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert "purchase" in body["examples"]
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_load_nothing_from_elsewhere(api: Api, page: str) -> None:
    """Swagger UI and ReDoc come from Treu itself: the pages work offline and tell no CDN
    who reads them."""
    html = api.client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    scripts = re.findall(r'<script src="([^"]+)"', html.text)
    assert scripts, "the page loads its script"
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = api.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    for url in scripts:
        assert "javascript" in api.client.get(url).headers["content-type"], url
    assert "http://" not in html.text
    assert "https://" not in html.text


def test_unknown_route_is_problem_json(api: Api) -> None:
    assert_problem(api.client.get("/v1/nothing"), 404, "not_found")


def test_last_used_is_recorded_at_most_once_a_minute(db: Database) -> None:
    from datetime import timedelta

    from sqlalchemy import select

    from treu.auth.models import ApiKey
    from treu.auth.service import api_keys
    from treu.kit.time import frozen, utc_now

    # The key cache expires by the monotonic clock, which frozen() does not move.
    api = make_api(db, key_cache_seconds=0)
    with db.unit_of_work() as session:
        row, key = api_keys.create(session, name=f.unique("used"), scopes=["members:read"])
    headers = {"Authorization": f"Bearer {key}"}

    def last_used() -> Any:
        with db.unit_of_work(write=False) as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.lookup == row.lookup))

    assert last_used() is None
    start = utc_now()
    with frozen(start):
        assert api.client.get("/v1/programmes", headers=headers).status_code == 200
    assert last_used() == start
    with frozen(start + timedelta(seconds=30)):
        api.client.get("/v1/programmes", headers=headers)
    assert last_used() == start
    with frozen(start + timedelta(minutes=2)):
        api.client.get("/v1/programmes", headers=headers)
    assert last_used() == start + timedelta(minutes=2)


def test_batch_element_that_is_not_an_object_fails_the_request(api: Api) -> None:
    """An event must at least be a JSON object; anything else is a malformed request
    (nothing is processed), not an event that fails on its own."""
    prog = _programme(api)
    event = _contract_purchase(prog, "x@example.com", f.unique("e"))
    r = api.client.post(
        "/v1/events/batch", json={"events": [event, 42]}, headers=api.headers("events:write")
    )
    body = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["events.1"]
    assert "dictionary" in body["errors"][0]["message"]


def test_a_nul_character_is_the_clients_mistake_on_postgresql(
    api: Api, backend: str, db: Database
) -> None:
    """PostgreSQL cannot store U+0000 in text (SQLite can): a 422, not a 500, over the
    API and on a portal page."""
    from tests import factories as f
    from tests.support.portal import csrf_of, signed_in

    prog = f.programme(db)
    who = f.member(db, prog)
    r = api.client.patch(
        f"/v1/members/{who.id}",
        json={"first_name": "An\u0000na"},
        headers=api.headers("members:write"),
    )
    web = signed_in(api.client, db, who)
    token = csrf_of(web.get("/portal/profile").text)
    page = web.post("/portal/profile", data={"csrf": token, "last_name": "X\u0000"})
    if backend == "postgresql":
        assert_problem(r, 422, "nul_in_text")
        assert page.status_code == 422
        assert page.headers["content-type"].startswith("text/html")
    else:
        assert r.status_code == 200, r.text
        assert page.status_code in (200, 303)
