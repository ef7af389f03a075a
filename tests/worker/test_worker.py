"""The job registry and the scheduler (jobs called directly: no sleeping, no threads
started by APScheduler)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from tests import factories as f
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.worker.jobs import JOBS, UnknownJob, get_job, run_job
from treu.worker.scheduler import build_scheduler, intervals, run_scheduled


def due_pending_lots(db: Database, count: int) -> tuple[Programme, list[str]]:
    """``count`` members with one pending lot each whose return window ended 6 days ago."""
    prog = f.programme(db, pending_days=14)
    then = utc_now() - timedelta(days=20)
    people = [f.member(db, prog) for _ in range(count)]
    f.ingest(
        db,
        *(f.purchase_payload(prog, m, amount_minor=1000, occurred_at=then) for m in people),
        now=then,
    )
    return prog, [str(m.id) for m in people]


def overdue_lots(db: Database, count: int) -> Programme:
    """``count`` members with 10 available points each that expired 10 days ago."""
    prog = f.programme(db, expiry={"policy": "rolling", "months": 1})
    then = utc_now() - timedelta(days=41)
    people = [f.member(db, prog) for _ in range(count)]
    f.ingest(
        db,
        *(f.purchase_payload(prog, m, amount_minor=1000, occurred_at=then) for m in people),
        now=then,
    )
    return prog


def test_registry_names_the_two_ledger_jobs() -> None:
    assert {"ledger.activate_pending", "ledger.expire_points", "tiers.reevaluate"} <= set(JOBS)
    assert get_job("ledger.expire_points").unit == "lots expired"
    with pytest.raises(UnknownJob, match=r"known jobs: .*ledger\.activate_pending"):
        get_job("ledger.nope")


def test_activate_pending_job_runs_until_done_and_twice_is_harmless(fresh_db: Database) -> None:
    prog, _ = due_pending_lots(fresh_db, 3)
    batches: list[int] = []
    assert get_job("ledger.activate_pending").run(fresh_db, on_batch=batches.append) == 3
    assert sum(batches) == 3
    assert run_job(fresh_db, "ledger.activate_pending") == 0
    with fresh_db.unit_of_work(write=False) as session:
        from sqlalchemy import func, select

        from treu.ledger.models import Account

        available = session.scalar(
            select(func.sum(Account.available)).where(Account.programme_id == prog.id)
        )
    assert available == 30
    assert f.verify(fresh_db, prog) == []


def test_jobs_commit_each_batch_and_loop(fresh_db: Database) -> None:
    from treu.worker.jobs import _activate, drain

    due_pending_lots(fresh_db, 5)
    batches: list[int] = []
    assert drain(fresh_db, _activate, batch_size=2, on_batch=batches.append) == 5
    assert batches == [2, 2, 1]


def test_expire_job(fresh_db: Database) -> None:
    prog = overdue_lots(fresh_db, 2)
    assert run_job(fresh_db, "ledger.expire_points") == 2
    assert run_job(fresh_db, "ledger.expire_points") == 0
    assert f.verify(fresh_db, prog) == []


def test_concurrent_runs_do_the_work_once(fresh_db: Database) -> None:
    prog, _ = due_pending_lots(fresh_db, 12)
    counts: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            counts.append(run_job(fresh_db, "ledger.activate_pending"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(counts) == 12
    assert f.verify(fresh_db, prog) == []


def test_scheduler_registers_every_job_with_its_interval(db: Database) -> None:
    settings = Settings(
        worker_activate_every_seconds=60,
        worker_expire_every_seconds=900,
        worker_tiers_every_seconds=86_400,
        worker_coupons_every_seconds=1800,
    )
    assert {
        "ledger.activate_pending": 60,
        "ledger.expire_points": 900,
        "tiers.reevaluate": 86_400,
        "rewards.expire_coupons": 1800,
    }.items() <= intervals(settings).items()
    scheduler = build_scheduler(db, settings)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == set(JOBS)
    for name, job in jobs.items():
        assert job.max_instances == 1
        assert job.coalesce is True
        assert job.trigger.interval == timedelta(seconds=intervals(settings)[name])
        assert job.args == (db, name)
        assert job.func is run_scheduled


def test_coupon_expiry_has_its_own_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TREU_WORKER_COUPONS_EVERY_SECONDS", raising=False)
    defaults = Settings(_env_file=None)
    assert defaults.worker_coupons_every_seconds == 3600
    monkeypatch.setenv("TREU_WORKER_EXPIRE_EVERY_SECONDS", "600")
    monkeypatch.setenv("TREU_WORKER_COUPONS_EVERY_SECONDS", "7200")
    monkeypatch.setenv("TREU_WORKER_TIERS_EVERY_SECONDS", "86400")
    configured = intervals(Settings(_env_file=None))
    assert configured["rewards.expire_coupons"] == 7200
    assert configured["ledger.expire_points"] == 600
    assert configured["tiers.reevaluate"] == 86_400


def test_scheduled_run_logs_and_survives_errors(
    fresh_db: Database, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    due_pending_lots(fresh_db, 2)
    with caplog.at_level(logging.INFO, logger="treu.worker"):
        assert run_scheduled(fresh_db, "ledger.activate_pending") == 2
    assert "ledger.activate_pending: 2 lots activated" in caplog.text

    broken = Database(f"sqlite:///{tmp_path / 'not-migrated.db'}")  # no tables
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="treu.worker"):
        assert run_scheduled(broken, "ledger.expire_points") is None
    assert "ledger.expire_points failed" in caplog.text
    broken.dispose()


def test_each_run_is_kept_in_job_runs(fresh_db: Database, tmp_path: Path) -> None:
    from treu.worker.models import JobRun

    due_pending_lots(fresh_db, 1)
    assert run_scheduled(fresh_db, "ledger.activate_pending") == 1
    assert run_scheduled(fresh_db, "ledger.activate_pending") == 0
    with fresh_db.unit_of_work(write=False) as session:
        run = session.get_one(JobRun, "ledger.activate_pending")
        assert (run.runs, run.failures, run.count, run.error) == (2, 0, 0, None)
        assert run.finished_at is not None
        assert run.finished_at >= run.started_at


def test_a_job_another_worker_runs_is_skipped(
    fresh_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from treu.worker.scheduler import exclusive

    if fresh_db.is_sqlite:
        pytest.skip("SQLite runs one worker")
    due_pending_lots(fresh_db, 1)
    with exclusive(fresh_db, "ledger.activate_pending") as mine:
        assert mine
        with caplog.at_level(logging.INFO, logger="treu.worker"):
            assert run_scheduled(fresh_db, "ledger.activate_pending") is None
        assert "running in another worker, skipped" in caplog.text
        with exclusive(fresh_db, "ledger.expire_points") as other:
            assert other  # one lock per job
    assert run_scheduled(fresh_db, "ledger.activate_pending") == 1


def test_the_worker_starts_and_stops_its_threads(fresh_db: Database) -> None:
    from treu.worker.scheduler import Worker

    settings = Settings(_env_file=None, delivery_poll_seconds=0.05)
    worker = Worker(fresh_db, settings, jobs=False)
    worker.start()
    worker.stop()
    assert not worker._thread.is_alive()
