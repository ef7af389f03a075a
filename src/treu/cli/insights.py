"""``treu insights``: what the purchase history says, for analysts. The file commands
(``clv``, ``recommend``, ``churn``, ``evaluate``) work on any export with the columns
``customer_id,date,amount[,item]`` (``treu.insights.purchases``), never touch the database
and send nothing anywhere. Each command lives in its own module below and registers on
``insights_app``."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

from treu.cli import app

insights_app = typer.Typer(
    help="Lifetime value, churn risk and recommendations from purchase history.",
    no_args_is_help=True,
)
app.add_typer(insights_app, name="insights")


def parse_day(value: str | None, option: str) -> date | None:
    """``YYYY-MM-DD`` from an option, or a readable error naming the option."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()  # noqa: DTZ007 - a calendar day
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None


def output_path(value: Path | None) -> Path | None:
    """Where a command writes its CSV; the folder must exist (nothing is created silently)."""
    if value is not None and not value.parent.exists():
        raise typer.BadParameter(
            f"the folder {str(value.parent)!r} does not exist", param_hint="--out"
        )
    return value


# The commands register themselves on ``insights_app`` when imported.
from treu.cli import (  # noqa: E402, F401
    insights_churn,
    insights_clv,
    insights_evaluate,
    insights_recommend,
    insights_train,
)
