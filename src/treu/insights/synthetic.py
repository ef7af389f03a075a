"""Synthetic purchase histories with known parameters: for benchmarks at scale, for the
database loader, and for tests that check a model recovers what generated the data.

The story is the one BG/NBD and Gamma-Gamma assume (Fader, Hardie & Lee 2005; Fader &
Hardie 2013), so a fit on the output should find the parameters it was generated with:

* each customer is born at a uniformly random moment of the window and makes a first
  purchase then;
* while alive, they buy at a Poisson rate ``lambda ~ Gamma(r, alpha)`` per week;
* after each repeat purchase they drop out for good with probability ``p ~ Beta(a, b)``
  (never right after the first purchase, as in BG/NBD);
* the value of each purchase is ``Gamma(p, nu)`` with a per-customer ``nu ~ Gamma(q,
  gamma)`` (Gamma-Gamma), rounded to cents.

Around that, so that recommenders and segments have something to find: each purchase has
``1 + Poisson(value / 8)`` lines (at most 31) whose amounts split the purchase value; the
catalogue has ``items`` items in up to 20 grocery categories with Zipf popularity; each
customer has two favourite categories and four staples (items they buy again and again),
and each line is a staple (35 %), an item of a favourite category (45 %) or any item by
popularity (20 %). Each customer mostly uses one channel (``pos``, ``web``, ``app``).

Everything is drawn with numpy in whole arrays (no Python loop per customer or purchase);
the same ``seed`` gives the same frame. Moments (days) are continuous inside the
generator and floored to calendar days in the output, so two purchases of one customer
can fall on one day (``purchases.baskets`` merges them, as it does for real data).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

CATEGORIES = (
    "dairy",
    "bakery",
    "fruit",
    "vegetables",
    "meat",
    "fish",
    "frozen",
    "drinks",
    "snacks",
    "sweets",
    "coffee-tea",
    "breakfast",
    "pasta-rice",
    "canned",
    "spices",
    "household",
    "personal-care",
    "baby",
    "pet",
    "organic",
)
CHANNELS = ("pos", "web", "app")
CHANNEL_SHARE = (0.6, 0.25, 0.15)
"""How often each channel is a customer's usual one."""
USUAL_CHANNEL = 0.8
"""Share of a customer's purchases made in their usual channel."""
STAPLES = 4
STAPLE_SHARE = 0.35
FAVOURITE_SHARE = 0.45
ZIPF_EXPONENT = 1.0
LINE_VALUE = 8.0
"""A purchase has on average one line more per this much value."""
MAX_EXTRA_LINES = 30

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _strings(prefix: str, count: int) -> npt.NDArray[np.object_]:
    width = len(str(max(count - 1, 0)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(count)], dtype=object)


class _Catalogue:
    """Items sorted by category, with cumulative popularity per category laid out so that
    category ``c`` occupies ``(c, c + 1]``: one ``searchsorted`` draws items of any
    category mix."""

    def __init__(self, rng: np.random.Generator, items: int) -> None:
        categories = min(len(CATEGORIES), items)
        self.categories = categories
        category = np.sort(np.arange(items) % categories)
        popularity = 1.0 / (rng.permutation(items) + 1.0) ** ZIPF_EXPONENT
        self.category = category
        self.names = np.array(
            [f"{CATEGORIES[c]}-{i:04d}" for i, c in enumerate(category)], dtype=object
        )
        per_category = np.bincount(category, weights=popularity, minlength=categories)
        self.category_share = per_category / per_category.sum()
        cumulative = np.empty(items)
        starts = np.searchsorted(category, np.arange(categories))
        for c in range(categories):  # one step per category (at most 20), not per row
            lo = starts[c]
            hi = starts[c + 1] if c + 1 < categories else items
            part = np.cumsum(popularity[lo:hi])
            cumulative[lo:hi] = c + part / part[-1]
            cumulative[hi - 1] = c + 1.0
        self.within = cumulative
        overall = np.cumsum(popularity)
        self.overall: FloatArray = overall / overall[-1]
        self.overall[-1] = 1.0

    def in_category(self, rng: np.random.Generator, category: IntArray) -> IntArray:
        draw = category + rng.random(category.size)
        found = np.searchsorted(self.within, draw, side="right")
        return np.minimum(found, self.within.size - 1).astype(np.int64)

    def any(self, rng: np.random.Generator, count: int) -> IntArray:
        found = np.searchsorted(self.overall, rng.random(count), side="right")
        return np.minimum(found, self.overall.size - 1).astype(np.int64)


def _purchase_moments(
    rng: np.random.Generator,
    customers: int,
    days: int,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
) -> tuple[IntArray, FloatArray]:
    """Owner (customer index) and moment (days since the window's start) of every
    purchase, ordered by customer and moment; each customer's first is their birth."""
    rate = rng.gamma(r, 1.0 / alpha, customers) / 7.0  # per day
    dropout = np.clip(rng.beta(a, b, customers), 1e-12, 1.0)
    birth = rng.uniform(0.0, days, customers)
    span = days - birth
    # Repeat purchases until dropout (inclusive): geometric on 1, 2, ...; the Poisson
    # process runs regardless, so the repeats seen are its first min(events, lifetime).
    lifetime = rng.geometric(dropout)
    events = rng.poisson(rate * span)
    kept = np.minimum(events, lifetime)

    owner = np.repeat(np.arange(customers, dtype=np.int64), events)
    # Given their number, Poisson events are uniform on the span; sorting by
    # owner + fraction orders them within each customer.
    fraction = np.sort(owner + rng.random(owner.size)) - owner
    first = np.concatenate(([0], np.cumsum(events)[:-1]))
    rank = np.arange(owner.size) - first[owner]
    keep = rank < kept[owner]
    owner, fraction = owner[keep], fraction[keep]

    counts = 1 + kept
    all_owner = np.repeat(np.arange(customers, dtype=np.int64), counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    moment = np.empty(all_owner.size)
    moment[starts] = birth
    repeat = np.ones(all_owner.size, dtype=bool)
    repeat[starts] = False
    moment[repeat] = birth[owner] + fraction * span[owner]
    return all_owner, moment


def generate(
    customers: int,
    *,
    start: date,
    end: date,
    seed: int = 0,
    r: float = 0.25,
    alpha: float = 4.0,
    a: float = 0.8,
    b: float = 2.5,
    p: float = 6.0,
    q: float = 3.8,
    gamma: float = 15.0,
    items: int = 500,
    lines: bool = True,
) -> pd.DataFrame:
    """Purchase lines of ``customers`` customers born between ``start`` and ``end``
    (inclusive), ordered by customer and date: ``customer_id`` (str), ``date`` (day,
    ``datetime64``), ``amount`` (float > 0, cents), ``item``, ``channel`` and
    ``category`` (str). ``alpha`` is per week, as in the BG/NBD literature.

    With ``lines=False``, one row per purchase (``customer_id``, ``date``, ``amount``,
    ``channel``) and no catalogue: what lifetime value and churn need, at a fifth of the
    rows (benchmarks at 20M purchases)."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if end < start:
        raise ValueError("end must not be before start")
    if items < 1:
        raise ValueError("items must be at least 1")
    rng = np.random.default_rng(seed)
    days = (end - start).days + 1

    owner, moment = _purchase_moments(rng, customers, days, r=r, alpha=alpha, a=a, b=b)
    purchases = owner.size
    day = np.minimum(np.floor(moment).astype(np.int64), days - 1)

    nu = rng.gamma(q, 1.0 / gamma, customers)
    value = rng.gamma(p, 1.0, purchases) / nu[owner]

    usual = rng.choice(len(CHANNELS), size=customers, p=CHANNEL_SHARE)
    channel = np.where(
        rng.random(purchases) < USUAL_CHANNEL,
        usual[owner],
        rng.integers(0, len(CHANNELS), purchases),
    )

    if not lines:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(_strings("C", customers)[owner], dtype="str"),
                "date": (np.datetime64(start, "D") + day).astype("datetime64[us]"),
                "amount": np.maximum(np.round(value, 2), 0.01),
                "channel": pd.Series(np.array(CHANNELS, dtype=object)[channel], dtype="str"),
            },
            copy=False,
        )

    count = 1 + np.minimum(rng.poisson(value / LINE_VALUE), MAX_EXTRA_LINES)
    line_purchase = np.repeat(np.arange(purchases, dtype=np.int64), count)
    line_owner = owner[line_purchase]
    weight = rng.exponential(1.0, line_purchase.size)
    total = np.bincount(line_purchase, weights=weight, minlength=purchases)
    amount = np.maximum(np.round(value[line_purchase] * weight / total[line_purchase], 2), 0.01)

    catalogue = _Catalogue(rng, items)
    favourites = rng.choice(catalogue.categories, size=(customers, 2), p=catalogue.category_share)
    staple_category = favourites[
        np.arange(customers)[:, None], rng.integers(0, 2, (customers, STAPLES))
    ]
    staples = catalogue.in_category(rng, staple_category.ravel()).reshape(customers, STAPLES)

    mode = rng.random(line_purchase.size)
    item = catalogue.any(rng, line_purchase.size)
    staple = mode < STAPLE_SHARE
    item[staple] = staples[line_owner[staple], rng.integers(0, STAPLES, int(staple.sum()))]
    favourite = ~staple & (mode < STAPLE_SHARE + FAVOURITE_SHARE)
    chosen = favourites[line_owner[favourite], rng.integers(0, 2, int(favourite.sum()))]
    item[favourite] = catalogue.in_category(rng, chosen)

    dates = (np.datetime64(start, "D") + day[line_purchase]).astype("datetime64[us]")
    category_names = np.array(CATEGORIES[: catalogue.categories], dtype=object)
    channel_names = np.array(CHANNELS, dtype=object)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(_strings("C", customers)[line_owner], dtype="str"),
            "date": dates,
            "amount": amount,
            "item": pd.Series(catalogue.names[item], dtype="str"),
            "channel": pd.Series(channel_names[channel[line_purchase]], dtype="str"),
            "category": pd.Series(category_names[catalogue.category[item]], dtype="str"),
        },
        copy=False,
    )
