"""Rewards and challenges in a real headless Chromium: a marketing manager creates a
reward with a stock of 5 and a picture uploaded from disk, sees it in the catalogue with
the picture loaded from Treu itself (the page's CSP allows no other), tops up the stock,
and creates a challenge; no request leaves the machine, no script error, no serious
accessibility violation (axe-core), German and English."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from fastapi import FastAPI
from PIL import Image

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.admin import PASSWORD, staff_account
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now


def _png() -> bytes:
    image = Image.new("RGB", (120, 80), "white")
    for x in range(30, 90):
        for y in range(20, 60):
            image.putpixel((x, y), (11, 93, 59))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.in_browser
def test_a_reward_with_stock_and_picture_then_a_challenge(db: Database) -> None:
    prog = f.programme(db)
    email, once = staff_account(db, "marketing")
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    code = f.unique("kaffee")
    with serving(app) as base, browser_page(base) as (page, log):
        page.goto(base + "/admin/sign-in")
        page.get_by_label("E-Mail").fill(email)
        page.get_by_label("Passwort", exact=True).fill(once)
        page.get_by_role("button", name="Anmelden").click()
        page.wait_for_url("**/admin/password")
        page.get_by_label("Bisheriges Passwort").fill(once)
        page.get_by_label("Neues Passwort", exact=True).fill(PASSWORD)
        page.get_by_label("Neues Passwort wiederholen").fill(PASSWORD)
        page.get_by_role("button", name="Passwort speichern").click()
        page.wait_for_url(base + "/admin")

        # The catalogue, empty, then the form.
        page.goto(f"{base}/admin/rewards?programme={prog.slug}")
        assert page.get_by_role("heading", name="Prämien").is_visible()
        assert axe_violations(page) == []
        page.get_by_test_id("new-reward").click()
        page.wait_for_url("**/admin/rewards/new*")
        assert axe_violations(page) == []
        screenshot(page, "admin-reward-form")

        page.get_by_label("Code", exact=True).fill(code)
        page.get_by_label("Name (Deutsch)", exact=True).fill("Kaffee gratis")
        page.get_by_label("Name (Englisch)", exact=True).fill("Free coffee")
        page.get_by_label("Preis in Punkten").fill("250")
        page.get_by_label("Art", exact=True).select_option("free_product")
        page.get_by_label("Artikelnummer (Gratisprodukt)").fill("KAFFEE-1")
        page.get_by_label("Bestand insgesamt").fill("5")
        page.get_by_label("Bild hochladen").set_input_files(
            files=[{"name": "kaffee.png", "mimeType": "image/png", "buffer": _png()}]
        )
        # a mistake first: shown at its field, what was typed kept
        page.get_by_label("Preis in Punkten").fill("0")
        page.get_by_role("button", name="Prämie anlegen").click()
        page.get_by_test_id("form-errors").wait_for()
        assert page.locator("#e-points_cost").inner_text() == "Mindestens 1."
        assert page.get_by_label("Name (Deutsch)", exact=True).input_value() == "Kaffee gratis"
        assert axe_violations(page) == []
        page.get_by_label("Preis in Punkten").fill("250")
        page.get_by_label("Bild hochladen").set_input_files(
            files=[{"name": "kaffee.png", "mimeType": "image/png", "buffer": _png()}]
        )
        page.get_by_role("button", name="Prämie anlegen").click()
        page.wait_for_url(f"**/admin/rewards?programme={prog.slug}&done=created")
        page.get_by_text("Die Prämie wurde angelegt.").wait_for()

        row = page.get_by_test_id("reward-row").filter(has_text="Kaffee gratis")
        assert row.get_by_test_id("stock").inner_text() == "5 / 5"
        image = row.get_by_test_id("reward-image")
        image.wait_for()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        assert image.evaluate("img => img.naturalWidth") == 120
        assert image.get_attribute("src").startswith("/media/")  # type: ignore[union-attr]
        assert axe_violations(page) == []
        screenshot(page, "admin-rewards")

        # Top up the stock on the reward's page.
        row.get_by_role("link", name="Kaffee gratis").click()
        page.wait_for_url("**/admin/rewards/*")
        assert page.get_by_test_id("stock").inner_text() == "5 / 5"
        page.get_by_label("Einheiten hinzufügen (negativ zum Herausnehmen)").fill("10")
        page.get_by_role("button", name="Bestand aufstocken").click()
        page.get_by_text("Der Bestand wurde aufgestockt.").wait_for()
        assert page.get_by_test_id("stock").inner_text() == "15 / 15"
        assert axe_violations(page) == []

        # A challenge.
        page.get_by_role("link", name="Challenges").click()
        page.wait_for_url("**/admin/challenges")
        page.goto(f"{base}/admin/challenges?programme={prog.slug}")
        page.get_by_test_id("new-challenge").click()
        page.wait_for_url("**/admin/challenges/new*")
        assert axe_violations(page) == []
        start = (utc_now() - timedelta(days=1)).strftime("%Y-%m-%dT00:00")
        end = (utc_now() + timedelta(days=30)).strftime("%Y-%m-%dT00:00")
        page.get_by_label("Code", exact=True).fill(f.unique("drei"))
        page.get_by_label("Name (Englisch)", exact=True).fill("Three purchases")
        page.get_by_label("Name (Deutsch)", exact=True).fill("Drei Einkäufe")
        page.get_by_label("Bedingung (optional)").fill("event.total_minr >= 1000")
        page.get_by_label("Zielwert").fill("3")
        page.get_by_label("Beginnt").fill(start)
        page.get_by_label("Endet (ausschließlich)").fill(end)
        page.get_by_label("Punkte beim Abschluss").fill("300")
        page.get_by_label("Code des Abzeichens (optional)").fill("dreier")
        page.get_by_label("Name des Abzeichens (Englisch)").fill("Three in a row")
        page.get_by_label("Symbol des Abzeichens").fill("🛍️")
        page.get_by_role("button", name="Challenge anlegen").click()
        page.get_by_test_id("error-condition").wait_for()
        assert "event.total_minor" in page.get_by_test_id("error-condition").inner_text()
        assert axe_violations(page) == []
        page.get_by_label("Bedingung (optional)").fill("event.total_minor >= 1000")
        page.get_by_role("button", name="Challenge anlegen").click()
        page.get_by_text("als Entwurf gespeichert").wait_for()
        page.get_by_role("link", name="Alle Challenges").click()
        row = page.get_by_test_id("challenge-row").filter(has_text="Drei Einkäufe")
        assert "Entwurf" in row.inner_text()
        assert "Three in a row" in row.get_by_test_id("badge").inner_text()
        row.get_by_role("button", name="Aktivieren").click()
        page.get_by_text("Die Challenge ist aktiv").wait_for()
        assert axe_violations(page) == []
        screenshot(page, "admin-challenges")

        # English.
        page.get_by_role("link", name="English").click()
        page.wait_for_selector("html[lang=en]")
        # the language link keeps the path, not the query: choose the programme again
        page.goto(f"{base}/admin/challenges?programme={prog.slug}")
        assert page.get_by_role("heading", name="Challenges").is_visible()
        assert "active" in page.get_by_test_id("challenge-row").first.inner_text()
        assert axe_violations(page) == []
        page.goto(f"{base}/admin/rewards?programme={prog.slug}")
        assert page.get_by_role("heading", name="Rewards").is_visible()
        assert "Free product" in page.get_by_test_id("reward-row").first.inner_text()
        assert axe_violations(page) == []
        screenshot(page, "admin-rewards-en")

        assert log.outside == []
        assert log.errors == []
        # the two mistakes were answered 422 (the browser logs that); nothing else
        assert [m for m in log.console if "status of 422" not in m] == []
        assert len([u for u in log.failed if u.startswith("422 ")]) == 2
