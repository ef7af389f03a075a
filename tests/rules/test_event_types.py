"""Engagement event types: built-in schemas, custom types, attribute validation, API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from tests import factories as f
from tests.api_helpers import Api
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.errors import Invalid
from treu.rules.event_types import (
    BUILTIN,
    MAX_ERRORS,
    EventTypeCreate,
    EventTypeExists,
    InvalidAttributes,
    InvalidEventTypeSchema,
    UnknownEventType,
    attribute_errors,
    check_schema,
    event_types,
)
from treu.rules.models import EventType

ISSUE_TYPES = {
    "review_submitted",
    "social_share",
    "app_installed",
    "store_visit",
    "profile_completed",
    "survey_answered",
    "newsletter_subscribed",
    "community_answer",
    "referral_converted",
    "membership_purchased",  # issue 4: a bought tier (treu.tiers)
}

WORKSHOP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "workshop_id": {"type": "string", "minLength": 1},
        "minutes": {"type": "integer", "minimum": 0},
        "level": {"enum": ["beginner", "advanced"]},
    },
    "required": ["workshop_id"],
    "additionalProperties": False,
}


@dataclass
class Ev:
    """An engagement event as validation sees it (type, attributes, top-level store)."""

    type: str
    attributes: dict[str, Any] = field(default_factory=dict)
    store: str | None = None


def _errors(type_: str, attributes: dict[str, Any]) -> dict[str, str]:
    builtin = BUILTIN[type_]
    return {
        e["field"]: e["message"]
        for e in attribute_errors(builtin.validator, attributes, builtin.hints)
    }


# --- built-in schemas (no database) ----------------------------------------------------

GOOD: list[tuple[str, dict[str, Any]]] = [
    ("review_submitted", {"product_sku": "7002", "rating": 4}),
    (
        "review_submitted",
        {
            "product_sku": "4001",
            "rating": 1,
            "length": 0,
            "verified_purchase": True,
            "review_id": "r-1",
        },
    ),
    ("social_share", {"network": "tiktok"}),
    ("social_share", {"network": "x", "url": "https://shop.example.com/p/7002?ref=anna"}),
    ("app_installed", {"platform": "android"}),
    ("store_visit", {}),
    ("store_visit", {"method": "beacon", "duration_minutes": 25}),
    ("profile_completed", {"field": "address"}),
    ("survey_answered", {"survey_id": "nps-2026-q4"}),
    ("survey_answered", {"survey_id": "s-9", "questions": 12}),
    ("newsletter_subscribed", {}),
    ("newsletter_subscribed", {"topic": "organic"}),
    ("community_answer", {"question_id": "q-1"}),
    ("community_answer", {"question_id": "q-2", "helpful_votes": 0, "accepted": False}),
    ("referral_converted", {"referral_code": "ANNA-7K2Q"}),
    (
        "referral_converted",
        {
            "referred_member_id": str(uuid.uuid4()),
            "referral_code": "ANNA-7K2Q",
            "first_purchase_event_id": "pos-1",
        },
    ),
    ("membership_purchased", {"tier": "gold", "months": 12}),
    ("membership_purchased", {"tier": "gold", "months": 1, "amount_minor": 499, "currency": "EUR"}),
]

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # type, attributes, field named, words the message must contain
    ("membership_purchased", {"tier": "gold", "months": 0}, "attributes.months", "at least 1"),
    ("membership_purchased", {"months": 12}, "attributes.tier", "required"),
    ("review_submitted", {"product_sku": "4001", "rating": 6}, "attributes.rating", "at most 5"),
    ("review_submitted", {"product_sku": "4001", "rating": 0}, "attributes.rating", "at least 1"),
    ("review_submitted", {"product_sku": "4001", "rating": 4.0}, "attributes.rating", "integer"),
    ("review_submitted", {"product_sku": "4001", "rating": True}, "attributes.rating", "integer"),
    ("review_submitted", {"rating": 5}, "attributes.product_sku", "required"),
    ("review_submitted", {"product_sku": "", "rating": 5}, "attributes.product_sku", "empty"),
    (
        "review_submitted",
        {"product_sku": "4001", "rating": 5, "length": -3},
        "attributes.length",
        "at least 0",
    ),
    (
        "review_submitted",
        {"product_sku": "4001", "rating": 5, "verified_purchase": "yes"},
        "attributes.verified_purchase",
        "true or false",
    ),
    (
        "review_submitted",
        {"product_sku": "4001", "rating": 5, "stars": 5},
        "attributes.stars",
        "not an attribute",
    ),
    ("social_share", {"network": "myspace"}, "attributes.network", "one of"),
    ("social_share", {}, "attributes.network", "required"),
    (
        "social_share",
        {"network": "facebook", "url": "javascript:alert(1)"},
        "attributes.url",
        "pattern",
    ),
    ("app_installed", {"platform": "windows"}, "attributes.platform", "one of"),
    ("app_installed", {}, "attributes.platform", "required"),
    ("store_visit", {"store": "berlin-01"}, "attributes.store", "top-level 'store'"),
    ("store_visit", {"duration_minutes": "10"}, "attributes.duration_minutes", "integer"),
    ("profile_completed", {"field": "shoe_colour"}, "attributes.field", "one of"),
    ("profile_completed", {}, "attributes.field", "required"),
    ("survey_answered", {"questions": 3}, "attributes.survey_id", "required"),
    ("survey_answered", {"survey_id": "s", "questions": 0}, "attributes.questions", "at least 1"),
    ("newsletter_subscribed", {"topic": 7}, "attributes.topic", "string"),
    ("community_answer", {"helpful_votes": 2}, "attributes.question_id", "required"),
    (
        "community_answer",
        {"question_id": "q", "helpful_votes": -1},
        "attributes.helpful_votes",
        "at least 0",
    ),
    ("community_answer", {"question_id": "q", "accepted": 1}, "attributes.accepted", "true or"),
    ("referral_converted", {}, "attributes", "referred_member_id, referral_code"),
    (
        "referral_converted",
        {"first_purchase_event_id": "pos-1"},
        "attributes",
        "at least one of",
    ),
    (
        "referral_converted",
        {"referred_member_id": "not-a-uuid"},
        "attributes.referred_member_id",
        "pattern",
    ),
]


def test_the_issue_types_are_built_in_with_en_and_de_descriptions() -> None:
    assert set(BUILTIN) == ISSUE_TYPES
    for t in BUILTIN.values():
        assert t.description["en"]
        assert t.description["de"]
        assert t.description["en"] != t.description["de"]


@pytest.mark.parametrize("name", sorted(ISSUE_TYPES))
def test_builtin_schemas_pass_the_custom_schema_checks(name: str) -> None:
    schema = BUILTIN[name].attributes_schema
    check_schema(schema)  # the same checks an admin's schema must pass
    assert schema["additionalProperties"] is False
    assert schema["examples"], "each built-in documents an example"
    for example in schema["examples"]:
        assert _errors(name, example) == {}


@pytest.mark.parametrize(("name", "attributes"), GOOD)
def test_builtin_accepts_realistic_attributes(name: str, attributes: dict[str, Any]) -> None:
    assert _errors(name, attributes) == {}


@pytest.mark.parametrize(("name", "attributes", "field_", "words"), BAD)
def test_builtin_refuses_wrong_attributes_naming_the_field(
    name: str, attributes: dict[str, Any], field_: str, words: str
) -> None:
    errors = _errors(name, attributes)
    assert field_ in errors, errors
    assert words in errors[field_]


def test_every_builtin_has_a_good_and_a_bad_case() -> None:
    assert {n for n, _ in GOOD} == ISSUE_TYPES
    assert {n for n, *_ in BAD} == ISSUE_TYPES


def test_errors_are_capped_and_never_echo_huge_values() -> None:
    many = {f"extra_{i}": i for i in range(500)}
    errors = attribute_errors(BUILTIN["store_visit"].validator, many)
    assert len(errors) == MAX_ERRORS
    assert all(e["field"].startswith("attributes.extra_") for e in errors)

    huge = "x" * 100_000
    errors = attribute_errors(
        BUILTIN["review_submitted"].validator, {"product_sku": huge, "rating": huge}
    )
    assert {e["field"] for e in errors} == {"attributes.product_sku", "attributes.rating"}
    assert all(len(e["message"]) < 300 for e in errors)


# --- custom schemas: what is refused (no database) -------------------------------------

BAD_SCHEMAS: list[tuple[dict[str, Any], str]] = [
    ({"type": "array"}, "attributes_schema.type"),
    ({"properties": {}}, "attributes_schema.type"),
    ({"type": "object", "required": "workshop_id"}, "attributes_schema.required"),
    (
        {"type": "object", "properties": {"a": {"type": "strnig"}}},
        "attributes_schema.properties.a.type",
    ),
    (
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}},
        "attributes_schema.properties.a.pattern",
    ),
    (
        {"type": "object", "properties": {"a": {"$ref": "https://example.com/schema.json"}}},
        "attributes_schema.properties.a.$ref",
    ),
    (
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        "attributes_schema.properties.a.$ref",
    ),
    (
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        "attributes_schema.$schema",
    ),
    (
        {"type": "object", "description": "x" * 40_000},
        "attributes_schema",
    ),
]


@pytest.mark.parametrize(("schema", "field_"), BAD_SCHEMAS)
def test_bad_custom_schema_is_refused_naming_the_keyword(
    schema: dict[str, Any], field_: str
) -> None:
    with pytest.raises(InvalidEventTypeSchema) as caught:
        check_schema(schema)
    assert caught.value.http_status == 422
    assert caught.value.extra["errors"][0]["field"] == field_
    assert caught.value.detail.startswith(field_)


def test_local_refs_and_anchors_are_allowed() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"sku": {"$anchor": "sku", "type": "string", "minLength": 1}},
        "properties": {"a": {"$ref": "#/$defs/sku"}, "b": {"$ref": "#sku"}},
    }
    check_schema(schema)


# --- service (SQLite and PostgreSQL) ---------------------------------------------------


def _create(
    db: Database,
    programme_id: uuid.UUID,
    name: str = "workshop_attended",
    schema: dict[str, Any] | None = None,
) -> None:
    with db.unit_of_work() as session:
        event_types.create(
            session,
            programme_id=programme_id,
            data=EventTypeCreate(
                name=name,
                description="Attended a workshop",
                attributes_schema=schema or WORKSHOP_SCHEMA,
            ),
            actor="test",
        )


@contextmanager
def _count_selects(session: Session) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = session.get_bind().engine

    def seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_create_lists_after_builtins_and_is_audited(db: Database) -> None:
    prog = f.programme(db)
    _create(db, prog.id, "zz_last")
    _create(db, prog.id, "aa_first")
    with db.unit_of_work(write=False) as session:
        listed = event_types.list(session, prog.id)
        names = [t.name for t in listed]
        assert names == [*BUILTIN, "aa_first", "zz_last"]
        assert [t.builtin for t in listed] == [True] * len(BUILTIN) + [False, False]
        assert all(t.created_at is None for t in listed if t.builtin)
        assert all(t.created_at is not None for t in listed if not t.builtin)
        custom = event_types.get(session, prog.id, "aa_first")
        assert custom is not None
        assert custom.attributes_schema == WORKSHOP_SCHEMA
        assert custom.description == "Attended a workshop"
        de = event_types.get(session, prog.id, "review_submitted", lang="de")
        assert de is not None
        assert de.description == BUILTIN["review_submitted"].description["de"]
        assert event_types.get(session, prog.id, "nope") is None
        entries = session.scalars(
            select(AuditEvent).where(
                AuditEvent.programme_id == prog.id, AuditEvent.action == "event_type.created"
            )
        ).all()
        assert sorted(e.data["name"] for e in entries) == ["aa_first", "zz_last"]
        assert {e.actor for e in entries} == {"test"}


@pytest.mark.parametrize("name", ["review_submitted", "store_visit", "purchase", "return"])
def test_reserved_names_are_refused(db: Database, name: str) -> None:
    prog = f.programme(db)
    with pytest.raises(EventTypeExists) as caught:
        _create(db, prog.id, name)
    assert caught.value.http_status == 409
    assert caught.value.code == "event_type_exists"


def test_duplicate_is_refused_but_other_programmes_may_reuse_the_name(db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    _create(db, prog.id)
    with pytest.raises(EventTypeExists):
        _create(db, prog.id)
    _create(db, other.id)
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(EventType).where(EventType.programme_id.in_([prog.id, other.id]))
        ).all()
    assert len(rows) == 2


def test_bad_schema_creates_nothing(db: Database) -> None:
    prog = f.programme(db)
    with pytest.raises(InvalidEventTypeSchema):
        _create(db, prog.id, schema={"type": "object", "minProperties": -1})
    with db.unit_of_work(write=False) as session:
        assert [t.name for t in event_types.list(session, prog.id)] == list(BUILTIN)


def test_validate_names_the_field(db: Database) -> None:
    prog = f.programme(db)
    _create(db, prog.id)
    with db.unit_of_work(write=False) as session:
        event_types.validate(
            session,
            programme_id=prog.id,
            type="workshop_attended",
            attributes={"workshop_id": "w1", "minutes": 90},
            store=None,
        )
        event_types.validate(
            session,
            programme_id=prog.id,
            type="review_submitted",
            attributes={"product_sku": "4001", "rating": 5},
            store=None,
        )
        with pytest.raises(InvalidAttributes) as caught:
            event_types.validate(
                session,
                programme_id=prog.id,
                type="workshop_attended",
                attributes={"minutes": 1.5, "level": "expert"},
                store=None,
            )
        error = caught.value
        assert (error.http_status, error.code) == (422, "invalid_attributes")
        fields = {e["field"] for e in error.extra["errors"]}
        assert fields == {"attributes.workshop_id", "attributes.minutes", "attributes.level"}
        assert "attributes.minutes: must be an integer" in error.detail

        with pytest.raises(UnknownEventType) as unknown:
            event_types.validate(
                session, programme_id=prog.id, type="workshop_atended", attributes={}, store=None
            )
        assert unknown.value.code == "unknown_event_type"
        assert unknown.value.extra["errors"][0]["field"] == "type"


def test_custom_type_of_another_programme_is_unknown(db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    _create(db, other.id)
    with db.unit_of_work(write=False) as session, pytest.raises(UnknownEventType):
        event_types.validate(
            session,
            programme_id=prog.id,
            type="workshop_attended",
            attributes={"workshop_id": "w"},
            store=None,
        )


def test_store_visit_needs_the_events_store(db: Database) -> None:
    prog = f.programme(db)
    with db.unit_of_work(write=False) as session:
        event_types.validate(
            session, programme_id=prog.id, type="store_visit", attributes={}, store="berlin-01"
        )
        with pytest.raises(InvalidAttributes) as caught:
            event_types.validate(
                session, programme_id=prog.id, type="store_visit", attributes={}, store=None
            )
        assert caught.value.extra["errors"] == [
            {"field": "store", "message": "a store_visit needs the store"}
        ]


def test_validate_many_gives_one_verdict_per_event_with_one_query(db: Database) -> None:
    prog = f.programme(db)
    _create(db, prog.id)
    _create(db, prog.id, "bottles_recycled", {"type": "object", "required": ["bottles"]})
    batch = [
        Ev("review_submitted", {"product_sku": "1", "rating": 5}),
        Ev("workshop_attended", {"workshop_id": "w1"}),
        Ev("workshop_attended", {"workshop_id": ""}),
        Ev("bottles_recycled", {"bottles": 12}),
        Ev("bottles_recycled", {}),
        Ev("no_such_type", {}),
        Ev("store_visit", {}, store=None),
        Ev("store_visit", {"method": "qr_code"}, store="hamburg-02"),
    ]
    with db.unit_of_work(write=False) as session:
        with _count_selects(session) as selects:
            verdicts = event_types.validate_many(session, prog.id, batch)
        assert len(selects) == 1
        with _count_selects(session) as selects:
            builtin_only = event_types.validate_many(session, prog.id, [batch[0], batch[7]])
        assert selects == []
    assert builtin_only == [None, None]
    kinds = [type(v).__name__ if v is not None else None for v in verdicts]
    assert kinds == [
        None,
        None,
        "InvalidAttributes",
        None,
        "InvalidAttributes",
        "UnknownEventType",
        "InvalidAttributes",
        None,
    ]
    assert all(isinstance(v, Invalid) for v in verdicts if v is not None)
    fields = [v.extra["errors"][0]["field"] for v in verdicts if v is not None]
    assert fields == ["attributes.workshop_id", "attributes.bottles", "type", "store"]


def test_a_changed_schema_is_used_at_once(db: Database) -> None:
    """Validators are cached by schema hash, so a changed row never meets a stale one."""
    prog = f.programme(db)
    _create(db, prog.id)
    ok = {"workshop_id": "w1", "minutes": 30}
    with db.unit_of_work(write=False) as session:
        event_types.validate(
            session, programme_id=prog.id, type="workshop_attended", attributes=ok, store=None
        )
    stricter = json.loads(json.dumps(WORKSHOP_SCHEMA))
    stricter["properties"]["minutes"]["minimum"] = 45
    with db.unit_of_work() as session:
        session.execute(
            update(EventType)
            .where(EventType.programme_id == prog.id)
            .values(attributes_schema=stricter)
        )
    with db.unit_of_work(write=False) as session, pytest.raises(InvalidAttributes) as caught:
        event_types.validate(
            session, programme_id=prog.id, type="workshop_attended", attributes=ok, store=None
        )
    assert caught.value.extra["errors"][0] == {
        "field": "attributes.minutes",
        "message": "must be at least 45",
    }


# --- API -------------------------------------------------------------------------------


def _problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith("/" + code)
    assert body["title"]
    assert body["detail"]
    return body


WORKSHOP_BODY: dict[str, Any] = {
    "name": "workshop_attended",
    "description": "Attended an in-store workshop",
    "attributes_schema": WORKSHOP_SCHEMA,
}


def test_api_lists_builtins_for_any_key_in_either_language(api: Api, db: Database) -> None:
    prog = f.programme(db)
    url = f"/v1/event-types?programme={prog.slug}"
    r = api.client.get(url, headers=api.headers("events:write"))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["name"] for i in items] == list(BUILTIN)
    review = items[0]
    assert review["builtin"] is True
    assert review["created_at"] is None
    assert review["attributes_schema"]["required"] == ["product_sku", "rating"]
    assert review["description"] == BUILTIN["review_submitted"].description["en"]
    r = api.client.get(url + "&lang=de", headers=api.headers("members:read"))
    assert r.json()["items"][0]["description"] == BUILTIN["review_submitted"].description["de"]
    _problem(api.client.get(url), 401, "invalid_api_key")
    _problem(
        api.client.get("/v1/event-types?programme=nope", headers=api.headers("members:read")),
        404,
        "programme_not_found",
    )
    body = _problem(
        api.client.get("/v1/event-types", headers=api.headers("admin")), 422, "validation_error"
    )
    assert body["errors"][0]["field"] == "query.programme"


def test_api_create_is_admin_only(api: Api, db: Database) -> None:
    prog = f.programme(db)
    url = f"/v1/event-types?programme={prog.slug}"
    for scope in ("events:write", "members:read", "members:write"):
        body = _problem(
            api.client.post(url, json=WORKSHOP_BODY, headers=api.headers(scope)),
            403,
            "missing_scope",
        )
        assert body["scope"] == "admin"
    r = api.client.post(url, json=WORKSHOP_BODY, headers=api.headers("admin"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "workshop_attended"
    assert created["builtin"] is False
    assert created["created_at"] is not None
    assert created["attributes_schema"] == WORKSHOP_SCHEMA

    items = api.client.get(url, headers=api.headers("members:read")).json()["items"]
    assert [i["name"] for i in items] == [*BUILTIN, "workshop_attended"]
    one = api.client.get(
        f"/v1/event-types/workshop_attended?programme={prog.slug}", headers=api.headers("admin")
    )
    assert one.json() == created
    builtin = api.client.get(
        f"/v1/event-types/app_installed?programme={prog.slug}", headers=api.headers("admin")
    )
    assert builtin.json()["builtin"] is True
    _problem(
        api.client.get(f"/v1/event-types/nope?programme={prog.slug}", headers=api.headers("admin")),
        404,
        "event_type_not_found",
    )
    with db.unit_of_work(write=False) as session:
        entry = session.scalar(
            select(AuditEvent).where(
                AuditEvent.programme_id == prog.id, AuditEvent.action == "event_type.created"
            )
        )
    assert entry is not None
    assert entry.actor == "apikey:test-admin"


def test_api_create_problems(api: Api, db: Database) -> None:
    prog = f.programme(db)
    url = f"/v1/event-types?programme={prog.slug}"
    admin = api.headers("admin")
    assert api.client.post(url, json=WORKSHOP_BODY, headers=admin).status_code == 201
    body = _problem(
        api.client.post(url, json=WORKSHOP_BODY, headers=admin), 409, "event_type_exists"
    )
    assert body["name"] == "workshop_attended"
    _problem(
        api.client.post(url, json={**WORKSHOP_BODY, "name": "social_share"}, headers=admin),
        409,
        "event_type_exists",
    )
    body = _problem(
        api.client.post(
            url,
            json={
                **WORKSHOP_BODY,
                "name": "bottles_recycled",
                "attributes_schema": {"type": "object", "properties": {"n": {"type": "int"}}},
            },
            headers=admin,
        ),
        422,
        "invalid_event_type_schema",
    )
    assert body["errors"][0]["field"] == "attributes_schema.properties.n.type"
    body = _problem(
        api.client.post(url, json={**WORKSHOP_BODY, "name": "Bad-Name"}, headers=admin),
        422,
        "validation_error",
    )
    assert body["errors"][0]["field"] == "name"
    _problem(
        api.client.post("/v1/event-types?programme=nope", json=WORKSHOP_BODY, headers=admin),
        404,
        "programme_not_found",
    )


def test_openapi_documents_the_routes_with_examples(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    post = spec["paths"]["/v1/event-types"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert "workshop" in examples
    assert {"201", "403", "409", "422"} <= set(post["responses"])
    assert "get" in spec["paths"]["/v1/event-types"]
