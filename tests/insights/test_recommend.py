"""Next-best offer: the recommender finds the items of a customer's kind that they have not
bought yet, keeps what they buy again, follows what they buy lately, carries newcomers on
popularity — and beats both baselines on data with that structure planted."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from treu import cli
from treu.insights import recommend
from treu.insights.purchases import PurchaseFileInvalid, read_purchases
from treu.insights.synthetic import generate

UNTIL = date(2025, 3, 31)


def frame(rows: list[tuple[str, date, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [c for c, _, _ in rows],
            "date": pd.to_datetime([d for _, d, _ in rows]),
            "amount": 1.0,
            "item": [i for _, _, i in rows],
        }
    )


def planted(seed: int = 7) -> pd.DataFrame:
    """Four kinds of customer, each with its own shelf of 40 items. A customer's taste
    moves: eight favourites of their shelf are bought often on 6 visits 120 to 61 days
    before ``UNTIL``, eight others on 6 visits in the 60 days up to it and on 5 visits in
    the 30 days after it; the rest of the shelf now and then; 4 items a visit."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, date, str]] = []
    for kind in range(4):
        shelf = [f"k{kind}-{i}" for i in range(40)]
        for n in range(30):
            who = f"c{kind}-{n}"
            old, new = np.split(rng.choice(40, size=16, replace=False), 2)
            for start, span, visits, favourites in (
                (-120, 60, 6, old),
                (-59, 60, 6, new),
                (1, 30, 5, new),
            ):
                weights = np.ones(40)
                weights[favourites] = 12.0
                weights /= weights.sum()
                for day in rng.choice(span, size=visits, replace=False):
                    when = UNTIL + timedelta(days=int(start + day))
                    for item in rng.choice(40, size=4, replace=False, p=weights):
                        rows.append((who, when, shelf[item]))
    return frame(rows)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_the_model_beats_both_baselines_on_planted_structure(seed: int) -> None:
    result = recommend.evaluate(planted(seed), until=UNTIL, k=10, horizon_days=30)
    precision, recall = result["precision"], result["recall"]
    assert isinstance(precision, dict)
    assert isinstance(recall, dict)
    assert result["customers"] == 120
    # recency follows the moved taste; plain counts mix old and new favourites
    assert precision["model"] > 1.05 * precision["buy_again"]
    assert recall["model"] > 1.05 * recall["buy_again"]
    # popularity knows nothing of kinds: about one in four of its items is on the shelf
    assert precision["buy_again"] > 2 * precision["popular"]


def test_what_people_with_the_same_basket_buy_comes_next() -> None:
    rows = []
    for kind in range(4):  # four shelves of six items, each as popular as the others
        for n in range(10):
            for day in (10, 20):
                for i in range(6):
                    rows.append((f"c{kind}-{n}", UNTIL - timedelta(days=day), f"k{kind}-{i}"))
    for day, item in ((1, "k2-0"), (2, "k2-1"), (3, "k2-2")):
        rows.append(("t", UNTIL - timedelta(days=day), item))
    model = recommend.fit(frame(rows), until=UNTIL)
    recs = recommend.recommend(model, k=6)
    mine = recs[recs["customer_id"] == "t"]["item"].tolist()
    assert set(mine[:3]) == {"k2-0", "k2-1", "k2-2"}  # their own first
    assert set(mine[3:]) == {"k2-3", "k2-4", "k2-5"}  # then the rest of their shelf
    plain = recommend.recommend(model, k=6, method="buy_again")
    assert not set(plain[plain["customer_id"] == "t"]["item"]) >= {"k2-3", "k2-4", "k2-5"}


def test_repeat_purchases_count_and_recent_ones_lead() -> None:
    rows = []
    for week in range(20):  # milk every week, bread every week long ago, apples lately
        day = UNTIL - timedelta(days=7 * week)
        rows.append(("a", day, "milk"))
        if week >= 14:
            rows.append(("a", day, "bread"))
        if week < 4:
            rows.append(("a", day, "apples"))
    for n in range(5):  # others make cheese popular
        rows.append((f"o{n}", UNTIL, "cheese"))
    model = recommend.fit(frame(rows), until=UNTIL)
    recs = recommend.recommend(model, k=4)
    mine = recs[recs["customer_id"] == "a"]["item"].tolist()
    assert mine[:3] == ["milk", "apples", "bread"]  # all bought before: none excluded
    again = recommend.recommend(model, k=4, method="buy_again")
    assert again[again["customer_id"] == "a"]["item"].tolist()[:3] == ["milk", "bread", "apples"]


def test_a_newcomer_gets_the_popular_items() -> None:
    rows = [(f"o{n}", UNTIL - timedelta(days=n), item) for n in range(6) for item in "xyz"]
    rows.append(("new", UNTIL, "rare"))
    model = recommend.fit(frame(rows), until=UNTIL)
    recs = recommend.recommend(model, k=4)
    mine = recs[recs["customer_id"] == "new"]["item"].tolist()
    assert set(mine) == {"rare", "x", "y", "z"}  # what they bought and what everyone buys
    assert set(mine[:3]) == {"x", "y", "z"}  # one purchase is little evidence
    regular = recommend.recommend(model, k=4)
    assert regular[regular["customer_id"] == "o5"]["item"].tolist()[:3] == ["x", "y", "z"]


def test_every_customer_seen_gets_ranks_one_to_k() -> None:
    rows = [("a", UNTIL, "x"), ("b", UNTIL - timedelta(days=3), "y"), ("c", UNTIL, "z")]
    rows.append(("late", UNTIL + timedelta(days=1), "x"))  # after --until: not seen
    recs = recommend.recommend(recommend.fit(frame(rows), until=UNTIL), k=2)
    assert list(recs.columns) == ["customer_id", "rank", "item", "score"]
    assert sorted(recs["customer_id"].unique()) == ["a", "b", "c"]
    assert recs.groupby("customer_id")["rank"].apply(list).tolist() == [[1, 2]] * 3
    assert (recs.groupby("customer_id")["score"].diff().dropna() <= 0).all()
    # k larger than the catalogue: every item once
    wide = recommend.recommend(recommend.fit(frame(rows), until=UNTIL), k=10)
    assert wide.groupby("customer_id").size().tolist() == [3, 3, 3]


def test_a_row_without_an_item_counts_its_customer_and_no_item() -> None:
    rows = [("a", UNTIL, "x"), ("a", UNTIL, "y"), ("b", UNTIL, "x"), ("c", UNTIL, "")]
    recs = recommend.recommend(recommend.fit(frame(rows), until=UNTIL), k=2)
    assert "" not in set(recs["item"])
    assert sorted(recs["customer_id"].unique()) == ["a", "b", "c"]  # c: the popular ones
    assert recs[recs["customer_id"] == "c"]["item"].tolist() == ["x", "y"]


def test_without_an_item_column_it_says_so() -> None:
    plain = frame([("a", UNTIL, "x")]).drop(columns="item")
    with pytest.raises(PurchaseFileInvalid, match="no 'item' column"):
        recommend.fit(plain, until=UNTIL)
    with pytest.raises(PurchaseFileInvalid, match="on or before"):
        recommend.fit(frame([("a", UNTIL, "x")]), until=UNTIL - timedelta(days=1))


def write_csv(path: Path, purchases: pd.DataFrame) -> Path:
    out = purchases.assign(date=purchases["date"].dt.strftime("%Y-%m-%d"))
    out.to_csv(path, index=False)
    return path


def test_the_recommend_command_writes_the_file(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "p.csv", planted())
    out = tmp_path / "recs.csv"
    args = ["insights", "recommend", str(source), "--until", UNTIL.isoformat(), "--k", "5"]
    result = CliRunner().invoke(cli.app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out, dtype={"customer_id": str, "item": str})
    assert list(recs.columns) == ["customer_id", "rank", "item", "score"]
    assert recs["customer_id"].nunique() == 120
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5] * 120
    expected = recommend.recommend(
        recommend.fit(read_purchases(source, until=UNTIL), until=UNTIL), k=5
    )
    assert recs["item"].tolist() == expected["item"].tolist()


def test_the_commands_name_a_missing_item_column(tmp_path: Path) -> None:
    source = tmp_path / "p.csv"
    source.write_text("customer_id,date,amount\na,2025-03-01,2.5\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli.app, ["insights", "recommend", str(source), "--until", "2025-03-31"]
    )
    assert result.exit_code == 1
    assert "no 'item' column" in result.output
    bad_day = CliRunner().invoke(
        cli.app, ["insights", "recommend", str(source), "--until", "2025-31-03"]
    )
    assert bad_day.exit_code != 0
    assert "is not a date" in bad_day.output


def test_evaluate_prints_one_json_object(tmp_path: Path) -> None:
    # customers who buy and drop out as BG/NBD tells it, from a catalogue: both halves
    world = generate(1_500, start=date(2024, 1, 1), end=date(2024, 12, 31), seed=3, items=60)
    source = write_csv(tmp_path / "p.csv", world[["customer_id", "date", "amount", "item"]])
    until = date(2024, 10, 2)
    args = ["insights", "evaluate", str(source), "--until", until.isoformat()]
    result = CliRunner().invoke(cli.app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert set(figures) == {"recommend", "churn"}
    whole = read_purchases(source)
    expected = recommend.evaluate(whole, until=until, k=10, horizon_days=90)
    assert figures["recommend"] == expected
    churn = figures["churn"]
    assert set(churn["roc_auc"]) >= {"model", "p_alive", "recency"}
    assert 0 < churn["churn_rate"] < 1
    table = CliRunner(env={"COLUMNS": "200"}).invoke(cli.app, args)
    assert table.exit_code == 0, table.output
    assert "Buy again" in table.output
    assert "Days since last purchase" in table.output
    assert f"{expected['precision']['model']:.4f}" in table.output  # type: ignore[index]
