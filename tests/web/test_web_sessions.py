"""Browser sessions as the pages see them (``treu.web.signed``): a page view reads the
session and its account in one statement and writes nothing, unless the session is due
its ``last_seen_at`` touch or its account can no longer sign in; a session read is then
trusted for ``web_session_cache_seconds``, except after a change this process made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests import factories as f
from tests.support.admin import signed_in
from tests.support.portal import csrf_of, session_token
from tests.support.queries import statements
from treu.api.app import create_app
from treu.auth.models import WebSession
from treu.auth.sessions import POLICIES, TOUCH_EVERY
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.staff.service import staff
from treu.web import signed
from treu.web.portal.context import COOKIE


def _session_row(db: Database, token_owner: str) -> WebSession:
    with db.unit_of_work(write=False) as session:
        rows = session.query(WebSession).filter(WebSession.subject_id == token_owner).all()
    assert len(rows) == 1
    return rows[0]


def _portal(
    db: Database, member: Member, *, token: str | None = None, **settings: Any
) -> TestClient:
    """A portal client with ``member``'s session cookie (``token``, or a new session)."""
    web = TestClient(create_app(Settings(database_url=db.url, **settings), database=db))
    web.cookies.set(COOKIE, token or session_token(db, member), path="/portal")
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


def _session_reads(seen: list[str]) -> int:
    return len([s for s in seen if "FROM web_sessions" in s])


def _revoke_elsewhere(db: Database, member: Member) -> None:
    """What another process signing the member out leaves in the database (this
    process is not told)."""
    with db.unit_of_work() as session:
        session.execute(
            update(WebSession)
            .where(WebSession.subject_id == member.id)
            .values(revoked_at=utc_now())
        )


def test_a_read_session_is_trusted_for_a_few_seconds_then_read_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(signed.time, "monotonic", lambda: clock[0])
    prog = f.programme(db)
    member = f.member(db, prog)
    web = _portal(db, member)
    with statements(db) as seen:
        assert web.get("/portal").status_code == 200
    assert _session_reads(seen) == 1
    clock[0] += Settings().web_session_cache_seconds - 0.5
    with statements(db) as seen:
        assert web.get("/portal").status_code == 200
    assert _session_reads(seen) == 0
    # another process signs the member out: seen once the trust has run out
    _revoke_elsewhere(db, member)
    assert web.get("/portal", follow_redirects=False).status_code == 200
    clock[0] += 1.0
    refused = web.get("/portal", follow_redirects=False)
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/portal/sign-in")


def test_without_trust_every_page_view_reads_the_session(db: Database) -> None:
    prog = f.programme(db)
    member = f.member(db, prog)
    web = _portal(db, member, web_session_cache_seconds=0)
    assert web.get("/portal").status_code == 200
    _revoke_elsewhere(db, member)
    refused = web.get("/portal", follow_redirects=False)
    assert refused.status_code == 303


def test_this_process_changing_an_account_ends_the_trust_at_once(db: Database) -> None:
    web, email = signed_in(db, "marketing")
    assert web.get("/admin/api-keys").status_code == 403
    with db.unit_of_work() as session:
        user = staff.by_email(session, email)
        staff.set_role(session, user, role="admin", actor="test")
    assert web.get("/admin/api-keys").status_code == 200  # the new role, at once
    with db.unit_of_work() as session:
        staff.disable(session, staff.by_email(session, email), actor="test")
    gone = web.get("/admin", follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"].startswith("/admin/sign-in")


def test_signing_out_ends_the_trust_at_once(db: Database) -> None:
    prog = f.programme(db)
    member = f.member(db, prog)
    token = session_token(db, member)
    web = _portal(db, member, token=token)
    page = web.get("/portal")
    assert page.status_code == 200
    out = web.post("/portal/sign-out", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    web.cookies.set(COOKIE, token, path="/portal")  # the old cookie, sent again
    refused = web.get("/portal", follow_redirects=False)
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/portal/sign-in")
