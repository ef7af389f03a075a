from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from treu import __version__
from treu.api import problems
from treu.api.routes import (
    challenges,
    checkout,
    coupons,
    event_types,
    events,
    members,
    payments,
    programmes,
    rewards,
    rules,
    tiers,
)
from treu.config import Settings, get_settings
from treu.db.session import Database, get_database
from treu.models import load_all

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


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    load_all()  # every table known before the first statement is built (see db.base.Lookup)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.threads
        tune_gc()
        yield
        executor = getattr(_app.state, "lean_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)

    # The API documentation (/docs, /redoc) with Swagger UI's and ReDoc's scripts served
    # by Treu itself (fastapi-offline bundles them) instead of from a CDN: the pages
    # work without internet access and tell no third party who reads them.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Treu",
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
            {"name": "meta", "description": "Health"},
        ],
    )
    app.state.settings = settings
    app.state.db = database or get_database(settings.database_url)
    problems.install(app)
    # The hot routes first: every request is matched against the routers in this order.
    app.include_router(events.router)
    app.include_router(checkout.router)
    app.include_router(members.router)
    app.include_router(programmes.router)
    app.include_router(event_types.router)
    app.include_router(rules.router)
    app.include_router(tiers.router)
    app.include_router(challenges.router)
    app.include_router(rewards.router)
    app.include_router(coupons.router)
    app.include_router(payments.router)

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


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory treu.api.app:app_factory``."""
    return create_app()
