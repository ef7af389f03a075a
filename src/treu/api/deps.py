from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from treu.auth.errors import InvalidApiKey
from treu.auth.service import Principal, api_keys
from treu.config import Settings
from treu.db.session import Database
from treu.kit.lang import Lang, from_accept_language
from treu.kit.time import utc_now

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer treu_…`")


# Dependencies are ``async def`` so FastAPI runs them on the event loop: a plain ``def``
# dependency costs a hand-off to the thread pool on every request.
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DB = Annotated[Database, Depends(get_db)]


def _verify(db: Database, token: str, settings: Settings) -> Principal:
    with db.unit_of_work(write=False) as session:
        principal = api_keys.authenticate(
            session, token, cache_seconds=settings.api_key_cache_seconds
        )
    if principal.needs_touch:
        with db.unit_of_work() as session:
            api_keys.touch(session, lookup=principal.key_id, at=utc_now())
    return principal


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: a valid API key, with ``scope`` (any valid key when None)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise InvalidApiKey("send an API key as 'Authorization: Bearer treu_…'")
        settings: Settings = request.app.state.settings
        principal = (
            api_keys.cached(credentials.credentials) if settings.api_key_cache_seconds else None
        )
        if principal is None:  # not verified recently: ask the database, off the event loop
            principal = await run_in_threadpool(
                _verify, request.app.state.db, credentials.credentials, settings
            )
        if scope is not None:
            principal.require(scope)
        return principal

    dependency.treu_scope = (scope,)  # type: ignore[attr-defined]
    return dependency


def scope_of(dependency: Callable[..., Any]) -> tuple[str | None] | None:
    """``(scope,)`` when ``dependency`` was made by ``require``, else None."""
    found: tuple[str | None] | None = getattr(dependency, "treu_scope", None)
    return found


AnyKey = Annotated[Principal, Depends(require(None))]
EventsWrite = Annotated[Principal, Depends(require("events:write"))]
MembersRead = Annotated[Principal, Depends(require("members:read"))]
MembersWrite = Annotated[Principal, Depends(require("members:write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
CheckoutKey = Annotated[Principal, Depends(require("events:write|members:read"))]
"""The till and the web shop hold ``events:write`` keys; apps may hold ``members:read``."""


async def requested_language(
    lang: Annotated[
        Lang | None,
        Query(
            description="Language of names and texts. Default: the Accept-Language header "
            "when it names de or en, else the member's own language, else en"
        ),
    ] = None,
    accept_language: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Lang | None:
    """The language the caller asked for (None: the member's own decides)."""
    return lang or from_accept_language(accept_language)


RequestedLang = Annotated[Lang | None, Depends(requested_language)]
"""For answers meant for a member: resolve with ``kit.lang.member_language``."""
