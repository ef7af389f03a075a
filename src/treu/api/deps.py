from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, overload

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

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


def bearer_token(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, split as FastAPI's
    ``HTTPBearer`` splits it (None: no such header)."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if token and scheme.lower() == "bearer" else None


@overload
def authenticate(
    token: str | None, scope: str | None, *, settings: Settings, db: Database
) -> Principal: ...
@overload
def authenticate(
    token: str | None, scope: str | None, *, settings: Settings, db: None
) -> Principal | None: ...
def authenticate(
    token: str | None, scope: str | None, *, settings: Settings, db: Database | None
) -> Principal | None:
    """The API key check of every request, on the standard path (``require``) and on the
    lean one (``api.lean``) alike: a valid key, with ``scope`` (any valid key when None).

    A key verified less than ``api_key_cache_seconds`` ago is taken from the cache without
    database work; otherwise it is verified against the database and its ``last_used_at``
    written (at most once a minute, ``auth.service.TOUCH_EVERY``). ``db=None`` is for the
    event loop: None when that database work is needed — call again with ``db`` off the
    loop. Raises ``InvalidApiKey`` (401) for a missing, malformed, unknown or revoked
    key, ``MissingScope`` (403) for a key without ``scope``."""
    if token is None:
        raise InvalidApiKey("send an API key as 'Authorization: Bearer treu_…'")
    principal = api_keys.cached(token) if settings.api_key_cache_seconds else None
    if principal is None:
        if db is None:
            return None
        with db.unit_of_work(write=False) as session:
            principal = api_keys.authenticate(
                session, token, cache_seconds=settings.api_key_cache_seconds
            )
        if principal.needs_touch:
            with db.unit_of_work() as session:
                api_keys.touch(session, lookup=principal.key_id, at=utc_now())
    if scope is not None:
        principal.require(scope)
    return principal


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: a valid API key, with ``scope`` (any valid key when None)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        token = None if credentials is None else credentials.credentials  # Bearer only
        settings: Settings = request.app.state.settings
        principal = authenticate(token, scope, settings=settings, db=None)
        if principal is None:  # not verified recently: ask the database, off the event loop
            principal = await run_in_threadpool(
                authenticate, token, scope, settings=settings, db=request.app.state.db
            )
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
