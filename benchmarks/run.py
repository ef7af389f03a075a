"""``make bench``: purchase ingestion and checkout evaluation through the HTTP API, on
SQLite and PostgreSQL, rule evaluation alone, and the insights at a million members.

Eleven parts (``--only`` picks some):

* ``rules_eval``: ``benchmarks.rules_eval`` in this process (50 rules, 10-line cart),
  once, before the backends.
* ``ingest``, for each backend: a fresh database (migrated with Alembic), a programme with
  many members and an API key; the raw single-row INSERT baseline; then ``treu serve
  --workers 2`` as a subprocess and the load phases against it (warm-up, 200 req/s fixed
  rate, 50 req/s light load, saturation at two concurrencies, batch endpoint); then the
  server stops and the run checks that the database holds exactly the purchases that
  were answered 201 and that every balance rebuilds from its postings.
* ``checkout``, for each backend, against the same server: a second programme with 50
  published rules and members with a points history; ``POST /v1/checkout/evaluate`` with
  10-line carts at 300 req/s (open loop) and at saturation (closed loop); every answer
  must be 200, and sample carts answered over HTTP must equal ``checkout.evaluate`` of the
  same cart in-process.
* ``redeem``, for each backend, against the same server: a third programme whose members
  hold plenty of points; ``POST /v1/members/{id}/redemptions`` at saturation (closed
  loop), half of the requests for one hot reward with a limited stock (all of them queue
  on its row) and half for an unlimited one; then a flash sale: every request for one
  reward with a small stock. The run checks that the stock consumed equals the
  redemptions answered 201 and stored, that no balance is negative and that the ledger
  verifies.

* ``pages``, for each backend, against the same server: the demo programme loaded into the
  database; the portal's home page and the console's member 360 under 20 concurrent users
  next to ``GET /v1/members/{id}/balance``, alternated twice; every answer must be 200
  (``benchmarks.pages``).
* ``delivery``, for each backend: webhooks to a local HTTP receiver and e-mails to a local
  SMTP sink (both in processes of their own) with one worker, from outbox events to
  recorded deliveries, next to raw POSTs and raw SMTP sends from as many threads
  (``benchmarks.delivery``).
* ``ingest_campaign``, for each backend, against the same server: single events at
  saturation on a plain programme and on one with an active bonus campaign and a webhook
  subscription, alternated A, B, A, B, with no delivery worker running; then the outbox
  is drained and every webhook must have arrived (``benchmarks.campaign``).
* ``journeys``, for each backend, on a database of its own: one ``run_daily`` over a
  programme of 100,000 members loaded in bulk, next to a raw scan and insert on the same
  database (``benchmarks.journeys``).
* ``segments``, on PostgreSQL, on a database of its own: RFM and ten segments over 1M
  members / 20M purchases generated in the database (``benchmarks.segments``).
* ``insights_scale``, PostgreSQL only, on a database of its own: 1M members and 20M
  purchase lines loaded by ``treu demo --bulk``, then reading them next to the COPY
  floor, the BG/NBD + Gamma-Gamma fit, RFM and segments, the whole ``treu insights
  train`` and the peak memory (``benchmarks.insights_scale``; sizes by environment).
* ``insights_clv``: ``benchmarks.insights_clv`` in this process: BG/NBD + Gamma-Gamma
  fitted on 1M synthetic customers with about 20M purchases, in memory, and the churn model
  on the same data.

Results: Rich tables and ``benchmarks/results/{ingest-<time>,latest}.json``
(``checkout-<time>.json`` etc. when ``--only`` leaves out the ingest part).

See ``docs/performance.md`` for what is measured and why, and the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from benchmarks import baseline, loadgen
from benchmarks.server import (
    CpuUse,
    Server,
    background_load,
    cpu_meter,
    free_port,
    machine_busy,
)
from benchmarks.workload import (
    Carts,
    CheckoutFixture,
    Purchases,
    RedeemClient,
    RedeemFixture,
    RedeemTally,
    Redemptions,
    batch_accepted,
    check,
    check_redeem,
    checkout_answered,
    cross_check_checkout,
    prepare,
    prepare_checkout,
    prepare_redeem,
)
from treu import __version__
from treu.db.session import Database
from treu.migrations import upgrade

RESULTS = Path(__file__).parent / "results"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/"
BENCH_DATABASE = "treu_bench"
PARTS = (
    "rules_eval",
    "ingest",
    "ingest_campaign",
    "checkout",
    "redeem",
    "pages",
    "delivery",
    "journeys",
    "insights_clv",
    "segments",
    "insights_scale",
)
SERVER_PARTS = ("ingest", "ingest_campaign", "checkout", "redeem", "pages", "delivery")
"""Parts that share one database (and the server) per backend; ``journeys`` has its own."""
JOURNEYS_SUFFIX = "_journeys"
INSIGHTS_SUFFIX = "_insights"
CHECKOUT_PATH = "/v1/checkout/evaluate"

TARGETS = [
    # (key, backend, description, unit, threshold, higher is better)
    ("saturation_events_per_s", "postgresql", "single events at saturation", "events/s", 800, True),
    ("fixed_rate_p99_ms", "postgresql", "p99 latency at 200 req/s", "ms", 25, False),
    (
        "batch_events_per_s",
        "postgresql",
        "batch endpoint (1,000 events/request)",
        "events/s",
        5000,
        True,
    ),
    (
        "checkout_p99_ms",
        "postgresql",
        "checkout p99 at 300 req/s (50 rules, 10 lines)",
        "ms",
        15,
        False,
    ),
    (
        "redeem_per_s",
        "postgresql",
        "redemptions at saturation, one hot reward, zero oversell",
        "redemptions/s",
        300,
        True,
    ),
    (
        "webhooks_per_s",
        "postgresql",
        "webhooks to a local receiver, one worker",
        "webhooks/s",
        500,
        True,
    ),
    (
        "emails_per_s",
        "postgresql",
        "e-mails to a local SMTP sink, one worker",
        "e-mails/s",
        200,
        True,
    ),
    (
        "campaign_ingest_ratio",
        "postgresql",
        "single events with a bonus campaign + webhook ÷ without (median of same-run rounds)",
        "x",
        0.85,
        True,
    ),
    (
        "portal_home_ratio",
        "postgresql",
        "portal home ÷ balance endpoint, 20 users (same run)",
        "x",
        0.5,
        True,
    ),
    (
        "portal_home_p95_ms",
        "postgresql",
        "portal home p95, 20 users never pausing",
        "ms",
        50,
        False,
    ),
    (
        "portal_home_paced_p95_ms",
        "postgresql",
        "portal home p95, 20 users at a page a second each",
        "ms",
        50,
        False,
    ),
    (
        "member_360_ratio",
        "postgresql",
        "console member 360 ÷ balance endpoint, 20 users (same run)",
        "x",
        0.5,
        True,
    ),
    (
        "member_360_p95_ms",
        "postgresql",
        "console member 360 p95, 20 users never pausing",
        "ms",
        50,
        False,
    ),
    (
        "member_360_paced_p95_ms",
        "postgresql",
        "console member 360 p95, 20 users at a page a second each",
        "ms",
        50,
        False,
    ),
    ("insights_fit_seconds", "postgresql", "BG/NBD + Gamma-Gamma fit", "s", 30, False),
    ("insights_rfm_segments_seconds", "postgresql", "RFM and all segments", "s", 30, False),
    ("insights_train_seconds", "postgresql", "whole treu insights train", "s", 600, False),
    ("insights_peak_rss_gb", "postgresql", "insights peak memory (RSS)", "GB", 8, False),
    (
        "journeys_seconds",
        "postgresql",
        "daily journeys over the whole programme (first run)",
        "s",
        60,
        False,
    ),
    (
        "clv_fit_seconds",
        "in-process",
        "BG/NBD + Gamma-Gamma fit, 1M customers, 20M purchases",
        "s",
        30,
        False,
    ),
    (
        "rules_eval_carts_per_s",
        "in-process",
        "rule evaluation alone (50 rules, 10 lines)",
        "carts/s",
        5000,
        True,
    ),
]

console = Console()


@dataclass
class Params:
    backends: list[str]
    members: int
    workers: int
    rate: float
    rate_seconds: float
    light_rate: float
    light_seconds: float
    saturation_concurrency: list[int]
    saturation_seconds: float
    saturation_warmup: float
    batch_size: int
    batch_concurrency: int
    batch_seconds: float
    baseline_seconds: float
    port: int
    postgres_url: str
    profile_seconds: float
    wait_quiet: float
    only: list[str] = field(default_factory=lambda: list(PARTS))
    quick: bool = False
    checkout_rate: float = 300.0
    checkout_rate_seconds: float = 30.0
    checkout_concurrency: list[int] = field(default_factory=lambda: [4, 16])
    checkout_seconds: float = 20.0
    checkout_warmup: float = 3.0
    checkout_history: int = 3000
    checkout_check_carts: int = 20
    redeem_concurrency: list[int] = field(default_factory=lambda: [4, 16])
    redeem_seconds: float = 20.0
    redeem_hot_share: float = 0.5
    redeem_hot_stock: int = 1_000_000
    redeem_flash_stock: int = 500
    redeem_flash_concurrency: int = 32
    redeem_flash_seconds: float = 5.0
    journey_members: int = 100_000
    journey_limit: float = 600.0
    segment_members: int = 1_000_000
    segment_purchases: int = 20_000_000
    campaign_concurrency: int = 16
    campaign_seconds: float = 10.0
    campaign_rounds: int = 5
    campaign_worker_phase: bool = True
    database: str = BENCH_DATABASE
    pages_seconds: float = 8.0
    pages_rounds: int = 2

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["postgres_url"] = make_url(self.postgres_url).render_as_string(hide_password=True)
        return out


@dataclass
class Tally:
    """Answers counted across every phase, to compare with the database afterwards."""

    accepted: int = 0
    server_errors: int = 0
    client_errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, result: loadgen.Result) -> None:
        self.accepted += result.events_accepted
        for status, n in result.statuses.items():
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + n
            if status >= 500:
                self.server_errors += n
        self.client_errors += sum(result.errors.values())


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def describe(result: loadgen.Result, use: CpuUse, *, unit: str = "event") -> dict[str, Any]:
    """The figures of one phase; CPU is given per accepted event (per 200 answer with
    ``unit="request"``)."""
    events = result.events_accepted
    cpu: dict[str, Any] = use.as_dict()
    if events:
        # CPU per event is steadier than events/s when other work shares the machine.
        cpu[f"ms_per_{unit}"] = {
            "server": round(use.server / events * 1000, 3),
            "database": round(use.database / events * 1000, 3),
            "client": round(use.client / events * 1000, 3),
        }
    return {
        "requests": result.requests,
        "measured_requests": result.measured_requests,
        "measured_seconds": round(result.measured_seconds, 3),
        "requests_per_s": round(result.measured_requests / result.measured_seconds, 1)
        if result.measured_seconds
        else 0.0,
        "events_per_s": round(result.events_in_window / result.measured_seconds, 1)
        if result.measured_seconds
        else 0.0,
        "latency_ms": {
            "p50": ms(result.percentile(50)),
            "p90": ms(result.percentile(90)),
            "p99": ms(result.percentile(99)),
            "p99.9": ms(result.percentile(99.9)),
            "max": ms(max(result.latencies)) if result.latencies else None,
        },
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": dict(result.errors),
        "client_cpu_us_per_request": round(result.client_cpu_seconds / result.requests * 1e6, 1)
        if result.requests
        else None,
        "connections": result.max_connections,
        "cpu": cpu,
    }


# --- databases ---------------------------------------------------------------------------


def postgres_database(admin_url: str, name: str = BENCH_DATABASE) -> str | None:
    """Drop and recreate ``name``; None when no PostgreSQL server answers."""
    import psycopg

    url = make_url(admin_url)
    conninfo = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        console.print(f"[bold red]PostgreSQL is not reachable ({exc}); skipping it.[/]")
        return None
    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False
    )


def drop_postgres_database(admin_url: str, name: str = BENCH_DATABASE) -> None:
    import psycopg

    conninfo = (
        make_url(admin_url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_info(url: str) -> dict[str, Any]:
    from sqlalchemy import text

    db = Database(url)
    try:
        with db.unit_of_work(write=False) as session:
            settings = {
                name: session.execute(text(f"SHOW {name}")).scalar()
                for name in ("server_version", "synchronous_commit", "shared_buffers", "fsync")
            }
    finally:
        db.dispose()
    return settings


def wait_for_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait (up to ``limit`` seconds) until the machine has been idle for 3 s running."""
    started = time.perf_counter()
    quiet = 0
    while time.perf_counter() - started < limit and quiet < 3:
        quiet = quiet + 1 if background_load(1.0) < threshold else 0
    waited = round(time.perf_counter() - started, 1)
    if quiet < 3:
        console.print(f"[yellow]the machine did not become quiet within {limit:.0f} s[/]")
    return waited


class Phases:
    """Runs load phases; with ``--wait-quiet``, each phase waits for a quiet machine first
    and is repeated (up to ``RETRIES`` times) when other work took more than
    ``NOISE_LIMIT`` cores meanwhile, keeping the least disturbed attempt."""

    RETRIES = 2
    NOISE_LIMIT = 0.25

    def __init__(self, server: Server, dbname: str | None, tally: Tally, params: Params):
        self.server = server
        self.dbname = dbname
        self.tally = tally
        self.params = params

    def run(
        self, make: Callable[[], Coroutine[Any, Any, loadgen.Result]]
    ) -> tuple[loadgen.Result, CpuUse, int]:
        best: tuple[loadgen.Result, CpuUse] | None = None
        attempts = 0
        for _ in range(1 + (self.RETRIES if self.params.wait_quiet else 0)):
            attempts += 1
            if self.params.wait_quiet:
                wait_for_quiet(self.params.wait_quiet)
            with cpu_meter(self.server, self.dbname) as cpu:
                result = loadgen.run(make())
            self.tally.add(result)
            if best is None or cpu[0].noise < best[1].noise:
                best = (result, cpu[0])
            if cpu[0].noise <= self.NOISE_LIMIT:
                break
            console.print(f"[yellow]other work used {cpu[0].noise:.2f} cores meanwhile[/]")
        assert best is not None
        return best[0], best[1], attempts


# --- one backend -------------------------------------------------------------------------


def bench_backend(backend: str, url: str, params: Params, workdir: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:  # processes that live as long as the backend's run
        return _bench_backend(backend, url, params, workdir, stack)


def _bench_backend(
    backend: str, url: str, params: Params, workdir: Path, stack: contextlib.ExitStack[Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"url": make_url(url).render_as_string(hide_password=True)}
    console.rule(f"[bold]{backend}")
    started = time.perf_counter()
    upgrade(url)
    db = Database(url)
    ingest = "ingest" in params.only
    fixture = None
    if ingest:
        fixture = prepare(db, members_count=params.members)
        out["setup"] = {
            "members": params.members,
            "setup_seconds": round(time.perf_counter() - started, 2),
        }
        console.print(
            f"migrated and created {params.members:,} members in {out['setup']['setup_seconds']} s"
        )
    checkout_fixture = None
    if "checkout" in params.only:
        checkout_fixture = prepare_checkout(
            db, members_count=params.members, history=params.checkout_history
        )
        out["checkout"] = {
            "setup": {
                "members": params.members,
                "rules": checkout_fixture.rules,
                "history_purchases": checkout_fixture.history_purchases,
                "history_members": checkout_fixture.history_members,
                "setup_seconds": round(checkout_fixture.setup_seconds, 2),
            }
        }
        console.print(
            f"checkout programme: {checkout_fixture.rules} published rules, "
            f"{params.members:,} members, {checkout_fixture.history_purchases:,} past purchases "
            f"of {checkout_fixture.history_members:,} members in "
            f"{checkout_fixture.setup_seconds:.1f} s"
        )

    redeem_fixture = None
    if "redeem" in params.only:
        redeem_fixture = prepare_redeem(
            db,
            members_count=params.members,
            hot_stock=params.redeem_hot_stock,
            flash_stock=params.redeem_flash_stock,
        )
        out["redeem"] = {
            "setup": {
                "members": params.members,
                "hot_stock": params.redeem_hot_stock,
                "flash_stock": params.redeem_flash_stock,
                "setup_seconds": round(redeem_fixture.setup_seconds, 2),
            }
        }
        console.print(
            f"redemption programme: {params.members:,} members with points, a hot reward "
            f"({params.redeem_hot_stock:,} units), an unlimited one, a flash sale "
            f"({params.redeem_flash_stock:,} units), in {redeem_fixture.setup_seconds:.1f} s"
        )

    campaign_fixture = None
    if "ingest_campaign" in params.only:
        from benchmarks import campaign, delivery

        sink_port = stack.enter_context(delivery.sink("http"))
        campaign_fixture = campaign.prepare_campaign(
            db, members_count=params.members, sink_port=sink_port
        )
        out["ingest_campaign"] = {
            "setup": {
                "members_per_programme": params.members,
                "campaign": "x3 on lines tagged organic, audience all, "
                f"holdout {campaign.HOLDOUT} %, budget {campaign.BUDGET:,} points",
                "webhook": "one subscription to points.earned (local receiver)",
                "setup_seconds": round(campaign_fixture.setup_seconds, 2),
            }
        }
        console.print(
            f"campaign ingest: two programmes of {params.members:,} members, one with an "
            f"active bonus campaign and a webhook subscription, in "
            f"{campaign_fixture.setup_seconds:.1f} s"
        )

    pages_fixture = None
    if "pages" in params.only:
        from benchmarks import pages

        pages_fixture = pages.prepare_pages(db)
        out["pages"] = {
            "setup": {
                "programme": "the demo (treu demo: 1,000 members, 20,000 purchases)",
                "users": pages.USERS,
                "postings_per_member": [
                    min(pages_fixture.postings_per_member),
                    max(pages_fixture.postings_per_member),
                ],
                "setup_seconds": round(pages_fixture.setup_seconds, 2),
            }
        }
        console.print(
            f"pages: the demo programme and {pages.USERS} signed-in members "
            f"({min(pages_fixture.postings_per_member)} to "
            f"{max(pages_fixture.postings_per_member)} postings each) in "
            f"{pages_fixture.setup_seconds:.1f} s"
        )

    dbname = make_url(url).database if backend == "postgresql" else None
    campaign_tallies: dict[str, Tally] = {}
    if ingest:
        # Raw baselines (before the server starts, so nothing else competes).
        out["baselines"] = baselines(url, params, dbname)

    port = free_port(params.port)
    server = Server(url=url, port=port, workers=params.workers, workdir=workdir)
    tally = Tally()
    server.start()
    try:
        out["server"] = {"port": port, "workers": params.workers, "pids": server.pids()}
        out["background_cores_before"] = background_load()
        if fixture is not None:
            purchases = Purchases(fixture, run_id=f"{backend}-{int(time.time())}")
            client = loadgen.Client("127.0.0.1", port, fixture.token)
            ingest_phases(out, client, purchases, Phases(server, dbname, tally, params), params)
            if params.profile_seconds > 0:
                from benchmarks import sampling

                out["profile"] = sampling.run(
                    server, client, purchases, tally, backend=backend, params=params
                )
        if checkout_fixture is not None:
            out["checkout"].update(
                checkout_phases(server, dbname, checkout_fixture, params, db=db, port=port)
            )
        if redeem_fixture is not None:
            out["redeem"].update(
                redeem_phases(server, dbname, redeem_fixture, params, db=db, port=port)
            )
        if pages_fixture is not None:
            out["pages"].update(pages_phases(server, dbname, pages_fixture, params))
        if campaign_fixture is not None:
            out["ingest_campaign"].update(
                campaign_phases(
                    server, dbname, campaign_fixture, params, url=url, tallies=campaign_tallies
                )
            )
    finally:
        server.stop()

    if ingest:
        ingest_check(out, db, fixture, tally, server)
    if campaign_fixture is not None:
        campaign_check(out["ingest_campaign"], db, campaign_fixture, campaign_tallies, server)
    if "delivery" in params.only:
        from benchmarks import delivery

        console.print("delivery: webhooks and e-mail with one worker, next to raw sends")
        out["delivery"] = delivery.run(db, quick=params.quick)
        for channel, figures in out["delivery"].items():
            console.print(f"  {channel}: {figures}", highlight=False)
    db.dispose()
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    return out


def bench_journeys(backend: str, params: Params, workdir: Path) -> dict[str, Any] | None:
    """The daily journeys on a database of their own (``benchmarks.journeys``); None
    when PostgreSQL is not reachable."""
    from benchmarks import journeys

    console.rule(f"[bold]{backend}: daily journeys")
    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'journeys.db'}"
    else:
        maybe = postgres_database(params.postgres_url, params.database + JOURNEYS_SUFFIX)
        if maybe is None:
            return None
        url = maybe
    try:
        upgrade(url)
        db = Database(url)
        try:
            if params.wait_quiet:
                wait_for_quiet(params.wait_quiet)
            out = journeys.run(
                db, members=params.journey_members, console=console, limit=params.journey_limit
            )
        finally:
            db.dispose()
        out["postgres"] = postgres_info(url) if backend == "postgresql" else None
    finally:
        if backend == "postgresql":
            drop_postgres_database(params.postgres_url, params.database + JOURNEYS_SUFFIX)
    return out


def bench_segments(params: Params) -> dict[str, Any] | None:
    """RFM and all segments on PostgreSQL, on a database of their own
    (``benchmarks.segments``); None when PostgreSQL is not reachable."""
    from benchmarks import segments

    console.rule("[bold]postgresql: RFM and segments")
    name = params.database + "_segments"
    url = postgres_database(params.postgres_url, name)
    if url is None:
        return None
    try:
        upgrade(url)
        db = Database(url)
        try:
            return segments.run(
                db,
                members=params.segment_members,
                purchases=params.segment_purchases,
                console=console,
            )
        finally:
            db.dispose()
    finally:
        drop_postgres_database(params.postgres_url, name)


def bench_insights(params: Params) -> dict[str, Any] | None:
    """The insights at scale on a PostgreSQL database of their own
    (``benchmarks.insights_scale``); None when PostgreSQL is not reachable."""
    from benchmarks import insights_scale

    url = postgres_database(params.postgres_url, params.database + INSIGHTS_SUFFIX)
    if url is None:
        return None
    try:
        upgrade(url)
        if params.wait_quiet:
            wait_for_quiet(params.wait_quiet)
        out = insights_scale.run(url, console=console)
        out["postgres"] = postgres_info(url)
    finally:
        drop_postgres_database(params.postgres_url, params.database + INSIGHTS_SUFFIX)
    return out


def baselines(url: str, params: Params, dbname: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    baseline.prepare(url)
    for variant in ("driver", "sqlalchemy"):
        best: baseline.Baseline | None = None
        for _ in range(1 + (Phases.RETRIES if params.wait_quiet else 0)):
            if params.wait_quiet:
                wait_for_quiet(params.wait_quiet)
            base = baseline.measure(
                url,
                variant=variant,
                connections=params.workers,
                duration=params.baseline_seconds,
                database=dbname,
            )
            if best is None or base.noise < best.noise:
                best = base
            if base.noise <= Phases.NOISE_LIMIT:
                break
        assert best is not None
        base = best
        out[variant] = {
            "connections": base.connections,
            "transactions": base.transactions,
            "seconds": base.seconds,
            "tx_per_s": round(base.tx_per_second, 1),
            "cores": {
                "clients": round(base.client_cores, 3),
                "database": round(base.database_cores, 3),
                "other": round(base.noise, 3),
                "machine": round(base.machine_cores, 3),
            },
        }
        console.print(
            f"raw INSERT+COMMIT ({variant}, {base.connections} connections): "
            f"{base.tx_per_second:,.0f} tx/s"
        )
    return out


def ingest_phases(
    out: dict[str, Any],
    client: loadgen.Client,
    purchases: Purchases,
    phases: Phases,
    params: Params,
) -> None:
    # Warm-up: imports, connection pools, caches in both workers.
    warm = loadgen.run(
        loadgen.closed_loop(
            client, "/v1/events", purchases.single, concurrency=4, warmup=0, duration=3
        )
    )
    phases.tally.add(warm)

    # Latency at fixed rates (open loop): the target rate, then a light load that
    # shows the service time without queueing.
    for key, rate, seconds in (
        ("fixed_rate", params.rate, params.rate_seconds),
        ("light_load", params.light_rate, params.light_seconds),
    ):
        if rate <= 0 or seconds <= 0:
            continue
        fixed, use, attempts = phases.run(
            lambda r=rate, d=seconds: loadgen.open_loop(  # type: ignore[misc]
                client, "/v1/events", purchases.single, rate=r, duration=d
            )
        )
        out[key] = {"rate": rate, **describe(fixed, use), "attempts": attempts}
        out[key]["late_sends"] = fixed.late_sends
        lat = out[key]["latency_ms"]
        console.print(
            f"{rate:.0f} req/s for {seconds:.0f} s: p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms, max {lat['max']} ms"
        )

    # Saturation (closed loop) at a few concurrencies.
    out["saturation"] = []
    for concurrency in params.saturation_concurrency:
        sat, use, attempts = phases.run(
            lambda c=concurrency: loadgen.closed_loop(  # type: ignore[misc]
                client,
                "/v1/events",
                purchases.single,
                concurrency=c,
                warmup=params.saturation_warmup,
                duration=params.saturation_seconds,
            )
        )
        item = {"concurrency": concurrency, **describe(sat, use), "attempts": attempts}
        out["saturation"].append(item)
        console.print(
            f"saturation, {concurrency} connections: {item['events_per_s']:,.0f} events/s, "
            f"p50 {item['latency_ms']['p50']} ms, p99 {item['latency_ms']['p99']} ms, "
            f"server {item['cpu']['server_cores']} cores, "
            f"database {item['cpu']['database_cores']}, client {item['cpu']['client_cores']}"
        )
    out["saturation_best"] = max(out["saturation"], key=lambda x: x["events_per_s"])

    # Batch endpoint.
    batch, use, attempts = phases.run(
        lambda: loadgen.closed_loop(
            client,
            "/v1/events/batch",
            lambda: purchases.batch(params.batch_size),
            concurrency=params.batch_concurrency,
            warmup=0,
            duration=params.batch_seconds,
            accepted=batch_accepted,
            want_body=True,
            requests_per_connection=1,
        )
    )
    out["batch"] = {
        "events_per_request": params.batch_size,
        "concurrency": params.batch_concurrency,
        **describe(batch, use),
        "attempts": attempts,
    }
    console.print(
        f"batch ({params.batch_size} events/request, {params.batch_concurrency} "
        f"connections): {out['batch']['events_per_s']:,.0f} events/s, "
        f"p50 {out['batch']['latency_ms']['p50']} ms per request"
    )


def ingest_check(
    out: dict[str, Any], db: Database, fixture: Any, tally: Tally, server: Server
) -> None:
    result = check(db, fixture.programme_id)
    correct = (
        result.purchases_in_db == tally.accepted
        and tally.server_errors == 0
        and tally.client_errors == 0
        and result.discrepancies == 0
    )
    out["correctness"] = {
        "answered_201": tally.accepted,
        "purchases_in_db": result.purchases_in_db,
        "statuses": tally.statuses,
        "server_errors": tally.server_errors,
        "client_errors": tally.client_errors,
        "ledger_verify_discrepancies": result.discrepancies,
        "ledger_verify_seconds": round(result.verify_seconds, 2),
        "ok": correct,
    }
    if not correct:
        console.print(f"[bold red]correctness check failed:[/] {out['correctness']}")
        console.print(server.log_tail())
    else:
        console.print(
            f"[green]correct:[/] {result.purchases_in_db:,} purchases stored = 201 answers, "
            "no 5xx, ledger verify found nothing"
        )

    driver = out["baselines"]["driver"]["tx_per_s"]
    core = out["baselines"]["sqlalchemy"]["tx_per_s"]
    sat_eps = out["saturation_best"]["events_per_s"]
    batch_eps = out["batch"]["events_per_s"]
    out["ratios"] = {
        "saturation_vs_driver": round(sat_eps / driver, 3) if driver else None,
        "saturation_vs_sqlalchemy": round(sat_eps / core, 3) if core else None,
        "batch_vs_driver": round(batch_eps / driver, 3) if driver else None,
    }


def campaign_phases(
    server: Server,
    dbname: str | None,
    fixture: Any,
    params: Params,
    *,
    url: str,
    tallies: dict[str, Tally],
) -> dict[str, Any]:
    """Single events at saturation on the plain programme (A) and on the one with the
    campaign and the webhook (B), in rounds A B, B A, A B, …; no delivery worker runs.
    The figure is the median of the rounds' B ÷ A: this machine's speed drifts by 15 %
    from one phase to the next (same work, same server), and a ratio within a round,
    over the median of several, follows that drift less than the ratio of two means
    (reported too). Then, as information, B once more with a delivery worker draining
    meanwhile."""
    from benchmarks import campaign

    loads: dict[str, tuple[loadgen.Client, Purchases]] = {}
    stamp = int(time.time())
    for name, fx in ((campaign.PLAIN, fixture.plain), (campaign.BONUS, fixture.bonus)):
        tallies[name] = Tally()
        loads[name] = (
            loadgen.Client("127.0.0.1", server.port, fx.token),
            Purchases(fx, run_id=f"{name}-{stamp}"),
        )
        # Warm-up: each programme's rules (and the campaign) cached in both workers.
        client, purchases = loads[name]
        tallies[name].add(
            loadgen.run(
                loadgen.closed_loop(
                    client, "/v1/events", purchases.single, concurrency=4, warmup=0, duration=3
                )
            )
        )

    def saturate(name: str) -> Callable[[], Coroutine[Any, Any, loadgen.Result]]:
        client, purchases = loads[name]
        return lambda: loadgen.closed_loop(
            client,
            "/v1/events",
            purchases.single,
            concurrency=params.campaign_concurrency,
            warmup=params.saturation_warmup,
            duration=params.campaign_seconds,
        )

    phases: list[dict[str, Any]] = []
    for n in range(params.campaign_rounds):
        order = (campaign.PLAIN, campaign.BONUS)
        for name in order if n % 2 == 0 else order[::-1]:
            sat, use, attempts = Phases(server, dbname, tallies[name], params).run(saturate(name))
            item = {"programme": name, "round": n + 1, **describe(sat, use), "attempts": attempts}
            phases.append(item)
            console.print(
                f"{name} ({'campaign + webhook' if name == campaign.BONUS else 'plain'}), "
                f"round {n + 1}: {item['events_per_s']:,.0f} events/s, "
                f"p99 {item['latency_ms']['p99']} ms, server "
                f"{item['cpu'].get('ms_per_event', {}).get('server')} ms/event, "
                f"other work {item['cpu']['other_cores']} cores"
            )

    def mean(name: str, key: Callable[[dict[str, Any]], float]) -> float:
        values = [key(p) for p in phases if p["programme"] == name]
        return sum(values) / len(values) if values else 0.0

    plain = mean(campaign.PLAIN, lambda p: p["events_per_s"])
    bonus = mean(campaign.BONUS, lambda p: p["events_per_s"])
    rates = {(p["programme"], p["round"]): p["events_per_s"] for p in phases}
    per_round = [
        rates[(campaign.BONUS, n)] / rates[(campaign.PLAIN, n)]
        for n in range(1, params.campaign_rounds + 1)
        if rates.get((campaign.PLAIN, n))
    ]
    cpu_plain = mean(campaign.PLAIN, lambda p: p["cpu"].get("ms_per_event", {}).get("server", 0))
    cpu_bonus = mean(campaign.BONUS, lambda p: p["cpu"].get("ms_per_event", {}).get("server", 0))
    out: dict[str, Any] = {
        "concurrency": params.campaign_concurrency,
        "seconds_per_phase": params.campaign_seconds,
        "order": [f"{p['programme']} {p['round']}" for p in phases],
        "delivery_worker_during_measurement": False,
        "phases": phases,
        "plain_events_per_s": round(plain, 1),
        "campaign_events_per_s": round(bonus, 1),
        "ratio": round(statistics.median(per_round), 3) if per_round else None,
        "ratio_per_round": [round(r, 3) for r in per_round],
        "ratio_of_means": round(bonus / plain, 3) if plain else None,
        "server_ms_per_event": {"plain": round(cpu_plain, 3), "campaign": round(cpu_bonus, 3)},
    }
    console.print(
        f"campaign + webhook ÷ plain: {out['ratio']} (median of the rounds "
        f"{', '.join(map(str, out['ratio_per_round']))}; ratio of the means "
        f"{out['ratio_of_means']}: {bonus:,.0f} ÷ {plain:,.0f} events/s; no delivery "
        "worker running)"
    )
    if params.campaign_worker_phase:
        with campaign.ConcurrentWorker(url), cpu_meter(server, dbname) as cpu:
            sat = loadgen.run(saturate(campaign.BONUS)())
        tallies[campaign.BONUS].add(sat)
        item = {"programme": campaign.BONUS, **describe(sat, cpu[0])}
        item["ratio_to_plain"] = round(item["events_per_s"] / plain, 3) if plain else None
        out["campaign_with_worker"] = item
        console.print(
            f"{campaign.BONUS} with a delivery worker draining meanwhile (information): "
            f"{item['events_per_s']:,.0f} events/s, ÷ plain {item['ratio_to_plain']}"
        )
    return out


def pages_phases(
    server: Server, dbname: str | None, fixture: Any, params: Params
) -> dict[str, Any]:
    """The balance endpoint, the portal home and member 360, each a closed loop of 20
    users, alternated twice (``benchmarks.pages``)."""
    from benchmarks import pages

    clients = pages.clients(fixture, server.port)
    tally = Tally()
    for client in clients.values():  # warm-up: templates compiled, caches filled
        tally.add(
            loadgen.run(
                loadgen.closed_loop(
                    client, "", bytes, concurrency=4, warmup=0, duration=2, accepted=pages.ok
                )
            )
        )
    phases: list[dict[str, Any]] = []
    for n in range(params.pages_rounds):
        for name in pages.PAGES:
            client = clients[name]
            sat, use, attempts = Phases(server, dbname, tally, params).run(
                lambda client=client: loadgen.closed_loop(  # type: ignore[misc]
                    client,
                    "",
                    bytes,
                    concurrency=pages.CONCURRENCY,
                    warmup=params.saturation_warmup,
                    duration=params.pages_seconds,
                    accepted=pages.ok,
                )
            )
            item = {"page": name, "round": n + 1, **describe(sat, use, unit="request")}
            item["p95_ms"] = ms(sat.percentile(95))
            item["attempts"] = attempts
            phases.append(item)
            console.print(
                f"{name}, round {n + 1}: {item['events_per_s']:,.0f} pages/s (200 answers), "
                f"p95 {item['p95_ms']} ms, statuses {item['statuses']}"
            )
    out: dict[str, Any] = {"concurrency": pages.CONCURRENCY, "phases": phases}
    for name in pages.PAGES:
        mine = [p for p in phases if p["page"] == name]
        out[name] = {
            "requests_per_s": round(sum(p["events_per_s"] for p in mine) / len(mine), 1),
            "p95_ms": max(p["p95_ms"] or 0.0 for p in mine),
        }
    # The same 20 users as people use pages: each loads one page a second (an open loop
    # of 20 pages/s, spread over the members). The closed loops above measure what the
    # server can serve; this measures how long a page takes when it is not saturated.
    for name in pages.PAGES:
        paced = loadgen.run(
            loadgen.open_loop(
                clients[name],
                "",
                bytes,
                rate=pages.PACED_RATE,
                duration=params.pages_seconds,
                max_connections=pages.USERS,
                accepted=pages.ok,
            )
        )
        tally.add(paced)
        out[name]["paced"] = {
            "rate_per_s": pages.PACED_RATE,
            "requests": paced.requests,
            "statuses": {str(k): v for k, v in paced.statuses.items()},
            "p50_ms": ms(paced.percentile(50)),
            "p95_ms": ms(paced.percentile(95)),
        }
        phases.append({"page": name, "round": "paced", **out[name]["paced"]})
        console.print(
            f"{name}, paced ({pages.PACED_RATE} pages/s): p50 {out[name]['paced']['p50_ms']} ms, "
            f"p95 {out[name]['paced']['p95_ms']} ms"
        )
    balance = out["balance"]["requests_per_s"]
    for name in ("portal_home", "member_360"):
        out[name]["ratio"] = round(out[name]["requests_per_s"] / balance, 3) if balance else None
        console.print(
            f"{name}: {out[name]['requests_per_s']:,.0f}/s ÷ balance {balance:,.0f}/s = "
            f"{out[name]['ratio']}, p95 {out[name]['p95_ms']} ms"
        )
    refused = sum(
        p["requests"] - sum(v for k, v in p["statuses"].items() if str(k) == "200") for p in phases
    )
    out["correctness"] = {"ok": refused == 0, "answers_other_than_200": refused}
    return out


def campaign_check(
    out: dict[str, Any], db: Database, fixture: Any, tallies: dict[str, Tally], server: Server
) -> None:
    from benchmarks import campaign

    console.print("campaign ingest: draining the outbox with one delivery worker")
    found = campaign.check(db, fixture, answered={name: t.accepted for name, t in tallies.items()})
    errors = {
        name: {"server_errors": t.server_errors, "client_errors": t.client_errors}
        for name, t in tallies.items()
    }
    found["errors"] = errors
    found["ok"] = found["ok"] and not any(
        e["server_errors"] or e["client_errors"] for e in errors.values()
    )
    out["correctness"] = found
    if found["ok"]:
        console.print(
            f"[green]campaign ingest correct:[/] purchases stored = 201 answers "
            f"{found['purchases_in_db']}, exposures {found['exposures']} = buyers "
            f"{found['bonus_buyers']:,}, {found['campaign_points']:,} campaign points, "
            f"{found['webhooks_arrived']:,} webhooks arrived = points.earned rows "
            f"(drain {found['drain']['seconds']} s)"
        )
    else:
        console.print(f"[bold red]campaign ingest check failed:[/] {found}")
        console.print(server.log_tail())


def checkout_phases(
    server: Server,
    dbname: str | None,
    fixture: CheckoutFixture,
    params: Params,
    *,
    db: Database,
    port: int,
) -> dict[str, Any]:
    """Checkout evaluation: warm-up, the fixed rate (open loop), saturation (closed loop),
    then the correctness check. Its own tally: checkouts store nothing, so they must stay
    out of the ingest check's count of 201 answers."""
    out: dict[str, Any] = {}
    tally = Tally()
    client = loadgen.Client("127.0.0.1", port, fixture.token)
    carts = Carts(fixture)
    phases = Phases(server, dbname, tally, params)

    # Warm-up: both workers load and compile the rule set and fill their caches.
    tally.add(
        loadgen.run(
            loadgen.closed_loop(
                client,
                CHECKOUT_PATH,
                carts.body,
                concurrency=4,
                warmup=0,
                duration=params.checkout_warmup,
                accepted=checkout_answered,
            )
        )
    )

    rate, seconds = params.checkout_rate, params.checkout_rate_seconds
    if rate > 0 and seconds > 0:
        fixed, use, attempts = phases.run(
            lambda: loadgen.open_loop(
                client,
                CHECKOUT_PATH,
                carts.body,
                rate=rate,
                duration=seconds,
                accepted=checkout_answered,
            )
        )
        out["fixed_rate"] = {
            "rate": rate,
            **describe(fixed, use, unit="request"),
            "attempts": attempts,
            "late_sends": fixed.late_sends,
        }
        lat = out["fixed_rate"]["latency_ms"]
        console.print(
            f"checkout at {rate:.0f} req/s for {seconds:.0f} s: p50 {lat['p50']} ms, "
            f"p99 {lat['p99']} ms, max {lat['max']} ms, "
            f"other work {out['fixed_rate']['cpu']['other_cores']} cores"
        )

    out["saturation"] = []
    for concurrency in params.checkout_concurrency:
        sat, use, attempts = phases.run(
            lambda c=concurrency: loadgen.closed_loop(  # type: ignore[misc]
                client,
                CHECKOUT_PATH,
                carts.body,
                concurrency=c,
                warmup=params.saturation_warmup,
                duration=params.checkout_seconds,
                accepted=checkout_answered,
            )
        )
        item = {
            "concurrency": concurrency,
            **describe(sat, use, unit="request"),
            "attempts": attempts,
        }
        out["saturation"].append(item)
        console.print(
            f"checkout saturation, {concurrency} connections: "
            f"{item['requests_per_s']:,.0f} req/s, p50 {item['latency_ms']['p50']} ms, "
            f"p99 {item['latency_ms']['p99']} ms, server {item['cpu']['server_cores']} cores, "
            f"database {item['cpu']['database_cores']}, "
            f"other work {item['cpu']['other_cores']}"
        )
    if out["saturation"]:
        out["saturation_best"] = max(out["saturation"], key=lambda x: x["requests_per_s"])

    sample = [carts.body() for _ in range(params.checkout_check_carts)]
    cross = cross_check_checkout(db, port=port, token=fixture.token, bodies=sample)
    answered = sum(tally.statuses.values())
    correct = (
        answered > 0
        and tally.accepted == answered
        and tally.client_errors == 0
        and cross.identical == cross.carts
        and cross.totals_consistent == cross.carts
    )
    out["correctness"] = {
        "answers": answered,
        "answered_200": tally.accepted,
        "statuses": tally.statuses,
        "client_errors": tally.client_errors,
        "sample_carts": cross.carts,
        "sample_identical_to_in_process": cross.identical,
        "sample_totals_consistent": cross.totals_consistent,
        "mismatches": cross.mismatches[:3],
        "ok": correct,
    }
    if correct:
        console.print(
            f"[green]checkout correct:[/] {answered:,} answers, all 200; "
            f"{cross.identical} of {cross.carts} sample carts identical to an in-process "
            "evaluation"
        )
    else:
        console.print(f"[bold red]checkout correctness check failed:[/] {out['correctness']}")
        console.print(server.log_tail())
    return out


def redeem_phases(
    server: Server,
    dbname: str | None,
    fixture: RedeemFixture,
    params: Params,
    *,
    db: Database,
    port: int,
) -> dict[str, Any]:
    """Redemptions: warm-up, saturation at each concurrency (half the requests for the
    hot reward), the flash sale, then the check against the database. Its own tallies:
    a redemption is not a purchase."""
    out: dict[str, Any] = {}
    tally = Tally()
    per_reward = RedeemTally()
    client = RedeemClient("127.0.0.1", port, fixture.token)
    run_id = f"{int(time.time())}"
    mixed = Redemptions(fixture, run_id=f"{run_id}-mix", hot=params.redeem_hot_share)
    phases = Phases(server, dbname, tally, params)

    def closed(make: Redemptions, concurrency: int, seconds: float, warmup: float) -> Any:
        return loadgen.closed_loop(
            client,
            "/v1/members/redemptions",
            make.body,
            concurrency=concurrency,
            warmup=warmup,
            duration=seconds,
            accepted=per_reward.accepted,
            want_body=True,
        )

    tally.add(loadgen.run(closed(mixed, 4, params.checkout_warmup, 0)))

    out["saturation"] = []
    for concurrency in params.redeem_concurrency:
        sat, use, attempts = phases.run(
            lambda c=concurrency: closed(  # type: ignore[misc]
                mixed, c, params.redeem_seconds, params.saturation_warmup
            )
        )
        item = {
            "concurrency": concurrency,
            "hot_share": params.redeem_hot_share,
            **describe(sat, use, unit="redemption"),
            "attempts": attempts,
        }
        item["redemptions_per_s"] = item.pop("events_per_s")
        out["saturation"].append(item)
        console.print(
            f"redemptions, {concurrency} connections: {item['redemptions_per_s']:,.0f}/s, "
            f"p50 {item['latency_ms']['p50']} ms, p99 {item['latency_ms']['p99']} ms, "
            f"server {item['cpu']['server_cores']} cores, "
            f"database {item['cpu']['database_cores']}, other {item['cpu']['other_cores']}"
        )
    if out["saturation"]:
        out["saturation_best"] = max(out["saturation"], key=lambda x: x["redemptions_per_s"])

    # The flash sale: everybody at once for a few units; exactly that many succeed.
    flash = Redemptions(fixture, run_id=f"{run_id}-flash", only=fixture.flash_reward)
    result = loadgen.run(
        closed(flash, params.redeem_flash_concurrency, params.redeem_flash_seconds, 0)
    )
    tally.add(result)
    out["flash_sale"] = {
        "concurrency": params.redeem_flash_concurrency,
        "stock": params.redeem_flash_stock,
        "requests": result.requests,
        "answered_201": per_reward.by_reward.get(fixture.flash_reward, 0),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "latency_ms": {"p50": ms(result.percentile(50)), "p99": ms(result.percentile(99))},
    }

    found = check_redeem(db, fixture)
    answered = {reward: per_reward.by_reward.get(reward, 0) for reward in fixture.stock}
    unexpected = {
        status: n
        for status, n in tally.statuses.items()
        if status not in ("201", "409")  # 409: out_of_stock
    }
    correct = (
        sum(found.redemptions_in_db.values()) == tally.accepted
        and all(found.stock_consumed[r] == found.redemptions_in_db.get(r, 0) for r in answered)
        and all(found.stock_consumed[r] == answered[r] for r in answered)
        and found.stock_left.get(fixture.flash_reward) == 0
        and found.negative_balances == 0
        and found.discrepancies == 0
        and tally.server_errors == 0
        and tally.client_errors == 0
        and not unexpected
    )
    out["correctness"] = {
        "answered_201": tally.accepted,
        "redemptions_in_db": sum(found.redemptions_in_db.values()),
        "statuses": tally.statuses,
        "limited_rewards": {
            ("hot" if r == fixture.hot_reward else "flash"): {
                "stock": fixture.stock[r],
                "stock_left": found.stock_left[r],
                "stock_consumed": found.stock_consumed[r],
                "redemptions_in_db": found.redemptions_in_db.get(r, 0),
                "answered_201": answered[r],
                "oversold": found.stock_consumed[r] - answered[r],
            }
            for r in answered
        },
        "negative_balances": found.negative_balances,
        "ledger_verify_discrepancies": found.discrepancies,
        "ledger_verify_seconds": round(found.verify_seconds, 2),
        "server_errors": tally.server_errors,
        "client_errors": tally.client_errors,
        "ok": correct,
    }
    if correct:
        flash_left = out["correctness"]["limited_rewards"]["flash"]
        console.print(
            f"[green]redemptions correct:[/] {tally.accepted:,} answered 201 = stored; stock "
            f"consumed = redemptions for every limited reward (flash sale: "
            f"{flash_left['answered_201']} of {flash_left['stock']}), no negative balance, "
            "ledger verify found nothing"
        )
    else:
        console.print(f"[bold red]redemption correctness check failed:[/] {out['correctness']}")
        console.print(server.log_tail())
    return out


def run_rules_eval(params: Params) -> dict[str, Any]:
    """``benchmarks.rules_eval`` in this process, with the machine's other load."""
    from benchmarks import rules_eval

    console.rule("[bold]rule evaluation")
    if params.wait_quiet:
        wait_for_quiet(params.wait_quiet)
    m0, c0, t0 = machine_busy(), time.process_time(), time.perf_counter()
    result: dict[str, Any] = rules_eval.run(quick=params.quick)
    wall = time.perf_counter() - t0
    own = time.process_time() - c0
    result["cpu"] = {
        "wall_seconds": round(wall, 2),
        "process_cores": round(own / wall, 3),
        "other_cores": round(max(machine_busy() - m0 - own, 0.0) / wall, 3),
    }
    console.print(
        f"rule evaluation: {result['carts_per_s']:,} carts/s, compile {result['compile_ms']} ms, "
        f"other work {result['cpu']['other_cores']} cores"
    )
    return result


def run_insights_clv(params: Params) -> dict[str, Any]:
    """``benchmarks.insights_clv`` in this process (100,000 customers with ``--quick``)."""
    from benchmarks import insights_clv

    console.rule("[bold]lifetime value at 1M customers")
    if params.wait_quiet:
        wait_for_quiet(params.wait_quiet)
    return insights_clv.run(quick=params.quick)


# --- report ------------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, backend, what, unit, threshold, higher in TARGETS:
        data = report.get("rules_eval") if backend == "in-process" else None
        if key.startswith("clv_"):
            data = report.get("insights_clv")
        if data is None:
            data = report["backends"].get(backend)
        measured: float | None = None
        if data is not None and not data.get("skipped"):
            checkout = data.get("checkout", {})
            measured = {
                "saturation_events_per_s": data.get("saturation_best", {}).get("events_per_s"),
                "fixed_rate_p99_ms": data.get("fixed_rate", {}).get("latency_ms", {}).get("p99"),
                "batch_events_per_s": data.get("batch", {}).get("events_per_s"),
                "checkout_p99_ms": checkout.get("fixed_rate", {}).get("latency_ms", {}).get("p99"),
                "rules_eval_carts_per_s": data.get("carts_per_s"),
                "clv_fit_seconds": None if data.get("quick") else data.get("fit_seconds"),
                "redeem_per_s": data.get("redeem", {})
                .get("saturation_best", {})
                .get("redemptions_per_s"),
                "webhooks_per_s": data.get("delivery", {})
                .get("webhooks", {})
                .get("webhooks_per_s"),
                "emails_per_s": data.get("delivery", {}).get("email", {}).get("emails_per_s"),
                "journeys_seconds": data.get("journeys", {}).get("seconds"),
                "insights_fit_seconds": data.get("insights_scale", {})
                .get("fit", {})
                .get("seconds"),
                "insights_rfm_segments_seconds": data.get("insights_scale", {})
                .get("rfm_segments", {})
                .get("seconds"),
                "insights_train_seconds": data.get("insights_scale", {})
                .get("train", {})
                .get("seconds"),
                "insights_peak_rss_gb": data.get("insights_scale", {}).get("peak_rss_gb"),
                "campaign_ingest_ratio": data.get("ingest_campaign", {}).get("ratio"),
                "portal_home_ratio": data.get("pages", {}).get("portal_home", {}).get("ratio"),
                "portal_home_p95_ms": data.get("pages", {}).get("portal_home", {}).get("p95_ms"),
                "portal_home_paced_p95_ms": data.get("pages", {})
                .get("portal_home", {})
                .get("paced", {})
                .get("p95_ms"),
                "member_360_ratio": data.get("pages", {}).get("member_360", {}).get("ratio"),
                "member_360_p95_ms": data.get("pages", {}).get("member_360", {}).get("p95_ms"),
                "member_360_paced_p95_ms": data.get("pages", {})
                .get("member_360", {})
                .get("paced", {})
                .get("p95_ms"),
            }[key]
        met = (
            None
            if measured is None
            else (measured >= threshold if higher else measured <= threshold)
        )
        out.append(
            {
                "target": key,
                "backend": backend,
                "description": what,
                "threshold": f"{'≥' if higher else '≤'} {threshold} {unit}",
                "measured": measured,
                "unit": unit,
                "met": met,
            }
        )
    return out


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory_gb = round(kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "treu": __version__,
        "git": git_revision(),
    }


def git_revision() -> str | None:
    """The commit measured, with ``-dirty`` when the work tree has uncommitted changes."""
    import subprocess

    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _lat(data: dict[str, Any], key: str) -> str:
    if key not in data:
        return "—"
    lat = data[key]["latency_ms"]
    return f"{lat['p50']} / {lat['p99']}"


def _table(title: str, report: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("")
    for name in report["backends"]:
        table.add_column(name, justify="right")
    return table


def _fill(
    table: Table,
    report: dict[str, Any],
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]],
) -> None:
    backends = {k: v for k, v in report["backends"].items() if not v.get("skipped")}
    for label, cell in rows:
        table.add_row(
            label,
            *(
                cell(backends[name]) if name in backends else "skipped"
                for name in report["backends"]
            ),
        )


def print_checkout(report: dict[str, Any]) -> None:
    def cpu(d: dict[str, Any], key: str) -> str:
        per = d["checkout"].get(key, {}).get("cpu", {}).get("ms_per_request")
        return f"{per['server']} / {per['database']}" if per else "—"

    def sat(d: dict[str, Any]) -> str:
        best = d["checkout"].get("saturation_best")
        return f"{best['requests_per_s']:,.0f} ({best['concurrency']})" if best else "—"

    def lat(d: dict[str, Any], key: str) -> str:
        return _lat(d["checkout"], key)

    def other(d: dict[str, Any]) -> str:
        phases = [d["checkout"].get("fixed_rate"), d["checkout"].get("saturation_best")]
        return " / ".join(str(p["cpu"]["other_cores"]) if p else "—" for p in phases)

    table = _table("Checkout evaluation, 50 rules, 10-line carts, HTTP API, 2 workers", report)
    _fill(
        table,
        report,
        [
            ("saturation req/s (connections)", sat),
            ("p50 / p99 ms at saturation", lambda d: lat(d, "saturation_best")),
            (
                f"p50 / p99 ms at {report['parameters']['checkout_rate']:.0f} req/s",
                lambda d: lat(d, "fixed_rate"),
            ),
            ("CPU ms/request at saturation: server / db", lambda d: cpu(d, "saturation_best")),
            ("CPU ms/request at the fixed rate: server / db", lambda d: cpu(d, "fixed_rate")),
            ("other work, cores: fixed rate / saturation", other),
            (
                "correct",
                lambda d: "[green]yes[/]" if d["checkout"]["correctness"]["ok"] else "[red]NO[/]",
            ),
        ],
    )
    console.print(table)


def print_redeem(report: dict[str, Any]) -> None:
    def best(d: dict[str, Any]) -> dict[str, Any]:
        return dict(d["redeem"].get("saturation_best") or {})

    def limited(d: dict[str, Any], which: str) -> str:
        x = d["redeem"]["correctness"]["limited_rewards"][which]
        return f"{x['stock_consumed']:,} / {x['answered_201']:,}"

    table = _table("Redemptions, one hot reward, HTTP API, 2 workers", report)
    _fill(
        table,
        report,
        [
            (
                "saturation redemptions/s (connections)",
                lambda d: f"{best(d)['redemptions_per_s']:,.0f} ({best(d)['concurrency']})",
            ),
            ("p50 / p99 ms at saturation", lambda d: _lat(d["redeem"], "saturation_best")),
            ("hot reward: stock consumed / 201s", lambda d: limited(d, "hot")),
            ("flash sale: stock consumed / 201s", lambda d: limited(d, "flash")),
            (
                "negative balances",
                lambda d: str(d["redeem"]["correctness"]["negative_balances"]),
            ),
            (
                "correct",
                lambda d: "[green]yes[/]" if d["redeem"]["correctness"]["ok"] else "[red]NO[/]",
            ),
        ],
    )
    console.print(table)


def print_report(report: dict[str, Any]) -> None:
    """Metrics down, backends across: fits an 80-column terminal."""
    backends = {k: v for k, v in report["backends"].items() if not v.get("skipped")}
    if report.get("rules_eval"):
        from benchmarks import rules_eval

        rules_eval.report(report["rules_eval"], console)
    if report.get("insights_clv"):
        from benchmarks import insights_clv

        insights_clv.report(report["insights_clv"], console)
    if any("checkout" in d for d in backends.values()):
        print_checkout(report)
    if any("redeem" in d for d in backends.values()):
        print_redeem(report)
    if any("saturation_best" in d for d in backends.values()):
        print_ingest(report)
    if any("ingest_campaign" in d for d in backends.values()):
        print_campaign(report)
    if any("journeys" in d for d in backends.values()):
        print_journeys(report)
    print_targets(report)


def print_campaign(report: dict[str, Any]) -> None:
    def phase(d: dict[str, Any], programme: str, n: int) -> str:
        found = [
            p
            for p in d["ingest_campaign"].get("phases", [])
            if p["programme"] == programme and p["round"] == n
        ]
        return f"{found[0]['events_per_s']:,.0f}" if found else "—"

    def worker(d: dict[str, Any]) -> str:
        item = d["ingest_campaign"].get("campaign_with_worker")
        return f"{item['events_per_s']:,.0f} (÷ A {item['ratio_to_plain']})" if item else "—"

    rounds = report["parameters"]["campaign_rounds"]
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = []

    def cell(programme: str, n: int) -> Callable[[dict[str, Any]], str]:
        return lambda d: phase(d, programme, n)

    for n in range(1, rounds + 1):
        rows.append((f"A plain, round {n}: events/s", cell("bench-plain", n)))
        rows.append((f"B campaign + webhook, round {n}", cell("bench-bonus", n)))
    rows += [
        (
            "B ÷ A, median of the rounds (target ≥ 0.85)",
            lambda d: f"{d['ingest_campaign']['ratio']}",
        ),
        (
            "B ÷ A per round; of the means",
            lambda d: "{}; {}".format(
                ", ".join(map(str, d["ingest_campaign"].get("ratio_per_round", []))),
                d["ingest_campaign"].get("ratio_of_means", "—"),
            ),
        ),
        (
            "server CPU ms/event A / B",
            lambda d: "{plain} / {campaign}".format(**d["ingest_campaign"]["server_ms_per_event"]),
        ),
        ("B with a delivery worker draining (info)", worker),
        (
            "webhooks arrived / points.earned",
            lambda d: "{:,} / {:,}".format(
                d["ingest_campaign"]["correctness"]["webhooks_arrived"],
                d["ingest_campaign"]["correctness"]["points_earned_outbox_rows"],
            ),
        ),
        (
            "correct",
            lambda d: (
                "[green]yes[/]" if d["ingest_campaign"]["correctness"]["ok"] else "[red]NO[/]"
            ),
        ),
    ]
    table = _table(
        "Single events with and without a bonus campaign + webhook, no worker draining",
        report,
    )
    _fill(table, report, rows)
    console.print(table)


def print_journeys(report: dict[str, Any]) -> None:
    def kind(name: str) -> Callable[[dict[str, Any]], str]:
        def cell(d: dict[str, Any]) -> str:
            arms = d["journeys"]["reached_per_kind"].get(name)
            return f"{arms['treated']:,} / {arms['held_out']:,}" if arms else "0"

        return cell

    names = sorted(
        {
            name
            for d in report["backends"].values()
            for name in d.get("journeys", {}).get("reached_per_kind", {})
        }
    )
    members = report["parameters"]["journey_members"]
    table = _table(f"Daily journeys over {members:,} members, first run, one process", report)
    _fill(
        table,
        report,
        [
            (
                "seconds",
                lambda d: (
                    f"{d['journeys']['seconds']:,.1f}"
                    + (" (stopped)" if d["journeys"]["stopped_after_limit"] else "")
                ),
            ),
            (
                "raw baseline s (scan + insert)",
                lambda d: "{scan_seconds} + {insert_seconds}".format(**d["journeys"]["baseline"]),
            ),
            ("  run ÷ baseline", lambda d: f"{d['journeys']['ratio_to_baseline']}"),
            *((f"{name}: treated / held out", kind(name)) for name in names),
            ("outbox rows written", lambda d: f"{d['journeys']['outbox_rows']:,}"),
            (
                "second run reached",
                lambda d: (
                    str(d["journeys"]["correctness"]["second_run_reached"] or 0)
                    if not d["journeys"]["stopped_after_limit"]
                    else "—"
                ),
            ),
            (
                "correct",
                lambda d: "[green]yes[/]" if d["journeys"]["correctness"]["ok"] else "[red]NO[/]",
            ),
        ],
    )
    console.print(table)


def print_ingest(report: dict[str, Any]) -> None:
    table = _table("Purchase ingestion, 3-line purchases, HTTP API, 2 workers", report)
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        (
            "raw INSERT+COMMIT tx/s, driver",
            lambda d: f"{d['baselines']['driver']['tx_per_s']:,.0f}",
        ),
        (
            "raw INSERT+COMMIT tx/s, SQLAlchemy",
            lambda d: f"{d['baselines']['sqlalchemy']['tx_per_s']:,.0f}",
        ),
        (
            "saturation events/s (connections)",
            lambda d: (
                f"{d['saturation_best']['events_per_s']:,.0f} "
                f"({d['saturation_best']['concurrency']})"
            ),
        ),
        ("  ÷ raw driver tx/s", lambda d: f"{d['ratios']['saturation_vs_driver']:.3f}"),
        ("p50 / p99 ms at 200 req/s", lambda d: _lat(d, "fixed_rate")),
        ("p50 / p99 ms at light load", lambda d: _lat(d, "light_load")),
        ("batch events/s", lambda d: f"{d['batch']['events_per_s']:,.0f}"),
        ("  ÷ raw driver tx/s", lambda d: f"{d['ratios']['batch_vs_driver']:.3f}"),
        (
            "CPU ms/event at saturation: server / db",
            lambda d: "{server} / {database}".format(
                **d["saturation_best"]["cpu"].get("ms_per_event", {"server": "?", "database": "?"})
            ),
        ),
        (
            "other work on the machine, cores",
            lambda d: f"{d['saturation_best']['cpu']['other_cores']}",
        ),
        ("correct", lambda d: "[green]yes[/]" if d["correctness"]["ok"] else "[red]NO[/]"),
    ]
    _fill(table, report, rows)
    console.print(table)


def print_targets(report: dict[str, Any]) -> None:
    goals = Table(title="Targets (this machine)")
    goals.add_column("target")
    goals.add_column("threshold", justify="right")
    goals.add_column("measured", justify="right")
    goals.add_column("met", justify="center")
    for t in report["targets"]:
        met = {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]not run[/]"}[t["met"]]
        measured = "—" if t["measured"] is None else f"{t['measured']:,} {t['unit']}"
        where = "" if t["backend"] == "postgresql" else f" ({t['backend']})"
        goals.add_row(t["description"] + where, t["threshold"], measured, met)
    console.print(goals)


def write_results(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    only = report["parameters"]["only"]
    name = "ingest" if "ingest" in only else "-".join(only).replace("_", "-")
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Params:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="fixed request rate (req/s)")
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    parser.add_argument(
        "--light-rate", type=float, default=50.0, help="a second, light fixed rate (0: skip)"
    )
    parser.add_argument("--light-seconds", type=float, default=20.0)
    parser.add_argument(
        "--concurrency", default="4,16", help="saturation connections, comma-separated"
    )
    parser.add_argument("--saturation-seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--batch-seconds", type=float, default=20.0)
    parser.add_argument("--baseline-seconds", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TREU_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help=f"server to create the '{BENCH_DATABASE}' database on",
    )
    parser.add_argument(
        "--database",
        default=BENCH_DATABASE,
        help="name of the PostgreSQL database to drop and recreate (the journeys part "
        f"uses it + '{JOURNEYS_SUFFIX}'); another name keeps out of a run already going",
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also sample the server workers with py-spy for SECONDS at saturation",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each backend, wait up to SECONDS for other work on the machine to stop",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run: {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--checkout-rate", type=float, default=300.0, help="checkout fixed rate (req/s; 0: skip)"
    )
    parser.add_argument("--checkout-rate-seconds", type=float, default=30.0)
    parser.add_argument(
        "--checkout-concurrency",
        default="4,16",
        help="checkout saturation connections, comma-separated",
    )
    parser.add_argument("--checkout-seconds", type=float, default=20.0)
    parser.add_argument(
        "--checkout-history",
        type=int,
        default=3000,
        help="past purchases ingested for the checkout members during set-up",
    )
    parser.add_argument(
        "--redeem-concurrency",
        default="4,16",
        help="redemption saturation connections, comma-separated",
    )
    parser.add_argument("--redeem-seconds", type=float, default=20.0)
    parser.add_argument(
        "--redeem-hot-stock", type=int, default=1_000_000, help="units of the hot reward"
    )
    parser.add_argument(
        "--redeem-flash-stock", type=int, default=500, help="units of the flash-sale reward"
    )
    parser.add_argument(
        "--campaign-concurrency",
        type=int,
        default=16,
        help="connections of the campaign ingest's saturation phases",
    )
    parser.add_argument(
        "--campaign-seconds", type=float, default=10.0, help="each campaign ingest phase"
    )
    parser.add_argument(
        "--campaign-rounds", type=int, default=5, help="A, B pairs of the campaign ingest"
    )
    parser.add_argument(
        "--no-campaign-worker-phase",
        action="store_true",
        help="skip the campaign ingest's extra phase with a delivery worker draining",
    )
    parser.add_argument(
        "--journey-members",
        type=int,
        default=100_000,
        help="members of the journeys programme (the target is for 100,000)",
    )
    parser.add_argument(
        "--journey-limit",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="stop the daily journeys run after this long (it has missed its target)",
    )
    parser.add_argument(
        "--segment-members",
        type=int,
        default=1_000_000,
        help="members of the segments programme (the target is for 1M / 20M purchases)",
    )
    parser.add_argument("--segment-purchases", type=int, default=20_000_000)
    parser.add_argument("--pages-seconds", type=float, default=8.0)
    parser.add_argument("--pages-rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~1 minute)")
    args = parser.parse_args(argv)
    params = Params(
        backends=[b.strip() for b in args.backends.split(",") if b.strip()],
        members=args.members,
        workers=args.workers,
        rate=args.rate,
        rate_seconds=args.rate_seconds,
        light_rate=args.light_rate,
        light_seconds=args.light_seconds,
        saturation_concurrency=[int(c) for c in args.concurrency.split(",")],
        saturation_seconds=args.saturation_seconds,
        saturation_warmup=2.0,
        batch_size=args.batch_size,
        batch_concurrency=args.batch_concurrency,
        batch_seconds=args.batch_seconds,
        baseline_seconds=args.baseline_seconds,
        port=args.port,
        postgres_url=args.postgres_url,
        profile_seconds=args.profile,
        wait_quiet=args.wait_quiet,
        only=[p.strip() for p in args.only.split(",") if p.strip()],
        quick=args.quick,
        checkout_rate=args.checkout_rate,
        checkout_rate_seconds=args.checkout_rate_seconds,
        checkout_concurrency=[int(c) for c in args.checkout_concurrency.split(",") if c.strip()],
        checkout_seconds=args.checkout_seconds,
        checkout_history=args.checkout_history,
        redeem_concurrency=[int(c) for c in args.redeem_concurrency.split(",") if c.strip()],
        redeem_seconds=args.redeem_seconds,
        redeem_hot_stock=args.redeem_hot_stock,
        redeem_flash_stock=args.redeem_flash_stock,
        journey_members=args.journey_members,
        journey_limit=args.journey_limit,
        segment_members=args.segment_members,
        segment_purchases=args.segment_purchases,
        campaign_concurrency=args.campaign_concurrency,
        campaign_seconds=args.campaign_seconds,
        campaign_rounds=args.campaign_rounds,
        campaign_worker_phase=not args.no_campaign_worker_phase,
        database=args.database,
        pages_seconds=args.pages_seconds,
        pages_rounds=args.pages_rounds,
    )
    if args.quick:
        params.members = min(params.members, 1000)
        params.rate_seconds = 5
        params.light_seconds = 5
        params.saturation_concurrency = params.saturation_concurrency[:1]
        params.saturation_seconds = 5
        params.saturation_warmup = 1
        params.batch_seconds = 5
        params.baseline_seconds = 3
        params.checkout_rate_seconds = 5
        params.checkout_concurrency = params.checkout_concurrency[:1]
        params.checkout_seconds = 5
        params.checkout_warmup = 1
        params.checkout_history = min(params.checkout_history, 600)
        params.redeem_concurrency = params.redeem_concurrency[-1:]
        params.redeem_seconds = 5
        params.redeem_flash_seconds = 3
        params.journey_members = min(params.journey_members, 10_000)
        params.segment_members = min(params.segment_members, 10_000)
        params.segment_purchases = min(params.segment_purchases, 200_000)
        params.campaign_seconds = 5
        params.pages_seconds = 3
        params.pages_rounds = 1
    unknown = set(params.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    unknown = set(params.only) - set(PARTS)
    if unknown or not params.only:
        parser.error(f"--only takes some of {', '.join(PARTS)}")
    return params


def main(argv: list[str] | None = None) -> int:
    params = parse_args(argv)
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "ingest" if "ingest" in params.only else "+".join(params.only),
        "started_at": started_at.isoformat(),
        "machine": machine_info(),
        "parameters": params.as_dict(),
        "backends": {},
    }
    load = background_load()
    report["machine"]["background_cores_at_start"] = load
    if load > 0.2:
        console.print(
            f"[bold yellow]warning:[/] the machine is busy before the benchmark starts "
            f"({load} cores in use); figures will be lower than on an idle machine"
        )
    if "rules_eval" in params.only:
        report["rules_eval"] = run_rules_eval(params)
    if "insights_clv" in params.only:
        report["insights_clv"] = run_insights_clv(params)
    if "segments" in params.only:
        report["segments"] = bench_segments(params)
        ok_segments = (report["segments"] or {}).get("correctness", {"ok": True})["ok"]
    else:
        ok_segments = True
    workdir = Path(tempfile.mkdtemp(prefix="treu-bench-"))
    ok = True
    try:
        for backend in params.backends if {*SERVER_PARTS, "journeys"} & set(params.only) else []:
            data = {}
            if set(SERVER_PARTS) & set(params.only):
                if backend == "sqlite":
                    url = f"sqlite:///{workdir / 'bench.db'}"
                else:
                    maybe = postgres_database(params.postgres_url, params.database)
                    if maybe is None:
                        report["backends"][backend] = {"skipped": "PostgreSQL not reachable"}
                        continue
                    url = maybe
                    report["machine"]["postgres"] = postgres_info(url)
                try:
                    data = bench_backend(backend, url, params, workdir)
                finally:
                    if backend == "postgresql":
                        drop_postgres_database(params.postgres_url, params.database)
            if "journeys" in params.only:
                found = bench_journeys(backend, params, workdir)
                if found is None:
                    report["backends"][backend] = {"skipped": "PostgreSQL not reachable"}
                    continue
                if backend == "postgresql":
                    report["machine"].setdefault("postgres", found.pop("postgres"))
                found.pop("postgres", None)
                data["journeys"] = found
            report["backends"][backend] = data
            ok = ok and data.get("journeys", {}).get("correctness", {"ok": True})["ok"]
            ok = ok and data.get("correctness", {"ok": True})["ok"]
            ok = ok and data.get("checkout", {}).get("correctness", {"ok": True})["ok"]
            ok = ok and data.get("redeem", {}).get("correctness", {"ok": True})["ok"]
            ok = ok and data.get("ingest_campaign", {}).get("correctness", {"ok": True})["ok"]
            ok = ok and data.get("pages", {}).get("correctness", {"ok": True})["ok"]
        if "insights_scale" in params.only:
            found = bench_insights(params)
            if found is None:
                report["backends"].setdefault("postgresql", {})["insights_scale"] = {
                    "skipped": "PostgreSQL not reachable"
                }
            else:
                report["machine"].setdefault("postgres", found.pop("postgres"))
                found.pop("postgres", None)
                report["backends"].setdefault("postgresql", {})["insights_scale"] = found
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = ok and ok_segments
    report["targets"] = targets(report)
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print_report(report)
    path = write_results(report)
    console.print(
        f"results: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
