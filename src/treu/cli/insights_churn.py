"""``treu insights churn FILE``: churn risk as of a cut-off (``treu.insights.churn``), from
the rows dated on or before it; ``--out`` writes ``customer_id,churn_risk,p_alive`` for
every customer seen by then."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from treu import cli
from treu.cli import friendly
from treu.cli.insights import insights_app, output_path, parse_day


@insights_app.command("churn")
@friendly
def churn_command(
    file: Annotated[
        Path, typer.Argument(help="CSV with the columns customer_id,date,amount[,item].")
    ],
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff",
            help="Score as of this day (YYYY-MM-DD), from rows on or before it; "
            "default the file's last date.",
        ),
    ] = None,
    horizon_days: Annotated[
        int,
        typer.Option("--horizon-days", min=1, help="Churn = no purchase within this many days."),
    ] = 90,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write customer_id,churn_risk,p_alive (CSV)."),
    ] = None,
) -> None:
    """Churn risk per customer: gradient boosting or BG/NBD, whichever validates better."""
    from treu.insights import churn
    from treu.insights.purchases import read_purchases

    day = parse_day(cutoff, "--cutoff")
    target = output_path(out)
    frame = read_purchases(file, until=day)
    if frame.empty:
        raise cli.fail(
            f"{file.name}: no purchases on or before {day}."
            if day is not None
            else f"{file.name}: no purchases: the file has only its header."
        )
    end = day if day is not None else frame["date"].max().date()
    scores = churn.train_and_score(frame, end, horizon_days)
    if target is not None:
        scores[["churn_risk", "p_alive"]].reset_index().to_csv(
            target, index=False, float_format="%.6g"
        )

    validation = scores.attrs["validation"]
    table = Table(title=f"Churn risk as of {end.isoformat()}, horizon {horizon_days} days")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_row("customers scored", f"{len(scores):,}")
    table.add_row("mean churn risk", f"{scores['churn_risk'].mean():.3f}")
    table.add_row(
        "trained on",
        f"{scores.attrs['training_customers']:,} customers as of "
        f"{(end - timedelta(days=horizon_days)).isoformat()}",
    )
    for name, label in (("model", "gradient boosting"), ("p_alive", "BG/NBD")):
        auc = validation.get(name)
        table.add_row(f"validation ROC AUC, {label}", "-" if auc is None else f"{auc:.3f}")
    chosen = "gradient boosting" if scores.attrs["chosen"] == "model" else "BG/NBD"
    table.add_row("used", chosen)
    cli.console.print(table)
    if target is not None:
        cli.console.print(f"Scores written to {target}.", highlight=False)
