"""Personas: groups of members who shop alike, found by k-means and described in words.

Features per member (``features``), from the purchase history (``treu.insights.history``)
of the year before ``now``:

* ``frequency`` — purchases (days with a purchase) in the year; ``basket`` — mean value
  of such a purchase; both log-scaled before standardising, as both are heavily skewed;
* ``recency`` — days since the last purchase (members with none in the year are left
  out: they are the lapsed, described by RFM and churn risk, not by their baskets);
* ``organic`` — share of spend on organic lines;
* ``app``, ``web``, ``pos`` — share of spend per channel;
* ``cat:<name>`` — share of spend in each of the (at most) five categories with the
  most spend overall.

Every feature is standardised (``StandardScaler``). ``k`` (3..8) is the one with the best
silhouette on a sample (silhouette is quadratic in the members); the clustering itself
runs on everybody — ``KMeans`` up to ``MINIBATCH_ABOVE`` members, ``MiniBatchKMeans``
above. Personas are numbered by size (``P1`` the largest) and each is described from its
centroid in the original units compared with everybody's mean ("frequent small baskets,
organic-heavy, mostly app"); the words come from the text catalogue, so the same persona
reads "häufige kleine Einkäufe, viel Bio, meist in der App" in German.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from treu.kit.text import N_, translate

K_RANGE = range(3, 9)
SAMPLE = 8_000
"""Members in the sample on which ``k`` is chosen."""
MINIBATCH_ABOVE = 200_000
TOP_CATEGORIES = 5
CHANNELS = ("app", "web", "pos")
LOG_FEATURES = ("frequency", "basket")
THREADS = 1
"""BLAS/OpenMP threads for k-means. Measured on the 2-core machine under load: KMeans on
8,000 members took 6.0 s with the default threads and 0.34 s with one; MiniBatchKMeans
on 1M, 25 s and 6 s (threads fighting over two busy cores)."""

# Words for a persona, by what stands out in its centroid. English is the message id.
RHYTHM = {
    ("frequent", "small"): N_("frequent small baskets"),
    ("frequent", "usual"): N_("frequent shopping"),
    ("frequent", "large"): N_("frequent large baskets"),
    ("usual", "small"): N_("small baskets"),
    ("usual", "usual"): N_("average shopping"),
    ("usual", "large"): N_("large baskets"),
    ("rare", "small"): N_("occasional small baskets"),
    ("rare", "usual"): N_("occasional shopping"),
    ("rare", "large"): N_("occasional large baskets"),
}
RECENT = N_("bought recently")
LAPSING = N_("not seen for a while")
ORGANIC = N_("organic-heavy")
MOSTLY = {
    "app": N_("mostly app"),
    "web": N_("mostly online"),
    "pos": N_("mostly in store"),
}
CATEGORY = N_("lots of {category}")


@dataclass(frozen=True)
class Persona:
    code: str
    """``P1`` … ``Pk``, by size (the value in ``member_scores.persona``)."""
    size: int
    profile: dict[str, float]
    """The centroid in the original units (frequency per year, basket in major units,
    recency in days, shares 0..1)."""
    traits: tuple[tuple[str, dict[str, str]], ...]
    """The message ids of its description with their parameters, in order."""

    def describe(self, lang: str) -> str:
        return ", ".join(translate(lang, msgid, **params) for msgid, params in self.traits)


@dataclass
class Personas:
    k: int
    silhouette: float
    """Of the chosen k, on the sample."""
    silhouettes: dict[int, float]
    personas: list[Persona]
    assignments: pd.DataFrame
    """``member_id`` (the frame's ``customer_id``) and ``persona`` (code)."""
    means: dict[str, float] = field(default_factory=dict)
    """Everybody's mean of each feature, original units."""

    def params(self) -> dict[str, Any]:
        """What the model registry keeps: k, the features' means and each persona's
        profile and description."""
        return {
            "k": self.k,
            "means": self.means,
            "personas": [
                {
                    "code": p.code,
                    "size": p.size,
                    "profile": p.profile,
                    "traits": [[m, params] for m, params in p.traits],
                    "en": p.describe("en"),
                    "de": p.describe("de"),
                }
                for p in self.personas
            ],
        }


def features(history: pd.DataFrame, *, now: date) -> pd.DataFrame:
    """One row per member who bought in the year before ``now`` (index: customer id),
    the columns of the module docstring, vectorised (groupbys, no loop per member)."""
    end = pd.Timestamp(now)
    year = history[(history["date"] < end) & (history["date"] >= end - pd.Timedelta(days=365))]
    if year.empty:
        return pd.DataFrame()
    customer = year["customer_id"]
    if isinstance(customer.dtype, pd.CategoricalDtype):
        customer = customer.cat.remove_unused_categories()
    amount = year["amount"].to_numpy()
    by = customer
    spend = year.groupby(by, observed=True, sort=True)["amount"].sum()
    days = (
        pd.DataFrame({"c": customer, "d": year["date"]})
        .drop_duplicates()
        .groupby("c", observed=True, sort=True)["d"]
    )
    frequency = days.size()
    last = days.max()
    out = pd.DataFrame(index=spend.index)
    out["frequency"] = frequency.astype(float)
    out["basket"] = spend / frequency
    out["recency"] = ((end - last) / pd.Timedelta(days=1)).astype(float)
    total = spend.where(spend > 0, np.nan)

    def share(mask: np.ndarray[Any, Any]) -> pd.Series:
        part = pd.Series(np.where(mask, amount, 0.0), index=year.index)
        return (part.groupby(by, observed=True, sort=True).sum() / total).fillna(0.0)

    organic = (
        year["organic"].to_numpy(dtype=bool)
        if "organic" in year
        else (year["category"].astype(str) == "organic").to_numpy()
    )
    out["organic"] = share(organic)
    channel = year["channel"].astype(str).to_numpy() if "channel" in year else None
    for name in CHANNELS:
        out[name] = share(channel == name) if channel is not None else 0.0
    if "category" in year:
        category = year["category"].astype(str)
        ranked = year.groupby(category, observed=True)["amount"].sum().sort_values(ascending=False)
        top = [c for c in ranked.index if c and c != "organic"][:TOP_CATEGORIES]
        category_values = category.to_numpy()
        for name in top:
            out[f"cat:{name}"] = share(category_values == name)
    return out


def _matrix(table: pd.DataFrame) -> np.ndarray[Any, Any]:
    values = table.copy()
    for name in LOG_FEATURES:
        values[name] = np.log1p(values[name])
    matrix: np.ndarray[Any, Any] = values.to_numpy(dtype=np.float64)
    return matrix


def find_personas(
    history: pd.DataFrame, *, now: date, seed: int = 0, k: int | None = None
) -> Personas | None:
    """Cluster the members of ``history`` (see the module docstring); None when fewer
    members bought in the year than the smallest k needs (a few per cluster)."""
    with threadpool_limits(THREADS):
        return _find(history, now=now, seed=seed, k=k)


def _find(history: pd.DataFrame, *, now: date, seed: int, k: int | None) -> Personas | None:
    table = features(history, now=now)
    if len(table) < 3 * K_RANGE.start:
        return None
    scaled = StandardScaler().fit_transform(_matrix(table))
    rng = np.random.default_rng(seed)
    sample = scaled[rng.choice(len(scaled), size=min(SAMPLE, len(scaled)), replace=False)]
    silhouettes: dict[int, float] = {}
    candidates = [k] if k is not None else [c for c in K_RANGE if c < len(sample)]
    for candidate in candidates:
        labels = KMeans(candidate, n_init=3, random_state=seed).fit_predict(sample)
        if len(set(labels)) < 2:
            continue
        silhouettes[candidate] = float(
            silhouette_score(sample, labels, sample_size=min(len(sample), 4000), random_state=seed)
        )
    if not silhouettes:
        return None
    best = max(silhouettes, key=lambda c: silhouettes[c])
    model: KMeans | MiniBatchKMeans
    if len(scaled) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(best, batch_size=4096, n_init=3, random_state=seed)
    else:
        model = KMeans(best, n_init=3, random_state=seed)
    labels = model.fit_predict(scaled)
    sizes = np.bincount(labels, minlength=best)
    order = np.argsort(-sizes, kind="stable")  # P1 is the largest
    code_of = {int(cluster): f"P{rank + 1}" for rank, cluster in enumerate(order)}
    means = {name: float(v) for name, v in table.mean().items()}
    personas = []
    for cluster in order:
        members = table[labels == cluster]
        profile = {name: float(v) for name, v in members.mean().items()}
        personas.append(
            Persona(
                code=code_of[int(cluster)],
                size=int(sizes[cluster]),
                profile=profile,
                traits=traits(profile, means),
            )
        )
    assignments = pd.DataFrame(
        {
            "member_id": np.asarray(table.index.astype(str)),
            "persona": np.asarray([code_of[int(c)] for c in range(best)], dtype=object)[labels],
        }
    )
    return Personas(
        k=best,
        silhouette=silhouettes[best],
        silhouettes=silhouettes,
        personas=personas,
        assignments=assignments,
        means=means,
    )


def traits(
    profile: dict[str, float], means: dict[str, float]
) -> tuple[tuple[str, dict[str, str]], ...]:
    """The words for a centroid: its rhythm (how often, how much), then what stands out —
    recency, organic share, a channel, a category — each only when clearly above (or,
    for recency, apart from) everybody's mean."""

    def ratio(name: str) -> float:
        base = means.get(name, 0.0)
        return profile.get(name, 0.0) / base if base > 0 else 1.0

    often = ratio("frequency")
    size = ratio("basket")
    rhythm = (
        "frequent" if often >= 1.5 else "rare" if often <= 0.67 else "usual",
        "large" if size >= 1.35 else "small" if size <= 0.75 else "usual",
    )
    words: list[tuple[str, dict[str, str]]] = [(RHYTHM[rhythm], {})]
    recency = ratio("recency")
    if recency >= 1.8 and profile.get("recency", 0.0) >= 60:
        words.append((LAPSING, {}))
    elif recency <= 0.5 and rhythm[0] != "frequent":  # frequent buyers bought recently
        words.append((RECENT, {}))
    if profile.get("organic", 0.0) >= 0.15 and ratio("organic") >= 1.5:
        words.append((ORGANIC, {}))
    channel = max(CHANNELS, key=lambda name: profile.get(name, 0.0))
    if profile.get(channel, 0.0) >= 0.5 and ratio(channel) >= 1.25:
        words.append((MOSTLY[channel], {}))
    categories = [n for n in profile if n.startswith("cat:")]
    if categories:
        top = max(categories, key=ratio)
        if ratio(top) >= 1.6 and profile[top] >= 0.15:
            words.append((CATEGORY, {"category": top.removeprefix("cat:")}))
    return tuple(words)
