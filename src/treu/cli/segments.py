"""``treu segments``: list a programme's segments and refresh them now (what the
``segments.refresh`` job does on schedule; docs/segments.md)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from treu import cli
from treu.cli import app, friendly

segments_app = typer.Typer(
    help="Dynamic segments and RFM (docs/segments.md).", no_args_is_help=True
)
app.add_typer(segments_app, name="segments")


@segments_app.command("list")
@friendly
def segments_list(
    programme: Annotated[str, typer.Option("--programme", help="Programme slug or id")],
) -> None:
    """The programme's segments with their member counts."""
    from treu.insights.segmenting import segments
    from treu.programmes.service import programmes

    with cli.open_database().unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        rows = segments.all(session, programme_id=found.id)
        table = Table("slug", "status", "members", "refreshed", "expression")
        for s in rows:
            table.add_row(
                s.slug,
                s.status,
                f"{s.member_count:,}",
                s.computed_at.isoformat(timespec="seconds") if s.computed_at else "never",
                s.expression,
            )
    cli.console.print(table)


@segments_app.command("refresh")
@friendly
def segments_refresh(
    programme: Annotated[str, typer.Option("--programme", help="Programme slug or id")],
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Rebuild the kept member metrics from every event first (after loading "
            "events with back-dated ids into a live programme; docs/segments.md)",
        ),
    ] = False,
) -> None:
    """RFM scores and the members of every active segment of the programme, now."""
    from treu.insights.segmenting import segments
    from treu.programmes.service import programmes

    started = time.perf_counter()
    with cli.open_database().unit_of_work() as session:
        found = programmes.get(session, programme)
        done = segments.refresh(session, programme=found, rebuild=rebuild)
    for r in done:
        cli.console.print(
            f"{r.slug}: {r.member_count:,} members (+{r.entered:,} -{r.left:,})",
            highlight=False,
        )
    cli.console.print(
        f"{len(done)} segments refreshed in {time.perf_counter() - started:.2f} s",
        highlight=False,
    )
