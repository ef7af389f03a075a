"""Stored message templates (admin): a programme's own wording of its e-mails and inbox
messages, checked in the sandbox when saved, previewed for a real member
(docs/email.md)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query, Response, status

from treu.api.deps import DB, Admin, get_settings
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.config import Settings
from treu.kit.time import utc_now
from treu.members.service import members
from treu.messaging.consents import unsubscribe_token
from treu.messaging.keys import message_keys
from treu.messaging.models import ConsentChannel
from treu.messaging.schemas import (
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TemplateParts,
    TemplateVariable,
    TemplateVariables,
)
from treu.messaging.stored import VARIABLES, TemplateData, preview, stored_templates
from treu.programmes.service import programmes
from treu.web.routing import Router

router = Router(prefix="/v1/templates", tags=["templates"], responses=PROBLEM_RESPONSES)
AppSettings = Annotated[Settings, Depends(get_settings)]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such template"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": Problem,
        "description": "`template_error`: a part does not compile, names an unknown "
        "variable or does what the sandbox forbids (`line` and `template` name where); "
        "validation",
    }
}
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


@router.get("/variables", response_model=TemplateVariables)
def list_variables(_key: Admin) -> TemplateVariables:
    """What a template may use: the messages, the variables and the filters (admin)."""
    return TemplateVariables(
        keys=sorted(message_keys()),
        variables=[TemplateVariable(name=n, description=d) for n, d in VARIABLES.items()],
        filters=["number", "money", "date"],
    )


@router.get("", response_model=TemplateList)
def list_templates(
    db: DB,
    _key: Admin,
    programme: Annotated[str | None, Query(description="Only this programme's")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TemplateList:
    """The stored templates, newest first (admin)."""
    with db.unit_of_work(write=False) as session:
        programme_id = programmes.get(session, programme).id if programme else None
        rows, next_cursor = stored_templates.list(
            session, programme_id=programme_id, limit=limit, cursor=cursor
        )
        return TemplateList(items=[TemplateOut.of(r) for r in rows], next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TemplateOut,
    responses=REFUSED
    | {
        404: {"model": Problem, "description": "No such programme"},
        409: {"model": Problem, "description": "`template_exists`: change it with PUT"},
    },
)
def create_template(data: TemplateIn, db: DB, key: Admin) -> TemplateOut:
    """Word a message for a programme in one language (admin): from now on its members
    get this subject and these bodies, inside the shipped layout, instead of the shipped
    files. Refused with the line when a part does not render."""
    with db.unit_of_work() as session:
        row = stored_templates.create(
            session,
            programme=programmes.get(session, data.programme),
            data=TemplateData(data.key, data.lang, data.subject, data.text, data.html),
            actor=key.actor,
        )
        return TemplateOut.of(row)


@router.get("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND)
def get_template(template_id: uuid.UUID, db: DB, _key: Admin) -> TemplateOut:
    with db.unit_of_work(write=False) as session:
        return TemplateOut.of(stored_templates.get(session, template_id))


@router.put("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND | REFUSED)
def update_template(template_id: uuid.UUID, data: TemplateParts, db: DB, key: Admin) -> TemplateOut:
    """Replace subject, text and HTML (admin); the version counts up."""
    with db.unit_of_work() as session:
        row = stored_templates.update(
            session,
            template_id=template_id,
            subject=data.subject,
            text=data.text,
            html=data.html,
            actor=key.actor,
        )
        return TemplateOut.of(row)


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_template(template_id: uuid.UUID, db: DB, key: Admin) -> Response:
    """Delete it (admin): the shipped files word the message again."""
    with db.unit_of_work() as session:
        stored_templates.delete(session, template_id=template_id, actor=key.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{template_id}/preview",
    response_model=PreviewOut,
    responses=NOT_FOUND | REFUSED,
)
def preview_template(
    template_id: uuid.UUID, data: PreviewIn, db: DB, _key: Admin, settings: AppSettings
) -> PreviewOut:
    """The template rendered for a real member (admin): their first name, balance, next
    expiry, tier and what is missing for the next, latest coupon (a sample code when they
    have none) with its QR code; numbers, money and dates by the template's language."""
    with db.unit_of_work(write=False) as session:
        template = stored_templates.get(session, template_id)
        member = members.get(session, data.member_id)
        programme = programmes.get(session, template.programme_id)
        key = settings.signing_key()
        link = (
            f"{settings.public_url}/u/{unsubscribe_token(key, member.id, ConsentChannel.email)}"
            if key is not None
            else f"{settings.public_url}/u/"
        )
        rendered = preview(
            session,
            template=template,
            member=member,
            programme=programme,
            unsubscribe_url=link,
            now=utc_now(),
        )
        return PreviewOut(
            member_id=member.id,
            lang=template.lang,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
