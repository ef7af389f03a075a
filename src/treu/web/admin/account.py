"""My account: the second factor (TOTP) — set it up with an authenticator app, confirm it
with a code, switch it off with the password. Every signed-in staff member may do this
for their own account, whatever their role."""

from __future__ import annotations

from typing import Annotated

import pyotp
import segno
from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from treu.errors import TreuError
from treu.staff.models import StaffUser
from treu.staff.service import ISSUER
from treu.staff.service import staff as staff_accounts
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need_no_permission
from treu.web.render import render
from treu.web.security import check_csrf

PAGE = "/admin/account"


def _page(
    request: Request, staff: Staff, *, error: str | None = None, status_code: int = 200
) -> Response:
    with database(request).unit_of_work(write=False) as session:
        user = session.get_one(StaffUser, staff.id)
        enabled, secret = user.totp_enabled, user.totp_secret
    qr = None
    if secret is not None and not enabled:
        uri = pyotp.TOTP(secret).provisioning_uri(name=staff.email, issuer_name=ISSUER)
        qr = segno.make(uri, error="m").svg_data_uri(scale=4)
    return render(
        request,
        "admin/account.html",
        status_code=status_code,
        staff=staff,
        totp_enabled=enabled,
        totp_secret=secret if not enabled else None,
        qr=qr,
        error=error,
        done=request.query_params.get("done"),
    )


@router.get("/account")
def account(request: Request, staff: Annotated[Staff, Depends(need_no_permission)]) -> Response:
    return _page(request, staff)


@router.post("/account/totp/start")
def start_totp(
    request: Request,
    staff: Annotated[Staff, Depends(need_no_permission)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    check_csrf(csrf, staff.csrf)
    with database(request).unit_of_work() as session:
        user = session.get_one(StaffUser, staff.id)
        if not user.totp_enabled:
            staff_accounts.start_totp(session, user)
    return RedirectResponse(PAGE, status_code=303)


@router.post("/account/totp/confirm")
def confirm_totp(
    request: Request,
    staff: Annotated[Staff, Depends(need_no_permission)],
    csrf: Annotated[str, Form(max_length=100)],
    code: Annotated[str, Form(max_length=10)],
) -> Response:
    check_csrf(csrf, staff.csrf)
    try:
        with database(request).unit_of_work() as session:
            staff_accounts.confirm_totp(session, session.get_one(StaffUser, staff.id), code=code)
    except TreuError as error:
        return _page(request, staff, error=error.code, status_code=422)
    return RedirectResponse(f"{PAGE}?done=enabled", status_code=303)


@router.post("/account/totp/disable")
def disable_totp(
    request: Request,
    staff: Annotated[Staff, Depends(need_no_permission)],
    csrf: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=256)],
) -> Response:
    """Switching the second factor off takes the password: a browser left signed in is
    not enough."""
    check_csrf(csrf, staff.csrf)
    with database(request).unit_of_work() as session:
        user = session.get_one(StaffUser, staff.id)
        matches = staff_accounts.password_matches(user, password)
        if matches:
            staff_accounts.disable_totp(session, user, actor=staff.email)
    if not matches:
        return _page(request, staff, error="password", status_code=422)
    return RedirectResponse(f"{PAGE}?done=disabled", status_code=303)
