"""A large batch on PostgreSQL does not wait for accounts another transaction holds: it
processes and commits the other members' events first, then the deferred ones, and
answers as if it had processed the batch in order (``ingest_with_retry``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from treu.db.session import Database
from treu.errors import Busy
from treu.events.models import Event
from treu.events.service import DEFER_FROM, Outcome
from treu.members.models import Member
from treu.programmes.models import Programme


def _batch(prog: Programme, held: Member, others: list[Member]) -> list[dict[str, Any]]:
    """Purchases of ``others`` with the held member's events among them: three
    purchases, a return of the first, a second copy of the first (a replay) and an event
    id the held member uses first and another member then reuses with another payload."""
    payloads = [f.purchase_payload(prog, who, amount_minor=1000) for who in others]
    first = f.purchase_payload(prog, held, amount_minor=2000, event_id=f.unique("held"))
    shared_id = f.unique("shared")
    payloads.insert(0, first)
    payloads.insert(3, f.purchase_payload(prog, held, amount_minor=500, event_id=shared_id))
    payloads.insert(4, f.purchase_payload(prog, others[0], amount_minor=700, event_id=shared_id))
    payloads.insert(10, f.purchase_payload(prog, held, amount_minor=3000))
    payloads.insert(
        20,
        f.return_payload(
            prog, first["id"], [{"sku": "sku-1", "quantity": 1}], event_id=f.unique("ret")
        ),
    )
    payloads.insert(25, dict(first))
    return payloads


def _expected_statuses(payloads: list[dict[str, Any]], shared_second: int) -> list[int]:
    statuses = [201] * len(payloads)
    statuses[25] = 200  # the second copy of the first purchase
    statuses[shared_second] = 409
    return statuses


def test_a_batch_commits_around_an_account_held_elsewhere(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    held = f.member(db, prog)
    others = [f.member(db, prog) for _ in range(DEFER_FROM)]
    payloads = _batch(prog, held, others)
    # The other members' purchases, but for the id the held member used first (decided
    # with the held member's events).
    held_ids = {p["id"] for p in payloads if p.get("member") == f.member_ref(held)}
    other_keys = [p["id"] for p in payloads if p["type"] == "purchase" and p["id"] not in held_ids]

    url = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    holder = psycopg.connect(url)
    holder.execute("SELECT 1 FROM accounts WHERE member_id = %s FOR UPDATE", (held.id,))
    outcomes: list[Outcome] = []
    worker = threading.Thread(target=lambda: outcomes.extend(f.ingest(db, *payloads)))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline:
            with db.unit_of_work(write=False) as session:
                stored = session.scalar(
                    select(func.count()).select_from(Event).where(Event.key.in_(other_keys))
                )
            if stored >= len(other_keys):
                break
            time.sleep(0.05)
        # The other members' events are committed while the held account is still locked.
        assert stored == len(other_keys) == DEFER_FROM
        assert worker.is_alive()
    finally:
        holder.rollback()
        holder.close()
        worker.join(timeout=60)
    assert not worker.is_alive()

    assert [o.index for o in outcomes] == list(range(len(payloads)))
    assert [o.status for o in outcomes] == _expected_statuses(payloads, shared_second=4)
    assert outcomes[25].body == outcomes[0].body
    # 20 + 5 + 30 points earned; the return of the only line of the first purchase
    # takes its 20 back.
    assert f.balance(db, held).available == 35
    assert f.balance(db, others[0]).available == 10
    assert f.verify(db, prog) == []


def test_the_same_batch_without_contention_answers_the_same(db: Database) -> None:
    """On both backends (SQLite never defers): the answers the deferred run gives."""
    prog = f.programme(db)
    held = f.member(db, prog)
    others = [f.member(db, prog) for _ in range(DEFER_FROM)]
    payloads = _batch(prog, held, others)
    outcomes = f.ingest(db, *payloads)
    assert [o.status for o in outcomes] == _expected_statuses(payloads, shared_second=4)
    assert f.balance(db, held).available == 35
    assert f.verify(db, prog) == []


def test_concurrent_large_batches_over_shared_members_add_up(db: Database, backend: str) -> None:
    """Six batches of 48 purchases over the same twelve members at once: each batch
    defers whatever another holds, and every point lands once, in no deadlock. A batch
    that waited longer than the lock timeout for the accounts others hold is told so
    (``Busy``, a 503 over HTTP) and sent again, as a client does; on a busy 2-core
    machine the waits can add up to that."""
    postgres_only(backend)
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(12)]
    size = max(DEFER_FROM, 48)

    def batch(i: int) -> list[Outcome]:
        order = people if i % 2 == 0 else list(reversed(people))
        payloads = [
            f.purchase_payload(prog, order[n % len(order)], amount_minor=100 * (1 + n % 3))
            for n in range(size)
        ]
        for _ in range(4):
            try:
                return f.ingest(db, *payloads)
            except Busy:
                continue  # the same batch again: what was stored is answered as stored
        return f.ingest(db, *payloads)

    results = in_parallel(6, batch)
    assert [r for r in results if isinstance(r, BaseException)] == []
    for outcomes in results:
        assert isinstance(outcomes, list)
        assert {o.status for o in outcomes} <= {200, 201}
        assert [o.index for o in outcomes] == list(range(size))
    # Member k of the ordering gets purchases n = k, k + 12, ...: 1, 2 or 3 points each.
    expected: dict[Any, int] = {who.id: 0 for who in people}
    for i in range(6):
        order = people if i % 2 == 0 else list(reversed(people))
        for n in range(size):
            expected[order[n % len(order)].id] += 1 + n % 3
    for who in people:
        assert f.balance(db, who).available == expected[who.id]
    assert f.verify(db, prog) == []
