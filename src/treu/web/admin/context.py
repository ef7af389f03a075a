"""Who is signed in to the console, and the permission checks every page makes.

``need(permission)`` is a page's dependency: it finds the session from the cookie (else
sends the browser to sign in), loads the staff account (a disabled account's sessions
end at once), sends a user who still has a one-time password to choose their own, and
refuses (403) a role without ``permission`` — on the server, for GET and POST alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from treu.auth.sessions import Current
from treu.staff.models import StaffUser
from treu.staff.roles import allows, require
from treu.web.security import SignInRequired
from treu.web.signed import database as database  # the pages' one way to the database
from treu.web.signed import resolve

COOKIE = "treu_admin"
SIGN_IN = "/admin/sign-in"
PASSWORD = "/admin/password"


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in staff member, as pages and templates need them."""

    id: uuid.UUID
    email: str
    role: str
    must_change_password: bool
    session: Current

    @property
    def csrf(self) -> str:
        return self.session.csrf

    def may(self, permission: str) -> bool:
        return allows(self.role, permission)


ACCOUNT = (
    StaffUser.id,
    StaffUser.email,
    StaffUser.role,
    StaffUser.must_change_password,
    StaffUser.disabled_at,
)


def current_staff(request: Request) -> Staff | None:
    found = resolve(
        request,
        cookie=COOKIE,
        kind="staff",
        subject=ACCOUNT,
        usable=lambda user: user.disabled_at is None,
    )
    if found is None:
        return None
    current, user = found
    return Staff(user.id, user.email, user.role, user.must_change_password, current)


def signed_in(request: Request) -> Staff:
    staff = current_staff(request)
    if staff is None:
        raise SignInRequired("sign in first", sign_in=SIGN_IN)
    return staff


def need_no_permission(request: Request) -> Staff:
    """Signed in, with a password of their own: pages about one's own account."""
    staff = signed_in(request)
    if staff.must_change_password:
        raise SignInRequired("choose your own password first", sign_in=PASSWORD)
    return staff


def need(permission: str) -> Callable[[Request], Staff]:
    """The dependency of a page that needs ``permission``."""

    def check(request: Request) -> Staff:
        staff = signed_in(request)
        if staff.must_change_password:
            raise SignInRequired("choose your own password first", sign_in=PASSWORD)
        require(staff.role, permission)
        return staff

    return check
