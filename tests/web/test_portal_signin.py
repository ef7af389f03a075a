"""Signing in to the portal with an e-mailed code, over HTTP on both databases: the same
answer for members and strangers, the session cookie, the language, CSRF, and the e-mail
itself (planned even for a member who withdrew e-mail consent; not in the inbox)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests import factories as f
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.codes import derive
from treu.members.models import Member
from treu.messaging.channel import EmailChannel
from treu.messaging.inbox import InboxChannel
from treu.outbox.models import OutboxMessage
from treu.web.render import LANG_COOKIE
from treu.web.security import PRE_CSRF_COOKIE

SECRET = "portal-test-secret-0123456789"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _settings(db: Database) -> Settings:
    return Settings(database_url=db.url, secret_key=SECRET)


def _client(db: Database) -> TestClient:
    return TestClient(create_app(_settings(db), database=db))


def _csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None
    return found.group(1)


def _code_rows(db: Database, who: Member) -> list[OutboxMessage]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.member_id == who.id,
                    OutboxMessage.type == "member.sign_in_code",
                )
                .order_by(OutboxMessage.id)
            )
        )


def _code_sent(db: Database, who: Member) -> str:
    row = _code_rows(db, who)[-1]
    return derive(SECRET.encode(), who.id, str(row.payload["nonce"]))


def _ask(web: TestClient, slug: str, email: str) -> tuple[str, str]:
    form = web.get(f"/portal/sign-in?programme={slug}")
    assert form.status_code == 200
    token = _csrf(form.text)
    sent = web.post(
        "/portal/sign-in",
        data={"csrf": token, "email": email, "programme": slug, "next": "/portal/card"},
    )
    assert sent.status_code == 200
    return token, sent.text


def test_a_member_signs_in_with_the_code_and_lands_where_they_wanted(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, language="en", first_name="Ida")
    web = _client(db)
    assert web.get("/portal", follow_redirects=False).headers["location"] == (
        "/portal/sign-in?next=/portal"
    )
    token, page = _ask(web, prog.slug, str(who.email))
    assert 'name="code"' in page
    code = _code_sent(db, who)

    wrong = web.post(
        "/portal/sign-in/code",
        data={
            "csrf": token,
            "email": who.email,
            "code": "000000" if code != "000000" else "1",
            "programme": prog.slug,
        },
    )
    assert wrong.status_code == 401
    assert 'data-testid="sign-in-error"' in wrong.text

    done = web.post(
        "/portal/sign-in/code",
        data={
            "csrf": token,
            "email": who.email,
            "code": code,
            "programme": prog.slug,
            "next": "/portal/card",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/portal/card"
    cookies = done.headers.get_list("set-cookie")
    portal = next(c for c in cookies if c.startswith("treu_portal="))
    assert "HttpOnly" in portal
    assert "SameSite=lax" in portal
    assert "Path=/portal" in portal
    assert any(c.startswith(f"{LANG_COOKIE}=en") for c in cookies)
    assert any(c.startswith(f"{PRE_CSRF_COOKIE}=") and "Max-Age=0" in c for c in cookies)
    home = web.get("/portal")
    assert home.status_code == 200
    assert "Hello Ida" in home.text
    # the code is used up (another browser tries it)
    other = _client(db)
    fresh = _csrf(other.get(f"/portal/sign-in?programme={prog.slug}").text)
    again = other.post(
        "/portal/sign-in/code",
        data={"csrf": fresh, "email": who.email, "code": code, "programme": prog.slug},
    )
    assert again.status_code == 401


def test_members_and_strangers_get_the_same_answer(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = _client(db)
    _, for_member = _ask(web, prog.slug, str(who.email))
    stranger = "nobody-" + str(who.email)
    _, for_stranger = _ask(_client(db), prog.slug, stranger)

    def same(html: str, email: str) -> str:
        return CSRF.sub("", html).replace(email, "EMAIL")

    assert same(for_member, str(who.email)) == same(for_stranger, stranger)
    # asking again at once sends nothing, and says the same
    _, again = _ask(web, prog.slug, str(who.email))
    assert same(again, str(who.email)) == same(for_member, str(who.email))
    assert len(_code_rows(db, who)) == 1
    wrong_stranger = web.post(
        "/portal/sign-in/code",
        data={"csrf": _csrf(again), "email": stranger, "code": "123456", "programme": prog.slug},
    )
    assert wrong_stranger.status_code == 401
    assert 'data-testid="sign-in-error"' in wrong_stranger.text


def test_forms_without_their_csrf_token_are_refused(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = _client(db)
    web.get(f"/portal/sign-in?programme={prog.slug}")
    refused = web.post(
        "/portal/sign-in", data={"csrf": "forged", "email": who.email, "programme": prog.slug}
    )
    assert refused.status_code == 403
    assert _code_rows(db, who) == []
    refused = web.post(
        "/portal/sign-in/code",
        data={"csrf": "forged", "email": who.email, "code": "123456", "programme": prog.slug},
    )
    assert refused.status_code == 403


def test_without_a_programme_the_portal_asks_for_the_retailers_link(db: Database) -> None:
    f.programme(db)
    f.programme(db)  # several programmes (the shared database has many)
    web = _client(db)
    page = web.get("/portal/sign-in")
    assert page.status_code == 404
    assert web.get("/portal/sign-in?programme=no-such").status_code == 404


def test_next_never_leaves_the_portal(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = _client(db)
    token, _ = _ask(web, prog.slug, str(who.email))
    done = web.post(
        "/portal/sign-in/code",
        data={
            "csrf": token,
            "email": who.email,
            "code": _code_sent(db, who),
            "programme": prog.slug,
            "next": "https://evil.example/portal",
        },
        follow_redirects=False,
    )
    assert done.headers["location"] == "/portal"


def test_the_code_mail_goes_despite_a_withdrawn_consent_and_not_to_the_inbox(
    db: Database,
) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, language="de", first_name="Jan")
    _withdraw_email(db, who)
    web = _client(db)
    _ask(web, prog.slug, str(who.email))
    code = _code_sent(db, who)
    [row] = _code_rows(db, who)
    settings = _settings(db)
    with db.unit_of_work(write=False) as session:
        [planned] = EmailChannel(settings).plan(session, [row], now=utc_now())
        assert InboxChannel(settings).plan(session, [row], now=utc_now()) == []
    assert planned.target == who.email
    assert code in str(planned.payload["subject"])
    assert code in str(planned.payload["text"])
    assert "Hallo Jan" in str(planned.payload["text"])
    assert planned.payload["kind"] == "requested"


def _withdraw_email(db: Database, who: Member) -> None:
    web = TestClient(create_app(_settings(db), database=db))
    _, key = f.api_key(db, scopes=["members:write"])
    answer = web.put(
        f"/v1/members/{who.id}/consents",
        json={"email": {"granted": False, "source": "api"}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200, answer.text


def test_the_programme_of_the_link_is_remembered_for_the_language_switch(db: Database) -> None:
    prog = f.programme(db)
    f.programme(db)  # several programmes
    web = _client(db)
    assert web.get(f"/portal/sign-in?programme={prog.slug}").status_code == 200
    switched = web.get("/portal/lang/en?next=/portal/sign-in", follow_redirects=True)
    assert switched.status_code == 200
    assert f'name="programme" value="{prog.slug}"' in switched.text
    assert "Sign in to your member account" in switched.text
