"""Lifetime value at scale: BG/NBD + Gamma-Gamma fitted on 1M synthetic customers with
about 20M purchases, in memory, one process (issue 20's target: the whole fit <= 30 s on
the 2-core machine, peak memory <= 8 GB).

The data come from ``treu.insights.synthetic.generate(lines=False)``: one row per purchase,
customer ids as strings, as a purchase file or a database query would give them, with
parameters of a grocery-like programme (r 1.0, alpha 1.5 per week, a 0.8, b 12: a purchase
every week and a half on average, about 20 per customer over three years). Generating them
is not part of the fit and is timed separately.

Measured, each phase's wall time and the peak resident memory while it ran (sampled every
10 ms) and the process's peak overall:

* ``summary``: merging purchases per customer and day and the per-customer frequency,
  recency, age and mean spend (``clv.summary``);
* ``bgnbd``: the BG/NBD maximum-likelihood fit (``clv.fit_bgnbd``);
* ``gamma_gamma``: the Gamma-Gamma fit (``clv.fit_gamma_gamma``);
* ``values``: P(alive), expected purchases in 90 and 365 days, expected value per
  customer (``clv.customer_values``);
* ``fit_seconds``: the four together (the figure the target is about);
* ``churn`` (not with ``--no-churn``): ``churn.train_and_score`` on the same purchases
  (features at two cut-offs, two more BG/NBD fits, gradient boosting), for the record.

Run: ``python -m benchmarks.insights_clv`` (``--quick`` for 100,000 customers), or as the
``insights_clv`` part of ``python -m benchmarks.run``. Results: a Rich table and
``benchmarks/results/insights-clv-<UTC time>.json`` + ``insights-clv-latest.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from treu import __version__

RESULTS = Path(__file__).parent / "results"
CUSTOMERS = 1_000_000
QUICK_CUSTOMERS = 100_000
TARGET_FIT_SECONDS = 30.0
TARGET_PEAK_GB = 8.0
START, END = date(2023, 1, 1), date(2025, 12, 31)
PARAMETERS = {"r": 1.0, "alpha": 1.5, "a": 0.8, "b": 12.0, "p": 6.0, "q": 3.8, "gamma": 15.0}
PAGE = os.sysconf("SC_PAGE_SIZE")

T = TypeVar("T")


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * PAGE


@contextmanager
def _peak_rss() -> Iterator[dict[str, float]]:
    """The highest resident memory seen while the block runs, sampled every 10 ms."""
    found = {"peak_gb": _rss_bytes() / 1e9}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            found["peak_gb"] = max(found["peak_gb"], _rss_bytes() / 1e9)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        found["peak_gb"] = round(max(found["peak_gb"], _rss_bytes() / 1e9), 2)


def _phase(phases: dict[str, Any], name: str, work: Callable[[], T]) -> T:
    with _peak_rss() as memory:
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
    phases[name] = {"seconds": round(seconds, 2), "peak_rss_gb": memory["peak_gb"]}
    return result


def run(quick: bool = False, customers: int | None = None, churn: bool = True) -> dict[str, Any]:
    """Measure and return the figures (see the module docstring)."""
    from treu.insights import churn as churn_model
    from treu.insights import clv
    from treu.insights.synthetic import generate

    count = customers or (QUICK_CUSTOMERS if quick else CUSTOMERS)
    load_before = os.getloadavg()[0]
    phases: dict[str, Any] = {}
    purchases = _phase(
        phases,
        "generate",
        lambda: generate(count, start=START, end=END, seed=1, lines=False, **PARAMETERS),
    )
    gc.collect()
    summary = _phase(phases, "summary", lambda: clv.summary(purchases))
    bgnbd = _phase(phases, "bgnbd", lambda: clv.fit_bgnbd(summary))
    gg = _phase(phases, "gamma_gamma", lambda: clv.fit_gamma_gamma(summary))
    values = _phase(phases, "values", lambda: clv.customer_values(summary, bgnbd, gg))
    fit = sum(phases[p]["seconds"] for p in ("summary", "bgnbd", "gamma_gamma", "values"))
    fit_peak = max(phases[p]["peak_rss_gb"] for p in ("summary", "bgnbd", "gamma_gamma", "values"))
    result: dict[str, Any] = {
        "quick": count < CUSTOMERS,
        "customers": len(summary),
        "purchases": len(purchases),
        "purchase_days": int(summary["frequency"].sum()) + len(summary),
        "distinct_histories": int(
            summary.groupby(["frequency", "recency", "T"], sort=False).ngroups
        ),
        "window": [START.isoformat(), END.isoformat()],
        "truth": PARAMETERS,
        "bgnbd": {
            "r": round(bgnbd.r, 4),
            "alpha": round(bgnbd.alpha, 4),
            "a": round(bgnbd.a, 4),
            "b": round(bgnbd.b, 4),
            "log_likelihood": round(bgnbd.log_likelihood, 1),
        },
        "gamma_gamma": {"p": round(gg.p, 4), "q": round(gg.q, 4), "gamma": round(gg.gamma, 4)},
        "mean_clv_365": round(float(values["clv_365"].mean()), 2),
        "phases": phases,
        "fit_seconds": round(fit, 2),
        "fit_peak_rss_gb": fit_peak,
        "target_fit_seconds": TARGET_FIT_SECONDS,
        "target_met": None
        if count < CUSTOMERS
        else fit <= TARGET_FIT_SECONDS and fit_peak <= TARGET_PEAK_GB,
    }
    del values
    if churn:
        cutoff = date(END.year, 9, 30)
        scores = _phase(phases, "churn", lambda: churn_model.train_and_score(purchases, cutoff, 90))
        result["churn"] = {
            "cutoff": cutoff.isoformat(),
            "customers": len(scores),
            "chosen": scores.attrs["chosen"],
            "validation_auc": {
                k: None if v is None else round(v, 4) for k, v in scores.attrs["validation"].items()
            },
        }
    result["load_average"] = {
        "before": round(load_before, 2),
        "after": round(os.getloadavg()[0], 2),
    }
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    return result


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"Lifetime value: {result['customers']:,} customers, "
        f"{result['purchases']:,} purchases, one process"
    )
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    table.add_column("peak RSS GB", justify="right")
    for name, label in (
        ("generate", "generate the purchases (not part of the fit)"),
        ("summary", "summary (merge days, per-customer figures)"),
        ("bgnbd", f"BG/NBD fit ({result['distinct_histories']:,} distinct histories)"),
        ("gamma_gamma", "Gamma-Gamma fit"),
        ("values", "P(alive), expected purchases and value per customer"),
        ("churn", "churn risk: train_and_score (not part of the fit)"),
    ):
        phase = result["phases"].get(name)
        if phase:
            table.add_row(label, f"{phase['seconds']:,.2f}", f"{phase['peak_rss_gb']:.2f}")
    mark = {True: "✓", False: "✗", None: "(target is for 1M customers)"}[result["target_met"]]
    table.add_row(
        f"whole fit (target ≤ {TARGET_FIT_SECONDS:.0f} s, ≤ {TARGET_PEAK_GB:.0f} GB) {mark}",
        f"{result['fit_seconds']:,.2f}",
        f"{result['fit_peak_rss_gb']:.2f}",
    )
    table.add_row("process peak", "", f"{result['peak_rss_gb']:.2f}")
    console.print(table)
    load = result["load_average"]
    console.print(
        f"load average (1 min) {load['before']} before, {load['after']} after, on "
        f"{os.cpu_count()} cores",
        highlight=False,
    )
    b, g = result["bgnbd"], result["gamma_gamma"]
    truth = result["truth"]
    console.print(
        f"BG/NBD r {b['r']} ({truth['r']}), alpha {b['alpha']} ({truth['alpha']}), "
        f"a {b['a']} ({truth['a']}), b {b['b']} ({truth['b']}); Gamma-Gamma p {g['p']} "
        f"({truth['p']}), q {g['q']} ({truth['q']}), gamma {g['gamma']} ({truth['gamma']}) "
        "— generated with the values in brackets",
        highlight=False,
    )


def write(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "benchmark": "insights_clv",
        "treu": __version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "finished_at": datetime.now(UTC).isoformat(),
        **result,
    }
    text = json.dumps(document, indent=2)
    path = RESULTS / f"insights-clv-{stamp}.json"
    path.write_text(text, encoding="utf-8")
    (RESULTS / "insights-clv-latest.json").write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 customers")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--no-churn", action="store_true", help="leave out the churn model")
    args = parser.parse_args(argv)
    console = Console()
    result = run(quick=args.quick, customers=args.customers, churn=not args.no_churn)
    report(result, console)
    console.print(f"results: {write(result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
