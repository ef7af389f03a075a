"""My account: a staff member sets up the second factor in the console, signs in with it,
and switches it off with the password."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp

from tests.support.admin import PASSWORD, client, csrf_of, signed_in
from treu.db.session import Database
from treu.kit.time import utc_now


def test_setting_up_the_second_factor_and_signing_in_with_it(db: Database) -> None:
    web, email = signed_in(db, "analyst")  # any role may protect its own account
    page = web.get("/admin/account")
    assert page.status_code == 200
    assert "Einrichten" in page.text
    web.post("/admin/account/totp/start", data={"csrf": csrf_of(page.text)})
    page = web.get("/admin/account")
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page.text)
    assert secret is not None
    assert 'src="data:image/svg+xml' in page.text  # the QR code, drawn by Treu
    totp = pyotp.TOTP(secret.group(1))

    wrong = web.post(
        "/admin/account/totp/confirm",
        data={
            "csrf": csrf_of(page.text),
            "code": "00000" + ("1" if totp.now() != "000001" else "2"),
        },
    )
    assert wrong.status_code == 422
    done = web.post(
        "/admin/account/totp/confirm",
        data={"csrf": csrf_of(page.text), "code": totp.now()},
        follow_redirects=True,
    )
    assert 'data-testid="totp-on"' in done.text

    # Signing in now takes a code as well; the one just used is spent.
    other = client(db)
    form = other.get("/admin/sign-in")
    without = other.post(
        "/admin/sign-in",
        data={"email": email, "password": PASSWORD, "csrf": csrf_of(form.text)},
    )
    assert without.status_code == 401
    later = totp.at(utc_now() + timedelta(seconds=30))
    form = other.get("/admin/sign-in")
    signed = other.post(
        "/admin/sign-in",
        data={"email": email, "password": PASSWORD, "code": later, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert (signed.status_code, signed.headers["location"]) == (303, "/admin")

    # Off again, with the password (not with a browser left signed in alone).
    page = web.get("/admin/account")
    refused = web.post(
        "/admin/account/totp/disable", data={"csrf": csrf_of(page.text), "password": "nope"}
    )
    assert refused.status_code == 422
    off = web.post(
        "/admin/account/totp/disable",
        data={"csrf": csrf_of(page.text), "password": PASSWORD},
        follow_redirects=True,
    )
    assert "Der zweite Faktor ist aus." in off.text
