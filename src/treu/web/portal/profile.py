"""The member's profile: their data, progressive profiling (one missing field at a time,
with the points it earns), consents per channel, and their language.

Saving goes through ``treu.events.profiling`` (``members.update``, the service of
``PATCH /v1/members/{id}``, plus the ``profile_completed`` event a field given for the
first time earns with); consents through ``consents.record`` with source ``portal``; the
language is stored on the member (e-mails follow it) and set as the portal's cookie.
The e-mail address is shown, not edited here: it is how the member signs in, and a new
one must be confirmed first (a later feature)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from treu.errors import TreuError
from treu.events.profiling import FIELDS, PREFERENCES, SIZES, Saved, profiling
from treu.kit.text import N_
from treu.members.errors import IdentifierTaken
from treu.members.models import Member
from treu.members.schemas import MemberUpdate
from treu.members.service import members
from treu.messaging.consents import consents
from treu.messaging.models import ConsentChannel
from treu.programmes.service import programmes
from treu.web.nav import PORTAL
from treu.web.portal import router
from treu.web.portal.context import Signed, database, need_member
from treu.web.render import language, render
from treu.web.security import check_csrf, with_language

CONSENT_WORDING = "portal-consents-2026-12"
"""The version of the consent texts on the profile page ("How we may contact you" and its
hint): change it with the texts, so each recorded choice names what was read."""

PATH = "/portal/profile"
ROUTE = "/profile"  # under the router's /portal
PORTAL.link(PATH, N_("Profile"), order=70)

Typed = Annotated[str, Form(max_length=1_000)]
"""A field the member types. The limit only bounds what is read: the member update's own
limits (100 characters for a name) are checked by its validation and shown at the field
with what was typed, not as a page of its own."""
Errors = dict[str, str]
"""Field -> error kind (the template words it)."""


def _page(
    request: Request,
    signed: Signed,
    *,
    status_code: int = 200,
    errors: Errors | None = None,
    values: dict[str, Any] | None = None,
    ask_error: str | None = None,
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        member = members.get(session, signed.id)
        programme = programmes.get(session, member.programme_id)
        ask = profiling.next_ask(session, member=member, programme=programme)
        states = consents.current(session, member.id)
        return render(
            request,
            "portal/profile.html",
            status_code=status_code,
            timezone=programme.timezone,
            member=signed,
            profile=member,
            size=member.attributes.get("size"),
            preferences=member.attributes.get("preferences") or [],
            ask=ask,
            ask_error=ask_error,
            consents=[(channel.value, states[channel.value]) for channel in ConsentChannel],
            sizes=SIZES,
            interests=PREFERENCES,
            errors=errors or {},
            values=values or {},
            done=request.query_params.get("done"),
            earned=_earned(request, signed),
        )


def _done(done: str, earned: int, signed: Signed) -> str:
    """Where a save sends the member: the page with the points it credited, marked with
    the session's own secret so that a link from someone else cannot show a made-up
    amount ("5,000 points were credited")."""
    return f"{PATH}?done={done}&earned={earned}&mark={_mark(earned, signed)}"


def _mark(earned: int, signed: Signed) -> str:
    digest = hmac.new(signed.csrf.encode(), f"earned:{earned}".encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


def _earned(request: Request, signed: Signed) -> int:
    """The credited points of ``_done``'s link; 0 when its mark is not this session's."""
    earned = _int(request.query_params.get("earned"))
    mark = request.query_params.get("mark") or ""
    return earned if earned and hmac.compare_digest(mark, _mark(earned, signed)) else 0


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def _errors(exc: ValidationError) -> Errors:
    """Pydantic's complaints, by form field ("birthday": "invalid")."""
    found: Errors = {}
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = loc[1] if loc and loc[0] == "attributes" and len(loc) > 1 else loc[0] if loc else ""
        found.setdefault(field or "form", "invalid")
    return found


def _save(
    request: Request, signed: Signed, changes: dict[str, Any]
) -> tuple[int, tuple[str, ...]] | Errors:
    """Validate ``changes`` as ``PATCH /v1/members/{id}`` does and save them; the points
    earned and the fields completed, or the errors by field."""
    try:
        data = MemberUpdate.model_validate(changes)
    except ValidationError as exc:
        return _errors(exc)

    def work(session: Session, _attempt: int) -> Saved:
        member = members.get(session, signed.id)
        programme = programmes.get(session, member.programme_id)
        return profiling.save(session, member=member, programme=programme, data=data)

    try:
        # Two tabs giving the same field at once: the second's event meets the first's
        # (unique key) and, run again, finds the field given and earns nothing.
        saved = database(request).retrying(work, retry_on=(IntegrityError,))
    except IdentifierTaken as exc:
        return {str(exc.extra.get("field") or "form"): "taken"}
    return saved.earned, saved.completed


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@router.get(ROUTE)
def profile_page(request: Request, signed: Annotated[Signed, Depends(need_member)]) -> Response:
    return _page(request, signed)


@router.post(ROUTE)
def save_profile(
    request: Request,
    signed: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
    first_name: Typed = "",
    last_name: Typed = "",
    phone: Typed = "",
    birthday: Typed = "",
    size: Typed = "",
    preferences: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """The whole form: a blank field removes what was there."""
    check_csrf(csrf, signed.csrf)
    chosen = [p for p in (preferences or []) if p in PREFERENCES]
    changes: dict[str, Any] = {
        "first_name": _blank(first_name),
        "last_name": _blank(last_name),
        "phone": _blank(phone),
        "birthday": _blank(birthday),
        "attributes": {
            "size": size if size in SIZES else None,
            "preferences": chosen or None,
        },
    }
    if size and size not in SIZES:
        return _refused(request, signed, {"size": "invalid"}, changes)
    result = _save(request, signed, changes)
    if isinstance(result, dict):
        return _refused(request, signed, result, changes)
    earned, _ = result
    return RedirectResponse(_done("saved", earned, signed), status_code=303)


def _refused(request: Request, signed: Signed, errors: Errors, changes: dict[str, Any]) -> Response:
    attributes = changes.get("attributes") or {}
    values = {k: v for k, v in changes.items() if k != "attributes"}
    values.update(attributes)
    return _page(request, signed, status_code=422, errors=errors, values=values)


@router.post(f"{ROUTE}/ask")
def give_field(
    request: Request,
    signed: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
    field: Annotated[str, Form(max_length=20)],
    phone: Typed = "",
    birthday: Typed = "",
    size: Typed = "",
    preferences: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """The progressive-profiling card: one field, earning its ``profile_completed``
    points the first time."""
    check_csrf(csrf, signed.csrf)
    if field not in FIELDS:
        return _page(request, signed, status_code=422, ask_error="invalid")
    changes: dict[str, Any]
    if field == "birthday":
        changes = {"birthday": _blank(birthday)}
    elif field == "phone":
        changes = {"phone": _blank(phone)}
    elif field == "size":
        changes = {"attributes": {"size": size}} if size in SIZES else {}
    else:
        chosen = [p for p in (preferences or []) if p in PREFERENCES]
        changes = {"attributes": {"preferences": chosen}} if chosen else {}
    value = changes.get(field, (changes.get("attributes") or {}).get(field))
    if not value:
        return _page(request, signed, status_code=422, ask_error="missing")
    result = _save(request, signed, changes)
    if isinstance(result, dict):
        kind = next(iter(result.values()))
        return _page(request, signed, status_code=422, ask_error=kind)
    earned, _ = result
    return RedirectResponse(_done("given", earned, signed), status_code=303)


@router.post(f"{ROUTE}/consents")
def set_consent(
    request: Request,
    signed: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
    channel: Annotated[str, Form(max_length=16)],
    granted: Annotated[str, Form(max_length=5)],
) -> Response:
    """Grant or withdraw one channel, recorded as the consents API records (source
    ``portal``, the wording the member read: ``CONSENT_WORDING`` and the page's
    language)."""
    check_csrf(csrf, signed.csrf)
    if channel not in {c.value for c in ConsentChannel} or granted not in ("yes", "no"):
        return _page(request, signed, status_code=422, errors={"consent": "invalid"})
    try:
        with database(request).unit_of_work() as session:
            member = members.get(session, signed.id)
            consents.record(
                session,
                member=member,
                channel=channel,
                granted=granted == "yes",
                source="portal",
                wording=f"{CONSENT_WORDING}:{language(request)}",
            )
    except TreuError as error:
        return _page(request, signed, status_code=error.http_status, errors={"consent": "invalid"})
    return RedirectResponse(f"{PATH}?done=consent#consents-h", status_code=303)


@router.post(f"{ROUTE}/language")
def set_language(
    request: Request,
    signed: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
    language: Annotated[str, Form(max_length=8)],
) -> Response:
    """The member's language (``members.language``: e-mails follow it) and the portal's
    language cookie, at once."""
    check_csrf(csrf, signed.csrf)
    if language not in ("de", "en"):
        return _page(request, signed, status_code=422, errors={"language": "invalid"})
    with database(request).unit_of_work() as session:
        member: Member = members.get(session, signed.id)
        members.update(session, member=member, data=MemberUpdate(language=language))
    response = RedirectResponse(f"{PATH}?done=language", status_code=303)
    with_language(response, language)
    return response
