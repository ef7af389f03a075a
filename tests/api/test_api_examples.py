"""The response examples in the OpenAPI description are what Treu answers: each one is
valid for its model and survives a round trip through it unchanged, and has the same
fields, at every level, as the real answer to the same requests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from tests import factories as f
from tests.api_helpers import Api
from treu.api.routes.events import BatchOut, EventResult
from treu.api.routes.members import AdjustmentOut
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.ledger.schemas import BalanceOut, LedgerPageOut
from treu.members.schemas import MemberOut
from treu.programmes.schemas import ProgrammeOut

MODELS: list[type[BaseModel]] = [
    EventResult,
    BatchOut,
    MemberOut,
    ProgrammeOut,
    BalanceOut,
    LedgerPageOut,
    AdjustmentOut,
]


def _examples(model: type[BaseModel]) -> list[dict[str, Any]]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict), f"{model.__name__} has no examples"
    examples = extra["examples"]
    assert isinstance(examples, list)
    assert examples
    return examples


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_example_is_valid_and_survives_its_model(model: type[BaseModel]) -> None:
    for example in _examples(model):
        parsed = model.model_validate(example)
        again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert again == example  # no field the model would drop, rename or reformat


def test_the_openapi_description_carries_them() -> None:
    from treu.api.app import create_app
    from treu.config import Settings

    spec = create_app(Settings(database_url="sqlite://")).openapi()
    schemas = spec["components"]["schemas"]
    for model in MODELS:
        # FastAPI writes the description without null values (``exclude_none``), in the
        # examples too: a null field of an example is missing from the page, not wrong.
        assert schemas[model.__name__]["examples"] == _without_nulls(_examples(model))
    adjustments = spec["paths"]["/v1/members/{member_id}/adjustments"]["post"]["responses"]
    for code in ("200", "201"):
        schema = adjustments[code]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/AdjustmentOut")


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _shape(value: Any) -> Any:
    """The fields of a JSON value at every level (lists by their first item)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_examples_have_the_fields_of_real_answers(api: Api, db: Database) -> None:
    admin = api.headers("admin")
    # pending days and an expiry: the balance then has pending releases and expiries
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 24})
    slug = prog.slug
    programme = api.client.get(f"/v1/programmes/{slug}", headers=admin)
    assert programme.status_code == 200, programme.text
    email = f"{f.unique('anna')}@example.com"
    member = api.client.post(
        "/v1/members", headers=admin, json={"programme": slug, "email": email, "language": "de"}
    )
    assert member.status_code == 201, member.text
    member_id = member.json()["id"]
    purchase = {
        "id": f.unique("pos"),
        "type": "purchase",
        "programme": slug,
        "member": {"email": email},
        "occurred_at": (utc_now() - timedelta(days=2)).isoformat(),
        "channel": "pos",
        "store": "berlin-01",
        "currency": "EUR",
        "lines": [
            {"sku": "4001", "name": "Milch", "quantity": 2, "unit_price_minor": 129},
            {"sku": "7002", "name": "Kaffee", "quantity": 1, "unit_price_minor": 899},
        ],
    }
    bought = api.client.post("/v1/events", headers=admin, json=purchase)
    assert bought.status_code == 201, bought.text
    back = {
        "id": f.unique("pos"),
        "type": "return",
        "programme": slug,
        "member": {"email": email},
        "occurred_at": (utc_now() - timedelta(days=1)).isoformat(),
        "original_event_id": purchase["id"],
        "lines": [{"sku": "7002", "quantity": 1}],
    }
    broken = {"id": f.unique("pos"), "type": "purchase", "programme": slug}
    batch = api.client.post(
        "/v1/events/batch", headers=admin, json={"events": [purchase, back, broken]}
    )
    assert batch.status_code == 200, batch.text
    assert [r["status"] for r in batch.json()["results"]] == [200, 201, 422]
    adjusted = api.client.post(
        f"/v1/members/{member_id}/adjustments",
        headers=admin,
        json={"points": 500, "reason": "Goodwill: damaged parcel"},
    )
    assert adjusted.status_code == 201, adjusted.text
    ledger = api.client.get(f"/v1/members/{member_id}/ledger?limit=2", headers=admin)
    balance = api.client.get(f"/v1/members/{member_id}/balance", headers=admin)
    answers: dict[type[BaseModel], list[Any]] = {
        EventResult: [bought.json(), batch.json()["results"][1]["result"]],
        BatchOut: [batch.json()],
        MemberOut: [member.json()],
        ProgrammeOut: [programme.json()],
        BalanceOut: [balance.json()],
        LedgerPageOut: [ledger.json()],
        AdjustmentOut: [adjusted.json()],
    }
    for model, real in answers.items():
        examples = _examples(model)
        for example, answer in zip(examples, real, strict=False):
            assert _shape(example) == _shape(answer), model.__name__


def test_each_problem_answer_shows_an_example_of_its_own_status() -> None:
    """Not the ``Problem`` schema's one 422 example under every status: each answer
    shows its own status and description, with the media type Treu sends."""
    from treu.api.app import create_app
    from treu.config import Settings

    spec = create_app(Settings(database_url="sqlite://")).openapi()
    seen: set[str] = set()
    for item in spec["paths"].values():
        for operation in item.values():
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                assert not schema.get("$ref", "").endswith("/Problem"), (status, answer)
                if "application/problem+json" not in content:
                    continue
                example = content["application/problem+json"]["example"]
                assert example["status"] == int(status)
                assert example["detail"] == answer["description"]
                assert example["type"].endswith(example["code"])
                seen.add(f"{status} {example['code']}")
    assert {"401 unauthenticated", "403 forbidden", "404 not_found"} <= seen
    assert {"409 conflict", "422 validation_error"} <= seen
