"""An HTTP client for API tests: the real app on a real database, keys per scope."""

from __future__ import annotations

from dataclasses import dataclass

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


def make_api(db: Database) -> Api:
    app = create_app(Settings(database_url=db.url, api_key_cache_seconds=0), database=db)
    keys: dict[str, str] = {}
    with db.unit_of_work() as session:
        for scope in SCOPES:
            _, plaintext = api_keys.create(session, name=f"test-{scope}", scopes=[scope])
            keys[scope] = plaintext
    return Api(TestClient(app, raise_server_exceptions=False), keys)
