"""Browser sessions as the pages see them (``treu.web.signed``): a page view reads the
session and its account in one statement and writes nothing, unless the session is due
its ``last_seen_at`` touch or its account can no longer sign in."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from fastapi.testclient import TestClient

from tests import factories as f
from tests.support.admin import signed_in
from tests.support.portal import session_token
from tests.support.queries import statements
from treu.api.app import create_app
from treu.auth.models import WebSession
from treu.auth.sessions import POLICIES, TOUCH_EVERY
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.web.portal.context import COOKIE


def _session_row(db: Database, token_owner: str) -> WebSession:
    with db.unit_of_work(write=False) as session:
        rows = session.query(WebSession).filter(WebSession.subject_id == token_owner).all()
    assert len(rows) == 1
    return rows[0]


def _portal(db: Database, member: Member) -> TestClient:
    web = TestClient(create_app(Settings(database_url=db.url), database=db))
    web.cookies.set(COOKIE, session_token(db, member), path="/portal")
    return web


def _writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]


def test_a_page_view_writes_nothing_until_the_session_is_due_a_touch(db: Database) -> None:
    prog = f.programme(db)
    member = f.member(db, prog)
    web = _portal(db, member)
    first = _session_row(db, member.id).last_seen_at
    with statements(db) as seen:
        assert web.get("/portal").status_code == 200
    assert _writes(seen) == []
    assert _session_row(db, member.id).last_seen_at == first
    with time_machine.travel(utc_now() + TOUCH_EVERY + timedelta(minutes=1), tick=True):
        with statements(db) as seen:
            assert web.get("/portal").status_code == 200
        touched = _session_row(db, member.id).last_seen_at
    assert [s.split()[1] for s in _writes(seen)] == ["web_sessions"]
    assert touched > first + TOUCH_EVERY


def test_a_closed_member_is_signed_out_and_the_session_ended(db: Database) -> None:
    prog = f.programme(db)
    member = f.member(db, prog)
    web = _portal(db, member)
    assert web.get("/portal").status_code == 200
    with db.unit_of_work() as session:
        session.get_one(Member, member.id).status = "closed"
    refused = web.get("/portal", follow_redirects=False)
    assert refused.headers["location"].startswith("/portal/sign-in")
    assert _session_row(db, member.id).revoked_at is not None


def test_a_staff_session_ends_when_idle_and_each_touch_keeps_it(db: Database) -> None:
    web, _ = signed_in(db, "analyst")
    start = utc_now()
    idle = POLICIES["staff"].idle  # 2 hours, of a 12-hour lifetime
    for after in (idle - timedelta(minutes=10), idle * 2 - timedelta(minutes=20)):
        with time_machine.travel(start + after, tick=True):
            assert web.get("/admin", follow_redirects=False).status_code == 200
    with time_machine.travel(start + idle * 3, tick=True):
        gone = web.get("/admin", follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"].startswith("/admin/sign-in")
