"""The portal's profile page over HTTP on both databases: the member's data, the
progressive-profiling card (one missing field at a time, with the points the published
``profile_completed`` rules give, earned once), editing through the member update
service with errors in place, consents per channel, the language, CSRF."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import make_api
from tests.support.portal import csrf_of, signed_in
from treu.db.session import Database
from treu.events.models import Event
from treu.members.models import Member
from treu.messaging.models import Consent
from treu.programmes.models import Programme
from treu.web.render import LANG_COOKIE

PROFILE = "/portal/profile"


def _programme(db: Database) -> Programme:
    """A programme with the demo's rule: 200 points for completing the profile, once."""
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Profil vollständig",
        trigger="profile_completed",
        effect={"type": "fixed", "points": 200},
        limits=[{"per": "lifetime", "max_count": 1}],
    )
    return prog


def _portal(db: Database, who: Member) -> TestClient:
    web = signed_in(make_api(db).client, db, who)
    web.follow_redirects = False
    return web


def _asked(html: str) -> str | None:
    found = re.search(r'data-testid="ask" data-field="([a-z]+)"', html)
    return found.group(1) if found else None


def _ask_points(html: str) -> int | None:
    found = re.search(r'data-testid="ask-points">[^<0-9]*([0-9.,]+)', html)
    return int(found.group(1).replace(".", "").replace(",", "")) if found else None


def _member(db: Database, who: Member) -> Member:
    with db.unit_of_work(write=False) as session:
        found = session.get_one(Member, who.id)
        session.expunge(found)
        return found


def _form(page: Any, **values: Any) -> dict[str, Any]:
    return {"csrf": csrf_of(page.text), **values}


def test_the_card_asks_one_field_at_a_time_and_giving_it_earns_once(db: Database) -> None:
    prog = _programme(db)
    who = f.member(db, prog, first_name="Mia")
    web = _portal(db, who)

    page = web.get(PROFILE)
    assert page.status_code == 200
    assert "Mia" in page.text
    assert who.email is not None
    assert who.email in page.text
    assert _asked(page.text) == "birthday"
    assert _ask_points(page.text) == 200

    given = web.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday="1990-05-17"))
    assert given.status_code == 303
    assert given.headers["location"].startswith(f"{PROFILE}?done=given&earned=200&mark=")
    assert f.balance(db, who).available == 200
    assert str(_member(db, who).birthday) == "1990-05-17"

    after = web.get(given.headers["location"])
    assert "200 Punkte wurden gutgeschrieben" in after.text
    # the next field, in the surveys' order; the rule paid out once in a lifetime
    assert _asked(after.text) == "phone"
    assert _ask_points(after.text) is None

    # the same card sent again (a stale tab) changes nothing and earns nothing
    web.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday="1990-05-17"))
    assert f.balance(db, who).available == 200
    with db.unit_of_work(write=False) as session:
        stored = session.scalars(
            select(Event).where(Event.member_id == who.id, Event.type == "profile_completed")
        ).all()
    assert [e.key for e in stored] == [f"profile:{who.id}:birthday"]
    assert stored[0].data["attributes"] == {"field": "birthday"}


def test_the_fields_come_in_order_and_end_when_the_profile_is_complete(db: Database) -> None:
    prog = f.programme(db)
    f.rule(  # 30 points per field, no limit: each field earns
        db, prog, name="Feld", trigger="profile_completed", effect={"type": "fixed", "points": 30}
    )
    who = f.member(db, prog)
    web = _portal(db, who)
    page = web.get(PROFILE)
    for field, value in [
        ("birthday", {"birthday": "1985-02-01"}),
        ("phone", {"phone": "+49 151 23456789"}),
        ("size", {"size": "M"}),
        ("preferences", {"preferences": ["coffee", "organic"]}),
    ]:
        assert _asked(page.text) == field
        assert _ask_points(page.text) == 30
        answer = web.post(f"{PROFILE}/ask", data=_form(page, field=field, **value))
        assert answer.status_code == 303, answer.text
        page = web.get(PROFILE)
    assert _asked(page.text) is None
    assert f.balance(db, who).available == 120
    stored = _member(db, who)
    assert stored.phone == "+4915123456789"
    assert stored.attributes == {"size": "M", "preferences": ["coffee", "organic"]}
    # the API shows what the portal saved, where the API keeps it
    api = make_api(db)
    seen = api.client.get(f"/v1/members/{who.id}", headers=api.headers("members:read")).json()
    assert seen["attributes"] == {"size": "M", "preferences": ["coffee", "organic"]}
    assert seen["birthday"] == "1985-02-01"


def test_removing_and_giving_a_field_again_earns_nothing_more(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db, prog, name="Feld", trigger="profile_completed", effect={"type": "fixed", "points": 30}
    )
    who = f.member(db, prog)
    web = _portal(db, who)
    page = web.get(PROFILE)
    web.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday="1985-02-01"))
    assert f.balance(db, who).available == 30
    cleared = web.post(PROFILE, data=_form(page, birthday=""))
    assert cleared.status_code == 303
    page = web.get(PROFILE)
    assert _asked(page.text) == "birthday"
    assert _ask_points(page.text) is None  # it was rewarded before
    again = web.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday="1985-02-02"))
    assert again.status_code == 303
    assert "earned=0&" in again.headers["location"]
    assert f.balance(db, who).available == 30


def test_the_form_edits_through_the_member_update_and_earns_for_new_fields(db: Database) -> None:
    prog = _programme(db)
    who = f.member(db, prog)
    web = _portal(db, who)
    page = web.get(PROFILE)
    saved = web.post(
        PROFILE,
        data=_form(
            page,
            first_name="Lena",
            last_name="Schulz",
            phone="",
            birthday="",
            size="L",
            preferences=["bakery", "nonsense"],
        ),
    )
    assert saved.status_code == 303
    assert saved.headers["location"].startswith(f"{PROFILE}?done=saved&earned=200&mark=")
    stored = _member(db, who)
    assert (stored.first_name, stored.last_name) == ("Lena", "Schulz")
    assert stored.attributes == {"size": "L", "preferences": ["bakery"]}
    assert f.balance(db, who).available == 200  # size and preferences: the rule's one award
    page = web.get(PROFILE)
    assert 'value="Lena"' in page.text
    assert _asked(page.text) == "birthday"


def test_validation_errors_are_shown_in_place(db: Database) -> None:
    prog = _programme(db)
    other = f.member(db, prog, phone="+4915111111111")
    who = f.member(db, prog, first_name="Mia")
    web = _portal(db, who)
    page = web.get(PROFILE)

    bad = web.post(
        PROFILE, data=_form(page, first_name="Mia", phone="12345", birthday="2999-01-01")
    )
    assert bad.status_code == 422
    assert 'id="p-phone-error"' in bad.text
    assert "mit Ländervorwahl" in bad.text
    assert 'id="p-birthday-error"' in bad.text
    assert 'value="12345"' in bad.text  # what the member typed stays
    assert _member(db, who).phone is None

    taken = web.post(PROFILE, data=_form(page, first_name="Mia", phone=other.phone))
    assert taken.status_code == 422
    assert "gehört einem anderen Mitglied" in taken.text

    empty = web.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday=""))
    assert empty.status_code == 422
    assert 'id="ask-error"' in empty.text
    future = web.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday="2999-01-01"))
    assert future.status_code == 422
    assert "Datum in der Vergangenheit" in future.text
    unknown = web.post(f"{PROFILE}/ask", data=_form(page, field="shoe_size", birthday="x"))
    assert unknown.status_code == 422
    assert f.balance(db, who).available == 0
    assert _member(db, who).birthday is None


def test_over_long_input_is_refused_at_its_field_with_what_was_typed(db: Database) -> None:
    prog = _programme(db)
    who = f.member(db, prog, first_name="Mia")
    web = _portal(db, who)
    page = web.get(PROFILE)
    for field, message in (
        ("first_name", "Höchstens 100 Zeichen"),
        ("last_name", "Höchstens 100 Zeichen"),
        ("phone", "mit Ländervorwahl"),
        ("birthday", "Datum in der Vergangenheit"),
    ):
        typed = "x" * 300
        answer = web.post(PROFILE, data=_form(page, **{"first_name": "Mia", field: typed}))
        assert answer.status_code == 422, field
        assert f'id="p-{field}-error"' in answer.text, field
        assert message in answer.text, field
        if field != "birthday":  # a date field shows what the browser can read
            assert f'value="{typed}"' in answer.text, field
    asked = web.post(f"{PROFILE}/ask", data=_form(page, field="phone", phone="9" * 300))
    assert asked.status_code == 422
    assert 'id="ask-error"' in asked.text
    assert _member(db, who).phone is None
    assert _member(db, who).first_name == "Mia"


def test_a_link_cannot_make_up_credited_points(db: Database) -> None:
    prog = _programme(db)
    who, other = f.member(db, prog), f.member(db, prog)
    web, theirs = _portal(db, who), _portal(db, other)
    made_up = web.get(f"{PROFILE}?done=saved&earned=5000")
    assert made_up.status_code == 200
    assert "Ihr Profil wurde gespeichert." in made_up.text
    assert "gutgeschrieben" not in made_up.text
    page = theirs.get(PROFILE)
    given = theirs.post(f"{PROFILE}/ask", data=_form(page, field="birthday", birthday="1990-05-17"))
    link = given.headers["location"]
    assert "200 Punkte wurden gutgeschrieben" in theirs.get(link).text
    assert "gutgeschrieben" not in web.get(link).text  # another session's link
    assert "gutgeschrieben" not in theirs.get(link.replace("earned=200", "earned=2000")).text


def test_consents_are_granted_and_withdrawn_per_channel(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = _portal(db, who)
    page = web.get(PROFILE)
    for channel in ("email", "sms", "push", "inbox"):
        assert f'data-testid="consent-{channel}"' in page.text
    assert "Noch nicht gefragt" in page.text

    granted = web.post(f"{PROFILE}/consents", data=_form(page, channel="email", granted="yes"))
    assert granted.status_code == 303
    withdrawn = web.post(f"{PROFILE}/consents", data=_form(page, channel="email", granted="no"))
    assert withdrawn.status_code == 303
    web.post(f"{PROFILE}/consents", data=_form(page, channel="sms", granted="yes"))

    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(Consent).where(Consent.member_id == who.id).order_by(Consent.at, Consent.id)
        ).all()
    assert [(r.channel, r.granted, r.source) for r in rows] == [
        ("email", True, "portal"),
        ("email", False, "portal"),
        ("sms", True, "portal"),
    ]
    # which wording the member read: the page's version of the texts, in German
    assert {r.wording for r in rows} == {"portal-consents-2026-12:de"}
    page = web.get(PROFILE)
    email_row = page.text.split('data-testid="consent-email"')[1].split("</tr>")[0]
    assert "Widerrufen am" in email_row
    assert 'value="yes"' in email_row  # offered again
    # the consents API sees what the portal recorded
    api = make_api(db)
    seen = api.client.get(f"/v1/members/{who.id}/consents", headers=api.headers("members:read"))
    assert seen.json()["email"]["granted"] is False

    bad = web.post(f"{PROFILE}/consents", data=_form(page, channel="pigeon", granted="yes"))
    assert bad.status_code == 422


def test_the_language_is_stored_on_the_member_and_set_for_the_portal(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, language="de")
    web = _portal(db, who)
    page = web.get(PROFILE)
    assert "Mein Profil" in page.text
    switched = web.post(f"{PROFILE}/language", data=_form(page, language="en"))
    assert switched.status_code == 303
    assert f"{LANG_COOKIE}=en" in switched.headers["set-cookie"]
    assert _member(db, who).language == "en"
    page = web.get(switched.headers["location"])
    assert "My profile" in page.text
    assert "Your language was saved." in page.text

    bad = web.post(f"{PROFILE}/language", data=_form(page, language="fr"))
    assert bad.status_code == 422
    assert _member(db, who).language == "en"


def test_forms_without_the_sessions_token_are_refused(db: Database) -> None:
    prog = _programme(db)
    who = f.member(db, prog)
    web = _portal(db, who)
    web.get(PROFILE)
    for path, data in [
        (f"{PROFILE}/ask", {"field": "birthday", "birthday": "1990-01-01"}),
        (PROFILE, {"first_name": "Eve"}),
        (f"{PROFILE}/consents", {"channel": "email", "granted": "yes"}),
        (f"{PROFILE}/language", {"language": "en"}),
    ]:
        refused = web.post(path, data={"csrf": "forged", **data})
        assert refused.status_code == 403, path
    stored = _member(db, who)
    assert (stored.birthday, stored.first_name, stored.language) == (None, None, None)
    assert f.balance(db, who).available == 0


def test_signed_out_visitors_are_sent_to_sign_in(db: Database) -> None:
    web = make_api(db).client
    web.follow_redirects = False
    page = web.get(PROFILE)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/portal/sign-in?next=/portal/profile")
    posted = web.post(f"{PROFILE}/ask", data={"csrf": "x", "field": "birthday"})
    assert posted.status_code == 303
