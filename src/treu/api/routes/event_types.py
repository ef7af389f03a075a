from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query, status
from pydantic import BaseModel

from treu.api.deps import DB, Admin, AnyKey
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.programmes.service import programmes
from treu.rules.event_types import (
    EventTypeCreate,
    EventTypeNotFound,
    EventTypeOut,
    Lang,
    event_types,
)
from treu.web.routing import Router

router = Router(prefix="/v1/event-types", tags=["event types"], responses=PROBLEM_RESPONSES)

Programme = Annotated[str, Query(min_length=1, description="Programme slug or id")]
Language = Annotated[Lang, Query(description="Language of built-in descriptions")]


class EventTypeList(BaseModel):
    items: list[EventTypeOut]


CREATE_EXAMPLES: dict[str, Any] = {
    "workshop": {
        "summary": "A workshop attended in store",
        "value": {
            "name": "workshop_attended",
            "description": "Attended an in-store workshop",
            "attributes_schema": {
                "type": "object",
                "properties": {
                    "workshop_id": {"type": "string", "minLength": 1, "maxLength": 64},
                    "minutes": {"type": "integer", "minimum": 0},
                },
                "required": ["workshop_id"],
                "additionalProperties": False,
            },
        },
    },
    "recycling": {
        "summary": "Bottles returned for recycling",
        "value": {
            "name": "bottles_recycled",
            "description": "Returned empty bottles at the machine",
            "attributes_schema": {
                "type": "object",
                "properties": {"bottles": {"type": "integer", "minimum": 1, "maximum": 500}},
                "required": ["bottles"],
                "additionalProperties": False,
            },
        },
    },
}


@router.get("", response_model=EventTypeList)
def list_event_types(
    programme: Programme, db: DB, _key: AnyKey, lang: Language = "en"
) -> EventTypeList:
    """The engagement event types a programme accepts: the built-in ones first, then the
    programme's custom ones. ``attributes_schema`` is what an event's ``attributes`` must
    satisfy (JSON Schema, draft 2020-12)."""
    with db.unit_of_work(write=False) as session:
        programme_id = programmes.get(session, programme).id
        return EventTypeList(items=event_types.list(session, programme_id, lang=lang))


@router.get(
    "/{name}",
    response_model=EventTypeOut,
    responses={404: {"model": Problem, "description": "No such programme or event type"}},
)
def get_event_type(
    name: str, programme: Programme, db: DB, _key: AnyKey, lang: Language = "en"
) -> EventTypeOut:
    with db.unit_of_work(write=False) as session:
        programme_id = programmes.get(session, programme).id
        found = event_types.get(session, programme_id, name, lang=lang)
        if found is None:
            raise EventTypeNotFound(f"no event type {name!r} in this programme", name=name)
        return found


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EventTypeOut,
    responses={
        404: {"model": Problem, "description": "No such programme"},
        409: {"model": Problem, "description": "The name is taken (built-in or custom)"},
    },
)
def create_event_type(
    data: Annotated[EventTypeCreate, Body(openapi_examples=CREATE_EXAMPLES)],
    programme: Programme,
    db: DB,
    key: Admin,
) -> EventTypeOut:
    """Define a custom engagement event type (admin scope). Events of this type are
    refused with 422 ``invalid_attributes`` when their ``attributes`` do not satisfy
    ``attributes_schema``; a schema that is not valid JSON Schema is refused with 422
    ``invalid_event_type_schema`` naming the keyword."""
    with db.unit_of_work() as session:
        programme_id = programmes.get(session, programme).id
        return event_types.create(session, programme_id=programme_id, data=data, actor=key.actor)
