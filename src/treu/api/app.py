from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRouter
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from treu import __version__
from treu.api import lean, problems, request_log
from treu.api.routes import (
    campaigns,
    challenges,
    checkout,
    consents,
    coupons,
    event_types,
    events,
    inbox,
    insights,
    journeys,
    mailbox,
    members,
    outbox,
    payments,
    programmes,
    recommendations,
    rewards,
    rules,
    segments,
    templates,
    tiers,
    webhooks,
)
from treu.config import Settings, get_settings
from treu.db.session import Database, get_database
from treu.models import load_all
from treu.web import app as web
from treu.web.routing import Router

if TYPE_CHECKING:
    from treu.worker.scheduler import Worker

DOCS_ASSETS = "/docs-assets"
"""Where the scripts, style sheet and icon of the API documentation pages are served."""

GC_THRESHOLD = 100_000
"""Net allocations of container objects before a young-generation collection (CPython's
default is 700). A batch of 1,000 purchases keeps ≈ 60,000 objects alive until it
answers: with 20,000 it set off three young collections per batch that found nothing to
free and cost 34 to 44 ms of its ≈ 480 ms of CPU (measured in-process); with 100,000 none,
and each collection still walks only the objects of the requests in flight."""

DESCRIPTION = """
Treu is an open-source, self-hosted loyalty platform. This API is what POS systems,
web shops and apps talk to.

* **Authentication**: `Authorization: Bearer treu_…` (create keys with `treu apikey create`).
  Scopes: `events:write`, `members:read`, `members:write`, `admin`.
* **Errors**: RFC 9457 `application/problem+json` with a stable `code`; validation errors
  list each field path in `errors`.
* **Idempotency**: every event carries your `id`; a replay answers 200 with the original
  result. Adjustments take an `Idempotency-Key` header.
* **Money** is integer minor units (cents) plus an ISO 4217 currency; **points** are integers;
  **times** are ISO 8601 with a zone.
"""


def tune_gc() -> None:
    """Fewer, cheaper garbage collections in a server process: the modules, the app and
    its caches are moved out of the collector's sight (``gc.freeze``) and the youngest
    generation is collected less often. Without this, full collections paused the workers
    for tens of milliseconds a few times a minute under load (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


class TreuAPI(FastAPI):
    """FastAPI with Treu's request handling around it: ``request_log`` outside
    everything (request ids, the access line), ``lean.LeanApp`` as the innermost
    middleware for the routes of ``lean_routers`` (set before the first request)."""

    lean_plans: dict[str, lean.Plan]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lean_plans = {}
        # The first middleware added is the innermost: what is added later runs in front
        # of the lean path, on the hot routes as on any other.
        self.add_middleware(lean.LeanApp, api=self, plans=self.lean_plans)
        lean.check_position(self)  # refuses middleware given to the constructor

    def include_router(self, router: APIRouter, *args: Any, **kwargs: Any) -> None:
        """As FastAPI's; a ``Router`` learns the path all its routes start with."""
        if isinstance(router, Router):
            router.include(kwargs.get("prefix") or "")
        super().include_router(router, *args, **kwargs)

    def lean_routers(self, *routers: APIRouter) -> None:
        self.lean_plans.update(lean.plans(*routers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await request_log.logged(super().__call__, scope, receive, send)


def _embedded_worker(db: Database, settings: Settings) -> Worker | None:
    """In development (or with ``TREU_SERVE_WORKER=true``) ``treu serve`` runs the
    worker's jobs and delivery loop itself, so that ``make run`` delivers the demo's
    messages with no second process. In production run ``treu worker`` apart."""
    wanted = settings.serve_worker
    if wanted is None:
        wanted = settings.env == "development"
    if not wanted:
        return None
    from treu.worker.scheduler import Worker

    worker = Worker(db, settings)
    worker.start()
    return worker


def create_app(settings: Settings | None = None, database: Database | None = None) -> TreuAPI:
    settings = settings or get_settings()
    request_log.install()
    load_all()  # every table known before the first statement is built (see db.fastpath.Lookup)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.threads
        tune_gc()
        worker = _embedded_worker(app.state.db, settings)
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            lean.close_pool(_app)

    app = TreuAPI(
        title="Treu",
        docs_url=None,  # served by _documentation
        redoc_url=None,
        lifespan=lifespan,
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "events", "description": "Purchases and returns from every channel"},
            {"name": "members", "description": "Enrolment, profile, balance and ledger"},
            {"name": "programmes", "description": "Earn rate, pending period, expiry"},
            {"name": "rules", "description": "Earning rules: drafts, publication, simulation"},
            {"name": "checkout", "description": "What a cart earns, before it is bought"},
            {"name": "tiers", "description": "Members' tiers, what is missing, history"},
            {"name": "challenges", "description": "Goals over a window; members' progress"},
            {"name": "rewards", "description": "Catalogue, redemptions, cancelling"},
            {"name": "coupons", "description": "Validate and use coupons; QR codes"},
            {"name": "payments", "description": "Pay with points, e-wallet, charity donations"},
            {"name": "webhooks", "description": "Endpoints that receive events (signed)"},
            {"name": "outbox", "description": "Delivery from the outbox: depth, failures, retries"},
            {"name": "consents", "description": "Who may be contacted over which channel"},
            {"name": "meta", "description": "Health"},
        ],
    )
    app.state.settings = settings
    app.state.db = database or get_database(settings.database_url)
    problems.install(app)
    problems.document_problems(app)
    # The hot routes first: every request is matched against the routers in this order.
    app.include_router(events.router)
    app.include_router(checkout.router)
    app.lean_routers(events.router, checkout.router)
    app.include_router(members.router)
    app.include_router(programmes.router)
    app.include_router(event_types.router)
    app.include_router(rules.router)
    app.include_router(tiers.router)
    app.include_router(challenges.router)
    app.include_router(campaigns.router)
    app.include_router(rewards.router)
    app.include_router(recommendations.router)
    app.include_router(coupons.router)
    app.include_router(payments.router)
    app.include_router(outbox.router)
    app.include_router(webhooks.router)
    app.include_router(consents.router)
    app.include_router(consents.settings_router)
    app.include_router(consents.unsubscribe_router)
    app.include_router(templates.router)
    app.include_router(inbox.router)
    app.include_router(journeys.router)
    app.include_router(insights.router)
    app.include_router(segments.router)
    app.include_router(segments.scores_router)
    if settings.env == "development":
        app.include_router(mailbox.router)
    web.install(app)

    _documentation(app)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/healthz", tags=["meta"])
    def health() -> dict[str, Any]:
        from sqlalchemy import text

        with app.state.db.unit_of_work(write=False) as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    return app


def _documentation(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) with their scripts, style sheet and icon
    served by Treu itself — the copies bundled by the ``fastapi-offline`` package —
    instead of from a CDN: the pages work without internet access and tell no third
    party who reads them."""

    @app.get(f"{DOCS_ASSETS}/{REDOC_SCRIPT}", include_in_schema=False)
    def redoc_script() -> Response:
        return Response(
            _redoc_script(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(
        DOCS_ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets"
    )
    openapi = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi,
            title=f"{app.title} - API",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    if oauth2_redirect:

        @app.get(oauth2_redirect, include_in_schema=False)
        def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi,
            title=f"{app.title} - API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/{REDOC_SCRIPT}",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


REDOC_SCRIPT = "redoc.js"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_LOGO = "data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E"


@functools.cache
def _redoc_script() -> bytes:
    """ReDoc's bundled script, except that its menu's "API docs by Redocly" logo is an
    empty picture instead of an image from Redocly's CDN: otherwise every reader of /redoc
    would ask that host for it (found by the browser test, tests/api/test_docs_browser.py)."""
    bundled = resources.files("fastapi_offline").joinpath("static", "redoc.standalone.js")
    script = bundled.read_bytes()
    if REDOC_LOGO.encode() not in script:  # a newer bundle: the browser test tells
        return script
    return script.replace(REDOC_LOGO.encode(), NO_LOGO.encode())


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory treu.api.app:app_factory``."""
    return create_app()
