"""``treu insights recommend FILE --until YYYY-MM-DD --k 10 --out recs.csv``: the next-best
items of every customer seen by ``--until``, learnt from the rows dated on or before it
(``treu.insights.recommend``; nothing a customer bought is excluded)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from treu.cli import console, friendly
from treu.cli.insights import insights_app, output_path, parse_day


@insights_app.command("recommend")
@friendly
def recommend_command(
    file: Annotated[Path, typer.Argument(help="Purchase CSV: customer_id,date,amount,item.")],
    until: Annotated[
        str, typer.Option("--until", help="Learn from rows dated on or before this day.")
    ],
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="Items per customer.")] = 10,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write customer_id,rank,item,score here (else stdout)."),
    ] = None,
) -> None:
    """Recommend the next items for every customer seen by --until."""
    from treu.insights import recommend
    from treu.insights.purchases import read_purchases

    day = parse_day(until, "--until")
    assert day is not None  # a required option
    out = output_path(out)
    purchases = read_purchases(file, until=day)
    recommend.require_items(purchases)
    model = recommend.fit(purchases, until=day)
    table = recommend.recommend(model, k=k)
    if out is None:
        typer.echo(table.to_csv(index=False), nl=False)
        return
    table.to_csv(out, index=False)
    console.print(
        f"{out}: {len(model.customers):,} customers x {table['rank'].max()} items "
        f"(learnt from {len(purchases):,} lines and {len(model.items):,} items up to "
        f"{day.isoformat()}).",
        highlight=False,
        markup=False,
    )
