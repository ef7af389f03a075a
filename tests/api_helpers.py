"""An HTTP client for API tests: the real app on a real database, keys per scope.

The app is built as production builds it, with the API key cache on (its default
lifetime): the hot routes then take the lean path as they do in production (see
``treu.api.lean``), first request with a key or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from treu.api.app import create_app
from treu.auth.service import SCOPES, api_keys
from treu.config import Settings
from treu.db.session import Database


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


KEY_CACHE_SECONDS = Settings.model_fields["api_key_cache_seconds"].default


def make_api(
    db: Database, *, key_cache_seconds: float = KEY_CACHE_SECONDS, **settings_: Any
) -> Api:
    """``settings_``: other settings of the app (e.g. ``env="development"``)."""
    settings = Settings(database_url=db.url, api_key_cache_seconds=key_cache_seconds, **settings_)
    app = create_app(settings, database=db)
    keys: dict[str, str] = {}
    with db.unit_of_work() as session:
        for scope in SCOPES:
            _, plaintext = api_keys.create(session, name=f"test-{scope}", scopes=[scope])
            keys[scope] = plaintext
    return Api(TestClient(app, raise_server_exceptions=False), keys)


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    """``r`` is an RFC 9457 problem of ``status`` and ``code``; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"]
    assert body["detail"]
    return body
