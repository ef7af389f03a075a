"""``treu insights clv FILE``: the table, ``--json`` and ``--out`` on a file, readable
errors on bad input. No database is involved."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.insights.cdnow import cdnow_lines
from treu import cli
from treu.insights.synthetic import generate


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(cli, "console", Console(soft_wrap=True, width=220))
    monkeypatch.setattr(cli, "err", Console(stderr=True, soft_wrap=True, width=220))
    return CliRunner(env={"COLUMNS": "220"})


@pytest.fixture(scope="module")
def purchases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clv") / "purchases.csv"
    frame = generate(1_500, start=date(2023, 1, 1), end=date(2024, 6, 30), seed=2, items=40)
    frame[["customer_id", "date", "amount", "item"]].to_csv(
        path, index=False, date_format="%Y-%m-%d"
    )
    return path


def test_table_names_parameters_and_customers(runner: CliRunner, purchases: Path) -> None:
    result = runner.invoke(cli.app, ["insights", "clv", str(purchases)])
    assert result.exit_code == 0, result.output
    assert "1,500 customers" in result.stdout
    assert "calibration to 2024-06-30" in result.stdout
    for name in ("BG/NBD", "Gamma-Gamma", "alpha", "gamma", "log-likelihood"):
        assert name in result.stdout


def test_json_is_one_object_and_out_has_every_customer(
    runner: CliRunner, purchases: Path, tmp_path: Path
) -> None:
    out = tmp_path / "customers.csv"
    result = runner.invoke(
        cli.app,
        [
            "insights",
            "clv",
            str(purchases),
            "--calibration-end",
            "2024-03-31",
            "--json",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) == {"customers", "bgnbd", "gamma_gamma"}
    assert set(answer["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(answer["gamma_gamma"]) == {"p", "q", "gamma"}
    assert answer["bgnbd"]["log_likelihood"] < 0
    written = pd.read_csv(out, dtype={"customer_id": str})
    assert list(written.columns) == [
        "customer_id",
        "p_alive",
        "expected_purchases_90",
        "expected_purchases_365",
        "expected_spend",
        "clv_365",
    ]
    # only customers whose first purchase is on or before the calibration end
    first = pd.read_csv(purchases, parse_dates=["date"]).groupby("customer_id")["date"].min()
    assert answer["customers"] == len(written) == int((first <= "2024-03-31").sum())
    assert answer["customers"] < 1_500
    assert written["p_alive"].between(0, 1).all()
    assert (written["expected_purchases_365"] >= written["expected_purchases_90"]).all()


def test_cdnow_through_the_command(
    runner: CliRunner, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = tmp_path / "cdnow.csv"
    cdnow_lines(request).to_csv(path, index=False, date_format="%Y-%m-%d")
    result = runner.invoke(
        cli.app, ["insights", "clv", str(path), "--calibration-end", "1997-09-30", "--json"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["customers"] == 2_357
    assert answer["bgnbd"]["r"] == pytest.approx(0.243, rel=0.005)
    assert answer["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, rel=0.005)
    assert answer["gamma_gamma"]["gamma"] == pytest.approx(15.44, rel=0.01)


@pytest.mark.parametrize(
    ("content", "arguments", "message"),
    [
        ("customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,-2\n", [], "line 3"),
        ("customer_id,day,amount\na,2024-01-01,1\n", [], "no column 'date'"),
        ("customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,2\n", [], "repeat purchase"),
        (
            "customer_id,date,amount\na,2024-01-01,1\n",
            ["--calibration-end", "2023-01-01"],
            "no purchases",
        ),
        (
            "customer_id,date,amount\na,2024-01-01,1\n",
            ["--calibration-end", "2023-13-01"],
            "not a date",
        ),
    ],
)
def test_bad_input_is_a_sentence_and_an_exit_code(
    runner: CliRunner, tmp_path: Path, content: str, arguments: list[str], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(cli.app, ["insights", "clv", str(path), *arguments])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_file_and_missing_out_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["insights", "clv", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "no such file" in result.output
    path = tmp_path / "p.csv"
    path.write_text("customer_id,date,amount\na,2024-01-01,1\na,2024-02-01,1\n", encoding="utf-8")
    result = runner.invoke(
        cli.app, ["insights", "clv", str(path), "--out", str(tmp_path / "no" / "x.csv")]
    )
    assert result.exit_code != 0
    assert "does not exist" in result.output
