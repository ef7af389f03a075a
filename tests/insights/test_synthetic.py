"""Synthetic purchase histories: the shape the loader and the analyst commands expect, and
the structure the models are meant to find (the BG/NBD recovery is in test_clv.py)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from treu.insights.purchases import baskets
from treu.insights.synthetic import CATEGORIES, CHANNELS, generate

START, END = date(2022, 1, 1), date(2023, 12, 31)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(3_000, start=START, end=END, seed=7)


def test_columns_types_and_ranges(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["customer_id", "date", "amount", "item", "channel", "category"]
    assert frame["customer_id"].nunique() == 3_000
    assert frame["date"].dtype.kind == "M"
    assert (frame["date"] == frame["date"].dt.normalize()).all()
    assert frame["date"].min() >= pd.Timestamp(START)
    assert frame["date"].max() <= pd.Timestamp(END)
    assert (frame["amount"] > 0).all()
    assert np.allclose(frame["amount"], frame["amount"].round(2))
    assert set(frame["channel"]) <= set(CHANNELS)
    assert set(frame["category"]) <= set(CATEGORIES)
    # an item belongs to one category, and its name says which
    per_item = frame.groupby("item")["category"].nunique()
    assert (per_item == 1).all()
    assert all(
        item.startswith(cat) for item, cat in zip(frame["item"], frame["category"], strict=True)
    )
    # ordered by customer, then date
    assert frame["customer_id"].is_monotonic_increasing
    assert (frame.groupby("customer_id")["date"].diff().dropna() >= pd.Timedelta(0)).all()


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    one = generate(200, start=START, end=END, seed=3)
    pd.testing.assert_frame_equal(one, generate(200, start=START, end=END, seed=3))
    assert not one.equals(generate(200, start=START, end=END, seed=4))


def test_birth_dates_spread_over_the_window(frame: pd.DataFrame) -> None:
    first = frame.groupby("customer_id")["date"].min()
    days = (END - START).days + 1
    position = (first - pd.Timestamp(START)).dt.days / days
    # uniform births: each quarter of the window holds about a quarter of them
    shares = np.histogram(position, bins=4, range=(0, 1))[0] / len(position)
    assert np.all(np.abs(shares - 0.25) < 0.05)


def test_more_purchases_with_higher_rate_and_fewer_with_more_dropout() -> None:
    def repeats(**parameters: float) -> float:
        data = generate(2_000, start=START, end=END, seed=11, **parameters)
        return float(baskets(data).groupby("customer_id").size().mean() - 1)

    base = repeats()
    assert repeats(alpha=1.0) > 2 * base  # four times the mean rate
    assert repeats(a=4.0, b=1.0) < base / 2  # mean dropout 0.8 instead of 0.24


def test_spend_follows_the_gamma_gamma_mean() -> None:
    data = generate(20_000, start=START, end=END, seed=5, p=6.0, q=3.8, gamma=15.0)
    merged = baskets(data)
    # E[value of a purchase] = p * gamma / (q - 1)
    assert merged["amount"].mean() == pytest.approx(6.0 * 15.0 / 2.8, rel=0.08)


def test_customers_keep_to_favourite_categories_and_staples(frame: pd.DataFrame) -> None:
    """Co-purchase structure exists: a customer's lines concentrate on few categories and
    items, far more than the catalogue's popularity alone would give."""
    regulars = frame.groupby("customer_id").filter(lambda g: len(g) >= 20)
    top_two = (
        regulars.groupby("customer_id")["category"]
        .agg(lambda s: s.value_counts().iloc[:2].sum() / len(s))
        .mean()
    )
    overall = frame["category"].value_counts(normalize=True).iloc[:2].sum()
    assert top_two > overall + 0.3
    repeated = regulars.groupby("customer_id")["item"].agg(lambda s: 1 - s.nunique() / len(s))
    assert repeated.mean() > 0.3


def test_channels_mostly_one_per_customer(frame: pd.DataFrame) -> None:
    usual = frame.groupby("customer_id")["channel"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert usual.mean() > 0.75
    assert frame["channel"].value_counts(normalize=True)["pos"] > 0.4


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="customers"):
        generate(0, start=START, end=END)
    with pytest.raises(ValueError, match="end"):
        generate(10, start=END, end=START)


def test_purchases_without_lines_are_the_same_purchases() -> None:
    with_lines = generate(500, start=START, end=END, seed=8)
    without = generate(500, start=START, end=END, seed=8, lines=False)
    assert list(without.columns) == ["customer_id", "date", "amount", "channel"]
    merged = baskets(with_lines)
    by_day = baskets(without)
    pd.testing.assert_frame_equal(merged[["customer_id", "date"]], by_day[["customer_id", "date"]])
    # the lines split the purchase's value (rounded to cents per line)
    assert np.allclose(merged["amount"], by_day["amount"], rtol=0.02, atol=0.3)
