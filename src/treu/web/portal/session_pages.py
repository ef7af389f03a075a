"""Signing out of the portal, and its language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from treu.auth.sessions import web_sessions
from treu.web.portal import router
from treu.web.portal.context import COOKIE, SIGN_IN, Signed, database, need_member, next_path
from treu.web.security import check_csrf, with_language


@router.post("/sign-out")
def sign_out(
    request: Request,
    member: Annotated[Signed, Depends(need_member)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    check_csrf(csrf, member.csrf)
    with database(request).unit_of_work() as session:
        web_sessions.end(session, member.session.id)
    response = RedirectResponse(SIGN_IN, status_code=303)
    response.delete_cookie(COOKIE, path="/portal")
    return response


@router.get("/lang/{lang}")
def choose_language(request: Request, lang: str) -> Response:
    """Switch the portal's language (a preference cookie; the profile page stores the
    member's own choice, which e-mails follow too)."""
    response = RedirectResponse(next_path(request.query_params.get("next")), status_code=303)
    if lang in ("de", "en"):
        with_language(response, lang)
    return response
