"""The job registry shared by ``treu jobs run NAME`` and the scheduler (``treu worker``).

A job is a callable ``(db) -> int`` that does all the work that is due and returns how
many items it handled. Each batch is its own unit of work, so a long catch-up (say a
million lots after the worker was down for a week) never holds one huge transaction
and a crash loses at most one batch, which the next run picks up. Jobs are safe to run
twice and concurrently: the ledger services re-read lots under the account lock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.db.session import Database
from treu.errors import NotFound
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.programmes.models import Programme

BATCH_SIZE = 500
MAX_BATCHES = 100_000
"""A guard against a service that keeps reporting work it cannot finish."""

Batch = Callable[[Session, datetime, int], int]
OnBatch = Callable[[int], None]

log = logging.getLogger(__name__)


class UnknownJob(NotFound):
    code = "unknown_job"
    title = "Unknown job"


class ProgrammesFailed(RuntimeError):
    """A job that works a programme at a time finished the others, but not these."""


def _each_programme(
    job: str, keys: list[Any], work: Callable[[Any], int], on_batch: OnBatch | None
) -> int:
    """``work`` for every programme key; a programme that fails is logged and the others
    still run, then the job fails naming the ones that did not finish (``job_runs`` keeps
    the message, the next run tries them again)."""
    total = 0
    failed: list[str] = []
    for key in keys:
        try:
            done = work(key)
        except Exception as exc:
            log.exception("%s: programme %s failed", job, key)
            failed.append(f"{key} ({type(exc).__name__}: {exc})")
            continue
        total += done
        if on_batch is not None and done:
            on_batch(done)
    if failed:
        raise ProgrammesFailed(f"{job}: {len(failed)} programme(s) failed: " + "; ".join(failed))
    return total


def drain(
    db: Database,
    step: Batch,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_batch: OnBatch | None = None,
) -> int:
    """Call ``step`` in a fresh unit of work per batch until it reports no more work.

    ``now`` is fixed for the whole run, so the loop ends even while new lots keep
    becoming due (they are the next run's work)."""
    now = now or utc_now()
    total = 0
    for _ in range(MAX_BATCHES):
        with db.unit_of_work() as session:
            done = step(session, now, batch_size)
        if done == 0:
            break
        total += done
        if on_batch is not None:
            on_batch(done)
    return total


def _activate(session: Session, now: datetime, limit: int) -> int:
    return ledger.activate_due(session, now=now, limit=limit)


def _expire(session: Session, now: datetime, limit: int) -> int:
    return ledger.expire_due(session, now=now, limit=limit)


def activate_pending(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Make pending points available once their return window has passed."""
    return drain(db, _activate, now=now, on_batch=on_batch)


def expire_points(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Expire lots whose expiry date has passed (one ``expire`` posting per lot)."""
    return drain(db, _expire, now=now, on_batch=on_batch)


def warn_expiring(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Announce points that expire within 30 days (``points.expiring`` in the outbox,
    once per member and expiry date however often this runs)."""
    now = now or utc_now()
    total = 0
    after: uuid.UUID | None = None
    for _ in range(MAX_BATCHES):
        with db.unit_of_work() as session:
            done, after = ledger.warn_expiring(session, now=now, after=after, limit=BATCH_SIZE)
        if after is None:
            break
        total += done
        if on_batch is not None:
            on_batch(done)
    return total


def reevaluate_tiers(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Downgrades after the grace period, ended paid tiers, upgrades a threshold change
    made possible: every programme's members whose ``review_on`` has come (treu.tiers).
    Batches walk member ids upwards, so each member is looked at once per run."""
    from treu.tiers.service import tiers

    now = now or utc_now()
    with db.unit_of_work(write=False) as session:
        ids = [p.id for p in tiers.programmes_with_tiers(session)]
    total = 0
    for programme_id in ids:
        after: tuple[date, uuid.UUID] | None = None
        for _ in range(MAX_BATCHES):
            with db.unit_of_work() as session:
                programme = session.get_one(Programme, programme_id)
                done, after = tiers.reevaluate_batch(
                    session, programme=programme, now=now, after=after, limit=BATCH_SIZE
                )
            if done == 0:
                break
            total += done
            if on_batch is not None:
                on_batch(done)
    return total


def _expire_coupons(session: Session, now: datetime, limit: int) -> int:
    from treu.rewards.service import redemptions

    return redemptions.expire_coupons(session, now=now, limit=limit)


def expire_coupons(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Expire unused coupons past their expiry: stock back, points back where the
    reward's ``refund_on_expiry`` says so (treu.rewards)."""
    return drain(db, _expire_coupons, now=now, on_batch=on_batch)


def journeys_daily(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Birthdays, inactivity (both steps) and expiring points: each member once per
    occasion, however often this runs (treu.journeys)."""
    from treu.journeys.daily import run_daily

    return run_daily(db, now=now, on_batch=on_batch)


def give_offers(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Targeted offers whose window has started: each member of the audience once, a
    page per unit of work (treu.campaigns.offers)."""
    from treu.campaigns.offers import offers

    return offers.give_due(db, now=now)


def refresh_segments(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """RFM scores and the members of every active segment, a programme per unit of
    work (treu.insights.segmenting); running it twice changes nothing."""
    from treu.insights.segmenting import segments

    with db.unit_of_work(write=False) as session:
        ids = list(session.scalars(select(Programme.id).order_by(Programme.id)))

    def refresh(programme_id: uuid.UUID) -> int:
        with db.unit_of_work() as session:
            programme = session.get_one(Programme, programme_id)
            return len(segments.refresh(session, programme=programme, now=now))

    return _each_programme("segments.refresh", ids, refresh, on_batch)


def train_insights(
    db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
) -> int:
    """Every insight model of every programme (``treu insights train``): RFM and
    segments, lifetime value, churn risk, personas; returns the models recorded. Running
    it twice records the next versions, computed from the same data."""
    from treu.insights.train import train

    with db.unit_of_work(write=False) as session:
        slugs = list(session.scalars(select(Programme.slug).order_by(Programme.slug)))

    def trained(slug: str) -> int:
        report = train(db, programme=slug, now=now)
        failed = [f"{step.name}: {step.note}" for step in report.steps if step.status == "failed"]
        if failed:  # the other steps ran; the job's run says what did not
            raise ProgrammesFailed(f"{slug}: " + "; ".join(failed))
        return sum(1 for step in report.steps if step.version is not None)

    return _each_programme("insights.train", slugs, trained, on_batch)


class JobFunc(Protocol):
    def __call__(
        self, db: Database, *, now: datetime | None = None, on_batch: OnBatch | None = None
    ) -> int: ...


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    unit: str
    """What the returned count counts, for log lines ("12 lots activated")."""
    run: JobFunc
    interval_setting: str
    """The ``Settings`` field that holds the worker's interval in seconds."""


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            name="ledger.activate_pending",
            description="Make pending points available after the return window",
            unit="lots activated",
            run=activate_pending,
            interval_setting="worker_activate_every_seconds",
        ),
        Job(
            name="ledger.expire_points",
            description="Expire points past their expiry date",
            unit="lots expired",
            run=expire_points,
            interval_setting="worker_expire_every_seconds",
        ),
        Job(
            name="ledger.warn_expiring",
            description="Announce points expiring within 30 days (points.expiring)",
            unit="expiry notices",
            run=warn_expiring,
            interval_setting="worker_expiring_every_seconds",
        ),
        Job(
            name="tiers.reevaluate",
            description="Tier downgrades after the grace period, ended paid tiers",
            unit="members re-evaluated",
            run=reevaluate_tiers,
            interval_setting="worker_tiers_every_seconds",
        ),
        Job(
            name="rewards.expire_coupons",
            description="Expire unused coupons; give back stock and, per reward, points",
            unit="coupons expired",
            run=expire_coupons,
            interval_setting="worker_coupons_every_seconds",
        ),
        Job(
            name="journeys.daily",
            description="Journeys due today: birthdays, inactivity, expiring points",
            unit="members reached",
            run=journeys_daily,
            interval_setting="worker_journeys_every_seconds",
        ),
        Job(
            name="campaigns.offers",
            description="Give activated offers whose window has started to their audience",
            unit="members reached",
            run=give_offers,
            interval_setting="worker_offers_every_seconds",
        ),
        Job(
            name="segments.refresh",
            description="Recompute RFM scores and the members of every active segment",
            unit="segments refreshed",
            run=refresh_segments,
            interval_setting="worker_segments_every_seconds",
        ),
        Job(
            name="insights.train",
            description="Train every insight model and write members' scores (nightly)",
            unit="models trained",
            run=train_insights,
            interval_setting="worker_insights_every_seconds",
        ),
    )
}


def get_job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(f"no job {name!r}; known jobs: {', '.join(sorted(JOBS))}") from None


def run_job(db: Database, name: str, *, now: datetime | None = None) -> int:
    return get_job(name).run(db, now=now)
