from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from treu.auth.errors import InvalidApiKey
from treu.auth.service import Principal, api_keys
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer treu_…`")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DB = Annotated[Database, Depends(get_db)]


def require(scope: str | None) -> Callable[..., Principal]:
    """A dependency: a valid API key, with ``scope`` (any valid key when None)."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise InvalidApiKey("send an API key as 'Authorization: Bearer treu_…'")
        db: Database = request.app.state.db
        settings: Settings = request.app.state.settings
        with db.unit_of_work(write=False) as session:
            principal = api_keys.authenticate(
                session, credentials.credentials, cache_seconds=settings.api_key_cache_seconds
            )
        if principal.needs_touch:
            with db.unit_of_work() as session:
                api_keys.touch(session, lookup=principal.key_id, at=utc_now())
        if scope is not None:
            principal.require(scope)
        return principal

    return dependency


AnyKey = Annotated[Principal, Depends(require(None))]
EventsWrite = Annotated[Principal, Depends(require("events:write"))]
MembersRead = Annotated[Principal, Depends(require("members:read"))]
MembersWrite = Annotated[Principal, Depends(require("members:write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
