"""The portal's inbox over HTTP: newest first, unread marked in words, one message on
its own page, mark read (one, all) with the CSRF token only, another member's message
not found, and "older" pages."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient

from tests import factories as f
from tests.support.admin import client
from tests.support.portal import csrf_of, signed_in
from treu.db.session import Database
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.messaging.errors import InboxMessageNotFound
from treu.messaging.inbox import inbox
from treu.messaging.models import InboxMessage


def _messages(db: Database, who: Member, *titles: str) -> list[uuid.UUID]:
    ids = []
    with db.unit_of_work() as session:
        for title in titles:
            message_id = new_id()
            session.add(
                InboxMessage(
                    id=message_id,
                    programme_id=who.programme_id,
                    member_id=who.id,
                    event_type="member.enrolled",
                    title=title,
                    body_text=f"Text of {title}\nsecond line",
                    body_html=f"<p>Text of {title}</p>",
                    created_at=utc_now(),
                    read_at=None,
                )
            )
            ids.append(message_id)
    return ids


def _states(html: str) -> list[tuple[str, str]]:
    return re.findall(r'data-read="(yes|no)">.*?<a href="[^"]+">([^<]+)</a>', html, re.S)


def _member(db: Database) -> tuple[TestClient, Member]:
    prog = f.programme(db)
    who = f.member(db, prog)
    return signed_in(client(db), db, who), who


def test_read_one_and_all(db: Database) -> None:
    web, who = _member(db)
    _, second, _ = _messages(db, who, "Welcome", "Points", "Coupon")
    page = web.get("/portal/inbox")
    assert page.status_code == 200
    assert _states(page.text) == [("no", "Coupon"), ("no", "Points"), ("no", "Welcome")]
    assert "3 ungelesen" in page.text
    assert page.text.count(">Neu<") == 3

    opened = web.get(f"/portal/inbox/{second}")
    assert opened.status_code == 200
    assert "Text of Points" in opened.text
    assert 'data-testid="read-state">ungelesen<' in opened.text  # opening changes nothing
    token = csrf_of(opened.text)
    refused = web.post(f"/portal/inbox/{second}/read", data={"csrf": "forged"})
    assert refused.status_code == 403
    marked = web.post(f"/portal/inbox/{second}/read", data={"csrf": token}, follow_redirects=False)
    assert marked.status_code == 303
    assert _states(web.get("/portal/inbox").text) == [
        ("no", "Coupon"),
        ("yes", "Points"),
        ("no", "Welcome"),
    ]
    assert 'data-testid="read-state">gelesen<' in web.get(f"/portal/inbox/{second}").text

    assert web.post("/portal/inbox/read-all", data={"csrf": "forged"}).status_code == 403
    done = web.post("/portal/inbox/read-all", data={"csrf": token})
    assert done.status_code == 200
    assert all(state == "yes" for state, _ in _states(done.text))
    assert "Keine ungelesenen Nachrichten." in done.text
    with db.unit_of_work(write=False) as session:
        assert inbox.unread(session, who.id) == 0


def test_another_members_message_is_not_found(db: Database) -> None:
    web, _ = _member(db)
    _, other = _member(db)
    (theirs,) = _messages(db, other, "Private")
    page = web.get("/portal/inbox")
    assert "Private" not in page.text
    assert web.get(f"/portal/inbox/{theirs}").status_code == 404
    token = csrf_of(page.text)
    assert web.post(f"/portal/inbox/{theirs}/read", data={"csrf": token}).status_code == 404
    with db.unit_of_work(write=False) as session:
        assert session.get_one(InboxMessage, theirs).read_at is None
        with pytest.raises(InboxMessageNotFound):
            inbox.get(session, member_id=web_member_id(web, db), message_id=theirs)


def web_member_id(web: TestClient, db: Database) -> uuid.UUID:
    from treu.auth.sessions import web_sessions
    from treu.web.portal.context import COOKIE

    with db.unit_of_work(write=False) as session:
        found = web_sessions.resolve(session, str(web.cookies.get(COOKIE)), kind="member")
        assert found is not None
        return found.subject_id


def test_older_pages(db: Database) -> None:
    web, who = _member(db)
    _messages(db, who, *(f"Message {i:02d}" for i in range(25)))
    first = web.get("/portal/inbox").text
    assert len(_states(first)) == 20
    older = re.search(r'href="([^"]+)" rel="next" data-testid="older"', first)
    assert older is not None
    second = web.get(older.group(1).replace("&amp;", "&")).text
    titles = [t for _, t in _states(first) + _states(second)]
    assert titles == [f"Message {i:02d}" for i in reversed(range(25))]
    assert 'data-testid="older"' not in second
