"""The portal in a real headless Chromium: a member with enough points redeems a reward
(rewards → confirmation → coupon), sees the code and the lowered balance, equal to the
API's; history, challenges and inbox render; no request leaves the machine, no script
error, no serious accessibility violation (axe-core); German and English."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI

from tests import factories as f
from tests.api_helpers import make_api
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.portal import session_token
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.messaging.models import InboxMessage
from treu.web.portal.context import COOKIE


@pytest.mark.in_browser
def test_redeem_a_reward_and_see_the_coupon(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, first_name="Ida")
    f.earn(db, prog, who, 1200, at=utc_now() - timedelta(hours=1))
    voucher = f.reward(db, prog, points_cost=500)
    f.reward(
        db,
        prog,
        code="big",
        points_cost=5000,
        name={"en": "Coffee machine", "de": "Kaffeemaschine"},
    )
    now = utc_now()
    f.challenge(
        db,
        prog,
        now=now - timedelta(days=2),
        window={
            "type": "fixed",
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=10)).isoformat(),
        },
    )
    f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=2500))  # 25 points, 1 of 3
    with db.unit_of_work() as session:
        session.add(
            InboxMessage(
                id=new_id(),
                programme_id=prog.id,
                member_id=who.id,
                event_type="member.enrolled",
                title="Willkommen bei Treu",
                body_text="Schön, dass Sie dabei sind.",
                body_html="<p>Schön, dass Sie dabei sind.</p>",
                created_at=utc_now(),
                read_at=None,
            )
        )
    token = session_token(db, who)
    app: FastAPI = create_app(Settings(database_url=db.url), database=db)
    with serving(app) as base, browser_page(base) as (page, log):
        page.context.add_cookies([{"name": COOKIE, "value": token, "url": base + "/portal"}])
        page.set_viewport_size({"width": 390, "height": 844})  # a phone first

        page.goto(base + "/portal/rewards")
        assert page.locator("html").get_attribute("lang") == "de"
        before = int(page.get_by_test_id("balance").inner_text().replace(".", ""))
        assert before == 1225
        assert page.get_by_test_id("reward").count() == 2
        assert "Noch 3775 Punkte nötig" in page.get_by_test_id("reward").nth(1).inner_text()
        assert axe_violations(page) == []
        screenshot(page, "portal-rewards")

        page.get_by_test_id("redeem").click()
        page.wait_for_url(f"**/portal/rewards/{voucher.id}/redeem")
        assert page.get_by_test_id("balance-after").inner_text() == "725"
        assert axe_violations(page) == []
        page.get_by_test_id("confirm").click()

        page.wait_for_url("**/portal/coupons/*")
        code = page.get_by_test_id("coupon-code").inner_text()
        assert len(code) == 19
        assert code.count("-") == 3
        assert page.get_by_test_id("balance").inner_text() == "725"
        assert page.get_by_test_id("coupon-qr").evaluate("img => img.naturalWidth") > 0
        assert axe_violations(page) == []
        screenshot(page, "portal-coupon")

        page.goto(base + "/portal/rewards")
        after = int(page.get_by_test_id("balance").inner_text().replace(".", ""))
        assert after == before - voucher.points_cost
        api = make_api(db)
        balance = api.client.get(
            f"/v1/members/{who.id}/balance", headers=api.headers("members:read")
        ).json()
        assert balance["available"] == after

        page.get_by_role("link", name="Gutscheine", exact=True).click()
        page.wait_for_url("**/portal/coupons")
        assert code in page.get_by_test_id("coupon").first.inner_text()
        assert axe_violations(page) == []

        page.get_by_role("link", name="Verlauf").click()
        page.wait_for_url("**/portal/history")
        assert page.get_by_test_id("posting").count() == 3
        assert "-500" in page.get_by_test_id("posting").first.inner_text()
        assert axe_violations(page) == []
        screenshot(page, "portal-history")

        page.get_by_role("link", name="Challenges").click()
        page.wait_for_url("**/portal/challenges")
        assert "1 von 3" in page.get_by_test_id("challenge").inner_text()
        assert axe_violations(page) == []
        screenshot(page, "portal-challenges")

        page.get_by_role("link", name="Postfach").click()
        page.wait_for_url("**/portal/inbox")
        assert page.get_by_test_id("message").count() == 1
        assert axe_violations(page) == []
        screenshot(page, "portal-inbox")
        page.get_by_role("link", name="Willkommen bei Treu").click()
        page.get_by_test_id("mark-read").click()
        page.wait_for_url("**/portal/inbox")
        assert page.get_by_test_id("message").get_attribute("data-read") == "yes"

        # English: the same pages, in English
        page.goto(base + "/portal/lang/en?next=/portal/rewards")
        page.wait_for_url("**/portal/rewards")
        assert page.locator("html").get_attribute("lang") == "en"
        assert "4275 more points needed" in page.get_by_test_id("reward").nth(1).inner_text()
        assert page.get_by_role("heading", name="Rewards", exact=True).is_visible()
        assert axe_violations(page) == []
        for path in ("/portal/history", "/portal/challenges", "/portal/inbox"):
            page.goto(base + path)
            assert axe_violations(page) == []

    assert log.outside == []
    assert log.errors == []
    assert log.console == []
    assert log.failed == []
