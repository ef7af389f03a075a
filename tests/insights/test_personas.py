"""Personas: k-means finds groups that shop differently, chooses k by silhouette, numbers
them by size and describes each from its centroid, in English and German."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from treu.insights.personas import features, find_personas, traits

NOW = date(2026, 3, 1)


def _history(seed: int = 1) -> tuple[pd.DataFrame, dict[str, str]]:
    """Three kinds of shopper: 90 who buy small organic baskets in the app every few
    days, 60 who buy large baskets in the store once a month or two, 40 who buy
    average baskets online twice a month; each kind drawn with some noise."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, pd.Timestamp, float, str, str, str, bool]] = []
    kind_of: dict[str, str] = {}
    kinds = (
        ("app-organic", 90, 90, 12.0, "app", 0.8),
        ("store-large", 60, 8, 120.0, "pos", 0.0),
        ("online", 40, 24, 45.0, "web", 0.05),
    )
    for kind, count, purchases, basket, channel, organic in kinds:
        for n in range(count):
            customer = f"{kind}-{n}"
            kind_of[customer] = kind
            days = rng.choice(
                360, size=max(int(purchases * rng.uniform(0.8, 1.2)), 2), replace=False
            )
            for day in days:
                value = basket * rng.uniform(0.8, 1.2)
                for part, is_organic in ((value * organic, True), (value * (1 - organic), False)):
                    if part > 0:
                        moment = pd.Timestamp(NOW - timedelta(days=int(day) + 1))
                        rows.append((customer, moment, part, "x", "dairy", channel, is_organic))
    frame = pd.DataFrame(
        rows, columns=["customer_id", "date", "amount", "item", "category", "channel", "organic"]
    )
    return frame, kind_of


def test_three_kinds_of_shopper_are_found_and_described() -> None:
    history, kind_of = _history()
    found = find_personas(history, now=NOW, seed=3)
    assert found is not None
    assert found.k == 3
    assert set(found.silhouettes) == set(range(3, 9))
    assert [p.size for p in found.personas] == [90, 60, 40]
    assert [p.code for p in found.personas] == ["P1", "P2", "P3"]
    # Every member of a kind is in the same persona, and each persona holds one kind.
    joined = found.assignments.assign(kind=found.assignments["member_id"].map(kind_of))
    assert joined.groupby("persona")["kind"].nunique().tolist() == [1, 1, 1]
    app, store, online = found.personas
    assert app.describe("en") == "frequent small baskets, organic-heavy, mostly app"
    assert app.describe("de") == "häufige kleine Einkäufe, viel Bio, meist in der App"
    assert store.describe("en").startswith("occasional large baskets")
    assert "mostly in store" in store.describe("en")
    assert "meist im Laden" in store.describe("de")
    assert "mostly online" in online.describe("en")
    assert found.params()["personas"][0]["de"] == app.describe("de")


def test_features_use_only_the_year_before_now() -> None:
    history = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "date": pd.to_datetime(["2026-02-20", "2026-02-20", "2025-01-10", "2026-02-27"]),
            "amount": [10.0, 30.0, 500.0, 8.0],
            "item": ["x", "y", "z", "x"],
            "category": ["dairy", "organic", "dairy", "bakery"],
            "channel": ["app", "app", "pos", "web"],
            "organic": [False, True, False, False],
        }
    )
    table = features(history, now=NOW)
    assert table.loc["a", "frequency"] == 1  # two lines on one day; 2025-01-10 is too old
    assert table.loc["a", "basket"] == 40.0
    assert table.loc["a", "recency"] == 9
    assert table.loc["a", "organic"] == 0.75
    assert table.loc["a", "app"] == 1.0
    assert table.loc["b", "web"] == 1.0
    assert table.loc["b", "recency"] == 2


def test_nothing_stands_out_in_an_average_centroid() -> None:
    means = {"frequency": 10.0, "basket": 30.0, "recency": 40.0, "organic": 0.1, "app": 0.3}
    assert traits(dict(means), means) == (("average shopping", {}),)


def test_too_few_members_give_no_personas() -> None:
    history, _ = _history()
    few = history[history["customer_id"].isin(["app-organic-0", "online-1"])]
    assert find_personas(few, now=NOW) is None
