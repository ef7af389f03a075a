"""``treu insights train [--programme SLUG]``: every model of a programme (or of every
programme) from its purchase history in the database (``treu.insights.train``), with a
progress line per step and a table of what each step did."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from treu import cli
from treu.cli import friendly
from treu.cli.insights import insights_app

STATUS_STYLE = {"done": "green", "skipped": "yellow", "failed": "red"}


@insights_app.command("train")
@friendly
def train_command(
    programme: Annotated[
        str | None,
        typer.Option("--programme", help="Slug of the programme; default every programme."),
    ] = None,
) -> None:
    """Train every model on the purchase history in the database: RFM and segments,
    lifetime value (BG/NBD + Gamma-Gamma: clv_365, p_alive), churn risk and personas.
    Scores go to each member, models (versioned, with their metrics) to the database;
    nothing is sent anywhere."""
    from sqlalchemy import select

    from treu.insights.train import STEPS, StepReport, train
    from treu.programmes.models import Programme

    db = cli.open_database()
    if programme is None:
        with db.unit_of_work(write=False) as session:
            slugs = list(session.scalars(select(Programme.slug).order_by(Programme.slug)))
    else:
        slugs = [programme]
    for slug in slugs:
        with Status(f"{slug}: starting", console=cli.console) as status:

            def on_step(step: StepReport, slug: str = slug, status: Status = status) -> None:
                number = STEPS.index(step.name) + 1
                if step.status == "running":
                    status.update(f"{escape(slug)}: {number}/{len(STEPS)} {step.name} …")
                else:
                    style = STATUS_STYLE.get(step.status, "white")
                    cli.console.print(
                        f"[{style}]{step.status:<7}[/] {step.name:<9} {step.seconds:7.1f} s  "
                        f"{escape(step.note)}",
                        highlight=False,
                    )

            report = train(db, programme=slug, on_step=on_step)
        table = Table(title=f"Programme {report.programme!r}: trained in {report.seconds:.1f} s")
        table.add_column("Step")
        table.add_column("Result")
        table.add_column("Seconds", justify="right")
        table.add_column("Model version", justify="right")
        for step in report.steps:
            table.add_row(
                step.name,
                f"{step.status}: {step.note}" if step.note else step.status,
                f"{step.seconds:.1f}",
                "" if step.version is None else str(step.version),
            )
        cli.console.print(table)
