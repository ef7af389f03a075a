"""The portal's points history over HTTP: newest first, explained in the page's
language, pending and available, "older" pages, and one statement per page whatever the
history's length."""

from __future__ import annotations

import re
from datetime import timedelta

from tests import factories as f
from tests.support.admin import client
from tests.support.portal import signed_in
from tests.support.queries import statements
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme


def _shopper(db: Database, purchases: int, **programme: object) -> tuple[Programme, Member]:
    prog = f.programme(db, **programme)
    who = f.member(db, prog)
    f.ingest(
        db,
        *(f.purchase_payload(prog, who, amount_minor=100 * (i + 1)) for i in range(purchases)),
    )
    return prog, who


def _points(html: str) -> list[str]:
    return re.findall(r'class="entry-points [a-z]+">([^<]+)<', html)


def test_newest_first_explained_and_pending_until_released(db: Database) -> None:
    _, who = _shopper(db, 2, pending_days=14)
    f.adjust(db, who, 25, at=utc_now(), reason="Entschuldigung")
    web = signed_in(client(db), db, who)
    page = web.get("/portal/history")
    assert page.status_code == 200
    assert _points(page.text) == ["+25 Punkte", "+2 Punkte", "+1 Punkt"]
    states = re.findall(r'data-testid="state">([^<]+)<', page.text)
    assert states[0] == "verfügbar"
    released = (utc_now() + timedelta(days=14)).date()
    assert all(s.startswith("ausstehend bis") for s in states[1:])
    assert str(released.year) in states[1]
    assert re.search(r'data-testid="pending">3<', page.text)
    assert re.search(r'data-testid="balance">25<', page.text)
    assert "Entschuldigung" in page.text  # the adjustment's explanation names its reason
    web.cookies.set("treu_lang", "en")
    english = web.get("/portal/history")
    assert "available" in english.text
    assert "pending until" in english.text


def test_older_pages_and_a_fixed_number_of_queries(db: Database) -> None:
    _, few = _shopper(db, 3)
    _, many = _shopper(db, 45)
    counts = []
    for who in (few, many):
        web = signed_in(client(db), db, who)
        web.get("/portal/history")  # warm caches
        with statements(db) as seen:
            assert web.get("/portal/history").status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1]

    seen_points: list[str] = []
    path: str | None = "/portal/history"
    pages = 0
    while path:
        page = web.get(path)
        assert page.status_code == 200
        seen_points += _points(page.text)
        older = re.search(r'href="([^"]+)" rel="next" data-testid="older"', page.text)
        path = older.group(1).replace("&amp;", "&") if older else None
        pages += 1
    assert pages == 3
    assert len(seen_points) == 45
    # newest first: the 45th purchase (45 points) leads, the first (1 point) closes
    assert seen_points[0].startswith("+45")
    assert seen_points[-1].startswith("+1")


def test_a_bad_page_address_is_refused(db: Database) -> None:
    _, who = _shopper(db, 1)
    web = signed_in(client(db), db, who)
    assert web.get("/portal/history?before=nonsense").status_code in (400, 422)
