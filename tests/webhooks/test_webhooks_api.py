"""Registering and editing webhook endpoints over the API (admin): the secret is shown
on creation and rotation only, unknown event types and URLs that are not public are
refused as problems, and every change that matters is audited.

The endpoints here subscribe to a programme of their own, so no other test's events
reach them."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import Api, assert_problem, make_api
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.outbox.events import TYPES
from treu.programmes.models import Programme
from treu.webhooks.schemas import (
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    WebhookSecret,
)


def register(api: Api, prog: Programme, **fields: Any) -> Any:
    body = {"url": "https://93.184.215.14/hooks", "events": ["points.earned"]}
    body["programme"] = prog.slug
    body.update(fields)
    return api.client.post("/v1/webhooks", json=body, headers=api.headers("admin"))


def audit_actions(db: Database, webhook_id: str) -> list[str]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_type == "webhook_endpoint")
            .where(AuditEvent.subject_id == webhook_id)
            .order_by(AuditEvent.id)
        )
        return [row.action for row in rows]


def test_register_answers_the_secret_once_and_never_again(api: Api, db: Database) -> None:
    prog = f.programme(db)
    r = register(
        api,
        prog,
        events=["points.earned", "reward.redeemed", "points.earned"],
        description="Shop backend",
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert created["events"] == ["points.earned", "reward.redeemed"]  # once each
    assert created["programme"] == prog.slug
    assert created["enabled"] is True
    assert created["consecutive_failures"] == 0
    assert created["disabled_reason"] is None

    admin = api.headers("admin")
    one = api.client.get(f"/v1/webhooks/{created['id']}", headers=admin)
    assert one.status_code == 200
    assert one.json() == created
    assert secret not in one.text
    listed = api.client.get("/v1/webhooks?limit=200", headers=admin)
    assert created["id"] in [item["id"] for item in listed.json()["items"]]
    assert secret not in listed.text
    assert audit_actions(db, created["id"]) == ["webhook.created"]


def test_only_admins(api: Api, db: Database) -> None:
    prog = f.programme(db)
    body = {"url": "https://93.184.215.14/", "events": ["points.earned"], "programme": prog.slug}
    r = api.client.post("/v1/webhooks", json=body, headers=api.headers("members:write"))
    assert_problem(r, 403, "missing_scope")
    assert_problem(api.client.get("/v1/webhooks"), 401, "invalid_api_key")


def test_an_unknown_event_type_is_a_problem_that_names_it(api: Api, db: Database) -> None:
    prog = f.programme(db)
    r = register(api, prog, events=["points.earned", "points.eraned"])
    body = assert_problem(r, 422, "unknown_event_type")
    assert "'points.eraned'" in body["detail"]
    assert body["unknown"] == ["points.eraned"]
    assert body["field"] == "events"
    types = api.client.get("/v1/webhooks/event-types", headers=api.headers("admin")).json()
    assert set(types["items"]) == {*TYPES, "campaign.message"}
    assert register(api, prog, events=["campaign.message"]).status_code == 201
    assert_problem(register(api, prog, events=[]), 422, "validation_error")


def test_production_refuses_loopback_private_and_other_schemes(api: Api, db: Database) -> None:
    prog = f.programme(db)
    for url, says in [
        ("http://127.0.0.1/hooks", "loopback"),
        ("http://[::1]:8080/hooks", "loopback"),
        ("https://10.0.0.5/hooks", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("ftp://93.184.215.14/hooks", "only http and https"),
    ]:
        body = assert_problem(register(api, prog, url=url), 422, "webhook_url_refused")
        assert says in body["detail"], url
        assert body["field"] == "url"
    assert register(api, prog, url="http://93.184.215.14/plain-http").status_code == 201


def test_development_mode_allows_loopback(db: Database) -> None:
    dev = make_api(db, env="development")
    prog = f.programme(db)
    r = register(dev, prog, url="http://127.0.0.1:9/hooks")
    assert r.status_code == 201, r.text
    # … but a URL changed in production mode is checked again
    production = make_api(db)
    r = production.client.patch(
        f"/v1/webhooks/{r.json()['id']}",
        json={"url": "http://localhost:9/other"},
        headers=production.headers("admin"),
    )
    assert_problem(r, 422, "webhook_url_refused")


def test_unknown_programme_and_unknown_endpoint(api: Api) -> None:
    admin = api.headers("admin")
    r = api.client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.215.14/", "events": ["points.earned"], "programme": "nope"},
        headers=admin,
    )
    assert_problem(r, 404, "programme_not_found")
    missing = uuid.uuid4()
    for method, path in [
        ("GET", f"/v1/webhooks/{missing}"),
        ("PATCH", f"/v1/webhooks/{missing}"),
        ("DELETE", f"/v1/webhooks/{missing}"),
        ("POST", f"/v1/webhooks/{missing}/rotate-secret"),
        ("GET", f"/v1/webhooks/{missing}/deliveries"),
        ("POST", f"/v1/webhooks/{missing}/deliveries/{uuid.uuid4()}/redeliver"),
    ]:
        r = api.client.request(method, path, headers=admin, json={} if method == "PATCH" else None)
        assert_problem(r, 404, "webhook_not_found")


def test_patch_changes_what_is_sent_and_disabling_is_audited(api: Api, db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    created = register(api, prog).json()
    admin = api.headers("admin")
    path = f"/v1/webhooks/{created['id']}"
    r = api.client.patch(
        path,
        json={
            "url": "https://93.184.215.14/v2",
            "events": ["tier.changed"],
            "description": "v2",
            "programme": other.slug,
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["url"], r.json()["events"], r.json()["description"]) == (
        "https://93.184.215.14/v2",
        ["tier.changed"],
        "v2",
    )
    assert r.json()["programme"] == other.slug
    assert (
        api.client.patch(path, json={"programme": None}, headers=admin).json()["programme"] is None
    )

    off = api.client.patch(path, json={"enabled": False}, headers=admin).json()
    assert off["enabled"] is False
    assert off["disabled_reason"] == "disabled by apikey:test-admin"
    assert off["disabled_at"] is not None
    on = api.client.patch(path, json={"enabled": True}, headers=admin).json()
    assert (on["enabled"], on["disabled_at"], on["disabled_reason"]) == (True, None, None)
    assert audit_actions(db, created["id"]) == [
        "webhook.created",
        "webhook.updated",
        "webhook.updated",
        "webhook.disabled",
        "webhook.enabled",
    ]
    assert_problem(
        api.client.patch(path, json={"events": ["nope"]}, headers=admin), 422, "unknown_event_type"
    )
    assert_problem(
        api.client.patch(path, json={"secret": "whsec_mine"}, headers=admin),
        422,
        "validation_error",
    )


def test_rotate_shows_the_new_secret_and_keeps_the_old_one_for_a_day(
    api: Api, db: Database
) -> None:
    prog = f.programme(db)
    created = register(api, prog).json()
    admin = api.headers("admin")
    r = api.client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=admin)
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    one = api.client.get(f"/v1/webhooks/{created['id']}", headers=admin).json()
    assert one["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    assert rotated["secret"] not in str(one)
    assert audit_actions(db, created["id"]) == ["webhook.created", "webhook.secret_rotated"]


def test_delete(api: Api, db: Database) -> None:
    prog = f.programme(db)
    created = register(api, prog).json()
    admin = api.headers("admin")
    r = api.client.delete(f"/v1/webhooks/{created['id']}", headers=admin)
    assert r.status_code == 204
    assert_problem(
        api.client.get(f"/v1/webhooks/{created['id']}", headers=admin), 404, "webhook_not_found"
    )
    assert audit_actions(db, created["id"]) == ["webhook.created", "webhook.deleted"]


def test_the_list_pages_newest_first(api: Api, db: Database) -> None:
    prog = f.programme(db)
    ids = [register(api, prog).json()["id"] for _ in range(3)]
    admin = api.headers("admin")
    first = api.client.get("/v1/webhooks?limit=2", headers=admin).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    second = api.client.get(
        "/v1/webhooks", params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin
    ).json()
    assert second["items"][0]["id"] == ids[0]
    assert_problem(
        api.client.get("/v1/webhooks?cursor=bogus", headers=admin), 422, "validation_error"
    )


@pytest.mark.parametrize(
    "model",
    [WebhookIn, WebhookPatch, WebhookOut, WebhookCreated, WebhookSecret, WebhookDeliveryOut],
    ids=lambda m: m.__name__,
)
def test_each_example_is_valid_and_survives_its_model(model: type[BaseModel]) -> None:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list)
    for example in examples:
        again = model.model_validate(example).model_dump(mode="json", exclude_unset=True)
        assert again == example


def test_the_examples_have_the_fields_of_real_answers(api: Api, db: Database) -> None:
    prog = f.programme(db)
    created = register(api, prog).json()
    rotated = api.client.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", headers=api.headers("admin")
    ).json()
    for model, answer in [(WebhookCreated, created), (WebhookSecret, rotated)]:
        [example] = model.model_config["json_schema_extra"]["examples"]  # type: ignore[index]
        assert set(example) == set(answer), model.__name__
