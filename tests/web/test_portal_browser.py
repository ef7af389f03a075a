"""The portal in a real headless Chromium: a member signs in with the code from the
development mailbox (the delivery worker runs in the test), sees the API's balance, opens
the card, switches to English and back; no serious accessibility violation (axe-core) on
any page. And over plain HTTP: home and card need no JavaScript and carry the security
headers."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.portal import signed_in
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.worker import Deliverer
from treu.web.render import LANG_COOKIE
from treu.web.security import HEADERS
from treu.worker.channels import build_channels


def _dev(db: Database) -> Settings:
    return Settings(database_url=db.url, env="development", serve_worker=False)


def _deliver(db: Database, settings: Settings) -> None:
    """What the worker does in ``make run``: plan the outbox, send (into the mailbox)."""
    deliverer = Deliverer(db, build_channels(settings), threads=2)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()


@pytest.mark.in_browser
def test_a_member_signs_in_with_the_mailed_code_and_shows_the_card(fresh_db: Database) -> None:
    db = fresh_db
    settings = _dev(db)
    prog = f.programme(db)  # the only programme: no ?programme= needed
    who = f.member(db, prog, first_name="Mara")
    f.ingest(db, f.purchase_payload(prog, who, amount_minor=123_450))
    _deliver(db, settings)  # the welcome mail, out of the way
    _, key = f.api_key(db, scopes=["members:read"])
    app: FastAPI = create_app(settings, database=db)
    with serving(app) as base, browser_page(base) as (page, log):
        api = httpx.get(
            f"{base}/v1/members/{who.id}/balance", headers={"Authorization": f"Bearer {key}"}
        ).json()
        page.goto(base + "/portal")
        page.wait_for_url("**/portal/sign-in?next=/portal")
        assert page.locator("html").get_attribute("lang") == "de"
        assert axe_violations(page) == []
        screenshot(page, "portal-sign-in")
        page.get_by_label("E-Mail").fill(str(who.email))
        page.get_by_role("button", name="Code senden").click()
        page.get_by_test_id("code-sent").wait_for()
        assert axe_violations(page) == []

        _deliver(db, settings)
        mails = httpx.get(
            f"{base}/dev/mailbox", params={"format": "json", "to": str(who.email)}
        ).json()
        newest = mails[0]
        found = re.search(r"\b(\d{6})\b", newest["subject"])
        assert found is not None, newest["subject"]
        assert found.group(1) in newest["text"]
        page.get_by_label("Code aus der E-Mail").fill(found.group(1))
        page.get_by_role("button", name="Anmelden").click()

        page.wait_for_url(base + "/portal")
        assert page.get_by_test_id("balance").inner_text() == "1.234"
        assert api["available"] == 1234
        assert page.get_by_test_id("recommended-product").first.is_visible()
        assert axe_violations(page) == []
        screenshot(page, "portal-home-de")

        page.get_by_role("link", name="Karte", exact=True).click()
        page.wait_for_url("**/portal/card")
        assert page.get_by_test_id("card-qr").locator("svg").is_visible()
        assert page.get_by_test_id("card-barcode").is_visible()
        assert axe_violations(page) == []
        screenshot(page, "portal-card")
        page.get_by_test_id("card-full").click()
        page.wait_for_url("**/portal/card/full")
        assert page.get_by_test_id("card-qr").locator("svg").is_visible()
        assert axe_violations(page) == []

        page.goto(base + "/portal")
        page.get_by_role("link", name="English").click()
        page.wait_for_url(base + "/portal")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.get_by_role("heading", name="Your points").is_visible()
        assert page.get_by_test_id("balance").inner_text() == "1,234"
        assert axe_violations(page) == []
        screenshot(page, "portal-home-en")
        page.get_by_role("link", name="Deutsch").click()
        page.wait_for_url(base + "/portal")
        assert page.get_by_role("heading", name="Ihre Punkte").is_visible()

        assert log.outside == []
        assert log.errors == []
        assert log.console == []


def test_home_and_card_work_without_javascript_and_carry_the_security_headers(
    db: Database,
) -> None:
    from fastapi.testclient import TestClient

    prog = f.programme(db)
    who = f.member(db, prog)
    web = TestClient(create_app(Settings(database_url=db.url), database=db))
    web.cookies.set(LANG_COOKIE, "de")
    signed_in(web, db, who)
    for path, needed in (
        ("/portal", 'data-testid="balance"'),
        ("/portal/card", 'data-testid="card-qr"'),
        ("/portal/card/full", 'data-testid="card-barcode"'),
    ):
        page = web.get(path)
        assert page.status_code == 200, path
        assert needed in page.text
        assert "<script" not in page.text  # nothing on these pages needs a script
        assert "style=" not in page.text
        for name, value in HEADERS.items():
            assert page.headers[name] == value, (path, name)
    sign_in = TestClient(create_app(Settings(database_url=db.url), database=db)).get(
        f"/portal/sign-in?programme={prog.slug}"
    )
    assert sign_in.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    assert "<script" not in sign_in.text
