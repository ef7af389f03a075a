"""Routers look at a request only when its path is under their prefix
(``treu.web.routing.Router``): a page is not compared with every route of the API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from tests.api_helpers import Api
from treu.api.app import TreuAPI
from treu.web.routing import Router


def _count_route_matches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    original = APIRoute.matches

    def counting(self: APIRoute, scope: Any) -> Any:
        asked.append(self.path)
        return original(self, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    return asked


def test_a_portal_page_is_matched_against_the_portal_s_routes_only(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = api.client.app
    assert isinstance(app, TreuAPI)
    included: list[Any] = [
        r.original_router for r in app.router.routes if hasattr(r, "original_router")
    ]
    everything = sum(len(router.routes) for router in included)
    asked = _count_route_matches(monkeypatch)
    r = api.client.get("/portal", follow_redirects=False)
    assert r.status_code == 303  # not signed in: to the sign-in page
    assert r.headers["location"].startswith("/portal/sign-in")
    assert asked, "FastAPI no longer asks the routes: the test must follow it"
    assert not any(path.startswith(("/v1", "/admin")) for path in asked), asked
    assert len(asked) < everything / 4


def test_routes_outside_any_prefix_and_unknown_paths_are_answered_as_before(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    missing = api.client.get("/v1/no-such-thing", headers=api.headers("admin"))
    assert missing.status_code == 404
    wrong_method = api.client.delete("/v1/programmes", headers=api.headers("admin"))
    assert wrong_method.status_code == 405


def test_a_router_included_under_a_prefix_or_without_one_is_still_found(api: Api) -> None:
    app = api.client.app
    assert isinstance(app, TreuAPI)
    prefixed = Router(prefix="/inner")
    bare = Router()

    @prefixed.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "inner"}

    @bare.get("/x-test/{n}/ping")
    def bare_ping(n: int) -> dict[str, int]:
        return {"pong": n}

    @bare.get("/x-test/other")
    def other() -> dict[str, str]:
        return {"pong": "other"}

    app.include_router(prefixed, prefix="/outer")
    app.include_router(bare)
    assert (prefixed.gate, bare.gate) == ("/outer/inner", "/x-test")
    assert api.client.get("/outer/inner/ping").json() == {"pong": "inner"}
    assert api.client.get("/inner/ping").status_code == 404
    assert api.client.get("/x-test/7/ping").json() == {"pong": 7}
    assert api.client.get("/x-test/other").json() == {"pong": "other"}
