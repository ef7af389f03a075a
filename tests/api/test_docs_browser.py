"""/docs and /redoc in a real headless Chromium: the pages render the API from Treu's own
copies of their scripts, ask nothing of any other host, and Swagger UI can call the API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from tests.browser import PageLog, browser_page, serving
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database


@pytest.fixture
def app(db: Database) -> FastAPI:
    return create_app(Settings(database_url=db.url), database=db)


def _clean(log: PageLog) -> None:
    assert log.outside == [], "the page asked another host"
    assert log.errors == []
    assert log.console == []
    assert log.failed == []


def _operations(app: FastAPI) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        (method, path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in methods
    }


@pytest.mark.in_browser
def test_swagger_ui_shows_every_operation_and_calls_the_api(app: FastAPI) -> None:
    with serving(app) as base, browser_page(base) as (page, log):
        page.goto(base + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        assert app.title in page.locator(".info .title").inner_text()
        shown: list[list[str]] = page.locator(".opblock").evaluate_all(
            """blocks => blocks.map(b => [
                b.querySelector('.opblock-summary-method').textContent.toLowerCase(),
                b.querySelector('.opblock-summary-path').getAttribute('data-path')])"""
        )
        assert {(method, path) for method, path in shown} == _operations(app)

        # The purchase example, as integrators first see it.
        events = _block(page, "post", "/v1/events")
        events.locator(".opblock-summary").click()
        examples = events.locator(".examples-select select")
        examples.wait_for(timeout=10_000)
        assert "A purchase at the till" in examples.inner_text()
        assert "unit_price_minor" in events.locator(".body-param__example").inner_text()

        # "Try it out" from the page: the browser calls Treu and shows the answer.
        health = _block(page, "get", "/healthz")
        health.locator(".opblock-summary").click()
        health.locator(".try-out__btn").click()
        health.locator(".execute").click()
        status = health.locator(".live-responses-table tbody .response-col_status")
        status.wait_for(timeout=10_000)
        assert status.inner_text().strip() == "200"
        assert '"status": "ok"' in health.locator(".live-responses-table").inner_text()
        _clean(log)


@pytest.mark.in_browser
def test_redoc_renders_the_api_from_treu_alone(app: FastAPI) -> None:
    with serving(app) as base, browser_page(base) as (page, log):
        page.goto(base + "/redoc")
        title = page.locator("h1").first
        title.wait_for(timeout=30_000)
        assert app.title in title.inner_text()
        page.get_by_text("/v1/events/batch").first.wait_for(timeout=10_000)
        assert page.locator("[role=menuitem], li[data-item-id]").count() >= len(_operations(app))
        _clean(log)


def _block(page: Any, method: str, path: str) -> Any:
    """Swagger UI's block of one operation (the first, if it is listed under two tags)."""
    return (
        page.locator(f".opblock-{method}")
        .filter(has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))
        .first
    )
