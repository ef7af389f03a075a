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
import sys
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

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
staff_app = typer.Typer(help="Staff accounts of the admin console.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(import_app, name="import")
app.add_typer(ledger_app, name="ledger")
app.add_typer(jobs_app, name="jobs")
app.add_typer(donations_app, name="donations")
app.add_typer(staff_app, name="staff")

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


def _create_key(db: Database, name: str, scopes: list[str]) -> None:
    from treu.auth.service import api_keys

    with db.unit_of_work() as session:
        key, plaintext = api_keys.create(session, name=name, scopes=scopes, actor="cli")
        scopes_text = ", ".join(key.scopes)
    console.print(f"API key [bold]{escape(name)}[/] ({scopes_text}):", highlight=False)
    console.print(plaintext, highlight=False)
    err.print(
        "[yellow]Store this key now: it is shown only once and cannot be recovered.[/]",
        highlight=False,
        soft_wrap=True,
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
    bulk: Annotated[
        bool,
        typer.Option(
            "--bulk",
            help="Instead: a large synthetic history for insights (members, their accounts "
            "at 0, purchase events and about --purchases purchase lines) written straight "
            "to the tables with COPY, in a programme that earns no points: no ledger "
            "postings, no returns, rules, rewards or messages.",
        ),
    ] = False,
    programme: Annotated[
        str, typer.Option("--programme", help="With --bulk: the new programme's slug.")
    ] = "synthetic",
) -> None:
    """Create the programme [bold]demo[/] with realistic members, purchases and returns.

    With --bulk, a programme for insights at scale instead (--members 1000000
    --purchases 20000000 loads in minutes on PostgreSQL)."""
    import random
    from urllib.parse import quote

    from treu.demo import DEMO_SLUG, demo_exists, load_demo, sample_member

    db = open_database()
    if bulk:
        _demo_bulk(db, members=members, purchases=purchases, seed=seed, slug=programme)
        return
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
        ("members joining now (their welcome is delivered)", summary.showcase),
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
    _demo_admin(db)
    if summary.rejected:
        raise typer.Exit(EXIT_FAILED)


def _demo_bulk(db: Database, *, members: int, purchases: int, seed: int | None, slug: str) -> None:
    from treu.demo import demo_exists
    from treu.demo.bulk import load_bulk

    if demo_exists(db, slug):
        raise fail(
            f"the programme {slug!r} exists already (choose --programme or a fresh database)"
        )
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        summary = load_bulk(db, members=members, purchases=purchases, seed=seed or 1,
                            slug=slug, on_progress=on_progress)  # fmt: skip
    console.print(
        f"Programme {summary.programme!r}: {summary.members:,} members, "
        f"{summary.purchases:,} purchases with {summary.lines:,} lines "
        f"(generated in {summary.generate_seconds:.1f} s, loaded in {summary.seconds:.1f} s). "
        "It earns no points; `treu insights train --programme "
        f"{summary.programme}` computes its scores.",
        highlight=False,
        soft_wrap=True,
    )


DEMO_ADMIN = "admin@demo.example"


def _demo_admin(db: Database) -> None:
    """An admin account for the console, so that ``make run`` can be looked at: its
    one-time password is printed once (``treu staff reset-password`` gives another)."""
    from treu.staff.errors import EmailTaken
    from treu.staff.service import staff as staff_accounts

    try:
        with db.unit_of_work() as session:
            _, password = staff_accounts.create(
                session, email=DEMO_ADMIN, role="admin", actor="demo"
            )
    except EmailTaken:
        return
    console.print(
        f"Admin console: http://127.0.0.1:8000/admin — sign in as {DEMO_ADMIN} with the "
        f"one-time password {password} (shown only once; you choose your own at the "
        "first sign-in).",
        highlight=False,
        markup=False,
    )


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


# The commands of the other modules register themselves on ``app`` when imported.
from treu.cli import admin, insights, jobs, segments, staff  # noqa: E402, F401
