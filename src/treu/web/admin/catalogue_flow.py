"""What the catalogue pages (rewards, challenges) do alike when a form is sent: save it
in one unit of work or show it again with each error at its field; change a status or
show the list with the reason. Each page keeps only what is its own — what to write,
how to show its form, where its errors belong.

A refused write is rolled back whole (its unit of work is left by the exception), and
the form is shown again from a fresh read-only unit, so nothing half-written is ever on
screen. "Not found" is never a form error: it goes on to the console's 404 page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.errors import TreuError
from treu.programmes.models import Programme
from treu.web.admin.catalogue_forms import (
    GENERAL,
    Errors,
    FormError,
    Values,
    pydantic_errors,
    text_values,
)
from treu.web.admin.context import Staff, database
from treu.web.render import language, translate_for
from treu.web.security import check_csrf

Translate = Callable[..., str]
T = TypeVar("T")

REFUSED = (FormError, ValidationError, TreuError)
"""What a page's write may raise that is the user's to fix."""


def _not_found(error: Exception) -> bool:
    return isinstance(error, TreuError) and error.http_status == 404


async def checked_form(request: Request, staff: Staff, names: list[str]) -> Values:
    """The text fields ``names`` of a form without files, refused (403) unless it
    carries the session's token."""
    form = await request.form(max_files=0, max_fields=60)
    values = text_values(form, [*names, "csrf"])
    check_csrf(values["csrf"], staff.csrf)
    return values


def save_or_redisplay(
    request: Request,
    *,
    write: Callable[[Session], str],
    redisplay: Callable[[Session, Errors], Response],
    errors: Callable[[Exception, Translate], Errors],
) -> Response:
    """``write`` in a write unit of work, then 303 to the address it returns. When it is
    refused, ``redisplay`` shows the form (status 422) in a read-only unit with
    ``errors(error, _)``, ``_`` translating into the page's language."""
    _ = translate_for(language(request))
    db = database(request)
    try:
        with db.unit_of_work() as session:
            target = write(session)
    except REFUSED as error:
        if _not_found(error):
            raise
        with db.unit_of_work(write=False) as session:
            return redisplay(session, errors(error, _))
    return RedirectResponse(target, status_code=303)


def change_or_list(
    request: Request,
    *,
    owned: Callable[[Session], tuple[T, Programme]],
    change: Callable[[Session, T, Programme], object],
    listed: Callable[[str, str], Response],
    page: str,
    done: str,
) -> Response:
    """A status action: ``change`` what ``owned`` loads, then 303 to the programme's
    list at ``page`` with ``done``; when refused, ``listed(programme slug, reason)``
    shows the list (status 422) with the reason."""
    slug = ""
    try:
        with database(request).unit_of_work() as session:
            item, programme = owned(session)
            slug = programme.slug
            change(session, item, programme)
    except REFUSED as error:
        if _not_found(error):
            raise
        _ = translate_for(language(request))
        if isinstance(error, FormError):
            reason = _(error.message)
        elif isinstance(error, TreuError):
            reason = error.detail
        else:  # a stored item that no longer validates: each field's message, translated
            found = pydantic_errors(error, lambda loc: ".".join(str(p) for p in loc), _)
            reason = "; ".join(f"{field}: {text}" for field, text in found.items())
        return listed(slug, reason)
    return RedirectResponse(f"{page}?programme={slug}&done={done}", status_code=303)


def field_errors(
    error: Exception,
    _: Translate,
    *,
    field_of: Callable[[str], str],
    loc_of: Callable[[tuple[Any, ...]], str] | None = None,
    general: Callable[[str], tuple[str, str]] | None = None,
) -> Errors:
    """Where a form shows ``error``: a field of the wrong kind at that field; a
    validation error at ``loc_of(its location)`` (default: ``field_of`` of the dotted
    location), one of the whole document at ``general(message)``; a service error at
    ``field_of`` the field it names (the API's dotted path), or atop the form."""
    if isinstance(error, FormError):
        return {error.field: _(error.message)}
    if isinstance(error, ValidationError):
        return pydantic_errors(
            error, loc_of or (lambda loc: field_of(".".join(map(str, loc)))), _, general
        )
    assert isinstance(error, TreuError)
    field = str(error.extra.get("field") or "")
    return {field_of(field) if field else GENERAL: error.detail}


def programme_choice(session: Session, slug: str) -> tuple[list[Programme], Programme | None]:
    """Every programme (for the list's picker) and the one ``slug`` names, else the
    first."""
    every = list(session.scalars(select(Programme).order_by(Programme.slug)))
    return every, next((p for p in every if p.slug == slug), every[0] if every else None)


def programme_or_first(session: Session, slug: str) -> Programme | None:
    """The programme a "new" link names, else the first by slug (a console with one
    programme needs no choice); ``None`` when there is none yet."""
    if slug:
        found = session.scalar(select(Programme).where(Programme.slug == slug))
        if found is not None:
            return found
    return session.scalar(select(Programme).order_by(Programme.slug).limit(1))
