"""``treu worker``: the scheduled jobs (APScheduler) and the delivery loop.

``max_instances=1`` keeps one run of a job at a time in this process and ``coalesce``
folds runs missed while the process was busy or asleep into one. Several worker
processes may run: on PostgreSQL a job runs under an advisory lock, so a second worker
skips a job the first is running (the jobs are safe to run twice anyway, this only
saves the work), and deliveries are claimed with ``SKIP LOCKED`` (treu.delivery). On
SQLite run one worker.

``Worker`` runs both on background threads so that ``treu serve`` can embed it in
development (``TREU_SERVE_WORKER``); ``run_forever`` is the ``treu worker`` command.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select, text

from treu.config import Settings
from treu.db.session import Database
from treu.delivery.service import Backoff
from treu.delivery.worker import Deliverer
from treu.kit.time import utc_now
from treu.worker.channels import build_channels
from treu.worker.jobs import JOBS, get_job
from treu.worker.models import JobRun

log = logging.getLogger("treu.worker")


@contextlib.contextmanager
def exclusive(db: Database, name: str) -> Iterator[bool]:
    """Yields whether this process may run job ``name`` now: on PostgreSQL, whether it
    got the job's advisory lock (held on a connection of its own for the run); on
    SQLite always (one worker)."""
    if db.is_sqlite:
        yield True
        return
    key = zlib.crc32(f"treu.job:{name}".encode())
    with db.write_engine.connect() as connection:
        got = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        connection.commit()
        try:
            yield got
        finally:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()


def _started(db: Database, name: str) -> None:
    now = utc_now()
    with db.unit_of_work() as session:
        row = session.scalars(select(JobRun).where(JobRun.name == name).with_for_update()).first()
        if row is None:
            session.add(JobRun(name=name, started_at=now, runs=0, failures=0))
        else:
            row.started_at, row.finished_at = now, None


def _finished(db: Database, name: str, count: int | None, error: str | None) -> None:
    with db.unit_of_work() as session:
        row = session.scalars(select(JobRun).where(JobRun.name == name).with_for_update()).one()
        row.finished_at = utc_now()
        row.count, row.error = count, error
        row.runs += 1
        row.failures += error is not None


def run_scheduled(db: Database, name: str) -> int | None:
    """One scheduled run: log the outcome and keep it in ``job_runs``; an error is
    logged, not raised, so that the schedule goes on (the next run retries). Returns the
    count, or None on error or when another worker is running the job."""
    job = get_job(name)
    started = time.perf_counter()
    try:
        with exclusive(db, name) as mine:
            if not mine:
                log.info("%s: running in another worker, skipped", name)
                return None
            _started(db, name)
            try:
                count = job.run(db)
            except Exception as exc:
                _finished(db, name, None, f"{type(exc).__name__}: {exc}"[:2000])
                raise
            _finished(db, name, count, None)
    except Exception as exc:
        log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
        log.debug("%s failed", name, exc_info=True)
        return None
    log.info("%s: %d %s in %.2f s", name, count, job.unit, time.perf_counter() - started)
    return count


def intervals(settings: Settings) -> dict[str, int]:
    """Seconds between runs, per scheduled job name."""
    return {name: int(getattr(settings, job.interval_setting)) for name, job in JOBS.items()}


def build_scheduler(db: Database, settings: Settings) -> BackgroundScheduler:
    """A scheduler with every registered job; each job runs once at start, then on its
    interval."""
    scheduler = BackgroundScheduler(timezone=UTC)
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


def deliverer(db: Database, settings: Settings) -> Deliverer:
    return Deliverer(
        db,
        build_channels(settings),
        batch=settings.delivery_batch,
        threads=settings.delivery_threads,
        lease=timedelta(seconds=settings.delivery_lease_seconds),
        backoff=Backoff(
            base_seconds=settings.delivery_backoff_seconds,
            cap_seconds=settings.delivery_backoff_cap_seconds,
            max_attempts=settings.delivery_max_attempts,
        ),
    )


class Worker:
    """The scheduled jobs and the delivery loop, on background threads."""

    def __init__(self, db: Database, settings: Settings, *, jobs: bool = True) -> None:
        self.db = db
        self.settings = settings
        self.scheduler = build_scheduler(db, settings) if jobs else None
        self.deliverer = deliverer(db, settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.deliverer.run_forever,
            args=(self._stop,),
            kwargs={"poll_seconds": settings.delivery_poll_seconds},
            name="treu-delivery-loop",
            daemon=True,
        )

    def start(self) -> None:
        if self.scheduler is not None:
            self.scheduler.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        self._thread.join(timeout=30)
        self.deliverer.close()


def run_forever(db: Database, settings: Settings) -> None:
    """Run until SIGINT or SIGTERM; then finish the round in flight and stop."""
    worker = Worker(db, settings)
    stopping = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for name, seconds in intervals(settings).items():
        log.info("scheduled %s every %d s", name, seconds)
    channels = ", ".join(c.name for c in worker.deliverer.channels) or "none configured"
    log.info("delivering the outbox (channels: %s)", channels)
    worker.start()
    try:
        stopping.wait()
    finally:
        worker.stop()
        log.info("worker stopped")
