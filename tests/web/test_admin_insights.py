"""The console's insights page: personas with their sizes and profiles as charts, in the
reader's language, and the latest trained models; analysts may read it. In Chromium too:
SVG charts, no script error, no serious accessibility violation."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.admin import PASSWORD, signed_in, staff_account
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.demo.bulk import load_bulk
from treu.insights.train import train

NOW = datetime(2026, 9, 1, 3, 0, tzinfo=UTC)


def _trained(db: Database) -> str:
    slug = f.unique("ins")
    load_bulk(db, members=300, purchases=4000, seed=4, now=NOW, slug=slug)
    train(db, programme=slug, now=NOW)
    return slug


def test_an_analyst_reads_personas_and_models(db: Database) -> None:
    slug = _trained(db)
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/insights?programme={slug}")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'href="/admin/insights"' in html  # in the navigation
    rows = re.findall(r'<tr data-testid="persona"><th scope="row">(P\d)</th><td>([^<]+)</td>', html)
    assert rows
    assert [code for code, _ in rows] == [f"P{i}" for i in range(1, len(rows) + 1)]
    assert html.count('data-testid="chart"') == 2
    kinds = re.findall(r'<tr data-testid="model"><th scope="row">(\w+)</th>', html)
    assert {"clv", "churn", "personas"} <= set(kinds)
    # German by default; the same personas in English after the switch.
    assert "Mitglieder pro Persona" in html
    web.cookies.set("treu_lang", "en")
    english = web.get(f"/admin/insights?programme={slug}").text
    assert "Members per persona" in english
    words_en = re.findall(
        r'data-testid="persona"><th scope="row">P\d</th><td>([^<]+)</td>', english
    )
    assert len(words_en) == len(rows)
    assert words_en != [w for _, w in rows] or all(w == "average shopping" for w in words_en)


def test_a_programme_without_training_says_so(db: Database) -> None:
    prog = f.programme(db)
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/insights?programme={prog.slug}")
    assert page.status_code == 200
    assert 'data-testid="no-personas"' in page.text
    assert 'data-testid="chart"' not in page.text


@pytest.mark.in_browser
def test_the_insights_page_in_a_browser(db: Database) -> None:
    slug = _trained(db)
    email, once = staff_account(db, "analyst")
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    with serving(app) as base, browser_page(base) as (page, _log):
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

        page.get_by_role("link", name="Analysen").click()
        page.wait_for_url("**/admin/insights")
        page.get_by_label("Programm").select_option(slug)
        page.get_by_role("button", name="Anzeigen").click()
        page.wait_for_url(f"**/admin/insights?programme={slug}")
        assert page.get_by_test_id("chart").count() == 2
        assert page.get_by_test_id("persona").count() >= 3
        assert page.locator("svg[data-testid=chart] title").first.text_content()
        assert axe_violations(page) == []
        screenshot(page, "admin-insights")
