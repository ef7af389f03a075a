"""``treu insights clv FILE``: BG/NBD and Gamma-Gamma fitted on a purchase file
(``treu.insights.clv``); parameters and log-likelihoods as a table or one JSON object, and
per customer P(alive), expected purchases and expected value with ``--out``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from treu import cli
from treu.cli import friendly
from treu.cli.insights import insights_app, output_path, parse_day


@insights_app.command("clv")
@friendly
def clv_command(
    file: Annotated[
        Path, typer.Argument(help="CSV with the columns customer_id,date,amount[,item].")
    ],
    calibration_end: Annotated[
        str | None,
        typer.Option(
            "--calibration-end",
            help="Last day the models learn from (YYYY-MM-DD); default the file's last date.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write per customer: p_alive, expected purchases in 90 and 365 days, "
            "expected spend per purchase and expected value over 365 days (CSV).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the table.")
    ] = False,
) -> None:
    """Fit BG/NBD + Gamma-Gamma lifetime value on a purchase file (time unit: weeks)."""
    from treu.insights import clv
    from treu.insights.purchases import read_purchases

    end = parse_day(calibration_end, "--calibration-end")
    target = output_path(out)
    frame = read_purchases(file)
    summary = clv.summary(frame, calibration_end=end)  # merges each customer's days
    bgnbd = clv.fit_bgnbd(summary)
    gg = clv.fit_gamma_gamma(summary)

    if target is not None:
        values = clv.customer_values(summary, bgnbd, gg)
        values.reset_index().to_csv(target, index=False, float_format="%.6g")

    if as_json:
        typer.echo(
            json.dumps(
                {
                    "customers": len(summary),
                    "bgnbd": {
                        "r": bgnbd.r,
                        "alpha": bgnbd.alpha,
                        "a": bgnbd.a,
                        "b": bgnbd.b,
                        "log_likelihood": bgnbd.log_likelihood,
                    },
                    "gamma_gamma": {"p": gg.p, "q": gg.q, "gamma": gg.gamma},
                }
            )
        )
        return

    repeat = int((summary["frequency"] > 0).sum())
    table = Table(
        title=f"Lifetime value: {len(summary):,} customers, calibration to "
        f"{summary.attrs['calibration_end']}, time in weeks"
    )
    table.add_column("model")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for name, value in (("r", bgnbd.r), ("alpha", bgnbd.alpha), ("a", bgnbd.a), ("b", bgnbd.b)):
        table.add_row("BG/NBD", name, f"{value:.4f}")
    table.add_row("BG/NBD", "log-likelihood", f"{bgnbd.log_likelihood:,.2f}")
    for name, value in (("p", gg.p), ("q", gg.q), ("gamma", gg.gamma)):
        table.add_row("Gamma-Gamma", name, f"{value:.4f}")
    table.add_row("Gamma-Gamma", "log-likelihood", f"{gg.log_likelihood:,.2f}")
    table.add_row("Gamma-Gamma", "customers with repeat purchases", f"{repeat:,}")
    table.add_row("Gamma-Gamma", "mean spend per purchase", f"{gg.mean_spend:,.2f}")
    cli.console.print(table)
    if target is not None:
        cli.console.print(f"Per-customer values written to {target}.", highlight=False)
