"""Rules and tiers in a real headless Chromium: a marketing manager writes a bonus rule
(first with a syntax error, shown in place), simulates it on recorded purchases, sees
the chart, publishes it — and a purchase sent to the HTTP API then earns by it. Support
gets 403 on the editor and on direct POSTs. axe finds nothing serious; German and
English render."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.admin import PASSWORD, staff_account
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now


def sign_in(page: Any, base: str, email: str, once: str) -> None:
    """The first sign-in in German: the one-time password, then one's own."""
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


@pytest.mark.in_browser
def test_marketing_writes_simulates_and_publishes_a_bonus_rule(db: Database) -> None:
    prog = f.tiered(db)
    now = utc_now()
    alice, bob, carla = f.member(db, prog), f.member(db, prog), f.member(db, prog)
    for who, amount, days_ago in ((alice, 8000, 3), (alice, 2000, 2), (bob, 6000, 9)):
        at = now - timedelta(days=days_ago)
        f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=amount, occurred_at=at))
    _, events_key = f.api_key(db, scopes=["events:write", "members:read"])
    marketing, once = staff_account(db, "marketing")
    support, support_once = staff_account(db, "support")
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    with serving(app) as base, browser_page(base) as (page, log):
        sign_in(page, base, marketing, once)

        page.goto(f"{base}/admin/rules?programme={prog.slug}")
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.get_by_role("heading", level=1).inner_text() == "Punkteregeln"
        assert axe_violations(page) == []

        # A bonus of 100 points on purchases of €50 or more, first with a syntax error.
        page.get_by_test_id("new-rule").click()
        page.wait_for_url("**/admin/rules/new?programme=*")
        page.locator("#name").fill("Großer Einkauf: +100 Punkte")
        page.locator("#effect").select_option("fixed")
        page.locator("#value").fill("100")
        page.locator("#condition").fill("event.total_minor >= 5000 and")
        page.get_by_test_id("save").click()
        error = page.get_by_test_id("error-condition")
        error.wait_for()
        assert "Zeile 1, Spalte" in error.inner_text()
        assert "^" in error.inner_text()
        assert page.locator("#condition").get_attribute("aria-invalid") == "true"
        assert page.locator("#name").input_value() == "Großer Einkauf: +100 Punkte"
        assert page.locator("#value").input_value() == "100"
        assert axe_violations(page) == []
        screenshot(page, "admin-rule-editor")

        page.locator("#condition").fill("event.total_minor >= 5000")
        page.get_by_test_id("save").click()
        page.wait_for_url(re.compile(r".*/admin/rules/[0-9a-f-]+\?done=saved$"))
        rule_path = page.url.split("?")[0].removeprefix(base)
        assert page.get_by_test_id("error-condition").count() == 0

        # The simulation on the recorded purchases: alice's €80 and bob's €60 qualify.
        page.locator("#from").fill((now - timedelta(days=20)).date().isoformat())
        page.locator("#to").fill(now.date().isoformat())
        page.locator("#by").select_option("day")
        page.get_by_test_id("simulate").click()
        page.get_by_test_id("simulation").wait_for()
        assert page.get_by_test_id("sim-events").inner_text() == "2"
        assert page.get_by_test_id("sim-members").inner_text() == "2"
        assert page.get_by_test_id("sim-points").inner_text() == "200"
        assert page.get_by_test_id("chart").count() == 1
        assert page.get_by_test_id("chart").locator("rect").count() == 21
        assert axe_violations(page) == []
        screenshot(page, "admin-rule-simulation")

        page.get_by_test_id("publish").click()
        page.get_by_test_id("published").wait_for()
        assert "Veröffentlicht" in page.get_by_test_id("rule-status").inner_text()

        # A purchase of €60 over the HTTP API earns 60 (base) + 100 (the new rule).
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {events_key}"}) as api:
            sent = api.post(
                "/v1/events",
                json=f.purchase_payload(prog, carla, amount_minor=6000, occurred_at=now),
            )
            assert sent.status_code in (200, 201), sent.text
            balance = api.get(f"/v1/members/{carla.id}/balance").json()
            assert balance["lifetime_earned"] == 160
            ledger = api.get(f"/v1/members/{carla.id}/ledger").json()
            by_rule = {p["rule"]["id"]: p["points"] for p in ledger["items"] if p.get("rule")}
            assert by_rule.get(rule_path.rsplit("/", 1)[1]) == 100
            small = api.post(
                "/v1/events",
                json=f.purchase_payload(prog, carla, amount_minor=1000, occurred_at=now),
            )
            assert small.status_code in (200, 201), small.text
            assert api.get(f"/v1/members/{carla.id}/balance").json()["lifetime_earned"] == 170

        page.goto(f"{base}/admin/rules?programme={prog.slug}")
        assert "Veröffentlicht" in page.get_by_test_id("rule-row").inner_text()
        assert "+100 Punkte pro Ereignis" in page.get_by_test_id("rule-row").inner_text()
        assert axe_violations(page) == []
        screenshot(page, "admin-rules")

        # Tiers, then both languages.
        page.get_by_role("link", name="Stufen").click()
        page.wait_for_url("**/admin/tiers")
        page.goto(f"{base}/admin/tiers?programme={prog.slug}")
        assert page.get_by_test_id("tier-row").count() == 3
        assert axe_violations(page) == []
        screenshot(page, "admin-tiers")
        page.get_by_role("link", name="English").click()
        page.wait_for_selector("html[lang=en]")
        assert page.get_by_role("heading", level=1).inner_text() == "Tiers"
        page.goto(f"{base}/admin/rules?programme={prog.slug}")
        assert page.get_by_role("heading", level=1).inner_text() == "Earning rules"
        assert "Published" in page.get_by_test_id("rule-row").inner_text()
        assert axe_violations(page) == []
        page.get_by_role("link", name="Deutsch").click()
        page.wait_for_selector("html[lang=de]")
        page.get_by_role("button", name="Abmelden").click()
        page.wait_for_url("**/admin/sign-in")

        # Support reads the list, and is refused the editor and every write.
        sign_in(page, base, support, support_once)
        page.goto(f"{base}/admin/rules?programme={prog.slug}")
        assert page.get_by_test_id("new-rule").count() == 0
        assert page.get_by_test_id("rule-row").get_by_role("link").count() == 0
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        log.failed.clear()
        assert page.goto(base + rule_path).status == 403
        assert page.goto(f"{base}/admin/rules/new?programme={prog.slug}").status == 403
        created = page.request.post(
            base + "/admin/rules/new",
            form={"csrf": csrf, "programme": prog.slug, "name": "Mine", "value": "5"},
            max_redirects=0,
        )
        assert created.status == 403
        paused = page.request.post(
            base + rule_path + "/pause", form={"csrf": csrf}, max_redirects=0
        )
        assert paused.status == 403
        published = page.request.post(
            base + rule_path + "/publish", form={"csrf": csrf}, max_redirects=0
        )
        assert published.status == 403
        assert log.outside == []
        assert log.errors == []
