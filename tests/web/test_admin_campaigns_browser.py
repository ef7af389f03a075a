"""Campaigns, journeys and messages in a real headless Chromium: a marketing user creates
a bonus campaign and activates it, words the welcome message and sees it previewed in
German and English, switches the birthday journey on, and finds the campaign's results
on the dashboard; no request leaves the machine, no script or console error, no serious
accessibility violation (axe-core)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.admin import PASSWORD, staff_account
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now


def _local(delta: timedelta) -> str:
    return (utc_now() + delta).astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.in_browser
def test_a_marketing_user_runs_a_campaign_words_a_message_and_starts_a_journey(
    db: Database,
) -> None:
    prog = f.programme(db)
    f.member(db, prog, first_name="Lena")
    email, once = staff_account(db, "marketing")
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    with serving(app) as base, browser_page(base) as (page, log):
        page.goto(base + "/admin")
        page.wait_for_url("**/admin/sign-in?next=/admin")
        page.get_by_label("E-Mail").fill(email)
        page.get_by_label("Passwort", exact=True).fill(once)
        page.get_by_role("button", name="Anmelden").click()
        page.wait_for_url("**/admin/password")
        page.get_by_label("Bisheriges Passwort").fill(once)
        page.get_by_label("Neues Passwort", exact=True).fill(PASSWORD)
        page.get_by_label("Neues Passwort wiederholen").fill(PASSWORD)
        page.get_by_role("button", name="Passwort speichern").click()
        page.wait_for_url(base + "/admin")

        # A bonus campaign: the form, then activation.
        page.get_by_role("link", name="Kampagnen").click()
        page.wait_for_url("**/admin/campaigns")
        page.goto(f"{base}/admin/campaigns?programme={prog.slug}")
        page.get_by_test_id("new-campaign").click()
        page.wait_for_url(f"**/admin/campaigns/new?programme={prog.slug}")
        page.get_by_label("Kürzel").fill("wochenende-x2")
        page.get_by_label("Name (steht auf dem Kontoauszug der Mitglieder)").fill("Wochenende x2")
        page.get_by_label("Beginnt").fill(_local(-timedelta(hours=1)))
        page.get_by_label("Endet, ausschließlich").fill(_local(timedelta(days=7)))
        page.get_by_label("Faktor (größer als 1, höchstens 100)").fill("2")
        page.get_by_label("Bedingung über Ereignis und Mitglied (optional)").fill(
            "event.weekday in [6, 7"
        )
        page.get_by_label("Budget in Punkten (optional)").fill("10000")
        assert axe_violations(page) == []
        page.get_by_test_id("save-campaign").click()
        # the expression error, at its field; then mended
        error = page.get_by_test_id("error-condition")
        error.wait_for()
        assert "line 1, column" in error.inner_text()
        assert axe_violations(page) == []
        page.get_by_label("Bedingung über Ereignis und Mitglied (optional)").fill(
            "event.weekday in [6, 7]"
        )
        page.get_by_test_id("save-campaign").click()
        page.get_by_text("Die Kampagne wurde als Entwurf gespeichert.").wait_for()
        assert page.get_by_test_id("campaign-status").inner_text().startswith("Entwurf")
        page.get_by_test_id("activate").click()
        page.get_by_text("Die Kampagne ist aktiv.").wait_for()
        assert page.get_by_test_id("campaign-status").inner_text() == "aktiv · läuft"
        assert page.get_by_test_id("chart").count() == 1
        assert axe_violations(page) == []
        screenshot(page, "admin-campaign")
        page.get_by_role("link", name="Alle Kampagnen").click()
        page.get_by_test_id("campaign-row").wait_for()
        assert "Wochenende x2" in page.get_by_test_id("campaign-row").inner_text()
        assert axe_violations(page) == []
        screenshot(page, "admin-campaigns")

        # The welcome message in German, previewed next to the English one.
        page.goto(f"{base}/admin/templates?programme={prog.slug}")
        page.get_by_role("link", name="welcome", exact=True).click()
        page.wait_for_url(f"**/admin/templates/welcome?programme={prog.slug}")
        page.locator("#subject-de").fill("Willkommen an Bord, {{ first_name }}!")
        page.get_by_test_id("preview-de").click()
        page.get_by_text("Noch nicht gespeichert").wait_for()
        assert page.get_by_test_id("preview-subject-de").inner_text() == "Willkommen an Bord, Lena!"
        page.get_by_test_id("save-de").click()
        page.get_by_text("Der Wortlaut wurde gespeichert.").wait_for()
        assert page.get_by_test_id("preview-subject-de").inner_text() == "Willkommen an Bord, Lena!"
        for lang in ("de", "en"):
            frame = page.frame_locator(f"[data-testid=preview-html-{lang}]")
            frame.locator("body").get_by_text("Lena", exact=False).first.wait_for()
        assert page.get_by_test_id("preview-html-en").is_visible()
        assert axe_violations(page) == []
        screenshot(page, "admin-template-preview")

        # The birthday journey, switched on.
        page.get_by_role("link", name="Journeys").click()
        page.goto(f"{base}/admin/journeys?programme={prog.slug}")
        assert page.get_by_test_id("journey-status-birthday").inner_text() == "aus"
        page.get_by_test_id("switch-birthday").click()
        page.get_by_text("Die Journey wurde gespeichert.").wait_for()
        assert page.get_by_test_id("journey-status-birthday").inner_text() == "an"
        assert axe_violations(page) == []
        screenshot(page, "admin-journeys")

        # The dashboard: the campaign's results as a chart and a table.
        page.get_by_role("link", name="Übersicht").click()
        page.wait_for_url("**/admin/dashboard")
        page.get_by_label("Programm").select_option(prog.slug)
        page.get_by_role("button", name="Anzeigen").click()
        page.wait_for_url(f"**/admin/dashboard?programme={prog.slug}*")
        assert page.get_by_test_id("chart").count() == 3
        assert page.get_by_test_id("campaign-result").count() == 1
        assert "Wochenende x2" in page.get_by_test_id("campaign-result").inner_text()
        assert axe_violations(page) == []
        screenshot(page, "admin-dashboard")

        assert log.outside == []
        assert log.errors == []
        # Expected, and nothing else: the refused campaign form (422), and the unsaved
        # preview's frame, which inherits the console's policy (srcdoc), so the mail's
        # inline styles are refused there — the policy doing its work.
        console_policy = "the following Content Security Policy directive 'style-src 'self''"
        unexpected = [
            text
            for text in log.console
            if "status of 422" not in text
            and not text.startswith(f"Applying inline style violates {console_policy}")
        ]
        assert unexpected == [], log.console
