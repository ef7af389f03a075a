from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Query, status
from pydantic import BaseModel, Field, ValidationError

from treu.api.deps import DB, Admin, require
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.auth.service import Principal
from treu.campaigns.service import campaigns
from treu.errors import Invalid
from treu.events.simulation import SimulationIn, SimulationOut, simulate
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rules.models import Rule, RuleStatus
from treu.rules.service import rules
from treu.rules.spec import RuleSpec, expression_error_details
from treu.web.routing import Router

router = Router(prefix="/v1/rules", tags=["rules"], responses=PROBLEM_RESPONSES)
RulesRead = Annotated[Principal, Depends(require("admin|members:read"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such rule"}
}

EXAMPLE_RULE = {
    "programme": "demo",
    "name": "Organic double points",
    "trigger": "purchase",
    "line_condition": "'organic' in line.tags",
    "effect": {"type": "multiplier", "factor": "2", "scope": "lines"},
}


class RuleOut(BaseModel):
    id: uuid.UUID
    programme: str
    name: str
    status: str = Field(description="draft (never published), active or paused")
    draft: dict[str, Any] = Field(description="The specification being edited")
    draft_revision: int = Field(description="Send it as If-Match to PATCH safely")
    version: int | None = Field(description="Latest published version")
    published: dict[str, Any] | None = Field(description="The latest published specification")
    unpublished_changes: bool
    budget_used: int
    published_at: datetime | None
    paused_at: datetime | None
    created_at: datetime
    updated_at: datetime


class RuleList(BaseModel):
    items: list[RuleOut]


def _out(session: Any, rule: Rule, programme: Programme) -> RuleOut:
    published = rules.published_spec(session, rule)
    published_json = published.model_dump(mode="json", exclude_none=True) if published else None
    return RuleOut(
        id=rule.id,
        programme=programme.slug,
        name=rule.name,
        status=rule.status,
        draft=rule.draft,
        draft_revision=rule.draft_revision,
        version=rule.version,
        published=published_json,
        unpublished_changes=published is None or published != rules.draft_spec(rule),
        budget_used=rule.budget_used,
        published_at=rule.published_at,
        paused_at=rule.paused_at,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _spec(data: dict[str, Any]) -> RuleSpec:
    """Validate a specification; expression errors keep their line and column."""
    try:
        return RuleSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            item: dict[str, Any] = {"field": where, "message": error["msg"]}
            position = expression_error_details(dict(error))
            if position is not None:
                item.update({k: position[k] for k in ("line", "column", "offset")})
            errors.append(item)
        raise Invalid("the rule is not valid", errors=errors) from None


@router.get("", response_model=RuleList)
def list_rules(
    db: DB,
    _key: RulesRead,
    programme: Annotated[str, Query(description="Programme slug or id")],
    rule_status: Annotated[
        RuleStatus | None, Query(alias="status", description="Only rules in this status")
    ] = None,
) -> RuleList:
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        items = rules.all(
            session,
            programme_id=found.id,
            status=rule_status.value if rule_status is not None else None,
        )
        return RuleList(items=[_out(session, r, found) for r in items])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RuleOut,
    responses={422: {"model": Problem, "description": "Invalid rule (expression position)"}},
)
def create_rule(
    data: Annotated[
        dict[str, Any],
        Body(
            description="A rule specification (see docs/rules.md) plus `programme`",
            openapi_examples={"organic": {"summary": "Organic x2", "value": EXAMPLE_RULE}},
        ),
    ],
    db: DB,
    key: Admin,
) -> RuleOut:
    """Save a new rule as a **draft** (it does nothing until published). A condition
    with a syntax or type error is refused with its line and column."""
    payload = dict(data)
    programme_ref = payload.pop("programme", None)
    if not isinstance(programme_ref, str) or not programme_ref:
        raise Invalid("name the programme", errors=[{"field": "programme", "message": "required"}])
    spec = _spec(payload)
    with db.unit_of_work() as session:
        programme = programmes.get(session, programme_ref)
        rule = rules.create(session, programme=programme, spec=spec, actor=key.actor)
        return _out(session, rule, programme)


@router.post(
    "/simulate",
    response_model=SimulationOut,
    responses={
        404: {"model": Problem, "description": "Unknown programme"},
        422: {"model": Problem, "description": "Bad period, rule or excluded id"},
    },
)
def simulate_rules(request: SimulationIn, db: DB, _key: Admin) -> SimulationOut:
    """What a draft rule set would have cost: replay the recorded purchases and
    engagement events of a period (at most 366 days) through the drafts of the active
    and never-published rules (plus `rules`, minus `exclude`) and through the published
    rules, side by side. No side effects: nothing is saved or counted."""
    with db.unit_of_work(write=False) as session:
        return simulate(session, request)


@router.get("/{rule_id}", response_model=RuleOut, responses=NOT_FOUND)
def get_rule(rule_id: str, db: DB, _key: RulesRead) -> RuleOut:
    with db.unit_of_work(write=False) as session:
        rule = rules.get(session, rule_id)
        return _out(session, rule, programmes.get(session, rule.programme_id))


MANAGED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": Problem,
        "description": "rule_managed_by_campaign: the rule belongs to a campaign",
    }
}


@router.patch("/{rule_id}", response_model=RuleOut, responses={**NOT_FOUND, **MANAGED})
def patch_rule(
    rule_id: str,
    changes: dict[str, Any],
    db: DB,
    key: Admin,
    if_match: Annotated[
        str | None,
        Header(description="The draft_revision you edited; a stale one answers 409"),
    ] = None,
) -> RuleOut:
    """Change the **draft**: the fields you send replace the draft's (``null`` clears an
    optional field). The published version stays in force until you publish again."""
    revision: int | None = None
    if if_match is not None:
        try:
            revision = int(if_match.strip().strip('"'))
        except ValueError:
            raise Invalid(
                "If-Match must be a draft_revision number",
                errors=[{"field": "If-Match", "message": "not a number"}],
            ) from None
    with db.unit_of_work() as session:
        rule = rules.get(session, rule_id)
        campaigns.refuse_managed(session, rule)
        merged = {**rule.draft, **changes}
        merged = {k: v for k, v in merged.items() if v is not None}
        merged.pop("programme", None)
        spec = _spec(merged)
        rule = rules.update(session, rule, spec=spec, actor=key.actor, revision=revision)
        return _out(session, rule, programmes.get(session, rule.programme_id))


@router.post(
    "/{rule_id}/publish",
    response_model=RuleOut,
    responses={
        **NOT_FOUND,
        409: {
            "model": Problem,
            "description": "Nothing changed since the last publication; "
            "rule_managed_by_campaign: the rule belongs to a campaign",
        },
    },
)
def publish_rule(rule_id: str, db: DB, key: Admin) -> RuleOut:
    """Freeze the draft as the next version and apply it to new events (on every server
    process within 5 seconds). Publishing a paused rule's unchanged draft resumes it."""
    with db.unit_of_work() as session:
        rule = rules.get(session, rule_id)
        campaigns.refuse_managed(session, rule)
        rule = rules.publish(session, rule, actor=key.actor)
        return _out(session, rule, programmes.get(session, rule.programme_id))


@router.post("/{rule_id}/pause", response_model=RuleOut, responses={**NOT_FOUND, **MANAGED})
def pause_rule(rule_id: str, db: DB, key: Admin) -> RuleOut:
    """Stop applying the rule to new events until it is published again."""
    with db.unit_of_work() as session:
        rule = rules.get(session, rule_id)
        campaigns.refuse_managed(session, rule)
        rule = rules.pause(session, rule, actor=key.actor)
        return _out(session, rule, programmes.get(session, rule.programme_id))
