"""The profile and privacy pages in a real headless Chromium: a member without a birthday
gives it on the one-field card and is credited its points, withdraws e-mail consent,
switches to English, downloads their data and asks to be deleted. No request leaves the
machine, no script error, no serious accessibility violation (axe-core)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.api_helpers import make_api
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.portal import session_token
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.members.models import Member
from treu.messaging.consents import consents
from treu.privacy.service import privacy
from treu.web.portal.context import COOKIE


@pytest.mark.in_browser
def test_profile_consents_language_download_and_deletion(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Profil vollständig",
        trigger="profile_completed",
        effect={"type": "fixed", "points": 200},
        limits=[{"per": "lifetime", "max_count": 1}],
    )
    who = f.member(db, prog, first_name="Lena")
    with db.unit_of_work() as session:
        member = session.get_one(Member, who.id)
        consents.record(session, member=member, channel="email", granted=True, source="pos")
    api = make_api(db)
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    with serving(app) as base, browser_page(base) as (page, log):
        page.context.add_cookies(
            [{"name": COOKIE, "value": session_token(db, who), "url": base + "/portal"}]
        )
        page.goto(base + "/portal/profile")
        assert page.locator("html").get_attribute("lang") == "de"
        card = page.get_by_test_id("ask")
        assert card.get_attribute("data-field") == "birthday"
        assert card.get_by_test_id("ask-points").inner_text() == "Bringt Ihnen 200 Punkte"
        assert axe_violations(page) == []
        screenshot(page, "portal-profile")

        # The one-field card: the birthday, credited at once; the next field is asked.
        card.get_by_label("Geburtstag").fill("1990-05-17")
        card.get_by_role("button", name="Speichern").click()
        page.get_by_text("200 Punkte wurden gutgeschrieben.").wait_for()
        balance = api.client.get(
            f"/v1/members/{who.id}/balance", headers=api.headers("members:read")
        )
        assert balance.json()["available"] == 200
        assert page.get_by_test_id("ask").get_attribute("data-field") == "phone"

        # Withdraw e-mail consent.
        row = page.get_by_test_id("consent-email")
        assert "Erlaubt seit" in row.inner_text()
        row.get_by_role("button", name="Widerrufen").click()
        page.get_by_text("Ihre Auswahl wurde gespeichert.").wait_for()
        assert "Widerrufen am" in page.get_by_test_id("consent-email").inner_text()
        with db.unit_of_work(write=False) as session:
            email = consents.current(session, who.id)["email"]
        assert email is not None
        assert (email.granted, email.source) == (False, "portal")

        # English, for the portal and stored on the member.
        page.get_by_label("English").check()
        page.get_by_role("button", name="Sprache speichern").click()
        page.get_by_text("Your language was saved.").wait_for()
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.get_by_role("heading", level=1).inner_text() == "My profile"
        with db.unit_of_work(write=False) as session:
            assert session.get_one(Member, who.id).language == "en"
        assert axe_violations(page) == []

        # Privacy: the download is the member's data as JSON.
        page.get_by_role("link", name="Privacy").click()
        page.wait_for_url("**/portal/privacy")
        assert axe_violations(page) == []
        screenshot(page, "portal-privacy")
        with page.expect_download() as download:
            page.get_by_test_id("export").click()
        saved = download.value.path()
        assert download.value.suggested_filename.startswith("treu-my-data-")
        data = json.loads(Path(saved).read_text(encoding="utf-8"))
        assert data["member"]["id"] == str(who.id)
        assert data["member"]["birthday"] == "1990-05-17"
        assert [c["granted"] for c in data["records"]["consents"]] == [True, False]

        # Deletion, confirmed with the box and the word.
        page.get_by_label("I understand that my points, coupons and rewards will be lost.").check()
        page.get_by_label("Type DELETE to confirm").fill("DELETE")
        page.get_by_role("button", name="Request deletion").click()
        page.get_by_test_id("deletion-pending").wait_for()
        assert axe_violations(page) == []
        with db.unit_of_work(write=False) as session:
            pending = privacy.open_request(session, who.id)
        assert pending is not None
        assert pending.source == "portal"

    assert log.outside == []
    assert log.errors == []
    assert log.console == []
    assert log.failed == []
