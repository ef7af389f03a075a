"""Webhooks, API keys and the audit log in a real headless Chromium: an admin creates an
API key (shown once; a reload does not show it again) and a webhook to a receiver on
loopback, the key sends a purchase through the HTTP API, the worker's delivery fails
once and shows in the delivery log, the admin redelivers it and it arrives signed; the
key is revoked and the API refuses it; the audit log has it all; a support user is
refused the API keys page. No request leaves the machine, no script error, no serious
accessibility violation.

A database of its own (``fresh_db``): the deliverer plans the whole outbox."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests import factories as f
from tests.browser import axe_violations, browser_page, screenshot, serving
from tests.support.admin import signed_in
from tests.support.receiver import running_receiver
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.service import Backoff
from treu.delivery.worker import Deliverer, Round
from treu.webhooks.channel import WebhookChannel

BACKOFF = Backoff(base_seconds=60, cap_seconds=60, max_attempts=10)


def _sign_in(page: Any, base: str, db: Database, role: str) -> str:
    """The page's browser signed in as a new ``role`` account (signed in over HTTP, the
    session cookie handed to the browser); returns the e-mail."""
    web, email = signed_in(db, role)
    page.context.add_cookies(
        [{"name": "treu_admin", "value": web.cookies["treu_admin"], "url": base}]
    )
    return email


def _deliver(settings: Settings, db: Database) -> Round:
    deliverer = Deliverer(db, [WebhookChannel(settings, db)], backoff=BACKOFF, threads=1)
    try:
        return deliverer.run_once()
    finally:
        deliverer.close()


@pytest.mark.in_browser
def test_admin_runs_keys_webhooks_and_reads_the_audit_log(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db)
    member = f.member(db, prog)
    settings = Settings(database_url=db.url, env="development", serve_worker=False)
    app = create_app(settings, database=db)
    with (
        running_receiver() as receiver,
        serving(app) as base,
        browser_page(base) as (page, log),
    ):
        email = _sign_in(page, base, db, "admin")

        # An API key: shown once, gone on reload.
        page.goto(base + "/admin/api-keys")
        assert axe_violations(page) == []
        page.get_by_label("Name (wer ihn benutzt)").fill("shop")
        page.get_by_label("events:write").check()
        page.get_by_role("button", name="Schlüssel anlegen").click()
        page.wait_for_url("**/admin/api-keys?done=created")
        key = page.get_by_test_id("new-key").inner_text().strip()
        assert re.fullmatch(r"treu_[A-Za-z0-9]{44}", key)
        assert axe_violations(page) == []
        screenshot(page, "admin-api-keys")
        page.reload()
        assert page.get_by_test_id("new-key").count() == 0
        assert key not in page.content()
        row = page.get_by_test_id("api-key-row").filter(has_text="shop")
        assert "events:write" in row.inner_text()

        # A webhook to the receiver (development mode allows loopback).
        page.get_by_role("link", name="Webhooks").click()
        page.wait_for_url("**/admin/webhooks")
        page.get_by_label("URL (https)").fill(receiver.url)
        page.get_by_label("Programm").select_option(prog.slug)
        page.get_by_label("points.earned", exact=True).check()
        assert axe_violations(page) == []
        page.get_by_role("button", name="Endpunkt anlegen").click()
        page.wait_for_url("**/admin/webhooks/*?done=created")
        secret = page.get_by_test_id("secret").inner_text().strip()
        assert secret.startswith("whsec_")
        assert "standardwebhooks" in page.get_by_test_id("secret-box").inner_text()
        assert axe_violations(page) == []
        endpoint_page = page.url.split("?")[0]

        # The key works against the HTTP API: a purchase, which earns points.
        bearer = {"Authorization": f"Bearer {key}"}
        sent = httpx.post(
            base + "/v1/events", json=f.purchase_payload(prog, member), headers=bearer
        )
        assert sent.status_code == 201, sent.text

        # The worker sends; the receiver fails the first try.
        receiver.answer(500)
        assert _deliver(settings, db).failed == 1
        page.goto(endpoint_page)
        assert page.get_by_test_id("secret").count() == 0  # the secret was shown once
        delivery = page.get_by_test_id("delivery")
        assert delivery.count() == 1
        assert page.get_by_test_id("delivery-status").inner_text() == "failed"
        assert "HTTP 500" in delivery.inner_text()
        assert "points.earned" in delivery.inner_text()
        delivery.get_by_role("button", name="Erneut zustellen").click()
        page.get_by_text("Die Zustellung wird erneut gesendet.").wait_for()
        assert page.get_by_test_id("delivery-status").inner_text() == "pending"
        assert _deliver(settings, db).sent == 1
        page.reload()
        assert page.get_by_test_id("delivery-status").inner_text() == "delivered"
        assert axe_violations(page) == []
        screenshot(page, "admin-webhook-deliveries")
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert Webhook(secret).verify(second.body, second.headers)["type"] == "points.earned"
        assert first.headers["webhook-id"] in page.get_by_test_id("deliveries").inner_text()
        page.get_by_role("link", name="Alle Webhooks").click()
        row = page.get_by_test_id("webhook-row")
        assert "delivered" in row.inner_text()
        screenshot(page, "admin-webhooks")

        # Revoke the key after the confirmation: the API refuses it from then on.
        page.get_by_role("link", name="API-Schlüssel").click()
        page.get_by_role("link", name="shop widerrufen").click()
        page.wait_for_url("**/admin/api-keys/*/revoke")
        assert axe_violations(page) == []
        page.get_by_role("button", name="Schlüssel widerrufen").click()
        page.get_by_text("Der Schlüssel wurde widerrufen").wait_for()
        refused = httpx.post(
            base + "/v1/events", json=f.purchase_payload(prog, member), headers=bearer
        )
        assert refused.status_code == 401

        # The audit log has all of it, under the admin's name.
        page.get_by_role("link", name="Prüfprotokoll").click()
        page.get_by_label("Wer").fill(email)
        page.get_by_role("button", name="Filtern").click()
        page.wait_for_url("**/admin/audit?*")
        actions = [
            text.strip()
            for text in page.get_by_test_id("audit-entry").locator("code").all_inner_texts()
        ]
        for action in (
            "apikey.revoked",
            "webhook.redelivered",
            "webhook.created",
            "apikey.created",
        ):
            assert action in actions, actions
        assert actions.index("apikey.revoked") < actions.index("apikey.created")  # newest first
        assert key not in page.content()
        assert secret not in page.content()
        assert axe_violations(page) == []
        screenshot(page, "admin-audit")

        assert log.outside == []
        assert log.errors == []
        assert log.console == []

    with serving(app) as base, browser_page(base) as (page, log):
        _sign_in(page, base, db, "support")
        answer = page.goto(base + "/admin/api-keys")
        assert answer is not None
        assert answer.status == 403
        assert page.get_by_role("link", name="API-Schlüssel").count() == 0
        assert log.outside == []
        assert log.errors == []
