"""``treu worker``: runs the registered jobs on an interval with APScheduler.

``max_instances=1`` keeps one run of a job at a time in this process and ``coalesce``
folds runs missed while the process was busy or asleep into one; running several
worker processes is still safe, because the jobs themselves are.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC

from apscheduler.schedulers.blocking import BlockingScheduler

from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.worker.jobs import JOBS, get_job

log = logging.getLogger("treu.worker")


def run_scheduled(db: Database, name: str) -> int | None:
    """One scheduled run: log the outcome; an error is logged, not raised, so that the
    schedule goes on (the next run retries). Returns the count, or None on error."""
    job = get_job(name)
    started = time.perf_counter()
    try:
        count = job.run(db)
    except Exception as exc:
        log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
        log.debug("%s failed", name, exc_info=True)
        return None
    log.info("%s: %d %s in %.2f s", name, count, job.unit, time.perf_counter() - started)
    return count


def intervals(settings: Settings) -> dict[str, int]:
    """Seconds between runs, per job name."""
    return {name: int(getattr(settings, job.interval_setting)) for name, job in JOBS.items()}


def build_scheduler(db: Database, settings: Settings) -> BlockingScheduler:
    """A scheduler with every registered job; each job runs once at start, then on its
    interval."""
    scheduler = BlockingScheduler(timezone=UTC)
    for name, seconds in intervals(settings).items():
        scheduler.add_job(
            run_scheduled,
            "interval",
            seconds=seconds,
            args=[db, name],
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            next_run_time=utc_now(),
            misfire_grace_time=seconds,
        )
    return scheduler


def run_forever(db: Database, settings: Settings) -> None:
    scheduler = build_scheduler(db, settings)
    for name, seconds in intervals(settings).items():
        log.info("scheduled %s every %d s", name, seconds)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("worker stopped")
