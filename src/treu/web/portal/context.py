"""Who is signed in to the portal.

``need_member`` is a page's dependency: it finds the member's session from the cookie
(else sends the browser to sign in) and loads the member; a member who is no longer
active (closed, erased) is signed out at once. The portal's language is the member's own
(``members.language``) unless the browser chose another with the language switch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import Request

from treu.auth.sessions import Current, web_sessions
from treu.members.models import Member, MemberStatus
from treu.web.admin.context import database as database  # the pages' one way to the database
from treu.web.security import SignInRequired

COOKIE = "treu_portal"
SIGN_IN = "/portal/sign-in"
HOME = "/portal"


@dataclass(frozen=True, slots=True)
class Signed:
    """The signed-in member, as pages and templates need them."""

    id: uuid.UUID
    programme_id: uuid.UUID
    first_name: str | None
    language: str | None
    session: Current

    @property
    def csrf(self) -> str:
        return self.session.csrf


def current_member(request: Request) -> Signed | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    with database(request).unit_of_work() as session:
        found = web_sessions.resolve(session, token, kind="member")
        if found is None:
            return None
        member = session.get(Member, found.subject_id)
        if member is None or member.status != MemberStatus.active.value:
            web_sessions.end(session, found.id)
            return None
        return Signed(member.id, member.programme_id, member.first_name, member.language, found)


def need_member(request: Request) -> Signed:
    signed = current_member(request)
    if signed is None:
        raise SignInRequired("sign in first", sign_in=SIGN_IN)
    return signed


def next_path(value: str | None) -> str:
    """Only a path of the portal: never an address elsewhere (an open redirect)."""
    if value and value.startswith("/portal") and not value.startswith("//"):
        return value
    return HOME
