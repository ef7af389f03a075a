"""The member portal under test: a member signed in without the e-mailed code (the
sign-in itself has its own tests)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from treu.auth.sessions import web_sessions
from treu.db.session import Database
from treu.members.models import Member
from treu.web.portal.context import COOKIE

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def session_token(db: Database, member: Member) -> str:
    """A new portal session of ``member``: the cookie's value."""
    with db.unit_of_work() as session:
        token, _ = web_sessions.start(session, kind="member", subject_id=member.id)
    return token


def signed_in(web: TestClient, db: Database, member: Member) -> TestClient:
    """``web`` with ``member``'s portal session cookie."""
    web.cookies.set(COOKIE, session_token(db, member), path="/portal")
    return web


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)
