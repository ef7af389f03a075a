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

from treu.auth.sessions import Current
from treu.members.models import Member, MemberStatus
from treu.web.security import SignInRequired
from treu.web.signed import database as database  # the pages' one way to the database
from treu.web.signed import resolve

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


ACCOUNT = (Member.id, Member.programme_id, Member.first_name, Member.language, Member.status)


def current_member(request: Request) -> Signed | None:
    found = resolve(
        request,
        cookie=COOKIE,
        kind="member",
        subject=ACCOUNT,
        usable=lambda member: member.status == MemberStatus.active.value,
    )
    if found is None:
        return None
    current, member = found
    return Signed(member.id, member.programme_id, member.first_name, member.language, current)


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
