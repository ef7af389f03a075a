"""Property-based tests of the ledger invariants (hypothesis), on SQLite and PostgreSQL.

For any sequence of purchases (pending or not), partial and full returns, spends (some
more than available, some allowed to go negative), credits, activation and expiry runs,
after every step:

* available balance = remaining points in available lots (0 in them while negative);
* pending = remaining points in pending lots;
* available + pending = sum of postings;
* no lot below zero or above its amount;
* ``ledger.verify`` finds nothing and ``ledger.repair`` (rebuilding from postings)
  leaves the cached balance as it was;

and each step changes the balance by what it should (a small model of the member's
purchases predicts earnings, reversals, activations and expiries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests import factories as f
from treu.db.session import Database
from treu.events.models import Event
from treu.events.service import Adjustment, adjustments
from treu.kit.money import Rounding, points_for_amount
from treu.ledger.errors import InsufficientPoints
from treu.ledger.models import Account, Lot, LotState, Posting
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.programmes.models import Programme

START = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
SKUS = ["a", "b", "c"]

purchase = st.tuples(
    st.just("purchase"),
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=3000)),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),  # late: delivered after its return window, so available at once
    # and in the same batch, a return of this or an earlier purchase (which, how many)
    st.none()
    | st.tuples(
        st.integers(min_value=0, max_value=100),
        st.lists(st.integers(min_value=0, max_value=3), min_size=3, max_size=3),
    ),
)
give_back = st.tuples(
    st.just("return"),
    st.integers(min_value=0, max_value=100),  # which purchase
    st.lists(st.integers(min_value=0, max_value=3), min_size=3, max_size=3),  # how many
)
spend = st.tuples(
    st.just("spend"),
    st.integers(min_value=1, max_value=120),
    st.sampled_from([False, False, False, True]),  # allow_negative, now and then
)
credit = st.tuples(st.just("credit"), st.integers(min_value=1, max_value=60))
activate = st.tuples(st.just("activate"), st.integers(min_value=0, max_value=20))
expire = st.tuples(st.just("expire"), st.integers(min_value=0, max_value=80))
operations = st.lists(
    st.one_of(purchase, give_back, spend, credit, activate, expire), min_size=1, max_size=14
)


@dataclass
class Bought:
    event_id: str
    lines: list[tuple[str, int, int]]  # sku, quantity, unit price
    earned: int
    returned: dict[str, int] = field(default_factory=dict)
    reversed: int = 0
    expired: int = 0
    """Points of this order that expired unused: a return never takes these back."""

    def kept_points(self) -> int:
        kept = sum((q - self.returned.get(sku, 0)) * p for sku, q, p in self.lines)
        return min(points_for_amount(kept, "EUR", Decimal(1), Rounding.floor), self.earned)

    def take_back(self, quantities: list[int]) -> tuple[list[dict[str, Any]], int]:
        """The lines of a return of up to ``quantities`` and the points it must reverse."""
        lines = []
        for (sku, q, _), wanted in zip(self.lines, quantities, strict=False):
            n = min(wanted, q - self.returned.get(sku, 0))
            if n:
                lines.append({"sku": sku, "quantity": n})
                self.returned[sku] = self.returned.get(sku, 0) + n
        to_reverse = max(max(self.earned - self.kept_points() - self.expired, 0) - self.reversed, 0)
        self.reversed += to_reverse
        return lines, to_reverse


@dataclass
class Snapshot:
    available: int
    pending: int
    postings: int
    lots: list[tuple[str, int, int, datetime, datetime | None]]
    """state, amount, remaining, available_at, expires_at"""


def snapshot(db: Database, who: Member) -> Snapshot:
    with db.unit_of_work(write=False) as session:
        available, pending = session.execute(
            select(Account.available, Account.pending).where(Account.member_id == who.id)
        ).one()
        total = session.scalar(
            select(func.coalesce(func.sum(Posting.points), 0)).where(Posting.member_id == who.id)
        )
        lots = [
            (row.state, row.amount, row.remaining, row.available_at, row.expires_at)
            for row in session.execute(
                select(Lot.state, Lot.amount, Lot.remaining, Lot.available_at, Lot.expires_at)
                .where(Lot.member_id == who.id)
                .order_by(Lot.id)
            )
        ]
    return Snapshot(int(available), int(pending), int(total or 0), lots)


def check_invariants(db: Database, prog: Programme, who: Member) -> Snapshot:
    snap = snapshot(db, who)
    in_available = sum(r for s, _, r, _, _ in snap.lots if s == LotState.available)
    in_pending = sum(r for s, _, r, _, _ in snap.lots if s == LotState.pending)
    assert snap.available + snap.pending == snap.postings
    assert snap.pending == in_pending
    assert snap.pending >= 0
    assert in_available == max(snap.available, 0)
    for state, amount, remaining, _, _ in snap.lots:
        assert state in (LotState.available, LotState.pending)
        assert 0 <= remaining <= amount
    assert f.verify(db, prog) == []
    with db.unit_of_work() as session:
        ledger.repair(session, member_ids=[who.id])
        rebuilt = session.execute(
            select(Account.available, Account.pending).where(Account.member_id == who.id)
        ).one()
        assert tuple(rebuilt) == (snap.available, snap.pending)
    return snap


def run_jobs(db: Database, job: Any, now: datetime) -> None:
    while True:
        with db.unit_of_work() as session:
            if job(session, now=now) == 0:
                return


def run(db: Database, ops: list[tuple[Any, ...]], pending_days: int, months: int | None) -> None:
    expiry = {"policy": "rolling", "months": months} if months else {"policy": "never"}
    prog = f.programme(db, pending_days=pending_days, expiry=expiry)
    who = f.member(db, prog)
    now = START
    bought: list[Bought] = []
    before = check_invariants(db, prog, who)
    for op in ops:
        now += timedelta(minutes=10)
        kind = op[0]
        expected_total = before.postings
        if kind == "purchase":
            _, lines, late, then_return = op
            at = now - timedelta(days=pending_days + 1) if late else now
            sale_lines = [(SKUS[n], q, p) for n, (q, p) in enumerate(lines)]
            payload = f.purchase_payload(
                prog,
                who,
                lines=[{"sku": s, "quantity": q, "unit_price_minor": p} for s, q, p in sale_lines],
                occurred_at=at,
            )
            earned = sum(q * p for _, q, p in sale_lines) // 100
            bought.append(Bought(payload["id"], sale_lines, earned))
            batch = [payload]
            to_reverse = 0
            if then_return is not None:
                which, quantities = then_return
                sale = bought[which % len(bought)]
                lines, to_reverse = sale.take_back(quantities)
                if lines:
                    batch.append(f.return_payload(prog, sale.event_id, lines, occurred_at=now))
            outcomes = f.ingest(db, *batch, now=now)
            assert [o.status for o in outcomes] == [201] * len(batch)
            assert outcomes[0].body is not None
            assert outcomes[0].body["points"]["earned"] == earned
            expected_total += earned
            after = check_invariants(db, prog, who)
            if len(batch) == 1:
                pending_now = pending_days > 0 and not late and earned > 0
                assert after.pending == before.pending + (earned if pending_now else 0)
                assert after.available == before.available + (0 if pending_now else earned)
            else:
                assert outcomes[1].body is not None
                assert outcomes[1].body["points"]["reversed"] == to_reverse
                expected_total -= to_reverse
        elif kind == "return":
            _, which, quantities = op
            if not bought:
                continue
            sale = bought[which % len(bought)]
            lines, to_reverse = sale.take_back(quantities)
            if not lines:
                continue
            out = f.ingest_one(
                db, f.return_payload(prog, sale.event_id, lines, occurred_at=now), now=now
            )
            assert out.body is not None
            assert out.body["points"]["reversed"] == to_reverse
            expected_total -= to_reverse
            after = check_invariants(db, prog, who)
        elif kind in ("spend", "credit"):
            points = -op[1] if kind == "spend" else op[1]
            allow_negative = kind == "spend" and op[2]
            adjustment = Adjustment(points, "property test", allow_negative=allow_negative)
            refused = points < 0 and -points > before.available and not allow_negative
            if refused:
                with pytest.raises(InsufficientPoints), db.unit_of_work() as session:
                    adjustments.adjust(
                        session, member=who, adjustment=adjustment, actor="test", now=now
                    )
            else:
                with db.unit_of_work() as session:
                    adjustments.adjust(
                        session, member=who, adjustment=adjustment, actor="test", now=now
                    )
                expected_total += points
            after = check_invariants(db, prog, who)
            assert after.pending == before.pending
            assert after.available == before.available + (0 if refused else points)
        elif kind == "activate":
            now += timedelta(days=op[1])
            due = sum(
                r
                for s, _, r, available_at, _ in before.lots
                if s == LotState.pending and available_at <= now
            )
            run_jobs(db, ledger.activate_due, now)
            after = check_invariants(db, prog, who)
            assert after.pending == before.pending - due
            assert after.available == before.available + due
            assert all(s == LotState.available or a > now for s, _, _, a, _ in after.lots)
        else:
            now += timedelta(days=op[1])
            expiring = sum(
                r for _, _, r, _, expires_at in before.lots if expires_at and expires_at <= now
            )
            with db.unit_of_work(write=False) as session:
                expiring_by_order = dict(
                    session.execute(
                        select(Event.key, Lot.remaining)
                        .join(Event, Event.id == Lot.event_id)
                        .where(Lot.member_id == who.id, Lot.expires_at <= now, Lot.remaining > 0)
                    ).all()
                )
            for sale in bought:
                sale.expired += int(expiring_by_order.get(sale.event_id, 0))
            run_jobs(db, ledger.expire_due, now)
            expected_total -= expiring
            after = check_invariants(db, prog, who)
            assert all(r == 0 for _, _, r, _, e in after.lots if e and e <= now)
        assert after.postings == expected_total, op
        before = after


PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    ops=operations,
    pending_days=st.sampled_from([0, 7, 14]),
    months=st.sampled_from([None, 1, 2, 3]),
)
def test_ledger_invariants_hold_for_any_sequence(
    fresh_db: Database, ops: list[tuple[Any, ...]], pending_days: int, months: int | None
) -> None:
    run(fresh_db, ops, pending_days, months)


def test_a_known_hard_sequence(fresh_db: Database) -> None:
    """Spend, return what was spent (debt), pending earnings settle it, expiry on top."""
    ops: list[tuple[Any, ...]] = [
        ("purchase", [(2, 2500), (1, 1000)], True, None),
        ("purchase", [(1, 3000)], False, (1, [1, 0, 0])),
        ("purchase", [(1, 3000)], False, None),
        ("spend", 55, False),
        ("return", 0, [2, 0, 0]),
        ("spend", 10, False),
        ("spend", 10, True),
        ("credit", 5),
        ("activate", 15),
        ("purchase", [(3, 999)], True, (0, [0, 0, 1])),
        ("return", 1, [1, 0, 0]),
        ("expire", 40),
        ("return", 0, [0, 1, 0]),
        ("activate", 20),
        ("expire", 80),
    ]
    run(fresh_db, ops, 14, 2)
