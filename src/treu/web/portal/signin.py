"""Signing in to the portal with a one-time code sent by e-mail.

Two forms: the e-mail address, then the code. Whatever happens to the address (no such
member, asked too often, a code sent), the second form says the same thing, and every
wrong code answers the same sentence: the pages tell nobody which addresses are members
(``treu.members.codes``). Both forms carry a pre-session CSRF token that is also in a
short-lived cookie (double submit), as the console's sign-in does.

The programme is the one of ``?programme=<slug>`` (the retailer links to its portal with
it), or the only programme of this server.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from treu.auth.sessions import web_sessions
from treu.config import Settings
from treu.members.codes import MAX_TRIES, VALID_FOR, codes
from treu.web.portal import router
from treu.web.portal.context import COOKIE, HOME, SIGN_IN, current_member, database, next_path
from treu.web.render import render
from treu.web.security import (
    PRE_CSRF_COOKIE,
    check_csrf,
    new_pre_csrf,
    with_language,
    with_pre_csrf,
    with_session,
)

log = logging.getLogger("treu.web")

CODE_FORM = SIGN_IN + "/code"


def _key(request: Request) -> bytes | None:
    settings: Settings = request.app.state.settings
    return settings.signing_key()


def _page(
    request: Request,
    template: str,
    *,
    programme: str,
    next: str,
    email: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """A sign-in form with its pre-session CSRF token (the cookie's, if the browser has
    one: the two forms share it)."""
    token = request.cookies.get(PRE_CSRF_COOKIE) or new_pre_csrf()
    response = render(
        request,
        template,
        status_code=status_code,
        csrf=token,
        programme=programme,
        next=next_path(next),
        email=email,
        error=error,
        minutes=int(VALID_FOR.total_seconds() // 60),
        tries=MAX_TRIES,
        member=None,
    )
    return with_pre_csrf(request, response, token, path=SIGN_IN)


def _unknown_programme(request: Request) -> Response:
    return render(
        request,
        "portal/no_programme.html",
        status_code=404,
        member=None,
    )


PROGRAMME_COOKIE = "treu_programme"
"""The programme of the retailer's link, remembered on this browser: the language switch
and signing out lead back to ``/portal/sign-in`` without ``?programme=``."""


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    if current_member(request) is not None:
        return RedirectResponse(HOME, status_code=303)
    slug = (request.query_params.get("programme") or request.cookies.get(PROGRAMME_COOKIE) or "")[
        :64
    ]
    with database(request).unit_of_work(write=False) as session:
        if codes.programme_for(session, slug) is None:
            return _unknown_programme(request)
    response = _page(
        request, "portal/sign_in.html", programme=slug, next=request.query_params.get("next", "")
    )
    if slug:
        response.set_cookie(
            PROGRAMME_COOKIE,
            slug,
            max_age=365 * 86400,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/portal",
        )
    return response


@router.post("/sign-in")
def send_code(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    csrf: Annotated[str, Form(max_length=100)],
    programme: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=500)] = HOME,
) -> Response:
    """Send a code (if the address is a member's and the rate limit allows), then the
    code form — the same answer in every case."""
    check_csrf(csrf, request.cookies.get(PRE_CSRF_COOKIE))
    key = _key(request)
    with database(request).unit_of_work() as session:
        found = codes.programme_for(session, programme)
        if found is None:
            return _unknown_programme(request)
        if key is None:
            log.warning("TREU_SECRET_KEY is not set: no portal sign-in codes (docs/portal.md)")
        else:
            codes.request(session, programme_id=found.id, email=email, key=key)
    return _page(request, "portal/sign_in_code.html", programme=programme, next=next, email=email)


@router.post("/sign-in/code")
def check_code(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    code: Annotated[str, Form(max_length=20)],
    csrf: Annotated[str, Form(max_length=100)],
    programme: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=500)] = HOME,
) -> Response:
    check_csrf(csrf, request.cookies.get(PRE_CSRF_COOKIE))
    key = _key(request)
    token = None
    language = None
    with database(request).unit_of_work() as session:
        found = codes.programme_for(session, programme)
        if found is None:
            return _unknown_programme(request)
        member = (
            codes.verify(session, programme_id=found.id, email=email, code=code, key=key)
            if key is not None
            else None
        )
        if member is not None:
            token, _ = web_sessions.start(session, kind="member", subject_id=member.id)
            language = member.language
    if token is None:
        return _page(
            request,
            "portal/sign_in_code.html",
            programme=programme,
            next=next,
            email=email,
            error="code",
            status_code=401,
        )
    response = with_session(
        request,
        RedirectResponse(next_path(next), status_code=303),
        cookie=COOKIE,
        token=token,
        kind="member",
        path=HOME,
    )
    if language in ("de", "en"):
        with_language(response, language)
    return response
