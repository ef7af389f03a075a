"""A real ``treu worker`` process, killed with SIGKILL while it delivers 1,000 webhooks:
after a restart every message has arrived, each under one ``webhook-id`` (one delivery
per dedupe key). Messages in flight when the worker died may arrive twice — at least
once is the promise, and receivers dedupe on ``webhook-id`` — and only those."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests import factories as f
from tests.support.delivery import enrol
from tests.support.receiver import Receiver, running_receiver
from treu.db.session import Database
from treu.delivery.models import Delivery
from treu.webhooks.schemas import WebhookIn
from treu.webhooks.service import webhooks

MESSAGES = 1000
THREADS = 8
BATCH = 50


@contextmanager
def worker_process(db: Database, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = os.environ | {
        "TREU_DATABASE_URL": db.url,
        "TREU_ENV": "development",
        "TREU_DELIVERY_LEASE_SECONDS": "2",
        "TREU_DELIVERY_POLL_SECONDS": "0.1",
        "TREU_DELIVERY_BATCH": str(BATCH),
        "TREU_DELIVERY_THREADS": str(THREADS),
        "TREU_LOG_LEVEL": "warning",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from treu.cli import main; main()", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def distinct(receiver: Receiver) -> Counter[str]:
    with receiver._lock:
        return Counter(r.headers["webhook-id"] for r in receiver.requests)


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(300)
def test_a_killed_worker_loses_nothing_and_resends_only_what_was_in_flight(
    fresh_db: Database, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    prog = f.programme(fresh_db)
    with running_receiver() as receiver:
        with fresh_db.unit_of_work() as session:
            webhooks.create(
                session,
                data=WebhookIn(url=receiver.url, events=["member.enrolled"]),
                actor="test",
                allow_private=True,
            )
        enrol(fresh_db, prog, MESSAGES)

        with worker_process(fresh_db, log) as first:
            assert wait_for(lambda: len(receiver.requests) >= MESSAGES // 3, 120), log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        at_kill = len(distinct(receiver))
        assert at_kill < MESSAGES, "the worker finished before it was killed"

        with worker_process(fresh_db, log) as second:
            assert wait_for(lambda: len(distinct(receiver)) == MESSAGES, 120), log.read_text()
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0  # a clean stop on SIGTERM

        got = distinct(receiver)
        bodies: dict[str, set[bytes]] = {}
        for request in receiver.requests:
            bodies.setdefault(request.headers["webhook-id"], set()).add(request.body)
    with fresh_db.unit_of_work(write=False) as session:
        webhook = Delivery.channel == "webhook"  # the inbox has its own, delivered at once
        stored = session.scalar(select(func.count()).select_from(Delivery).where(webhook))
        statuses = set(session.scalars(select(Delivery.status).where(webhook)))
    assert stored == MESSAGES  # one delivery per dedupe key
    assert statuses == {"delivered"}
    assert len(got) == MESSAGES
    members_told = {json.loads(next(iter(b)))["data"]["member_id"] for b in bodies.values()}
    assert len(members_told) == MESSAGES
    assert all(len(b) == 1 for b in bodies.values())  # a resend is the same message
    twice = sum(n - 1 for n in got.values())
    # only what the killed worker had claimed can come twice: at most one batch per
    # round in flight, and the round's sends that had arrived before the kill
    assert twice <= BATCH, f"{twice} messages arrived twice"
