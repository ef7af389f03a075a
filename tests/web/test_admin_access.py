"""The admin console's doors: sign-in, the first password, sessions, CSRF, roles and the
security headers every answer carries (over HTTP; the browser test walks the same way)."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from tests import factories as f
from tests.support.admin import (
    PASSWORD,
    client,
    csrf_of,
    sign_in,
    signed_in,
    staff_account,
)
from treu.db.session import Database
from treu.staff.service import staff


def _secure(answer: httpx.Response) -> None:
    headers = answer.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


def test_pages_send_strangers_to_sign_in(db: Database) -> None:
    web = client(db)
    for path in ("/admin", "/admin/staff", "/admin/password"):
        answer = web.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/admin/sign-in?next={path}"
        _secure(answer)
    page = web.get("/admin/sign-in")
    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    assert "Anmeldung zur Konsole" in page.text
    _secure(page)
    # The member search typed in a page whose session has ended (htmx asks): the whole
    # page goes to the sign-in, instead of the sign-in page landing in the results.
    searched = web.get("/admin?q=anna", headers={"HX-Request": "true"}, follow_redirects=False)
    assert searched.status_code == 204
    assert searched.headers["hx-redirect"] == "/admin/sign-in?next=/admin"


def test_an_address_that_does_not_parse_is_the_not_found_page(db: Database) -> None:
    web, _email = signed_in(db, "admin")
    for path in ("/admin/rewards/not-a-uuid", "/admin/members/123"):
        page = web.get(path)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html")
        assert '<html lang="de">' in page.text


def test_the_one_time_password_leads_to_choosing_ones_own(db: Database) -> None:
    email, once = staff_account(db, "marketing")
    web = client(db)
    assert sign_in(web, email, once) == "/admin/password"
    # nothing else opens until the password is changed
    blocked = web.get("/admin", follow_redirects=False)
    assert blocked.headers["location"].startswith("/admin/password")
    page = web.get("/admin/password")
    token = csrf_of(page.text)
    differ = web.post(
        "/admin/password",
        data={"csrf": token, "current": once, "new": PASSWORD, "repeat": PASSWORD + "!"},
    )
    assert differ.status_code == 422
    assert "stimmen nicht überein" in differ.text
    weak = web.post(
        "/admin/password", data={"csrf": token, "current": once, "new": "short", "repeat": "short"}
    )
    assert weak.status_code == 422
    assert "zu schwach" in weak.text
    done = web.post(
        "/admin/password",
        data={"csrf": token, "current": once, "new": PASSWORD, "repeat": PASSWORD},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/admin")
    assert web.get("/admin").status_code == 200
    # the one-time password is spent; the new one signs in elsewhere
    other = client(db)
    failed = other.post(
        "/admin/sign-in",
        data={"email": email, "password": once, "csrf": csrf_of(other.get("/admin/sign-in").text)},
    )
    assert failed.status_code == 401
    assert failed.headers["content-type"].startswith("text/html")
    assert 'data-testid="sign-in-error"' in failed.text
    assert sign_in(other, email, PASSWORD) == "/admin"


def test_changing_the_password_signs_out_other_browsers(db: Database) -> None:
    first, email = signed_in(db, "support")
    second = client(db)
    assert sign_in(second, email, PASSWORD) == "/admin"
    assert second.get("/admin", follow_redirects=False).status_code == 200
    page = first.get("/admin/password")
    new = PASSWORD + " again"
    first.post(
        "/admin/password",
        data={"csrf": csrf_of(page.text), "current": PASSWORD, "new": new, "repeat": new},
    )
    assert first.get("/admin", follow_redirects=False).status_code == 200
    assert second.get("/admin", follow_redirects=False).status_code == 303


def test_forms_without_the_session_token_are_refused(db: Database) -> None:
    web, email = signed_in(db, "admin")
    forged = web.post("/admin/sign-out", data={"csrf": "forged"})
    assert forged.status_code == 403
    _secure(forged)
    assert web.get("/admin", follow_redirects=False).status_code == 200  # still signed in
    # the sign-in form's token must match its cookie (double submit)
    stranger = TestClient(web.app)
    refused = stranger.post(
        "/admin/sign-in", data={"email": email, "password": PASSWORD, "csrf": "made-up"}
    )
    assert refused.status_code == 403
    # signing out for real ends the session on the server
    out = web.post(
        "/admin/sign-out",
        data={"csrf": csrf_of(web.get("/admin").text)},
        follow_redirects=False,
    )
    assert out.headers["location"] == "/admin/sign-in"
    assert web.get("/admin", follow_redirects=False).status_code == 303


def test_roles_are_checked_on_the_server(db: Database) -> None:
    support, _ = signed_in(db, "support")
    refused = support.get("/admin/staff")
    assert refused.status_code == 403
    _secure(refused)
    assert "/admin/staff" not in support.get("/admin").text  # not offered in the menu either
    admin, admin_email = signed_in(db, "admin")
    page = admin.get("/admin/staff")
    assert page.status_code == 200
    assert admin_email in page.text
    assert "apikeys.manage" in page.text


def test_a_disabled_account_is_signed_out_at_once(db: Database) -> None:
    web, email = signed_in(db, "analyst")
    with db.unit_of_work() as session:
        staff.disable(session, staff.by_email(session, email), actor="test")
    assert (
        web.get("/admin", follow_redirects=False).headers["location"].startswith("/admin/sign-in")
    )


def test_members_are_found_by_any_identifier(db: Database) -> None:
    prog = f.programme(db)
    member = f.member(db, prog, first_name="Lena", phone="+491701234567")
    web, _ = signed_in(db, "analyst")
    for query in (member.email, member.card_number, "+491701234567"):
        page = web.get("/admin", params={"q": query})
        assert page.status_code == 200
        assert page.text.count('data-testid="member-row"') == 1, query
        assert member.card_number in page.text
        assert prog.slug in page.text
    none = web.get("/admin", params={"q": "nobody@example.org"})
    assert "Kein Mitglied zu „nobody@example.org“ gefunden." in none.text


def test_english_by_choice_and_no_redirect_elsewhere(db: Database) -> None:
    web, _ = signed_in(db, "analyst")
    switched = web.get("/admin/lang/en?next=/admin", follow_redirects=False)
    assert switched.headers["location"] == "/admin"
    page = web.get("/admin")
    assert '<html lang="en">' in page.text
    assert "Find a member" in page.text
    outside = web.get("/admin/lang/de?next=https://evil.example/", follow_redirects=False)
    assert outside.headers["location"] == "/admin"
    assert '<html lang="de">' in web.get("/admin").text
