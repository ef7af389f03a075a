"""``treu jobs`` and ``treu worker``."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from treu import cli
from treu.cli import (
    _safe,
    app,
    friendly,
    jobs_app,
)
from treu.config import get_settings
from treu.db.session import Database

if TYPE_CHECKING:
    pass


# --- jobs and worker ---------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list() -> None:
    """List the background jobs and how often `treu worker` runs them."""
    from treu.worker.jobs import JOBS
    from treu.worker.scheduler import intervals

    every = intervals(get_settings())
    table = Table()
    for column in ("name", "what it does", "worker runs it every"):
        table.add_column(column)
    for name, job in JOBS.items():
        table.add_row(name, job.description, f"{every[name]} s")
    cli.console.print(table)


@jobs_app.command("status")
@friendly
def jobs_status() -> None:
    """Each job's last run, and how far the outbox's delivery is behind."""
    from sqlalchemy import select

    from treu.delivery.service import deliveries
    from treu.kit.time import utc_now
    from treu.worker.jobs import JOBS
    from treu.worker.models import JobRun
    from treu.worker.scheduler import intervals

    db = cli.open_database()
    every = intervals(get_settings())
    now = utc_now()
    with db.unit_of_work(write=False) as session:
        runs = {r.name: r for r in session.scalars(select(JobRun))}
        depth = deliveries.depth(session)
    table = Table(title="Jobs")
    for column in ("name", "every", "last started", "took", "last count", "runs", "failures"):
        table.add_column(column)
    for name in JOBS:
        run = runs.get(name)
        if run is None:
            table.add_row(name, f"{every[name]} s", "never", "", "", "0", "0")
            continue
        took = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
            if run.finished_at
            else "[yellow]running[/]"
        )
        count = f"[red]{escape(run.error)}[/]" if run.error else f"{run.count:,}"
        ago = f"{(now - run.started_at).total_seconds():,.0f} s ago"
        table.add_row(
            name, f"{every[name]} s", ago, took, count, f"{run.runs:,}", f"{run.failures:,}"
        )
    cli.console.print(table)
    outbox = Table(title="Outbox delivery")
    for column in ("not planned yet", *depth.by_status, "lag"):
        outbox.add_column(column, justify="right")
    outbox.add_row(
        f"{depth.undispatched:,}",
        *(
            f"[red]{n:,}[/]" if status == "dead" and n else f"{n:,}"
            for status, n in depth.by_status.items()
        ),
        f"{depth.lag_seconds(now):,.0f} s",
    )
    cli.console.print(outbox)


@jobs_app.command("run")
@friendly
def jobs_run(
    name: Annotated[str, typer.Argument(help="A job name, see `treu jobs list`.")],
) -> None:
    """Run one job now, until no work is left (each batch its own transaction)."""
    from treu.worker.jobs import get_job

    job = get_job(name)
    started = time.perf_counter()
    batches = 0

    def on_batch(count: int) -> None:
        nonlocal batches
        batches += 1
        cli.err.print(f"  batch {batches}: {count}", highlight=False)

    count = job.run(cli.open_database(), on_batch=on_batch)
    cli.console.print(
        f"{name}: {count:,} {job.unit} in {time.perf_counter() - started:.2f} s",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@friendly
def worker() -> None:
    """Run the background jobs on a schedule (Ctrl-C stops)."""
    from rich.logging import RichHandler

    from treu.worker.scheduler import run_forever

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=cli.err, show_path=False)],
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    db = cli.open_database()
    _preflight(db)
    cli.console.print(f"Treu worker on {_safe(settings.database_url)} — Ctrl-C stops.")
    run_forever(db, settings)


def _preflight(db: Database) -> None:
    """Fail at start, with a sentence, when the database is unreachable or unmigrated
    (rather than logging the same error at every scheduled run)."""
    from sqlalchemy import select

    from treu.ledger.models import Lot

    with db.unit_of_work(write=False) as session:
        session.execute(select(Lot.id).limit(1))
