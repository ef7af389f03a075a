"""``treu insights churn FILE``: scores for every customer seen by the cut-off, nothing
after it used, readable errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from treu import cli
from treu.insights.synthetic import generate


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(cli, "console", Console(soft_wrap=True, width=220))
    monkeypatch.setattr(cli, "err", Console(stderr=True, soft_wrap=True, width=220))
    return CliRunner(env={"COLUMNS": "220"})


@pytest.fixture(scope="module")
def purchases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("churn") / "purchases.csv"
    frame = generate(2_000, start=date(2022, 1, 1), end=date(2024, 6, 30), seed=9, items=40)
    frame[["customer_id", "date", "amount", "item"]].to_csv(
        path, index=False, date_format="%Y-%m-%d"
    )
    return path


def test_scores_every_customer_seen_by_the_cutoff(
    runner: CliRunner, purchases: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        cli.app,
        ["insights", "churn", str(purchases), "--cutoff", "2024-01-31", "--horizon-days", "90",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "as of 2024-01-31" in result.stdout
    assert "validation ROC AUC" in result.stdout
    scores = pd.read_csv(out, dtype={"customer_id": str})
    assert list(scores.columns) == ["customer_id", "churn_risk", "p_alive"]
    lines = pd.read_csv(purchases, parse_dates=["date"], dtype={"customer_id": str})
    seen = set(lines.loc[lines["date"] <= "2024-01-31", "customer_id"])
    assert set(scores["customer_id"]) == seen
    assert scores["churn_risk"].between(0, 1).all()
    assert scores["p_alive"].between(0, 1).all()
    # customers silent for long are at higher risk than those who just bought
    last = lines[lines["date"] <= "2024-01-31"].groupby("customer_id")["date"].max()
    risk = scores.set_index("customer_id")["churn_risk"]
    silent = last[last < "2023-06-01"].index
    recent = last[last >= "2024-01-01"].index
    assert risk[silent].mean() > risk[recent].mean() + 0.3


def test_bad_input(runner: CliRunner, tmp_path: Path, purchases: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,date,amount\na,2024-01-01,x\n", encoding="utf-8")
    result = runner.invoke(cli.app, ["insights", "churn", str(bad)])
    assert result.exit_code == 1
    assert "line 2: amount 'x' is not a number" in result.output
    result = runner.invoke(cli.app, ["insights", "churn", str(purchases), "--cutoff", "2020-01-01"])
    assert result.exit_code == 1
    assert "no purchases on or before 2020-01-01" in result.output
    header_only = tmp_path / "header.csv"
    header_only.write_text("customer_id,date,amount\n", encoding="utf-8")
    result = runner.invoke(cli.app, ["insights", "churn", str(header_only)])
    assert result.exit_code == 1
    assert "the file has only its header" in result.output
    assert "None" not in result.output
    result = runner.invoke(cli.app, ["insights", "churn", str(purchases), "--horizon-days", "0"])
    assert result.exit_code != 0
