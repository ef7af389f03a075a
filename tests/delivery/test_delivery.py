"""Delivery from the outbox: each planned delivery is written once per dedupe key, sent
at least once after commit with a stable id, retried with backoff until it is dead,
retried by hand, and taken over after a worker's lease runs out. Two PostgreSQL workers
never claim the same delivery."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests import factories as f
from tests.support.delivery import Clock, Enrolments, Receiver, enrol
from treu.db.session import Database
from treu.delivery.channel import Claimed, SendFailed
from treu.delivery.models import Delivery
from treu.delivery.service import Backoff, DeliveryNotDead, deliveries
from treu.delivery.worker import Deliverer
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.outbox.models import OutboxMessage
from treu.outbox.service import outbox

QUICK = Backoff(base_seconds=1, cap_seconds=4, max_attempts=3)


def rows(db: Database) -> list[Delivery]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def deliverer(db: Database, channel: Enrolments, clock: Clock, **kw: object) -> Deliverer:
    return Deliverer(db, [channel], clock=clock, backoff=QUICK, threads=4, **kw)  # type: ignore[arg-type]


def test_every_enrolment_arrives_once_with_a_stable_id_after_commit(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    receiver = Receiver()
    channel = Enrolments(receiver, prog.id)
    enrolled = enrol(fresh_db, prog, 30)
    worker = deliverer(fresh_db, channel, Clock())
    try:
        done = worker.run_once()
        again = worker.run_once()
    finally:
        worker.close()
    assert (done.sent, done.failed, done.dead) == (30, 0, 0)
    assert not again.busy
    stored = rows(fresh_db)
    assert sorted(str(d.member_id) for d in stored) == sorted(map(str, enrolled))
    assert set(receiver.got) == {d.id for d in stored}
    assert set(receiver.got.values()) == {1}
    assert {d.status for d in stored} == {"delivered"}
    with fresh_db.unit_of_work(write=False) as session:
        assert (
            session.scalar(select(func.count()).where(OutboxMessage.dispatched_at.is_(None))) == 0
        )


def test_planning_twice_writes_each_delivery_once(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    channel = Enrolments(Receiver(), prog.id)
    enrol(fresh_db, prog, 3)
    now = utc_now()
    with fresh_db.unit_of_work() as session:
        messages = outbox.messages(session, programme_id=prog.id)
        planned = channel.plan(session, messages, now=now)
        deliveries.add(session, planned, now=now)
    with fresh_db.unit_of_work() as session:
        deliveries.add(session, planned, now=now)  # a worker that crashed before marking
        assert deliveries.dispatch(session, [channel], now=now) == 3
    assert len(rows(fresh_db)) == 3


def test_a_rolled_back_change_sends_nothing(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    receiver = Receiver()

    def enrol_then_fail() -> None:
        with fresh_db.unit_of_work() as session:
            members.enrol(
                session,
                programme=prog,
                data=MemberCreate.model_validate(
                    {"programme": prog.slug, "external_id": uuid.uuid4().hex}
                ),
                writer=ledger.writer(session),
            )
            raise RuntimeError("the caller changed its mind")

    with pytest.raises(RuntimeError, match="changed its mind"):
        enrol_then_fail()
    worker = deliverer(fresh_db, Enrolments(receiver, prog.id), Clock())
    try:
        assert not worker.run_once().busy
    finally:
        worker.close()
    assert rows(fresh_db) == []
    assert not receiver.got


def test_failures_back_off_then_arrive_with_the_same_id(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    [who] = enrol(fresh_db, prog, 1)
    receiver = Receiver(fail={str(who): 2})
    clock = Clock()
    channel = Enrolments(receiver, prog.id)
    worker = deliverer(fresh_db, channel, clock)
    try:
        first = worker.run_once()
        assert (first.sent, first.failed) == (0, 1)
        [row] = rows(fresh_db)
        assert (row.status, row.attempts, row.last_status) == ("failed", 1, 503)
        assert row.last_error == "receiver said 503"
        # QUICK: try 1 waits 0.5-1 s, try 2 waits 1-2 s
        assert clock.now + timedelta(seconds=0.5) <= row.next_attempt_at
        assert row.next_attempt_at <= clock.now + timedelta(seconds=1)
        assert not worker.run_once().busy  # not due yet
        clock.now += timedelta(seconds=1)
        assert worker.run_once().failed == 1
        clock.now += timedelta(seconds=2)
        assert worker.run_once().sent == 1
    finally:
        worker.close()
    [row] = rows(fresh_db)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    assert receiver.got == Counter({row.id: 1})
    assert receiver.tries[str(who)] == 3
    assert [o.error is None for o in channel.settled] == [False, False, True]
    assert {o.delivery.id for o in channel.settled} == {row.id}


def test_the_last_failure_is_dead_and_a_retry_by_hand_sends_it(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    [who] = enrol(fresh_db, prog, 1)
    receiver = Receiver(fail={str(who): 3})
    clock = Clock()
    worker = deliverer(fresh_db, Enrolments(receiver, prog.id), clock)
    try:
        for _ in range(QUICK.max_attempts):
            worker.run_once()
            clock.now += timedelta(seconds=QUICK.cap_seconds)
        [row] = rows(fresh_db)
        assert (row.status, row.attempts, row.last_error) == ("dead", 3, "receiver said 503")
        clock.now += timedelta(days=30)
        assert not worker.run_once().busy  # dead stays dead
        with fresh_db.unit_of_work() as session:
            deliveries.retry(session, row.id, now=clock.now)
        assert worker.run_once().sent == 1
        with fresh_db.unit_of_work() as session, pytest.raises(DeliveryNotDead):
            deliveries.retry(session, row.id, now=clock.now)
    finally:
        worker.close()
    [again] = rows(fresh_db)
    assert (again.id, again.status) == (row.id, "delivered")
    assert receiver.got == Counter({row.id: 1})


def test_a_permanent_failure_is_dead_at_once(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    enrol(fresh_db, prog, 1)

    class Gone(Enrolments):
        def send(self, delivery: Claimed) -> None:
            raise SendFailed("endpoint deleted", retry=False)

    worker = deliverer(fresh_db, Gone(Receiver(), prog.id), Clock())
    try:
        assert worker.run_once().dead == 1
    finally:
        worker.close()
    [row] = rows(fresh_db)
    assert (row.status, row.attempts) == ("dead", 1)


def test_a_claim_whose_worker_died_is_sent_again_after_the_lease(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    enrol(fresh_db, prog, 2)
    receiver = Receiver()
    clock = Clock()
    channel = Enrolments(receiver, prog.id)
    lease = timedelta(seconds=30)
    with fresh_db.unit_of_work() as session:
        deliveries.dispatch(session, [channel], now=clock.now)
    with fresh_db.unit_of_work() as session:  # a worker claims, then dies before sending
        lost = deliveries.claim(session, now=clock.now, limit=10, lease=lease)
    assert len(lost) == 2
    worker = deliverer(fresh_db, channel, clock, lease=lease)
    try:
        assert not worker.run_once().busy  # still leased
        clock.now += lease
        assert worker.run_once().sent == 2
        # the dead worker's late outcome (its lease was taken over) changes nothing
        with fresh_db.unit_of_work() as session:
            outcomes = [deliveries.outcome(d, SendFailed("late"), backoff=QUICK) for d in lost]
            deliveries.record(session, outcomes, now=clock.now, backoff=QUICK)
    finally:
        worker.close()
    assert {(d.status, d.attempts) for d in rows(fresh_db)} == {("delivered", 2)}
    assert set(receiver.got.values()) == {1}


def test_two_workers_claim_disjoint_deliveries(fresh_db: Database) -> None:
    if fresh_db.is_sqlite:
        pytest.skip("SQLite runs one worker: its writers are serialised")
    prog = f.programme(fresh_db)
    enrol(fresh_db, prog, 40)
    channel = Enrolments(Receiver(), prog.id)
    now = utc_now()
    with fresh_db.unit_of_work() as session:
        deliveries.dispatch(session, [channel], now=now)
    first_claimed = threading.Event()
    second_done = threading.Event()
    claims: dict[str, list[Claimed]] = {}

    def first() -> None:
        with fresh_db.unit_of_work() as session:
            claims["first"] = deliveries.claim(
                session, now=now, limit=25, lease=timedelta(seconds=60)
            )
            first_claimed.set()
            second_done.wait(10)  # holds its row locks while the second one claims

    thread = threading.Thread(target=first)
    thread.start()
    assert first_claimed.wait(10)
    with fresh_db.unit_of_work() as session:
        claims["second"] = deliveries.claim(session, now=now, limit=25, lease=timedelta(seconds=60))
    second_done.set()
    thread.join(10)
    ours = {d.id for d in claims["first"]}
    theirs = {d.id for d in claims["second"]}
    assert (len(ours), len(theirs)) == (25, 15)
    assert not ours & theirs


def test_depth_names_what_waits_and_for_how_long(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    enrol(fresh_db, prog, 3)
    clock = Clock()
    with fresh_db.unit_of_work(write=False) as session:
        before = deliveries.depth(session)
    assert before.undispatched >= 3
    assert before.lag_seconds(clock.now + timedelta(seconds=90)) >= 90
    receiver = Receiver(fail={})
    channel = Enrolments(receiver, prog.id)
    with fresh_db.unit_of_work() as session:
        deliveries.dispatch(session, [channel], now=clock.now)
    with fresh_db.unit_of_work(write=False) as session:
        after = deliveries.depth(session)
    assert after.undispatched == 0
    assert after.by_status["pending"] == 3
    assert after.oldest_due_at == clock.now


def test_history_can_be_marked_as_not_news(fresh_db: Database) -> None:
    prog = f.programme(fresh_db)
    enrol(fresh_db, prog, 2)
    later = utc_now() + timedelta(minutes=1)
    with fresh_db.unit_of_work() as session:
        skipped = deliveries.skip_history(session, before=later, now=later)
    assert skipped >= 2
    worker = deliverer(fresh_db, Enrolments(Receiver(), prog.id), Clock())
    try:
        assert not worker.run_once().busy
    finally:
        worker.close()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base_seconds=10, cap_seconds=100, max_attempts=5)
    rng = random.Random(7)
    for attempt, plain in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = [backoff.delay(attempt, rng).total_seconds() for _ in range(200)]
        assert plain * 0.5 <= min(delays) < plain * 0.6
        assert plain * 0.9 < max(delays) <= plain
