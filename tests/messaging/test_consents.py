"""Consents over the API, the one-click unsubscribe link, and what they let the e-mail
channel plan: transactional mail unless withdrawn, marketing only when granted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import assert_problem
from tests.messaging.conftest import SECRET, AppFactory
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.channel import Planned
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.messaging.channel import CATALOGUE, EmailChannel, MessageSpec
from treu.messaging.consents import (
    ConsentState,
    consents,
    may_send,
    read_unsubscribe_token,
    unsubscribe_token,
)
from treu.messaging.errors import InvalidLink
from treu.messaging.models import Consent, ConsentChannel
from treu.messaging.schemas import CONSENTS_EXAMPLE, ConsentsOut, MessagingSettingsOut
from treu.outbox.service import outbox

SETTINGS = Settings(secret_key=SECRET, public_url="https://treu.example")

MARKETING = CATALOGUE | {
    # No marketing message exists yet (journeys come next): a stand-in, so the rule
    # can be seen at work.
    "points.earned": MessageSpec("welcome", CATALOGUE["member.enrolled"].variables, "marketing")
}


def plan(db: Database, who: Member, channel: EmailChannel, *types: str) -> list[Planned]:
    with db.unit_of_work(write=False) as session:
        found = outbox.messages(session, member_id=who.id, types=types or None)
        return channel.plan(session, found, now=utc_now())


def test_the_rules_in_one_table() -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    granted = ConsentState("email", True, "pos", "2026-11", at)
    withdrawn = ConsentState("email", False, "unsubscribe", None, at)
    assert may_send("transactional", None)
    assert may_send("transactional", granted)
    assert not may_send("transactional", withdrawn)
    assert not may_send("marketing", None)
    assert may_send("marketing", granted)
    assert not may_send("marketing", withdrawn)


def test_consents_are_put_and_read_with_their_history(db: Database, app_with: AppFactory) -> None:
    app = app_with()
    prog = f.programme(db)
    who = f.member(db, prog)
    url = f"/v1/members/{who.id}/consents"
    empty = app.client.get(url, headers=app.headers("members:read"))
    assert empty.status_code == 200, empty.text
    assert empty.json() == {
        "member_id": str(who.id),
        "email": None,
        "sms": None,
        "push": None,
        "inbox": None,
        "history": [],
    }
    body = {
        "email": {"granted": True, "source": "pos", "wording": "2026-11"},
        "sms": {"granted": False, "source": "pos"},
    }
    put = app.client.put(url, json=body, headers=app.headers("members:write"))
    assert put.status_code == 200, put.text
    assert put.json()["email"]["granted"] is True
    assert put.json()["email"]["wording"] == "2026-11"
    assert put.json()["sms"] == {
        "granted": False,
        "source": "pos",
        "wording": None,
        "at": put.json()["sms"]["at"],
    }
    assert put.json()["push"] is None
    again = app.client.put(
        url,
        json={"email": {"granted": False, "source": "portal"}},
        headers=app.headers("members:write"),
    )
    assert again.status_code == 200, again.text
    read = app.client.get(url, headers=app.headers("members:read")).json()
    assert read["email"]["granted"] is False
    assert read["email"]["source"] == "portal"
    newest = read["history"][0]
    assert (newest["channel"], newest["granted"], newest["source"]) == ("email", False, "portal")
    assert sorted((h["channel"], h["granted"]) for h in read["history"]) == [
        ("email", False),
        ("email", True),
        ("sms", False),
    ]


def test_the_examples_are_what_the_api_answers(db: Database, app_with: AppFactory) -> None:
    for model, example in (
        (ConsentsOut, CONSENTS_EXAMPLE),
        (MessagingSettingsOut, {"programme": "demo", "transactional_email": True}),
    ):
        assert model.model_validate(example).model_dump(mode="json") == example
    app = app_with()
    who = f.member(db, f.programme(db))
    url = f"/v1/members/{who.id}/consents"
    app.client.put(
        url,
        json={"email": {"granted": True, "source": "pos", "wording": "2026-11"}},
        headers=app.headers("members:write"),
    )
    app.client.post(f"/u/{unsubscribe_token(SECRET.encode(), who.id, ConsentChannel.email)}")
    real = app.client.get(url, headers=app.headers("members:read")).json()
    assert set(real) == set(CONSENTS_EXAMPLE)
    assert [set(h) for h in real["history"]] == [set(h) for h in CONSENTS_EXAMPLE["history"]]
    assert [(h["granted"], h["source"]) for h in real["history"]] == [
        (False, "unsubscribe"),
        (True, "pos"),
    ]


def test_consents_need_their_scopes_and_a_member(db: Database, app_with: AppFactory) -> None:
    app = app_with()
    who = f.member(db, f.programme(db))
    url = f"/v1/members/{who.id}/consents"
    body = {"email": {"granted": True}}
    assert_problem(app.client.get(url), 401, "invalid_api_key")
    assert_problem(
        app.client.put(url, json=body, headers=app.headers("members:read")), 403, "missing_scope"
    )
    missing = f"/v1/members/{uuid.uuid4()}/consents"
    assert_problem(
        app.client.get(missing, headers=app.headers("members:read")), 404, "member_not_found"
    )
    nothing = app.client.put(url, json={}, headers=app.headers("members:write"))
    assert_problem(nothing, 422, "validation_error")
    unknown = app.client.put(
        url, json={"fax": {"granted": True}}, headers=app.headers("members:write")
    )
    assert_problem(unknown, 422, "validation_error")


def test_a_token_names_member_and_channel_and_is_refused_when_altered() -> None:
    key = b"k" * 32
    member_id = uuid.uuid4()
    token = unsubscribe_token(key, member_id, ConsentChannel.sms)
    named = read_unsubscribe_token(key, token)
    assert (named.member_id, named.channel) == (member_id, ConsentChannel.sms)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token[:-1], "nonsense", "", "ä" * 46):
        with pytest.raises(InvalidLink):
            read_unsubscribe_token(key, bad)
    with pytest.raises(InvalidLink):
        read_unsubscribe_token(b"another key, another server!!", token)
    with pytest.raises(InvalidLink):
        read_unsubscribe_token(None, token)


def test_one_click_unsubscribe_withdraws_email_consent_and_stops_marketing(
    db: Database, app_with: AppFactory
) -> None:
    app = app_with(Settings(database_url=db.url, secret_key=SECRET))
    prog = f.programme(db)
    who = f.member(db, prog, language="de")
    channel = EmailChannel(SETTINGS, catalogue=MARKETING)
    with db.unit_of_work() as session:
        member = session.get(Member, who.id)
        assert member is not None
        consents.record(session, member=member, channel="email", granted=True, source="pos")
    f.earn(db, prog, who, 100, at=utc_now())
    assert [p.event_type for p in plan(db, who, channel, "points.earned")] == ["points.earned"]

    [welcome] = plan(db, who, channel, "member.enrolled")
    link = welcome.payload["headers"]["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://treu.example/u/")
    path = link.removeprefix("https://treu.example")

    page = app.client.get(path)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-testid="unsubscribe"' in page.text
    assert "Ja, abmelden" in page.text
    with db.unit_of_work(write=False) as session:
        assert consents.current(session, who.id)["email"].granted  # type: ignore[union-attr]

    # RFC 8058: the mail client POSTs this body, without cookies or a key
    done = app.client.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200, done.text
    assert 'data-testid="unsubscribed"' in done.text
    assert app.client.post(path).status_code == 200  # again: no second record
    with db.unit_of_work(write=False) as session:
        state = consents.current(session, who.id)["email"]
        assert state is not None
        assert (state.granted, state.source) == (False, "unsubscribe")
        rows = session.scalars(select(Consent).where(Consent.member_id == who.id)).all()
        assert [r.granted for r in sorted(rows, key=lambda r: r.at)] == [True, False]

    f.earn(db, prog, who, 50, at=utc_now() + timedelta(seconds=1))
    assert plan(db, who, channel, "points.earned") == []


def test_a_bad_unsubscribe_link_is_a_400_problem(db: Database, app_with: AppFactory) -> None:
    app = app_with(Settings(database_url=db.url, secret_key=SECRET))
    wrong_key = unsubscribe_token(b"not this server's key", uuid.uuid4(), ConsentChannel.email)
    for path in (f"/u/{wrong_key}", "/u/garbage"):
        assert_problem(app.client.post(path), 400, "invalid_link")
        assert_problem(app.client.get(path), 400, "invalid_link")


def test_a_withdrawn_email_consent_suppresses_transactional_mail(db: Database) -> None:
    prog = f.programme(db)
    keeps = f.member(db, prog)
    withdrew = f.member(db, prog)
    no_address = f.member(db, prog, email=None, phone="+4915112345678")
    with db.unit_of_work() as session:
        member = session.get(Member, withdrew.id)
        assert member is not None
        consents.record(session, member=member, channel="email", granted=False, source="api")
        # consent to another channel changes nothing for e-mail
        other = session.get(Member, keeps.id)
        assert other is not None
        consents.record(session, member=other, channel="sms", granted=False, source="api")
    channel = EmailChannel(SETTINGS)
    assert [p.target for p in plan(db, keeps, channel)] == [keeps.email]
    assert plan(db, withdrew, channel) == []
    assert plan(db, no_address, channel) == []
    # granted again: mail goes again
    with db.unit_of_work() as session:
        member = session.get(Member, withdrew.id)
        assert member is not None
        consents.record(
            session,
            member=member,
            channel="email",
            granted=True,
            source="portal",
            now=utc_now() + timedelta(seconds=1),
        )
    assert [p.target for p in plan(db, withdrew, channel)] == [withdrew.email]


def test_the_programme_can_switch_transactional_email_off(
    db: Database, app_with: AppFactory
) -> None:
    app = app_with()
    prog = f.programme(db)
    who = f.member(db, prog)
    channel = EmailChannel(SETTINGS)
    url = f"/v1/programmes/{prog.slug}/messaging"
    shown = app.client.get(url, headers=app.headers("members:read"))
    assert shown.json() == {"programme": prog.slug, "transactional_email": True}
    assert len(plan(db, who, channel)) == 1
    refused = app.client.put(
        url, json={"transactional_email": False}, headers=app.headers("members:write")
    )
    assert_problem(refused, 403, "missing_scope")
    off = app.client.put(url, json={"transactional_email": False}, headers=app.headers("admin"))
    assert off.status_code == 200, off.text
    assert off.json() == {"programme": prog.slug, "transactional_email": False}
    assert plan(db, who, channel) == []
    app.client.put(url, json={"transactional_email": True}, headers=app.headers("admin"))
    assert len(plan(db, who, channel)) == 1
