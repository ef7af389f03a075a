"""The admin console in a real headless Chromium: the first sign-in with a one-time
password, choosing a password, finding a member; no request leaves the machine, no
script error, no serious accessibility violation (axe-core), German and English."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.admin import PASSWORD, staff_account
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database


@pytest.mark.in_browser
def test_first_sign_in_then_find_a_member(db: Database) -> None:
    prog = f.programme(db)
    member = f.member(db, prog, first_name="Lena")
    email, once = staff_account(db, "support")
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    with serving(app) as base, browser_page(base) as (page, log):
        page.goto(base + "/admin")
        page.wait_for_url("**/admin/sign-in?next=/admin")
        assert page.locator("html").get_attribute("lang") == "de"
        assert axe_violations(page) == []
        screenshot(page, "admin-sign-in")
        page.get_by_label("E-Mail").fill(email)
        page.get_by_label("Passwort", exact=True).fill(once)
        page.get_by_role("button", name="Anmelden").click()

        page.wait_for_url("**/admin/password")
        page.get_by_label("Bisheriges Passwort").fill(once)
        page.get_by_label("Neues Passwort", exact=True).fill(PASSWORD)
        page.get_by_label("Neues Passwort wiederholen").fill(PASSWORD)
        assert axe_violations(page) == []
        page.get_by_role("button", name="Passwort speichern").click()

        page.wait_for_url(base + "/admin")
        # Typing is enough: htmx asks the same page and puts its results in place (no
        # new page: a mark left on this one survives), and the address shows the search.
        page.evaluate("window.treuMark = 1")
        search = page.get_by_test_id("member-search")
        search.fill(member.card_number)
        page.get_by_test_id("member-row").wait_for()
        assert page.evaluate("window.treuMark") == 1
        page.wait_for_url(f"**/admin?q={member.card_number}")
        row = page.get_by_test_id("member-row")
        assert row.count() == 1
        assert member.card_number in row.inner_text()
        assert "Lena" in row.inner_text()
        assert axe_violations(page) == []
        screenshot(page, "admin-members-de")

        # Member 360: the balance, then a goodwill credit with its reason.
        row.get_by_role("link").click()
        page.wait_for_url(f"**/admin/members/{member.id}")
        assert page.get_by_test_id("balance").inner_text() == "0"
        assert axe_violations(page) == []
        page.get_by_label("Punkte (negativ zum Abziehen)").fill("1500")
        page.get_by_label("Grund (steht im Prüfprotokoll)").fill("Geburtstagsüberraschung")
        page.get_by_role("button", name="Korrektur buchen").click()
        page.get_by_text("Die Korrektur wurde gebucht.").wait_for()
        assert page.get_by_test_id("balance").inner_text() == "1.500"
        assert "Geburtstagsüberraschung" in page.get_by_test_id("posting").first.inner_text()
        screenshot(page, "admin-member-360")

        # The dashboard: charts are SVG, with their figures as a table.
        page.get_by_role("link", name="Übersicht").click()
        page.wait_for_url("**/admin/dashboard")
        page.get_by_label("Programm").select_option(prog.slug)
        page.get_by_role("button", name="Anzeigen").click()
        page.wait_for_url(f"**/admin/dashboard?programme={prog.slug}*")
        assert page.get_by_test_id("chart").count() == 2
        assert page.get_by_test_id("tile-members").inner_text() == "1"
        assert page.get_by_test_id("tile-outstanding").inner_text() == "1.500"
        assert axe_violations(page) == []
        screenshot(page, "admin-dashboard")

        # Keyboard: from the top of the page the skip link is the first stop.
        page.goto(base + "/admin")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        assert page.locator(".skip").is_visible()

        page.get_by_role("link", name="English").click()
        page.wait_for_selector("html[lang=en]")
        assert page.get_by_role("heading", name="Find a member").is_visible()
        assert axe_violations(page) == []
        screenshot(page, "admin-members-en")

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/admin/sign-in")
        assert log.outside == []
        assert log.errors == []
        assert log.console == []
