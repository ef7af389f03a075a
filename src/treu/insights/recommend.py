"""Next-best offer from purchase lines: an implicit-feedback recommender for groceries, its
two baselines and their precision and recall on a time split.

Why this shape. In groceries most of what a customer buys next they have bought before, so
"buy again" (their own most often bought items) is the baseline that is hard to beat, and
nothing they bought is excluded from the recommendations. The model adds to it:

* **buy again, recency-weighted**: each (customer, item, day) counts once, weighted
  ``0.5 ** (age / half_life_days)``, so what someone bought every week lately outranks what
  they bought often a year ago;
* **item-item similarity**: shrunk cosine over who bought what (``c / sqrt(n_i n_j)`` times
  ``c / (c + shrink)``, ``c`` = customers who bought both), the ``neighbours`` most similar
  items kept per item; a customer's score for an item is their recency-weighted history
  times that matrix — it finds what people with the same basket buy and this one has not
  (yet);
* **popularity** (recency-weighted), weighted ``m / (m + baskets)``: it carries customers
  with little history and fades as a customer's own history grows.

Each part is scaled to ``[0, 1]`` per customer before the blend. Everything is sparse
matrix products (scipy) on integer-coded customers and items; scoring runs in chunks of
customers with one dense ``chunk x items`` block each and ``argpartition`` for the top k —
no Python loop per customer. Items bought by fewer than ``min_buyers`` customers take part
in buy again but not in the similarity (their co-occurrences are noise).

``evaluate`` is the time split: learn from rows dated on or before ``until``; the test set
of a customer is the distinct items they buy in the ``horizon_days`` after it, for the
customers seen by ``until`` who buy anything in that window. precision@k = hits / k and
recall@k = hits / test items, averaged over those customers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from treu.insights.purchases import PurchaseFileInvalid

Method = Literal["model", "buy_again", "popular"]
METHODS: tuple[Method, ...] = ("model", "buy_again", "popular")

# One dense scoring block holds at most this many cells (float32: 4 bytes each).
_BLOCK_CELLS = 16_000_000

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Settings:
    """The model's knobs; the defaults were chosen on an earlier split of the Complete
    Journey data than the one reported in docs/insights.md."""

    half_life_days: float = 120.0
    neighbours: int = 50
    shrink: float = 10.0
    min_buyers: int = 3
    similar_weight: float = 0.2
    popular_baskets: float = 3.0  # m in m / (m + baskets)


@dataclass(frozen=True)
class Model:
    """What the recommender learnt from the history up to ``until``."""

    until: date
    customers: pd.Index  # customer ids, row order of the matrices
    items: pd.Index  # item ids, column order
    history: sp.csr_matrix  # customers x items, recency-weighted distinct-day counts
    counts: sp.csr_matrix  # customers x items, plain distinct-day counts (buy-again baseline)
    baskets: npt.NDArray[np.int64]  # distinct purchase days per customer
    similarity: sp.csr_matrix  # items x items, top neighbours per item, zero diagonal
    popularity: FloatArray  # recency-weighted, scaled to [0, 1]
    plain_popularity: FloatArray  # distinct-day counts over all customers, scaled to [0, 1]
    settings: Settings


def require_items(purchases: pd.DataFrame) -> None:
    if "item" not in purchases.columns:
        raise PurchaseFileInvalid(
            "The purchase file has no 'item' column; recommendations need one "
            "(customer_id,date,amount,item)."
        )


def fit(purchases: pd.DataFrame, *, until: date, settings: Settings | None = None) -> Model:
    """Learn from the rows dated on or before ``until``."""
    require_items(purchases)
    settings = settings or Settings()
    train = purchases.loc[purchases["date"] <= pd.Timestamp(until), ["customer_id", "date", "item"]]
    if train.empty:
        raise PurchaseFileInvalid(f"No purchase is dated on or before {until.isoformat()}.")
    train = train.drop_duplicates()  # one count per customer, item and day
    rows, customers = pd.factorize(train["customer_id"], sort=True)
    # A row without an item counts its customer (they get the popular items), no item.
    has_item = (train["item"].fillna("").astype(str) != "").to_numpy()
    train, rows = train[has_item], rows[has_item]
    cols, items = pd.factorize(train["item"], sort=True)
    shape = (len(customers), len(items))
    age = (pd.Timestamp(until) - train["date"]).dt.days.to_numpy(dtype=np.float64)
    weight = np.power(0.5, age / settings.half_life_days).astype(np.float32)

    history = sp.csr_matrix((weight, (rows, cols)), shape=shape, dtype=np.float32)
    counts = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape, dtype=np.float32
    )
    days = train[["customer_id", "date"]].drop_duplicates()
    baskets = (
        days.groupby("customer_id", sort=True)
        .size()
        .reindex(customers, fill_value=0)
        .to_numpy(np.int64)
    )
    popularity = _scaled(np.asarray(history.sum(axis=0)).ravel())
    plain = _scaled(np.asarray(counts.sum(axis=0)).ravel())
    similarity = _similarity(counts, settings)
    return Model(
        until=until,
        customers=pd.Index(customers),
        items=pd.Index(items),
        history=history,
        counts=counts,
        baskets=baskets,
        similarity=similarity,
        popularity=popularity,
        plain_popularity=plain,
        settings=settings,
    )


def _scaled(values: npt.NDArray[np.floating]) -> FloatArray:
    top = float(values.max()) if values.size else 0.0
    return (values / top if top > 0 else values).astype(np.float32)


def _similarity(counts: sp.csr_matrix, settings: Settings) -> sp.csr_matrix:
    """Shrunk cosine between items over who bought them, the top ``neighbours`` per item
    (column), diagonal zero. Computed a block of items at a time (sparse), so memory stays
    at one block's co-occurrences; pairs bought together by a single customer are dropped."""
    n_items = counts.shape[1]
    bought = counts.copy()
    bought.data[:] = 1.0
    buyers = np.asarray(bought.sum(axis=0)).ravel()
    candidates = np.flatnonzero(buyers >= settings.min_buyers)
    if candidates.size < 2:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    b = bought[:, candidates].tocsr()
    bt = b.T.tocsr()
    root = np.sqrt(buyers[candidates]).astype(np.float64)
    keep = settings.neighbours
    block = max(1, _BLOCK_CELLS // candidates.size)
    out_rows: list[IntArray] = []
    out_cols: list[IntArray] = []
    out_vals: list[FloatArray] = []
    for start in range(0, candidates.size, block):  # blocks of items, not customers
        stop = min(start + block, candidates.size)
        co = bt[start:stop] @ b  # block x candidates co-occurrence counts (symmetric)
        mine = np.repeat(np.arange(start, stop), np.diff(co.indptr))
        other, c = co.indices.astype(np.int64), co.data
        # pairs bought together by one customer only are noise (and most of the pairs)
        kept = (c >= 2) & (other != mine)
        mine, other, c = mine[kept], other[kept], c[kept].astype(np.float64)
        sim = c / (root[mine] * root[other]) * (c / (c + settings.shrink))
        order = np.argsort(mine - 0.5 * sim, kind="stable")  # by item, best first
        mine, other, sim = mine[order], other[order], sim[order]
        rank = np.arange(mine.size) - np.searchsorted(mine, mine, side="left")
        best = rank < keep
        # column = the item scored, row = its neighbour (history @ similarity)
        out_rows.append(other[best])
        out_cols.append(mine[best])
        out_vals.append(sim[best].astype(np.float32))
    rows = candidates[np.concatenate(out_rows)]
    cols = candidates[np.concatenate(out_cols)]
    return sp.csr_matrix(
        (np.concatenate(out_vals), (rows, cols)), shape=(n_items, n_items), dtype=np.float32
    )


def _row_scaled(block: FloatArray) -> FloatArray:
    top = block.max(axis=1, keepdims=True)
    np.divide(block, top, out=block, where=top > 0)
    return block


def _scores(model: Model, rows: IntArray, method: Method) -> FloatArray:
    """Dense scores of the customers in ``rows`` (row indices) for every item."""
    if method == "popular":
        return np.broadcast_to(model.plain_popularity, (rows.size, len(model.items))).copy()
    if method == "buy_again":
        own = _row_scaled(model.counts[rows].toarray())
        # own items first (scores above 1), the popular ones after them; ties between own
        # items bought as often go to the more popular one
        pop = model.plain_popularity
        return np.where(own > 0, 1.0 + own + 1e-3 * pop, pop).astype(np.float32)
    s = model.settings
    history = model.history[rows]
    again = _row_scaled(history.toarray())
    similar = _row_scaled((history @ model.similarity).toarray())
    beta = (s.popular_baskets / (s.popular_baskets + model.baskets[rows])).astype(np.float32)
    score = (1.0 - beta)[:, None] * (again + s.similar_weight * similar)
    score += beta[:, None] * model.popularity
    score += 1e-3 * model.popularity  # ties go to the popular item
    return score


def top_k(
    model: Model, k: int, method: Method = "model", customers: IntArray | None = None
) -> tuple[IntArray, FloatArray]:
    """The ``k`` best items (column indices) of every customer (or of the row indices in
    ``customers``, in that order), best first, and their scores; ``k`` is capped at the
    number of items."""
    n_items = model.history.shape[1]
    if customers is None:
        customers = np.arange(model.history.shape[0], dtype=np.int64)
    n_customers = customers.size
    k = min(k, n_items)
    items = np.empty((n_customers, k), dtype=np.int64)
    scores = np.empty((n_customers, k), dtype=np.float32)
    chunk = max(1, _BLOCK_CELLS // max(n_items, 1))
    for start in range(0, n_customers, chunk):  # blocks of customers, each vectorised
        rows = slice(start, min(start + chunk, n_customers))
        score = _scores(model, customers[rows], method)
        if k < n_items:
            best = np.argpartition(-score, k - 1, axis=1)[:, :k]
        else:
            best = np.broadcast_to(np.arange(n_items), (score.shape[0], n_items)).copy()
        best_scores = np.take_along_axis(score, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        items[rows] = np.take_along_axis(best, order, axis=1)
        scores[rows] = np.take_along_axis(best_scores, order, axis=1)
    return items, scores


def recommend(model: Model, *, k: int = 10, method: Method = "model") -> pd.DataFrame:
    """``customer_id, rank, item, score`` for every customer seen by ``model.until``,
    ranks 1..k."""
    items, scores = top_k(model, k, method)
    n, width = items.shape
    return pd.DataFrame(
        {
            "customer_id": np.repeat(model.customers.to_numpy(), width),
            "rank": np.tile(np.arange(1, width + 1), n),
            "item": model.items.to_numpy()[items.ravel()],
            "score": np.round(scores.ravel().astype(np.float64), 6),
        }
    )


def evaluate(
    purchases: pd.DataFrame,
    *,
    until: date,
    k: int = 10,
    horizon_days: int = 90,
    settings: Settings | None = None,
) -> dict[str, object]:
    """precision@k and recall@k of the model and both baselines on the time split at
    ``until`` (see the module docstring)."""
    require_items(purchases)
    model = fit(purchases, until=until, settings=settings)
    end = pd.Timestamp(until + timedelta(days=horizon_days))
    after = purchases.loc[
        (purchases["date"] > pd.Timestamp(until)) & (purchases["date"] <= end),
        ["customer_id", "item"],
    ].drop_duplicates()
    rows = model.customers.get_indexer(after["customer_id"])
    after = after[rows >= 0]
    rows = rows[rows >= 0]
    tested = np.unique(rows)
    result: dict[str, object] = {
        "until": until.isoformat(),
        "horizon_days": horizon_days,
        "k": k,
        "customers": int(tested.size),
        "items": len(model.items),
    }
    if tested.size == 0:
        result["precision"] = dict.fromkeys(METHODS)
        result["recall"] = dict.fromkeys(METHODS)
        return result
    cols = model.items.get_indexer(after["item"])
    size = np.bincount(rows, minlength=len(model.customers)).astype(np.float64)
    known = cols >= 0  # items new after ``until`` count in recall's denominator only
    truth = sp.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (rows[known], cols[known])),
        shape=model.history.shape,
    )
    precision: dict[str, float] = {}
    recall: dict[str, float] = {}
    for method in METHODS:
        best, _ = top_k(model, k, method, tested)  # only the customers tested
        hit = np.asarray(
            truth[np.repeat(tested, best.shape[1]), best.ravel()], dtype=np.float64
        ).reshape(best.shape)
        hits = hit.sum(axis=1)
        precision[method] = round(float((hits / k).mean()), 4)
        recall[method] = round(float((hits / size[tested]).mean()), 4)
    result["precision"] = precision
    result["recall"] = recall
    return result
