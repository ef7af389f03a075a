from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treu.api.deps import DB, EventsWrite
from treu.api.lean import LeanRoute
from treu.api.problems import (
    PROBLEM_RESPONSES,
    Problem,
    error_body,
    field_errors,
    validation_body,
)
from treu.api.responses import JSONBody
from treu.events.schemas import (
    PURCHASE_RESULT_EXAMPLE,
    RETURN_RESULT_EXAMPLE,
    EventIn,
    EventResult,
    PurchaseEvent,
    ReturnEvent,
    event_adapter,
)
from treu.events.service import Outcome, ingest_with_retry
from treu.web.routing import Router

router = Router(
    prefix="/v1/events", tags=["events"], responses=PROBLEM_RESPONSES, route_class=LeanRoute
)


EVENT_EXAMPLE = PurchaseEvent.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
RETURN_EXAMPLE = ReturnEvent.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]


@router.post(
    "",
    status_code=201,
    response_model=EventResult,
    response_model_exclude_none=True,
    responses={
        200: {"model": EventResult, "description": "Replay: this event id was processed before"},
        404: {"model": Problem, "description": "Unknown programme or member"},
        409: {"model": Problem, "description": "Event id reused with another payload"},
    },
)
def post_event(
    event: Annotated[
        EventIn,
        Body(
            openapi_examples={
                "purchase": {"summary": "A purchase at the till", "value": EVENT_EXAMPLE},
                "return": {"summary": "A partial return", "value": RETURN_EXAMPLE},
            }
        ),
    ],
    db: DB,
    _key: EventsWrite,
) -> JSONResponse:
    """Send one purchase or return. The event ``id`` is your idempotency key: sending the
    same event again answers 200 with the original result and changes nothing."""
    outcome = ingest_with_retry(db, [event])[0]
    if outcome.error is not None:
        raise outcome.error
    assert outcome.body is not None
    return JSONBody(outcome.body.public(), status_code=outcome.status)


class BatchIn(BaseModel):
    events: list[Annotated[EventIn | dict[str, Any], Field(union_mode="left_to_right")]] = Field(
        min_length=1,
        max_length=1000,
        description=(
            "Up to 1,000 events, each shaped as for POST /v1/events. An object that is "
            "not a valid event gets its own 422 result; the others are still processed."
        ),
        json_schema_extra={"examples": [[EVENT_EXAMPLE, RETURN_EXAMPLE]]},
    )


class BatchItem(BaseModel):
    index: int
    event_id: str | None
    status: int = Field(description="201 processed, 200 replay, 4xx problem")
    result: EventResult | None = None
    problem: Problem | None = None


class BatchSummary(BaseModel):
    processed: int
    replayed: int
    failed: int


class BatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "summary": {"processed": 1, "replayed": 1, "failed": 1},
                    "results": [
                        {
                            "index": 0,
                            "event_id": "pos-4711-0001",
                            "status": 200,
                            "result": PURCHASE_RESULT_EXAMPLE,
                        },
                        {
                            "index": 1,
                            "event_id": "pos-4711-0002",
                            "status": 201,
                            "result": RETURN_RESULT_EXAMPLE,
                        },
                        {
                            "index": 2,
                            "event_id": "pos-4711-0003",
                            "status": 422,
                            "problem": {
                                "type": "https://treu.dev/problems/validation_error",
                                "title": "Invalid request",
                                "status": 422,
                                "detail": "lines: Field required",
                                "code": "validation_error",
                                "errors": [{"field": "lines", "message": "Field required"}],
                            },
                        },
                    ],
                }
            ]
        }
    )

    summary: BatchSummary
    results: list[BatchItem]


@router.post("/batch", response_model=BatchOut, response_model_exclude_none=True)
def post_batch(batch: BatchIn, db: DB, _key: EventsWrite) -> JSONResponse:
    """Up to 1,000 events in one request, one result per event in order. A bad event
    gets its own problem and does not spoil the others. On PostgreSQL a large batch
    commits in up to two transactions: the members whose accounts nobody else holds
    first, the rest after waiting for their accounts. Sending a batch again is safe:
    events already stored answer 200 with their first result."""
    parsed: list[Any] = []
    results: list[dict[str, Any] | None] = [None] * len(batch.events)
    for index, raw in enumerate(batch.events):
        if not isinstance(raw, dict):  # validated with the body, in one step
            parsed.append((index, raw))
            continue
        try:  # it did not validate as an event: say why, for this event only
            parsed.append((index, event_adapter.validate_python(raw)))
        except ValidationError as exc:
            errors = field_errors(_strip_tag(exc.errors()))
            results[index] = {
                "index": index,
                "event_id": raw.get("id") if isinstance(raw, dict) else None,
                "status": 422,
                "problem": validation_body(errors),
            }
    outcomes: list[Outcome] = ingest_with_retry(db, [e for _, e in parsed]) if parsed else []
    for (index, _), outcome in zip(parsed, outcomes, strict=True):
        item: dict[str, Any] = {
            "index": index,
            "event_id": outcome.event_id,
            "status": outcome.status,
        }
        if outcome.error is not None:
            item["problem"] = error_body(outcome.error)
        else:
            assert outcome.body is not None
            item["result"] = outcome.body.public()
        results[index] = item
    done = [r for r in results if r is not None]
    summary = {
        "processed": sum(1 for r in done if r["status"] == 201),
        "replayed": sum(1 for r in done if r["status"] == 200),
        "failed": sum(1 for r in done if r["status"] >= 400),
    }
    return JSONBody({"summary": summary, "results": done})


def _strip_tag(errors: list[Any]) -> list[Any]:
    """Pydantic puts the union tag ('purchase') into error locations; users never wrote it."""
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in ("purchase", "return"):
            loc = loc[1:]
        out.append({**err, "loc": loc})
    return out
