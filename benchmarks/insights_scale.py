"""``make bench --only insights_scale``: the insights at scale on PostgreSQL.

On a database of its own: ``treu demo --bulk`` loads ``TREU_BENCH_INSIGHTS_MEMBERS``
members (default 1,000,000) with about ``TREU_BENCH_INSIGHTS_PURCHASES`` purchase lines
(default 20,000,000) in a subprocess (its own peak memory is reported apart); then, in
this process:

* reading the history (``treu.insights.history.read_history``: COPY into pandas) next to
  its floor, the same COPY through psycopg alone with the bytes thrown away, both per 1M
  purchase lines, in the same run;
* the BG/NBD + Gamma-Gamma fit (``treu.insights.clv``; the per-customer summary timed
  apart);
* RFM and all segments (``treu.insights.segmenting``, with five segments of the kind a
  marketer writes), when that part is installed;
* the whole ``treu insights train`` (reads the history again, every step);
* the peak resident memory of this process (``ru_maxrss``).

Targets (issue 20): fit <= 30 s, RFM + segments <= 30 s, train <= 10 min, peak memory
<= 8 GB, on the 2-core machine at full size.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

MEMBERS_ENV = "TREU_BENCH_INSIGHTS_MEMBERS"
PURCHASES_ENV = "TREU_BENCH_INSIGHTS_PURCHASES"
SLUG = "synthetic"
SEGMENTS = (
    ("valuable-at-risk", "scores.clv_365 > 20000 and scores.churn_risk > 0.5"),
    ("champions", "scores.rfm_segment == 'champions'"),
    ("frequent", "metrics.purchases_365 >= 12"),
    ("lapsed", "metrics.recency_days > 180"),
    ("big-spenders", "metrics.spend_365 > 50000"),
)


def sizes() -> tuple[int, int]:
    return (
        int(os.environ.get(MEMBERS_ENV, "1000000")),
        int(os.environ.get(PURCHASES_ENV, "20000000")),
    )


def _peak_gb(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024 / 1024, 2)  # KiB on Linux


def run(url: str, *, console: Console) -> dict[str, Any]:
    """Everything in the module docstring on the (fresh, migrated) database ``url``."""
    from treu.db.session import Database
    from treu.insights import clv
    from treu.insights.history import copy_floor, read_history
    from treu.insights.train import train
    from treu.programmes.service import programmes

    members, purchases = sizes()
    out: dict[str, Any] = {"members": members, "purchases_asked": purchases}
    console.rule(f"[bold]postgresql: insights at scale ({members:,} members, {purchases:,} lines)")

    started = time.perf_counter()
    env = {**os.environ, "TREU_DATABASE_URL": url}
    command = [
        sys.executable, "-c", "from treu.cli import main; main()",
        "demo", "--bulk", "--members", str(members), "--purchases", str(purchases),
        "--seed", "1", "--programme", SLUG,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out["load_seconds"] = round(time.perf_counter() - started, 1)
    out["load_peak_rss_gb"] = _peak_gb(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        console.print(done.stdout[-2000:], done.stderr[-2000:], markup=False)
        raise RuntimeError("treu demo --bulk failed")
    console.print(done.stdout.strip().splitlines()[-1], markup=False, highlight=False)

    db = Database(url)
    try:
        with db.unit_of_work(write=False) as session:
            programme = programmes.get(session, SLUG)
            session.expunge(programme)
        # floor first, then the read, then the floor again: the better floor counts (the
        # first touch of the table may come from disk, the read then finds it cached).
        floors = []
        for attempt in range(2):
            with db.unit_of_work(write=False) as session:
                begun = time.perf_counter()
                size = copy_floor(session, programme=programme)
                floors.append(time.perf_counter() - begun)
            if attempt == 0:
                with db.unit_of_work(write=False) as session:
                    begun = time.perf_counter()
                    history = read_history(session, programme=programme)
                    read = time.perf_counter() - begun
        lines = len(history)
        floor = min(floors)
        per_million = 1e6 / max(lines, 1)
        out["lines"] = lines
        out["copy_bytes"] = size
        out["read"] = {
            "seconds": round(read, 2),
            "floor_seconds": round(floor, 2),
            "seconds_per_1m_lines": round(read * per_million, 2),
            "floor_seconds_per_1m_lines": round(floor * per_million, 2),
            "ratio_to_floor": round(read / floor, 2) if floor else None,
        }
        console.print(f"read: {out['read']}", highlight=False)

        begun = time.perf_counter()
        table = clv.summary(history)
        summary_seconds = time.perf_counter() - begun
        begun = time.perf_counter()
        bgnbd = clv.fit_bgnbd(table)
        gg = clv.fit_gamma_gamma(table)
        fit = time.perf_counter() - begun
        out["fit"] = {
            "customers": len(table),
            "summary_seconds": round(summary_seconds, 2),
            "seconds": round(fit, 2),
            "bgnbd": {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b},
            "gamma_gamma": {"p": gg.p, "q": gg.q, "gamma": gg.gamma},
        }
        console.print(f"fit: {out['fit']}", highlight=False)
        del history, table

        out["rfm_segments"] = _segments(db, programme)
        console.print(f"RFM + segments: {out['rfm_segments']}", highlight=False)

        begun = time.perf_counter()
        report = train(db, programme=SLUG, now=datetime.now(UTC))
        out["train"] = {
            "seconds": round(time.perf_counter() - begun, 1),
            "steps": {
                s.name: {"status": s.status, "seconds": round(s.seconds, 1), "note": s.note}
                for s in report.steps
            },
        }
        console.print(f"train: {out['train']}", highlight=False)
    finally:
        db.dispose()
    out["peak_rss_gb"] = _peak_gb()
    return out


def _segments(db: Any, programme: Any) -> dict[str, Any]:
    """Create the benchmark's segments and time one refresh (RFM and every segment)."""
    import importlib

    try:
        segmenting = importlib.import_module("treu.insights.segmenting")
    except ModuleNotFoundError:
        return {"skipped": "treu.insights.segmenting is not installed"}
    with db.unit_of_work() as session:
        found = session.merge(programme)
        for slug, expression in SEGMENTS:
            try:
                segmenting.segments.create(
                    session,
                    programme=found,
                    data=segmenting.SegmentIn(slug=slug, name=slug, expression=expression),
                )
            except Exception as exc:  # an expression this version's language lacks
                return {"skipped": f"segment {slug!r}: {exc}"}
    begun = time.perf_counter()
    with db.unit_of_work() as session:
        refreshed = segmenting.segments.refresh(session, programme=session.merge(programme))
    return {
        "seconds": round(time.perf_counter() - begun, 1),
        "segments": {r.slug: r.member_count for r in refreshed},
    }
