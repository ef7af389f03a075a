"""The portal's challenges and badges over HTTP: progress from the challenges service
(as a <progress> with its text), completed challenges, and badges earned."""

from __future__ import annotations

import re
from datetime import timedelta

from tests import factories as f
from tests.support.admin import client
from tests.support.portal import signed_in
from treu.db.session import Database
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.rules.badges import badges_of
from treu.rules.models import MemberBadge


def _window() -> dict[str, object]:
    now = utc_now()
    return {
        "type": "fixed",
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=10)).isoformat(),
    }


def test_progress_completed_and_badges(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    started = utc_now() - timedelta(days=2)
    f.challenge(
        db,
        prog,
        now=started,
        window=_window(),
        name={"en": "Three visits", "de": "Drei Besuche"},
    )
    f.challenge(
        db,
        prog,
        now=started,
        window=_window(),
        goal={"type": "count", "target": 1},
        reward={"points": 50},
        name={"en": "First purchase", "de": "Erster Einkauf"},
    )
    f.ingest_one(db, f.purchase_payload(prog, who))
    with db.unit_of_work() as session:
        session.add(
            MemberBadge(
                id=new_id(),
                member_id=who.id,
                programme_id=prog.id,
                code="early",
                badge={"name": {"en": "Early bird", "de": "Frühaufsteher"}, "icon": "🐦"},
                awarded_at=utc_now(),
            )
        )
    web = signed_in(client(db), db, who)
    page = web.get("/portal/challenges")
    assert page.status_code == 200
    assert page.text.count('data-testid="challenge"') == 2
    three = page.text.split("Drei Besuche")[1]
    assert re.search(r'<progress max="3" value="1"', three)
    assert "1 von 3" in three
    assert "Erster Einkauf" in page.text.split('id="done-h"')[1]  # completed
    assert re.findall(r'data-testid="badge">.*?<strong>([^<]+)<', page.text) == ["Frühaufsteher"]
    web.cookies.set("treu_lang", "en")
    english = web.get("/portal/challenges").text
    assert "1 of 3" in english
    assert "Early bird" in english


def test_nothing_yet(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    page = signed_in(client(db), db, who).get("/portal/challenges")
    assert page.status_code == 200
    assert 'data-testid="challenge"' not in page.text
    assert "Zurzeit laufen keine Challenges." in page.text
    assert "Noch keine Abzeichen." in page.text


def test_badges_of_names_them_in_the_language_oldest_first(db: Database) -> None:
    prog = f.programme(db)
    who, other = f.member(db, prog), f.member(db, prog)
    now = utc_now()
    with db.unit_of_work() as session:
        for member_id, code, at in (
            (who.id, "second", now),
            (who.id, "first", now - timedelta(days=1)),
            (other.id, "theirs", now),
        ):
            session.add(
                MemberBadge(
                    id=new_id(),
                    member_id=member_id,
                    programme_id=prog.id,
                    code=code,
                    badge={"name": {"en": code.title(), "de": f"DE {code}"}, "icon": "*"},
                    awarded_at=at,
                )
            )
    with db.unit_of_work(write=False) as session:
        german = badges_of(session, member_id=who.id, lang="de")
        english = badges_of(session, member_id=who.id, lang="en")
    assert [b.name for b in german] == ["DE first", "DE second"]
    assert [b.name for b in english] == ["First", "Second"]
