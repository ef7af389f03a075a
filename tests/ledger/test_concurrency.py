"""Concurrent writers: real threads, each with its own session and connection.

PostgreSQL runs writers in parallel and relies on the row locks the services take;
SQLite serialises writers (``BEGIN IMMEDIATE``). Most tests here are about the first, so
they run on PostgreSQL only; idempotency under concurrency must hold on both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from treu.db.session import Database
from treu.errors import Busy, TreuError
from treu.events.service import Outcome
from treu.kit.results import Keyed
from treu.ledger.adjustments import Adjustment, AdjustmentResult, adjustments
from treu.ledger.errors import InsufficientPoints
from treu.ledger.models import Lot, LotState, Posting, PostingLot
from treu.ledger.service import ledger
from treu.members.models import Member

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def spend(db: Database, who: Member, points: int, **kwargs: Any) -> Keyed[AdjustmentResult]:
    for attempt in range(3):
        try:
            with db.unit_of_work() as session:
                return adjustments.adjust(
                    session,
                    member=who,
                    adjustment=Adjustment(-points, "concurrent spend", **kwargs),
                    actor="test",
                )
        except Busy:
            # 503: waited longer than the lock timeout for the account (a loaded test
            # machine); nothing was written, and a client simply tries again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def credit(db: Database, who: Member, points: int, **kwargs: Any) -> Keyed[AdjustmentResult]:
    with db.unit_of_work() as session:
        return adjustments.adjust(
            session,
            member=who,
            adjustment=Adjustment(points, "concurrent credit", **kwargs),
            actor="test",
        )


def only_outcomes(results: list[Any]) -> list[Outcome]:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    return [r for r in results if isinstance(r, Outcome)]


def posting_count(db: Database, who: Member) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).where(Posting.member_id == who.id)) or 0)


def test_same_purchase_sent_ten_times_concurrently_is_credited_once(db: Database) -> None:
    """On both backends."""
    prog = f.programme(db)
    anna = f.member(db, prog)
    payload = f.purchase_payload(
        prog, anna, lines=[{"sku": "tv", "quantity": 1, "unit_price_minor": 49_900}]
    )
    outcomes = only_outcomes(in_parallel(10, lambda _: f.ingest(db, payload)[0]))
    assert sorted(o.status for o in outcomes) == [200] * 9 + [201]
    assert all(o.error is None for o in outcomes)
    bodies = [o.body for o in outcomes]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0] is not None
    assert bodies[0].points.earned == 499
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (499, 0)
    assert posting_count(db, anna) == 1
    assert f.verify(db, prog) == []


def test_fifty_concurrent_spends_against_two_hundred_points(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 200)
    results = in_parallel(50, lambda _: spend(db, anna, 10))
    succeeded = [r for r in results if isinstance(r, Keyed)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert len(succeeded) == 20
    assert len(refused) == 30
    assert {e.code for e in refused} == {"insufficient_points"}
    assert {e.http_status for e in refused} == {422}
    assert all(a.http_status == 201 for a in succeeded)
    # Every successful answer saw a different balance: 190, 180, ..., 0.
    assert sorted(a.result.balance.available for a in succeeded) == list(range(0, 200, 10))
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (0, 0)
    assert posting_count(db, anna) == 1 + 20
    assert f.verify(db, prog) == []


def test_concurrent_purchases_for_one_member_add_up(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)

    def shop(i: int) -> list[Outcome]:
        return [
            f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=100 * (i + 1) + k))
            for k in range(3)
        ]

    results = in_parallel(20, shop)
    assert [r for r in results if isinstance(r, BaseException)] == []
    expected = sum((100 * (i + 1) + k) // 100 for i in range(20) for k in range(3))
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending, bal.lifetime_earned) == (expected, 0, expected)
    assert posting_count(db, anna) == 60
    assert f.verify(db, prog) == []


def test_concurrent_batches_touching_the_same_members(db: Database, backend: str) -> None:
    """Batches lock their members in id order, so overlapping batches never deadlock."""
    postgres_only(backend)
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(6)]

    def batch(i: int) -> list[Outcome]:
        order = people if i % 2 == 0 else list(reversed(people))
        return f.ingest(db, *[f.purchase_payload(prog, who, amount_minor=1000) for who in order])

    results = in_parallel(8, batch)
    assert [r for r in results if isinstance(r, BaseException)] == []
    for outcomes in results:
        assert isinstance(outcomes, list)
        assert [o.status for o in outcomes] == [201] * 6
    for who in people:
        assert f.balance(db, who).available == 80
    assert f.verify(db, prog) == []


def test_concurrent_returns_of_the_last_item(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.ingest_one(
        db,
        f.purchase_payload(
            prog, anna, lines=[{"sku": "a", "quantity": 2, "unit_price_minor": 1500}]
        ),
    )
    outcomes = only_outcomes(
        in_parallel(
            6,
            lambda _: f.ingest(
                db, f.return_payload(prog, sale.event_id, [{"sku": "a", "quantity": 1}])
            )[0],
        )
    )
    codes = Counter(o.error.code if o.error else o.status for o in outcomes)
    assert codes == {201: 2, "return_exceeds_purchase": 4}
    assert f.balance(db, anna).available == 0
    assert f.verify(db, prog) == []


def test_concurrent_adjustments_with_one_idempotency_key(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    results = in_parallel(8, lambda _: credit(db, anna, 50, key="goodwill-ticket-1"))
    answers = [r for r in results if isinstance(r, Keyed)]
    assert len(answers) == 8, results
    assert sorted(a.http_status for a in answers) == [200] * 7 + [201]
    assert all(a.result == answers[0].result for a in answers)
    assert f.balance(db, anna).available == 50
    assert f.verify(db, prog) == []


def test_concurrent_auto_enrolment_of_one_new_customer(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db, auto_enrol=True)

    def buy(_: int) -> Outcome:
        payload = f.purchase_payload(prog, None, amount_minor=1000)
        payload["member"] = {"email": "new.customer@example.com"}
        return f.ingest(db, payload)[0]

    outcomes = only_outcomes(in_parallel(6, buy))
    assert [o.status for o in outcomes] == [201] * 6
    assert len({o.body.public()["member_id"] for o in outcomes if o.body}) == 1
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).where(Member.programme_id == prog.id)) == 1
    assert f.verify(db, prog) == []


def _run_until_done(db: Database, job: Callable[..., int], now: datetime) -> int:
    total = 0
    while True:
        with db.unit_of_work() as session:
            n = job(session, now=now, limit=7)
        if n == 0:
            return total
        total += n


def test_concurrent_job_runs_activate_and_expire_each_lot_once(
    fresh_db: Database, backend: str
) -> None:
    postgres_only(backend)
    db = fresh_db
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 2})
    people = [f.member(db, prog) for _ in range(15)]
    for who in people:
        for k in range(2):
            at = T0 + timedelta(hours=k)
            f.ingest_one(
                db, f.purchase_payload(prog, who, amount_minor=1000, occurred_at=at), now=at
            )

    activated = in_parallel(
        4, lambda _: _run_until_done(db, ledger.activate_due, T0 + timedelta(days=15))
    )
    assert [r for r in activated if isinstance(r, BaseException)] == []
    assert sum(r for r in activated if isinstance(r, int)) == 30
    for who in people:
        bal = f.balance(db, who)
        assert (bal.available, bal.pending) == (20, 0)
    with db.unit_of_work(write=False) as session:
        assert set(session.scalars(select(Lot.state).where(Lot.programme_id == prog.id))) == {
            LotState.available.value
        }
    assert f.verify(db, prog) == []

    expired = in_parallel(
        4, lambda _: _run_until_done(db, ledger.expire_due, T0 + timedelta(days=90))
    )
    assert [r for r in expired if isinstance(r, BaseException)] == []
    assert sum(r for r in expired if isinstance(r, int)) == 30
    with db.unit_of_work(write=False) as session:
        kinds = Counter(
            session.scalars(select(Posting.kind).where(Posting.programme_id == prog.id))
        )
        per_lot = Counter(
            session.scalars(
                select(PostingLot.lot_id)
                .join(Posting, Posting.id == PostingLot.posting_id)
                .where(Posting.kind == "expire", Posting.programme_id == prog.id)
            )
        )
    assert kinds == {"earn": 30, "expire": 30}
    assert len(per_lot) == 30
    assert set(per_lot.values()) == {1}
    for who in people:
        bal = f.balance(db, who)
        assert (bal.available, bal.pending) == (0, 0)
    assert f.verify(db, prog) == []


def test_jobs_and_spends_at_the_same_time(fresh_db: Database, backend: str) -> None:
    """Activation, expiry and spending race on the same accounts; the books still balance."""
    postgres_only(backend)
    db = fresh_db
    prog = f.programme(db, pending_days=7, expiry={"policy": "rolling", "months": 1})
    people = [f.member(db, prog) for _ in range(5)]
    for who in people:
        credit(db, who, 100)
        f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=3000, occurred_at=T0), now=T0)

    def work(i: int) -> Any:
        if i == 0:
            return _run_until_done(db, ledger.activate_due, T0 + timedelta(days=8))
        if i == 1:
            return _run_until_done(db, ledger.expire_due, T0 + timedelta(days=40))
        who = people[i % len(people)]
        try:
            return spend(db, who, 30)
        except TreuError as exc:
            return exc

    results = in_parallel(12, work)
    assert [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, TreuError)
    ] == []
    assert not [r for r in results if isinstance(r, TreuError) and r.code != "insufficient_points"]
    assert f.verify(db, prog) == []
