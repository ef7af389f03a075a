"""``treu apikey``, ``treu import``, ``treu ledger`` and ``treu donations``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from treu import cli
from treu.cli import (
    EXIT_DISCREPANCIES,
    EXIT_REJECTED,
    _create_key,
    _progress,
    apikey_app,
    donations_app,
    fail,
    friendly,
    import_app,
    ledger_app,
)
from treu.db.session import Database

if TYPE_CHECKING:
    from treu.imports import ImportReport


# --- API keys -------------------------------------------------------------------------------


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
    _create_key(cli.open_database(), name.strip(), scope)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


@apikey_app.command("list")
@friendly
def apikey_list() -> None:
    """List API keys (never the keys themselves)."""
    from treu.auth.service import PREFIX, api_keys

    with cli.open_database().unit_of_work(write=False) as session:
        keys = api_keys.list(session)
    if not keys:
        cli.console.print("No API keys yet. Create one with `treu apikey create`.")
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
    cli.console.print(table)


@apikey_app.command("revoke")
@friendly
def apikey_revoke(
    lookup: Annotated[str, typer.Argument(help="The lookup prefix (treu_… as listed).")],
) -> None:
    """Revoke an API key: it stops working at once (within the API's key cache time)."""
    from treu.auth.service import LOOKUP_LENGTH, PREFIX, api_keys

    value = lookup.strip().removeprefix(PREFIX)[:LOOKUP_LENGTH]
    with cli.open_database().unit_of_work() as session:
        revoked = api_keys.revoke(session, lookup=value, actor="cli")
    if not revoked:
        raise fail(f"no active API key with lookup prefix {lookup!r} (see `treu apikey list`)")
    cli.console.print(f"Revoked API key {PREFIX}{value}.", highlight=False, markup=False)


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
        cli.err.print(f"line {note.line}: {note.reason}", highlight=False, markup=False)
    if rejects is not None and report.rejected:
        writer(rejects, report)
        cli.err.print(f"Rejected rows written to {rejects}", highlight=False, markup=False)
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
    cli.console.print(table)
    cli.console.print(
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
            cli.open_database(),
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
            cli.open_database(),
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

    db = cli.open_database()
    programme_id = None
    if programme is not None:
        from treu.programmes.service import programmes

        with db.unit_of_work(write=False) as session:
            programme_id = programmes.get(session, programme).id
    found = _verify(db, programme_id)
    if found and not repair:
        cli.console.print("Run with --repair to rewrite the cached balances from the postings.")
    elif found:
        members = sorted({d.member_id for d in found if d.member_id is not None})
        with db.unit_of_work() as session:
            ledger.repair(session, member_ids=members)
        cli.console.print(
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
        cli.console.print(f"[green]Ledger OK:[/] {accounts:,} accounts verified")
        return found
    table = Table(title=f"{len(found)} discrepancies in {accounts:,} accounts")
    table.add_column("member", overflow="fold")
    table.add_column("what")
    table.add_column("cached", justify="right")
    table.add_column("rebuilt", justify="right")
    for d in found:
        table.add_row(str(d.member_id), d.what, str(d.cached), str(d.rebuilt))
    cli.console.print(table)
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
        cli.console.print(f"[green]Wallets OK:[/] {counted} verified")
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
    cli.console.print(table)
    cli.console.print(
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

    with cli.open_database().unit_of_work(write=False) as session:
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
    cli.console.print(table)
