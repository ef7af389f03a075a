"""RFC 9457 problem details for every error the API can answer with.

Every problem has ``type``, ``title``, ``status``, ``detail`` and a stable ``code``;
validation problems add ``errors`` with the field path of each complaint, e.g.
``{"field": "lines.0.quantity", "message": "Input should be greater than or equal to 1"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from treu.api.responses import JSONBody
from treu.db.text import nul_in_text
from treu.errors import (
    Busy,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    TreuError,
    Unauthenticated,
)

log = logging.getLogger("treu.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://treu.dev/problems/"


class FieldError(BaseModel):
    field: str = Field(examples=["lines.0.quantity"])
    message: str


class Problem(BaseModel):
    type: str = Field(examples=[TYPE_BASE + "insufficient_points"])
    title: str = Field(examples=["Not enough points"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["10 points needed, 0 available"])
    code: str = Field(
        examples=["insufficient_points"],
        description=(
            "Stable and machine-readable; often more specific than the status, e.g. "
            "member_not_found or idempotency_conflict (the API guide lists them)"
        ),
    )
    errors: list[FieldError] | None = None


def problem_body(
    *, code: str, title: str, status: int, detail: str, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def error_body(error: TreuError) -> dict[str, Any]:
    return problem_body(
        code=error.code,
        title=error.title,
        status=error.http_status,
        detail=error.detail,
        **error.extra,
    )


def field_errors(errors: Sequence[Any], *, skip_first: int = 0) -> list[dict[str, str]]:
    out = []
    seen: set[str] = set()
    for err in errors:
        loc = _user_path([str(part) for part in err.get("loc", ())][skip_first:])
        field = ".".join(loc) or "(body)"
        if field in seen and len(loc) and loc[-1].isdigit():
            continue  # the same list item failing each alternative of a union: once
        seen.add(field)
        out.append({"field": field, "message": str(err.get("msg", ""))})
    return out


def _user_path(loc: list[str]) -> list[str]:
    """The path as the user wrote it: without the labels pydantic inserts for the
    alternatives of a union (``tagged-union[…]`` and the tag after it, ``dict[str,any]``:
    a batch's events are an event or, failing that, any object)."""
    out: list[str] = []
    skip_tag = False
    for part in loc:
        if skip_tag:
            skip_tag = False
            continue
        if part.startswith("tagged-union["):
            skip_tag = True
            continue
        if part == "dict[str,any]":
            continue
        out.append(part)
    return out


def validation_body(errors: list[dict[str, str]]) -> dict[str, Any]:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
    return problem_body(
        code="validation_error",
        title="Invalid request",
        status=422,
        detail=summary or "the request is not valid",
        errors=errors,
    )


def respond(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONBody(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(TreuError)
    async def _treu(_request: Request, exc: TreuError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return respond(error_body(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI locations start with "body" / "query" / "path": keep that for query and
        # path parameters, drop it for the body so paths read like the JSON document.
        errors = []
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            if loc and loc[0] == "body":
                loc = loc[1:]
            errors.append({"loc": loc, "msg": err.get("msg", "")})
        return respond(validation_body(field_errors(errors)))

    @app.exception_handler(ValidationError)
    async def _pydantic(_request: Request, exc: ValidationError) -> JSONResponse:
        return respond(validation_body(field_errors(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == PayloadTooLarge.http_status:  # a body without Content-Length
            return respond(error_body(PayloadTooLarge(str(exc.detail))))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return respond(
            problem_body(
                code=code,
                title=str(exc.detail) if exc.status_code != 404 else "Not found",
                status=exc.status_code,
                detail=str(exc.detail),
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        nul = nul_in_text(exc)
        if nul is not None:
            return respond(error_body(nul))
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(
            problem_body(
                code="internal_error",
                title="Internal error",
                status=500,
                detail="Treu could not handle this request; the error has been logged.",
            )
        )


def document_problems(app: FastAPI) -> None:
    """Give every problem answer in the OpenAPI description the media type Treu sends
    (``application/problem+json``) and an example of its own status, its detail the
    answer's description: otherwise each shows the same 422 example of the ``Problem``
    schema, "Not enough points" under "Missing or invalid API key" too."""
    standard = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        spec = standard()
        if first:
            _problem_examples(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


_BY_STATUS: dict[int, type[TreuError]] = {
    error.http_status: error
    for error in (Unauthenticated, Forbidden, NotFound, Conflict, PayloadTooLarge, Invalid, Busy)
}


def _problem_examples(spec: dict[str, Any]) -> None:
    problem_ref = "#/components/schemas/Problem"
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                body = content.get("application/json")
                if body is None or body.get("schema", {}).get("$ref") != problem_ref:
                    continue
                error = _BY_STATUS.get(int(status), TreuError)
                example = problem_body(
                    code=error.code,
                    title=error.title,
                    status=int(status),
                    detail=answer.get("description", error.title),
                )
                if error is Invalid:
                    example["errors"] = [
                        {
                            "field": "lines.0.quantity",
                            "message": "Input should be greater than or equal to 1",
                        }
                    ]
                del content["application/json"]
                content[PROBLEM_JSON] = {**body, "example": example}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid API key"},
    403: {"model": Problem, "description": "The API key lacks the scope"},
    422: {"model": Problem, "description": "Invalid request (field paths in `errors`)"},
}
