"""Signing in and out, the first password change, and the language of the console."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from treu.auth.sessions import web_sessions
from treu.errors import TreuError
from treu.staff.models import StaffUser
from treu.staff.service import staff as staff_accounts
from treu.web.admin import router
from treu.web.admin.context import (
    COOKIE,
    PASSWORD,
    SIGN_IN,
    Staff,
    current_staff,
    database,
    signed_in,
)
from treu.web.render import render
from treu.web.security import (
    PRE_CSRF_COOKIE,
    check_csrf,
    new_pre_csrf,
    with_language,
    with_pre_csrf,
    with_session,
)

HOME = "/admin"


def _next(value: str | None) -> str:
    """Only a path of the console: never an address elsewhere (an open redirect)."""
    if value and value.startswith("/admin") and not value.startswith("//"):
        return value
    return HOME


def _sign_in_page(
    request: Request, *, error: str | None = None, email: str = "", status_code: int = 200
) -> Response:
    token = new_pre_csrf()
    response = render(
        request,
        "admin/sign_in.html",
        status_code=status_code,
        csrf=token,
        error=error,
        email=email,
        next=_next(request.query_params.get("next")),
        staff=None,
    )
    return with_pre_csrf(request, response, token, path=SIGN_IN)


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    if current_staff(request) is not None:
        return RedirectResponse(HOME, status_code=303)
    return _sign_in_page(request)


@router.post("/sign-in")
def sign_in(
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=256)],
    csrf: Annotated[str, Form(max_length=100)],
    code: Annotated[str, Form(max_length=10)] = "",
    next: Annotated[str, Form(max_length=500)] = HOME,
) -> Response:
    check_csrf(csrf, request.cookies.get(PRE_CSRF_COOKIE))
    with database(request).unit_of_work() as session:
        attempt = staff_accounts.authenticate(
            session, email=email, password=password, code=code or None
        )
        token = None
        if attempt.user is not None:
            token, _ = web_sessions.start(session, kind="staff", subject_id=attempt.user.id)
            must_change = attempt.user.must_change_password
    if attempt.refusal is not None or token is None:
        error = attempt.refusal
        assert isinstance(error, TreuError)
        return _sign_in_page(request, error=error.code, email=email, status_code=401)
    target = PASSWORD if must_change else _next(next)
    return with_session(
        request,
        RedirectResponse(target, status_code=303),
        cookie=COOKIE,
        token=token,
        kind="staff",
        path=HOME,
    )


@router.post("/sign-out")
def sign_out(
    request: Request, staff: Annotated[Staff, Depends(signed_in)], csrf: Annotated[str, Form()]
) -> Response:
    check_csrf(csrf, staff.csrf)
    with database(request).unit_of_work() as session:
        web_sessions.end(session, staff.session.id)
    response = RedirectResponse(SIGN_IN, status_code=303)
    response.delete_cookie(COOKIE, path="/admin")
    return response


@router.get("/password")
def password_form(request: Request, staff: Annotated[Staff, Depends(signed_in)]) -> Response:
    return render(request, "admin/password.html", staff=staff, error=None)


@router.post("/password")
def change_password(
    request: Request,
    staff: Annotated[Staff, Depends(signed_in)],
    csrf: Annotated[str, Form(max_length=100)],
    current: Annotated[str, Form(max_length=256)],
    new: Annotated[str, Form(max_length=256)],
    repeat: Annotated[str, Form(max_length=256)],
) -> Response:
    check_csrf(csrf, staff.csrf)
    if new != repeat:
        return render(
            request, "admin/password.html", status_code=422, staff=staff, error="mismatch"
        )
    try:
        with database(request).unit_of_work() as session:
            user = session.get_one(StaffUser, staff.id)
            staff_accounts.change_password(session, user, current=current, new=new)
            # Other browsers signed in with the old password are signed out.
            web_sessions.end_all(session, kind="staff", subject_id=staff.id)
            token, _ = web_sessions.start(session, kind="staff", subject_id=staff.id)
    except TreuError as error:
        return render(
            request, "admin/password.html", status_code=422, staff=staff, error=error.code
        )
    return with_session(
        request,
        RedirectResponse(HOME, status_code=303),
        cookie=COOKIE,
        token=token,
        kind="staff",
        path=HOME,
    )


@router.get("/lang/{lang}")
def choose_language(request: Request, lang: str) -> Response:
    """Switch the console's language (a preference cookie; nothing else changes)."""
    response = RedirectResponse(_next(request.query_params.get("next")), status_code=303)
    if lang in ("de", "en"):
        with_language(response, lang)
    return response
