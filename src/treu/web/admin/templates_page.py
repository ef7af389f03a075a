"""Message templates in the console: the programme's wording of each e-mail and inbox
message per language (its stored template, else the shipped files), edited with the
German and English previews side by side.

The previews are rendered by the delivery's renderer (``treu.messaging.stored.
preview_message``: the sandbox, the shipped layout, a demo member's data). The HTML part
is shown in an ``<iframe sandbox>`` — a frame with no permissions runs no script and
reaches nothing of the console. The saved (or shipped) wording is loaded from
``…/frame``, which answers the mail alone under its own policy (no script at all, the
mail's inline styles allowed, framed only by the console), so it looks as members see
it. An unsaved preview is put in the frame's ``srcdoc`` (escaped like any attribute);
it inherits the console's policy, so the mail's inline styles are not applied there.
Saving goes through ``stored_templates`` (checked in both languages, audit-logged);
"Preview" renders what was typed without saving it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.errors import TreuError
from treu.kit.lang import LANGUAGES, Lang
from treu.kit.text import N_
from treu.messaging.errors import TemplateProblem
from treu.messaging.keys import message_keys
from treu.messaging.models import MessageTemplate
from treu.messaging.stored import TemplateData, preview_message, stored_templates
from treu.messaging.templates import Rendered, TemplateSource, source
from treu.programmes.models import Programme
from treu.web.admin import router
from treu.web.admin.campaigns import choose_programme
from treu.web.admin.context import Staff, database, need
from treu.web.nav import ADMIN
from treu.web.render import render
from treu.web.security import check_csrf

ADMIN.link("/admin/templates", N_("Messages"), order=85, permission="campaigns.read")

MAX_PART = 100_000
FRAME_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "SAMEORIGIN",
}
"""The frame of a mail preview: no script, no requests; the mail's inline styles apply."""


class TemplateForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    csrf: str = Field(default="", max_length=100)
    subject: str = Field(default="", max_length=1_000)
    text: str = Field(default="", max_length=MAX_PART)
    html: str = Field(default="", max_length=MAX_PART)
    action: Literal["save", "preview"] = "save"


class Side:
    """One language of a message on the page: its wording, where it comes from, and its
    preview or the error that stops it."""

    def __init__(
        self,
        lang: Lang,
        wording: TemplateSource,
        row: MessageTemplate | None,
        *,
        edited: bool = False,
    ) -> None:
        self.lang = lang
        self.wording = wording
        self.row = row
        self.edited = edited
        self.preview: Rendered | None = None
        self.error: TemplateProblem | None = None


def _stored(session: Session, programme: Programme, key: str) -> dict[str, MessageTemplate]:
    return {
        row.lang: row
        for row in session.scalars(
            select(MessageTemplate).where(
                MessageTemplate.programme_id == programme.id, MessageTemplate.key == key
            )
        )
    }


def _shipped(key: str, lang: Lang) -> TemplateSource:
    return TemplateSource(
        source(key, "subject", lang), source(key, "text", lang), source(key, "html", lang)
    )


def _known(key: str) -> None:
    if key not in message_keys():
        raise MessageNotFound(f"no message {key!r}")


class MessageNotFound(TreuError):
    code = "message_not_found"
    http_status = 404
    title = "No such message"


@router.get("/templates")
def templates_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("campaigns.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        all_programmes, chosen = choose_programme(session, programme)
        stored: dict[tuple[str, str], MessageTemplate] = {}
        if chosen is not None:
            for row in session.scalars(
                select(MessageTemplate).where(MessageTemplate.programme_id == chosen.id)
            ):
                stored[(row.key, row.lang)] = row
    return render(
        request,
        "admin/message_templates.html",
        timezone=chosen.timezone if chosen is not None else "UTC",
        staff=staff,
        programmes=all_programmes,
        chosen=chosen,
        keys=sorted(message_keys()),
        languages=LANGUAGES,
        stored=stored,
    )


def _editor(
    request: Request,
    staff: Staff,
    slug: str,
    key: str,
    *,
    edited: tuple[Lang, TemplateSource] | None = None,
    problem: TemplateProblem | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    _known(key)
    with database(request).unit_of_work(write=False) as session:
        _, chosen = choose_programme(session, slug)
        if chosen is None:
            return RedirectResponse("/admin/templates", status_code=303)
        rows = _stored(session, chosen, key)
        sides = []
        for lang in LANGUAGES:
            row = rows.get(lang)
            if edited is not None and edited[0] == lang:
                side = Side(lang, edited[1], row, edited=True)
            elif row is not None:
                side = Side(lang, TemplateSource(row.subject, row.text, row.html), row)
            else:
                side = Side(lang, _shipped(key, lang), None)
            if side.edited and problem is not None:
                side.error = problem
            else:
                try:
                    side.preview = preview_message(
                        session,
                        programme=chosen,
                        key=key,
                        lang=lang,
                        stored=side.wording if (row is not None or side.edited) else None,
                    )
                except TemplateProblem as error:
                    side.error = error
            sides.append(side)
    return render(
        request,
        "admin/message_template.html",
        status_code=status_code,
        timezone=chosen.timezone,
        staff=staff,
        programme=chosen,
        key=key,
        sides=sides,
        done=done,
    )


@router.get("/templates/{key}")
def template_page(
    request: Request,
    key: str,
    staff: Annotated[Staff, Depends(need("campaigns.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    return _editor(request, staff, programme, key, done=request.query_params.get("done"))


@router.get("/templates/{key}/{lang}/frame")
def template_frame(
    request: Request,
    key: str,
    lang: Lang,
    staff: Annotated[Staff, Depends(need("campaigns.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The HTML part of the current wording's preview, alone, for the page's frame."""
    _known(key)
    with database(request).unit_of_work(write=False) as session:
        _, chosen = choose_programme(session, programme)
        if chosen is None:
            return PlainTextResponse("no programme", status_code=404, headers=FRAME_HEADERS)
        row = _stored(session, chosen, key).get(lang)
        wording = TemplateSource(row.subject, row.text, row.html) if row is not None else None
        try:
            rendered = preview_message(
                session, programme=chosen, key=key, lang=lang, stored=wording
            )
        except TemplateProblem as problem:
            return PlainTextResponse(problem.detail, status_code=422, headers=FRAME_HEADERS)
    return HTMLResponse(rendered.html, headers=FRAME_HEADERS)


@router.post("/templates/{key}/{lang}")
def save_template(
    request: Request,
    key: str,
    lang: Lang,
    staff: Annotated[Staff, Depends(need("templates.write"))],
    form: Annotated[TemplateForm, Form()],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Save the wording of one language (a new stored template, or a new version of it),
    or only preview it (``action=preview``)."""
    check_csrf(form.csrf, staff.csrf)
    _known(key)
    wording = TemplateSource(form.subject, form.text, form.html)
    if form.action == "preview":
        return _editor(request, staff, programme, key, edited=(lang, wording))
    actor = f"staff:{staff.email}"
    try:
        with database(request).unit_of_work() as session:
            _, chosen = choose_programme(session, programme)
            if chosen is None:
                return RedirectResponse("/admin/templates", status_code=303)
            slug = chosen.slug
            row = _stored(session, chosen, key).get(lang)
            if row is None:
                stored_templates.create(
                    session,
                    programme=chosen,
                    data=TemplateData(key, lang, form.subject, form.text, form.html),
                    actor=actor,
                )
            else:
                stored_templates.update(
                    session,
                    template_id=row.id,
                    subject=form.subject,
                    text=form.text,
                    html=form.html,
                    actor=actor,
                )
    except TemplateProblem as problem:
        return _editor(
            request,
            staff,
            programme,
            key,
            edited=(lang, wording),
            problem=problem,
            status_code=422,
        )
    return RedirectResponse(f"/admin/templates/{key}?programme={slug}&done={lang}", status_code=303)


@router.post("/templates/{key}/{lang}/reset")
def reset_template(
    request: Request,
    key: str,
    lang: Lang,
    staff: Annotated[Staff, Depends(need("templates.write"))],
    csrf: Annotated[str, Form(max_length=100)] = "",
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Delete the stored wording: the shipped files word the message again."""
    check_csrf(csrf, staff.csrf)
    _known(key)
    with database(request).unit_of_work() as session:
        _, chosen = choose_programme(session, programme)
        if chosen is None:
            return RedirectResponse("/admin/templates", status_code=303)
        slug = chosen.slug
        row = _stored(session, chosen, key).get(lang)
        if row is not None:
            stored_templates.delete(session, template_id=row.id, actor=f"staff:{staff.email}")
    return RedirectResponse(f"/admin/templates/{key}?programme={slug}&done=reset", status_code=303)
