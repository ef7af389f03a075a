"""``treu insights evaluate FILE --until YYYY-MM-DD [--k 10] [--horizon-days 90] [--json]``:
the recommender and the churn model on a time split of the file, each next to its baselines
— precision@k and recall@k against global popularity and buy again
(``treu.insights.recommend.evaluate``), churn ROC AUC against P(alive) and days since the
last purchase (``treu.insights.churn.evaluate``). Both learn from the rows dated on or
before ``--until`` and are judged on the ``--horizon-days`` after it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from treu.cli import console, friendly
from treu.cli.insights import insights_app, parse_day

RECOMMENDERS = (("model", "Recommender"), ("buy_again", "Buy again"), ("popular", "Popularity"))


def churn_figures(purchases: pd.DataFrame, until: date, horizon_days: int) -> dict[str, Any]:
    """The churn half: ROC AUC of the model, of P(alive) and of recency alone."""
    from treu.insights import churn

    return churn.evaluate(purchases, until, horizon_days=horizon_days)


@insights_app.command("evaluate")
@friendly
def evaluate_command(
    file: Annotated[Path, typer.Argument(help="Purchase CSV: customer_id,date,amount[,item].")],
    until: Annotated[
        str, typer.Option("--until", help="Learn up to this day; test on the days after it.")
    ],
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items per customer.")] = 10,
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, help="Length of the test window in days.")
    ] = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Precision and recall of the recommender and churn ROC AUC against their baselines."""
    from treu.insights import recommend
    from treu.insights.purchases import read_purchases

    day = parse_day(until, "--until")
    assert day is not None  # a required option
    purchases = read_purchases(file)
    recs: dict[str, Any] | None = None
    if "item" in purchases.columns:
        recs = recommend.evaluate(purchases, until=day, k=k, horizon_days=horizon_days)
    churn = churn_figures(purchases, day, horizon_days)
    if as_json:
        typer.echo(json.dumps({"recommend": recs, "churn": churn}))
        return
    console.print(_recommend_table(recs, k))
    console.print(_churn_table(churn))


def _figure(value: object) -> str:
    return "-" if value is None else f"{float(value):.4f}"  # type: ignore[arg-type]


def _recommend_table(recs: dict[str, Any] | None, k: int) -> Table | str:
    if recs is None:
        return "Next-best offer: the file has no 'item' column, nothing to recommend."
    table = Table(
        title=(
            f"Next-best offer: learnt up to {recs['until']}, tested on the next "
            f"{recs['horizon_days']} days ({recs['customers']:,} customers, "
            f"{recs['items']:,} items)"
        )
    )
    table.add_column("")
    table.add_column(f"precision@{k}", justify="right")
    table.add_column(f"recall@{k}", justify="right")
    for key, label in RECOMMENDERS:
        table.add_row(label, _figure(recs["precision"][key]), _figure(recs["recall"][key]))
    return table


def _churn_table(churn: dict[str, Any]) -> Table:
    table = Table(title=f"Churn risk ({churn.get('customers', 0):,} customers)")
    table.add_column("")
    table.add_column("ROC AUC", justify="right")
    table.add_column("Brier", justify="right")
    roc, brier = churn.get("roc_auc", {}), churn.get("brier", {})
    for key, label in (
        ("model", "Churn model"),
        ("p_alive", "BG/NBD: P(no purchase in the horizon)"),
        ("recency", "Days since last purchase"),
    ):
        table.add_row(label, _figure(roc.get(key)), _figure(brier.get(key)))
    return table
