"""The ``treu`` command line.

Every command is a thin entry point: it opens the database (``open_database``, the one
place tests replace), owns the units of work and calls the same services as the API.
Errors are one readable sentence on stderr and a non-zero exit code, never a traceback:

    0  done
    1  failed (bad input, unknown programme, database unreachable, ...)
    2  an import finished, but some rows were rejected
    3  ``ledger verify`` found discrepancies
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TextIO, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from treu import __version__
from treu.config import get_settings
from treu.db.session import Database, get_database
from treu.errors import TreuError
from treu.models import load_all

if TYPE_CHECKING:
    from treu.imports import ImportReport

app = typer.Typer(
    help="Treu, the open-source loyalty platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
apikey_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Import members (CSV) or events (JSON Lines).", no_args_is_help=True)
ledger_app = typer.Typer(help="Check the points ledger.", no_args_is_help=True)
jobs_app = typer.Typer(help="Run background jobs now.", no_args_is_help=True)
donations_app = typer.Typer(help="Charity donations of points.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(import_app, name="import")
app.add_typer(ledger_app, name="ledger")
app.add_typer(jobs_app, name="jobs")
app.add_typer(donations_app, name="donations")

# soft_wrap: sentences are never broken at the terminal width (tables still fit it).
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_FAILED = 1
EXIT_REJECTED = 2
EXIT_DISCREPANCIES = 3

P = ParamSpec("P")
R = TypeVar("R")


def open_database() -> Database:
    """The database every command works on (from settings). Tests replace this."""
    load_all()
    return get_database()


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into a sentence and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TreuError as exc:
            raise fail(exc.detail) from None
        except SQLAlchemyError as exc:
            raise fail(_database_problem(exc)) from None
        except UnicodeDecodeError as exc:
            raise fail(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
            raise fail(message) from None

    return wrapper


def _database_problem(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    hint = ""
    lowered = text.lower()
    if "no such table" in lowered or "does not exist" in lowered:
        hint = " — has the schema been created? Run `treu migrate` first."
    elif "connect" in lowered or "unable to open" in lowered:
        hint = " — check TREU_DATABASE_URL."
    return f"database error: {text}{hint}"


def _version(value: bool) -> None:
    if value:
        console.print(f"treu {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Treu, the open-source loyalty platform."""


# --- serve / migrate ---------------------------------------------------------------------


@app.command()
@friendly
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from treu.migrations import upgrade

    url = get_settings().database_url
    upgrade(url)
    console.print(f"[green]Database is up to date[/] ({_safe(url)})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Serve the HTTP API (docs at /docs)."""
    import uvicorn

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    console.print(f"Treu serves on [bold]http://{host}:{port}[/] — API docs at /docs")
    uvicorn.run(
        "treu.api.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
        log_level=settings.log_level,
        access_log=False,
        # "on", not uvicorn's "auto": an app that refuses to start (a middleware placed
        # inside the lean path, say) stops the server instead of failing every request.
        lifespan="on",
    )


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


# --- demo ---------------------------------------------------------------------------------


@app.command()
@friendly
def demo(
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the demo programme exists.")
    ] = False,
    members: Annotated[int, typer.Option(min=1, help="Members to enrol.")] = 1000,
    purchases: Annotated[int, typer.Option(min=0, help="Purchases over the last year.")] = 20_000,
    seed: Annotated[
        int | None, typer.Option(help="Random seed: the same seed gives the same data.")
    ] = None,
    api_key: Annotated[
        bool, typer.Option("--api-key", help="Also create an API key with every scope.")
    ] = False,
) -> None:
    """Create the programme [bold]demo[/] with realistic members, purchases and returns."""
    import random
    from urllib.parse import quote

    from treu.demo import DEMO_SLUG, demo_exists, load_demo, sample_member

    db = open_database()
    if demo_exists(db, DEMO_SLUG):
        if if_empty:
            console.print(f"The programme {DEMO_SLUG!r} exists already; nothing to do.")
            return
        raise fail(
            f"the programme {DEMO_SLUG!r} exists already "
            "(use --if-empty to skip, or a fresh database)"
        )
    if seed is None:
        seed = random.SystemRandom().randrange(1, 10**6)
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        summary = load_demo(db, members=members, purchases=purchases, seed=seed,
                            on_progress=on_progress)  # fmt: skip

    table = Table(title=f"Demo programme {summary.programme!r} (seed {seed})")
    table.add_column("What")
    table.add_column("Count", justify="right")
    for what, value in (
        ("members", summary.members),
        ("purchases", summary.purchases),
        ("returns", summary.returns),
        ("engagement events (reviews, store visits, ...)", summary.engagement),
        ("earning rules published", summary.rules),
        ("points earned", summary.points_earned),
        ("points reversed by returns", summary.points_reversed),
        ("lots activated", summary.activated),
        ("lots expired", summary.expired),
        *((f"members in tier {name}", members) for name, members in summary.tiers),
        ("rewards in the catalogue", summary.rewards),
        ("redemptions", summary.redemptions),
        ("coupons used", summary.coupons_used),
        ("donations (points)", summary.points_donated),
        ("active challenges", summary.challenges_active),
        ("challenge completions", summary.challenge_completions),
        ("active campaigns", summary.campaigns_active),
        ("members in campaigns (treated or held out)", summary.campaign_members),
        ("events rejected", len(summary.rejected)),
    ):
        table.add_row(what, f"{value:,}")
    console.print(table)
    for event_id, reason in summary.rejected[:20]:
        err.print(f"rejected {event_id}: {reason}", highlight=False, markup=False)
    console.print(f"Loaded in {summary.seconds:.1f} s.")
    if api_key:
        _create_key(db, "demo", ["events:write", "members:read", "members:write", "admin"])
    sample = sample_member(db, DEMO_SLUG)
    if sample is not None:
        email, card = sample
        console.print(
            f"A member to try the API with: {email} (card {card}), e.g.\n"
            '  curl -H "Authorization: Bearer treu_…" '
            f'"http://127.0.0.1:8000/v1/members?identifier={quote(email)}"',
            highlight=False,
            markup=False,
        )
    if summary.rejected:
        raise typer.Exit(EXIT_FAILED)


# --- API keys -------------------------------------------------------------------------------


def _create_key(db: Database, name: str, scopes: list[str]) -> None:
    from treu.auth.service import api_keys

    with db.unit_of_work() as session:
        key, plaintext = api_keys.create(session, name=name, scopes=scopes)
        scopes_text = ", ".join(key.scopes)
    console.print(f"API key [bold]{escape(name)}[/] ({scopes_text}):", highlight=False)
    console.print(plaintext, highlight=False)
    err.print(
        "[yellow]Store this key now: it is shown only once and cannot be recovered.[/]",
        highlight=False,
        soft_wrap=True,
    )


@apikey_app.command("create")
@friendly
def apikey_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. shop or pos-berlin.")],
    scope: Annotated[
        list[str],
        typer.Option(help="Repeat for several: events:write, members:read, members:write, admin."),
    ],
) -> None:
    """Create an API key and print it (once)."""
    if not name.strip():
        raise fail("the key needs a --name")
    _create_key(open_database(), name.strip(), scope)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


@apikey_app.command("list")
@friendly
def apikey_list() -> None:
    """List API keys (never the keys themselves)."""
    from treu.auth.service import PREFIX, api_keys

    with open_database().unit_of_work(write=False) as session:
        keys = api_keys.list(session)
    if not keys:
        console.print("No API keys yet. Create one with `treu apikey create`.")
        return
    table = Table()
    for column in ("name", "lookup prefix", "scopes", "created", "last used", "revoked"):
        table.add_column(column, overflow="fold")
    for key in keys:
        table.add_row(
            escape(key.name),
            f"{PREFIX}{key.lookup}",
            ", ".join(key.scopes),
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at) if key.revoked_at else "no",
        )
    console.print(table)


@apikey_app.command("revoke")
@friendly
def apikey_revoke(
    lookup: Annotated[str, typer.Argument(help="The lookup prefix (treu_… as listed).")],
) -> None:
    """Revoke an API key: it stops working at once (within the API's key cache time)."""
    from treu.auth.service import LOOKUP_LENGTH, PREFIX, api_keys

    value = lookup.strip().removeprefix(PREFIX)[:LOOKUP_LENGTH]
    with open_database().unit_of_work() as session:
        revoked = api_keys.revoke(session, lookup=value)
    if not revoked:
        raise fail(f"no active API key with lookup prefix {lookup!r} (see `treu apikey list`)")
    console.print(f"Revoked API key {PREFIX}{value}.", highlight=False, markup=False)


# --- imports ---------------------------------------------------------------------------------


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _open(path: Path) -> TextIO:
    if not path.exists():
        raise fail(f"no such file: {path}")
    if path.is_dir():
        raise fail(f"{path} is a directory, not a file")
    return path.open(encoding="utf-8-sig", newline="")


def _run_import(reports: Iterator[ImportReport], total: int, label: str) -> ImportReport:
    from treu.imports import ImportReport

    report = ImportReport()
    with _progress() as progress:
        task = progress.add_task(label, total=max(total, 0))
        for report in reports:
            progress.update(task, completed=report.read)
        progress.update(task, completed=report.read, total=max(report.read, 1))
    return report


def _finish_import(
    report: ImportReport, rejects: Path | None, writer: Callable[[Path, ImportReport], None]
) -> None:
    for note in report.rejected:
        err.print(f"line {note.line}: {note.reason}", highlight=False, markup=False)
    if rejects is not None and report.rejected:
        writer(rejects, report)
        err.print(f"Rejected rows written to {rejects}", highlight=False, markup=False)
    table = Table(title="Import summary")
    table.add_column("read", justify="right")
    table.add_column("imported", justify="right")
    table.add_column("already present (skipped)", justify="right")
    table.add_column("rejected", justify="right")
    table.add_row(
        f"{report.read:,}",
        f"{report.imported:,}",
        f"{len(report.skipped):,}",
        f"{len(report.rejected):,}",
    )
    console.print(table)
    console.print(
        f"Imported {report.imported:,} of {report.read:,} rows; "
        f"{len(report.skipped):,} already present; {len(report.rejected):,} rejected.",
        highlight=False,
        soft_wrap=True,
    )
    if report.rejected:
        raise typer.Exit(EXIT_REJECTED)


BatchOption = Annotated[
    int | None, typer.Option(min=1, help="Rows per transaction (members 500, events 1000).")
]
RejectsOption = Annotated[
    Path | None,
    typer.Option(help="Also write the rejected rows (with line and reason) to this file."),
]


@import_app.command("members")
@friendly
def import_members(
    file: Annotated[Path, typer.Argument(help="CSV with a header line.", show_default=False)],
    programme: Annotated[str, typer.Option(help="Programme slug or id.")],
    batch_size: BatchOption = None,
    rejects: RejectsOption = None,
) -> None:
    """Enrol members from a CSV file. Columns (header required; any subset with at least
    one identifier): email, phone, card_number, external_id, first_name, last_name,
    birthday (YYYY-MM-DD), language (de|en), channel (pos|web|app|phone|other),
    enrolled_at (date, or date and time with zone). Members already enrolled (same email,
    phone, card number or external id) are skipped, so re-running is safe."""
    from treu.imports import MEMBER_BATCH_SIZE, import_members, members_csv

    handle = _open(file)
    with handle:
        rows = members_csv(handle)
        reports = import_members(
            open_database(),
            rows,
            programme=programme,
            batch_size=batch_size or MEMBER_BATCH_SIZE,
        )
        report = _run_import(reports, _count_lines(file) - 1, "members")
    _finish_import(report, rejects, _write_member_rejects)


def _write_member_rejects(path: Path, report: ImportReport) -> None:
    import csv

    from treu.imports import MEMBER_COLUMNS

    columns = list(MEMBER_COLUMNS)
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["line", "reason", *columns])
        for note in report.rejected:
            if isinstance(note.data, dict):
                values = [note.data.get(c, "") for c in columns]
            else:
                values = list(note.data)
            out.writerow([note.line, note.reason, *values])


@import_app.command("events")
@friendly
def import_events(
    file: Annotated[Path, typer.Argument(help="JSON Lines: one event per line.")],
    programme: Annotated[
        str | None, typer.Option(help="Programme for events that do not name one.")
    ] = None,
    batch_size: BatchOption = None,
    rejects: RejectsOption = None,
) -> None:
    """Ingest purchases and returns from a JSON Lines file (one event as for POST
    /v1/events per line). Events are idempotent by id, so re-running is safe."""
    from treu.imports import EVENT_BATCH_SIZE, events_jsonl, import_events

    handle = _open(file)
    with handle:
        reports = import_events(
            open_database(),
            events_jsonl(handle),
            batch_size=batch_size or EVENT_BATCH_SIZE,
            default_programme=programme,
        )
        report = _run_import(reports, _count_lines(file), "events")
    _finish_import(report, rejects, _write_event_rejects)


def _write_event_rejects(path: Path, report: ImportReport) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for note in report.rejected:
            try:
                event: Any = json.loads(note.data)
            except (TypeError, ValueError):
                event = note.data
            record = {"line": note.line, "reason": note.reason, "code": note.code, "event": event}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


# --- ledger ----------------------------------------------------------------------------------


@ledger_app.command("verify")
@friendly
def ledger_verify(
    programme: Annotated[str | None, typer.Option(help="Only this programme (slug or id).")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Rewrite differing cached balances from postings.")
    ] = False,
) -> None:
    """Rebuild every points balance from the postings and every e-wallet balance from
    its entries, and report differences (exit code 3)."""
    from treu.ledger.service import ledger

    db = open_database()
    programme_id = None
    if programme is not None:
        from treu.programmes.service import programmes

        with db.unit_of_work(write=False) as session:
            programme_id = programmes.get(session, programme).id
    found = _verify(db, programme_id)
    if found and not repair:
        console.print("Run with --repair to rewrite the cached balances from the postings.")
    elif found:
        members = sorted({d.member_id for d in found if d.member_id is not None})
        with db.unit_of_work() as session:
            ledger.repair(session, member_ids=members)
        console.print(
            f"Repaired the cached balances of {len(members)} account(s); verifying again."
        )
        found = _verify(db, programme_id)
    # Wallets hold money, not points: their entries are not postings, so they get their
    # own check, and --repair (which rewrites points balances) leaves them alone.
    wallets_off = _verify_wallets(db, programme_id)
    if found or wallets_off:
        raise typer.Exit(EXIT_DISCREPANCIES)


def _verify(db: Database, programme_id: Any) -> list[Any]:
    from sqlalchemy import func, select

    from treu.events.integrity import check_references
    from treu.ledger.models import Account
    from treu.ledger.service import ledger

    with db.unit_of_work(write=False) as session:
        found = ledger.verify(session, programme_id=programme_id)
        found += check_references(session, programme_id=programme_id)
        query = select(func.count()).select_from(Account)
        if programme_id is not None:
            query = query.where(Account.programme_id == programme_id)
        accounts = session.scalar(query) or 0
    if not found:
        console.print(f"[green]Ledger OK:[/] {accounts:,} accounts verified")
        return found
    table = Table(title=f"{len(found)} discrepancies in {accounts:,} accounts")
    table.add_column("member", overflow="fold")
    table.add_column("what")
    table.add_column("cached", justify="right")
    table.add_column("rebuilt", justify="right")
    for d in found:
        table.add_row(str(d.member_id), d.what, str(d.cached), str(d.rebuilt))
    console.print(table)
    return found


def _verify_wallets(db: Database, programme_id: Any) -> list[Any]:
    """E-wallet balances against the sum of their entries, in money of their currency."""
    from sqlalchemy import func, select

    from treu.kit.money import format_money
    from treu.rewards.wallet import Wallet, wallet

    with db.unit_of_work(write=False) as session:
        found = wallet.verify(session, programme_id=programme_id)
        query = select(func.count()).select_from(Wallet)
        if programme_id is not None:
            query = query.where(Wallet.programme_id == programme_id)
        wallets = session.scalar(query) or 0
        currencies: dict[Any, str] = {}
        if found:
            rows = session.execute(
                select(Wallet.member_id, Wallet.currency).where(
                    Wallet.member_id.in_([d.member_id for d in found])
                )
            )
            currencies = dict(rows.all())
    counted = f"{wallets:,} wallet{'' if wallets == 1 else 's'}"
    if not found:
        console.print(f"[green]Wallets OK:[/] {counted} verified")
        return found
    table = Table(title=f"{len(found)} wallet discrepancies in {counted}")
    table.add_column("member", overflow="fold")
    table.add_column("cached", justify="right")
    table.add_column("rebuilt from entries", justify="right")
    for d in found:
        currency = currencies[d.member_id]
        table.add_row(
            str(d.member_id), format_money(d.cached, currency), format_money(d.rebuilt, currency)
        )
    console.print(table)
    console.print(
        "Wallet balances are not repaired automatically: the entries are the record; "
        "keep this output, it is a bug report."
    )
    return found


# --- donations ---------------------------------------------------------------------------------


@donations_app.command("summary")
@friendly
def donations_summary(
    programme: Annotated[str, typer.Option(help="Programme slug or id.")],
    start: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First day (programme time zone)."),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last day, included."),
    ] = None,
    lang: Annotated[str, typer.Option(help="Language of the charities' names: de or en.")] = "en",
) -> None:
    """Per charity: donations, donors, points and their value — what is owed to whom."""
    from treu.kit.money import format_money
    from treu.programmes.service import programmes
    from treu.rewards.donations import donations, localised

    with open_database().unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        totals = donations.summary(
            session,
            programme=found,
            start=start.date() if start else None,
            end=end.date() if end else None,
        )
    period = f"from {start:%Y-%m-%d}" if start else "since the start"
    period += f" to {end:%Y-%m-%d}" if end else ""
    table = Table(title=f"Donations, {found.slug}, {period}")
    table.add_column("charity")
    table.add_column("code")
    for column in ("donations", "donors", "points", "value"):
        table.add_column(column, justify="right")
    for t in totals:
        table.add_row(
            escape(localised(t.name, lang)),
            t.code,
            f"{t.donations:,}",
            f"{t.donors:,}",
            f"{t.points:,}",
            format_money(t.value_minor, t.currency, lang),
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        f"{sum(t.donations for t in totals):,}",
        "",
        f"{sum(t.points for t in totals):,}",
        format_money(sum(t.value_minor for t in totals), found.currency, lang),
    )
    console.print(table)


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
    console.print(table)


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
        err.print(f"  batch {batches}: {count}", highlight=False)

    count = job.run(open_database(), on_batch=on_batch)
    console.print(
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
        handlers=[RichHandler(console=err, show_path=False)],
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    db = open_database()
    _preflight(db)
    console.print(f"Treu worker on {_safe(settings.database_url)} — Ctrl-C stops.")
    run_forever(db, settings)


def _preflight(db: Database) -> None:
    """Fail at start, with a sentence, when the database is unreachable or unmigrated
    (rather than logging the same error at every scheduled run)."""
    from sqlalchemy import select

    from treu.ledger.models import Lot

    with db.unit_of_work(write=False) as session:
        session.execute(select(Lot.id).limit(1))


def main() -> None:
    try:
        app()
    except TreuError as exc:
        err.print(f"[bold red]Error:[/] {escape(exc.detail)}", highlight=False)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        err.print("Interrupted.")
        sys.exit(130)
    except Exception as exc:  # a bug: say what happened, without a traceback
        err.print(
            f"[bold red]Unexpected error:[/] {type(exc).__name__}: {escape(str(exc))}",
            highlight=False,
        )
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
