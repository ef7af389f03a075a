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
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests import factories as f
from treu.db.session import Database
from treu.events.models import Event
from treu.kit.money import Rounding, points_for_amount
from treu.ledger.adjustments import Adjustment, adjustments
from treu.ledger.errors import InsufficientPoints, RefundExceedsPosting
from treu.ledger.models import Account, Lot, LotState, Posting, PostingKind
from treu.ledger.service import PostingRecord, ledger
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
            assert outcomes[0].body.points.earned == earned
            expected_total += earned
            after = check_invariants(db, prog, who)
            if len(batch) == 1:
                pending_now = pending_days > 0 and not late and earned > 0
                assert after.pending == before.pending + (earned if pending_now else 0)
                assert after.available == before.available + (0 if pending_now else earned)
            else:
                assert outcomes[1].body is not None
                assert outcomes[1].body.points.reversed == to_reverse
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
            assert out.body.points.reversed == to_reverse
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


redeem = st.tuples(st.just("redeem"), st.integers(min_value=1, max_value=40))
refund = st.tuples(
    st.just("refund"),
    st.integers(min_value=0, max_value=100),  # which earlier redemption
    st.none() | st.integers(min_value=1, max_value=60),  # points (None: all that is left)
)
buy = st.tuples(
    st.just("purchase"),
    st.integers(min_value=1000, max_value=6000),
    st.sampled_from([True, True, False]),  # late: available at once
)
refund_operations = st.lists(
    # Purchases, redemptions and refunds twice as often as the rest: most sequences
    # then refund something.
    st.one_of(
        buy,
        buy,
        redeem,
        redeem,
        refund,
        refund,
        st.tuples(st.just("return"), st.integers(min_value=0, max_value=100)),
        activate,
        expire,
    ),
    min_size=1,
    max_size=16,
)


def redeem_points(db: Database, who: Member, points: int, now: datetime) -> PostingRecord:
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=now)
        posting = writer.spend(
            writer.account(who.id),
            points=points,
            kind=PostingKind.redeem,
            details={"template": "redeem", "params": {"what": "test"}},
        )
        writer.flush()
        return posting


def refund_points(
    db: Database, who: Member, posting_id: UUID, points: int | None, now: datetime
) -> PostingRecord:
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=now)
        posting = writer.refund(
            writer.account(who.id),
            posting_id=posting_id,
            points=points,
            details={"template": "refund", "params": {"what": "test", "points": points}},
        )
        writer.flush()
        return posting


def expired_but_held(snap: Snapshot, now: datetime) -> int:
    """Points in lots past their expiry that the expiry job has not taken yet."""
    return sum(r for _, _, r, _, e in snap.lots if e is not None and e <= now)


@PROPERTY_SETTINGS
@given(
    ops=refund_operations,
    pending_days=st.sampled_from([0, 14]),
    months=st.sampled_from([None, 1, 2]),
)
def test_ledger_invariants_hold_with_redemptions_and_partial_refunds(
    fresh_db: Database, ops: list[tuple[Any, ...]], pending_days: int, months: int | None
) -> None:
    """Redemptions (``redeem`` postings) and whole or partial refunds of them, mixed with
    purchases, returns (which may leave a negative balance), activation and expiry:
    besides the invariants above, a refund never gives back more than its redemption
    took, moves the balance by exactly what it refunds minus what expired at once (its
    lot was past its expiry), and never leaves points in a lot past its expiry."""
    expiry = {"policy": "rolling", "months": months} if months else {"policy": "never"}
    prog = f.programme(fresh_db, pending_days=pending_days, expiry=expiry)
    who = f.member(fresh_db, prog)
    # Every sequence starts with points and a redemption, so most of them refund.
    ops = [("purchase", 4000, True), ("redeem", 25), *ops]
    now = START
    sales: list[str] = []
    returned: set[str] = set()
    spends: list[tuple[UUID, int]] = []  # redeem posting, points still refundable
    before = check_invariants(fresh_db, prog, who)
    for op in ops:
        now += timedelta(minutes=10)
        kind = op[0]
        if kind == "purchase":
            at = now - timedelta(days=pending_days + 1) if op[2] else now
            payload = f.purchase_payload(prog, who, amount_minor=op[1], occurred_at=at)
            f.ingest_one(fresh_db, payload, now=now)
            sales.append(payload["id"])
            after = check_invariants(fresh_db, prog, who)
            assert after.postings == before.postings + op[1] // 100
        elif kind == "redeem":
            points = op[1]
            if points > before.available:
                with pytest.raises(InsufficientPoints):
                    redeem_points(fresh_db, who, points, now)
                after = check_invariants(fresh_db, prog, who)
                assert after.postings == before.postings
            else:
                posting = redeem_points(fresh_db, who, points, now)
                spends.append((posting.id, points))
                after = check_invariants(fresh_db, prog, who)
                assert after.available == before.available - points
        elif kind == "refund":
            if not spends:
                continue
            index = op[1] % len(spends)
            posting_id, left = spends[index]
            wanted = op[2]
            if left == 0 or (wanted is not None and wanted > left):
                with pytest.raises(RefundExceedsPosting):
                    refund_points(fresh_db, who, posting_id, wanted, now)
                after = check_invariants(fresh_db, prog, who)
                assert after.postings == before.postings
            else:
                back = refund_points(fresh_db, who, posting_id, wanted, now)
                assert back.points == (left if wanted is None else wanted)
                spends[index] = (posting_id, left - back.points)
                after = check_invariants(fresh_db, prog, who)
                assert after.pending == before.pending
                assert after.available == before.available + back.points - back.expired
                assert after.postings == before.postings + back.points - back.expired
                assert expired_but_held(after, now) <= expired_but_held(before, now)
        elif kind == "return":
            open_sales = [s for s in sales if s not in returned]
            if not open_sales:
                continue
            sale = open_sales[op[1] % len(open_sales)]
            returned.add(sale)
            f.ingest_one(
                fresh_db,
                f.return_payload(prog, sale, [{"sku": "sku-1", "quantity": 1}], occurred_at=now),
                now=now,
            )
            after = check_invariants(fresh_db, prog, who)
        elif kind == "activate":
            now += timedelta(days=op[1])
            run_jobs(fresh_db, ledger.activate_due, now)
            after = check_invariants(fresh_db, prog, who)
        else:
            now += timedelta(days=op[1])
            run_jobs(fresh_db, ledger.expire_due, now)
            after = check_invariants(fresh_db, prog, who)
        before = after
    with fresh_db.unit_of_work(write=False) as session:
        for posting_id, left in spends:
            taken = session.scalar(select(Posting.points).where(Posting.id == posting_id))
            given = session.scalar(
                select(func.coalesce(func.sum(Posting.points), 0)).where(
                    Posting.refund_of == posting_id
                )
            )
            assert taken is not None
            assert int(given or 0) == -taken - left


# --- rewards: redemptions, cancellations and coupon expiry through the rewards service ---

reward_operations = st.lists(
    st.one_of(
        st.tuples(st.just("purchase"), st.integers(min_value=500, max_value=6000), st.booleans()),
        st.tuples(st.just("redeem"), st.integers(min_value=0, max_value=2)),
        st.tuples(st.just("redeem"), st.integers(min_value=0, max_value=2)),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=100)),
        st.tuples(st.just("use"), st.integers(min_value=0, max_value=100)),
        st.tuples(st.just("coupons_expire"), st.integers(min_value=0, max_value=6)),
        st.tuples(st.just("return"), st.integers(min_value=0, max_value=100)),
        st.tuples(st.just("pay"), st.integers(min_value=1, max_value=9000), st.booleans()),
        st.tuples(st.just("pay_refund"), st.integers(min_value=0, max_value=100)),
        activate,
        expire,
    ),
    min_size=1,
    max_size=14,
)


def run_rewards(
    db: Database, ops: list[tuple[Any, ...]], pending_days: int, months: int | None
) -> dict[str, int]:
    """Rewards redeemed (points burnt FIFO, stock taken, per-member limit), redemptions
    cancelled (a refund to the same lots, or none, per reward), coupons used for orders
    and coupons expiring (a refund per reward), orders paid with points (whole or
    partly) and such payments refunded: after every step the ledger invariants
    above hold, a redemption moves the balance by exactly its cost, a cancellation or
    an expiry by exactly its refund less what expired at once, and every limited
    reward's stock left equals its stock less the redemptions holding a unit. Returns
    how often each step did something (for the known sequence below)."""
    from collections import defaultdict

    from treu.errors import TreuError
    from treu.rewards.coupons import Cart, CartLine, coupons
    from treu.rewards.models import Coupon, Redemption, Reward
    from treu.rewards.payments import payments
    from treu.rewards.service import redemptions
    from treu.worker.jobs import expire_coupons

    done: dict[str, int] = defaultdict(int)
    expiry = {"policy": "rolling", "months": months} if months else {"policy": "never"}
    prog = f.programme(db, pending_days=pending_days, expiry=expiry)
    who = f.member(db, prog)
    catalogue = [
        f.reward(
            db,
            prog,
            points_cost=30,
            stock=3,
            coupon_valid_days=20,
            policies={"refund_on_cancel": True, "refund_on_expiry": True},
        ),
        f.reward(
            db,
            prog,
            points_cost=20,
            coupon_valid_days=5,
            policies={"refund_on_cancel": False, "refund_on_expiry": False},
        ),
        f.reward(db, prog, points_cost=15, stock=2, per_member_limit=1, coupon_valid_days=2),
    ]
    ops = [("purchase", 12_000, True), *ops]  # 120 points to spend
    now = START
    sales: list[str] = []
    made: list[dict[str, Any]] = []
    paid: list[dict[str, Any]] = []
    orders = 0

    def moved_by(correlation_id: str) -> tuple[int, int]:
        """(refunded, expired at once) under a redemption's correlation id."""
        with db.unit_of_work(write=False) as session:
            rows = session.execute(
                select(Posting.kind, Posting.points).where(
                    Posting.correlation_id == UUID(correlation_id)
                )
            ).all()
        refunded = sum(p for k, p in rows if k == PostingKind.refund)
        expired = -sum(p for k, p in rows if k == PostingKind.expire)
        return refunded, expired

    def attempt(step: Any) -> str | None:
        """Run ``step(session)`` in a unit of work; the error code if it was refused."""
        try:
            with db.unit_of_work() as session:
                step(session)
        except TreuError as exc:
            return exc.code
        return None

    def check_stock() -> None:
        with db.unit_of_work(write=False) as session:
            for reward in catalogue:
                row = session.get_one(Reward, reward.id)
                held = session.scalar(
                    select(func.count()).where(
                        Redemption.reward_id == reward.id, Redemption.status == "redeemed"
                    )
                )
                if row.stock_total is not None:
                    assert row.stock_left == row.stock_total - int(held or 0)
                if row.per_member_limit is not None:
                    assert int(held or 0) <= row.per_member_limit

    before = check_invariants(db, prog, who)
    for op in ops:
        now += timedelta(minutes=10)
        kind = op[0]
        if kind == "purchase":
            at = now - timedelta(days=pending_days + 1) if op[2] else now
            payload = f.purchase_payload(prog, who, amount_minor=op[1], occurred_at=at)
            f.ingest_one(db, payload, now=now)
            sales.append(payload["id"])
        elif kind == "redeem":
            reward = catalogue[op[1]]
            refused = attempt(
                lambda session, reward=reward, at=now: made.append(
                    redemptions.redeem(
                        session, member_id=who.id, key=f.unique("k"), reward_id=reward.id, now=at
                    ).result.model_dump(mode="json")
                )
            )
            after = check_invariants(db, prog, who)
            if refused is None:
                done["redeemed"] += 1
                assert after.available == before.available - reward.points_cost
            else:
                assert refused in ("insufficient_points", "out_of_stock", "member_limit_reached")
                assert (after.postings, after.available) == (before.postings, before.available)
        elif kind == "cancel" and made:
            body = made[op[1] % len(made)]
            refunded_before, expired_before = moved_by(body["id"])
            refused = attempt(
                lambda session, body=body, at=now: redemptions.cancel(
                    session, redemption_id=UUID(body["id"]), actor="test", now=at
                )
            )
            assert refused in (None, "redemption_not_cancellable")
            done["cancelled" if refused is None else "not cancelled"] += 1
            refunded, expired = moved_by(body["id"])
            after = check_invariants(db, prog, who)
            delta = (refunded - refunded_before) - (expired - expired_before)
            assert after.available == before.available + delta
            assert refunded in (0, body["points"])
        elif kind == "use" and made:
            body = made[op[1] % len(made)]
            orders += 1
            basket = Cart("EUR", (CartLine("x", 1, 10_000),))
            refused = attempt(
                lambda session, body=body, basket=basket, at=now, order=f"o-{orders}": (
                    coupons.redeem(
                        session,
                        code=body["coupon"]["code"],
                        order_id=order,
                        programme=prog,
                        cart=basket,
                        actor="test",
                        now=at,
                    )
                )
            )
            assert refused in (None, "coupon_not_applicable", "coupon_already_used")
            done["used" if refused is None else "not used"] += 1
            after = check_invariants(db, prog, who)
            assert after.postings == before.postings
        elif kind == "coupons_expire":
            now += timedelta(days=op[1])
            moved = {b["id"]: moved_by(b["id"]) for b in made}
            done["coupons expired"] += expire_coupons(db, now=now)
            after = check_invariants(db, prog, who)
            delta = 0
            for key, (refunded_before, expired_before) in moved.items():
                refunded, expired = moved_by(key)
                delta += (refunded - refunded_before) - (expired - expired_before)
            assert after.available == before.available + delta
            with db.unit_of_work(write=False) as session:
                assert not session.scalar(
                    select(func.count()).where(
                        Coupon.member_id == who.id,
                        Coupon.status == "active",
                        Coupon.expires_at <= now,
                    )
                )
        elif kind == "pay":
            orders += 1
            refused = attempt(
                lambda session, at=now, order=f"o-{orders}", op=op: paid.append(
                    payments.pay(
                        session,
                        member_id=who.id,
                        key=f.unique("pay"),
                        order_id=order,
                        amount_minor=op[1],
                        currency="EUR",
                        partial=op[2],
                        actor="test",
                        now=at,
                    ).result.model_dump(mode="json")
                )
            )
            after = check_invariants(db, prog, who)
            if refused is None:
                done["paid"] += 1
                used = paid[-1]["points_used"]
                assert after.available == before.available - used
                assert paid[-1]["amount_covered_minor"] <= op[1]
            else:
                assert refused == "insufficient_points"  # partial too, with nothing to pay
                assert (after.postings, after.available) == (before.postings, before.available)
        elif kind == "pay_refund" and paid:
            payment = paid[op[1] % len(paid)]
            answers: list[dict[str, Any]] = []
            refused = attempt(
                lambda session, payment=payment, at=now, answers=answers: answers.append(
                    payments.refund(
                        session,
                        payment_id=UUID(payment["id"]),
                        key=f.unique("refund"),
                        actor="test",
                        now=at,
                    ).result.model_dump(mode="json")
                )
            )
            after = check_invariants(db, prog, who)
            if refused is None:
                done["payment refunded"] += 1
                back = answers[0]["points"] - answers[0]["points_expired"]
                assert after.available == before.available + back
                assert answers[0]["payment"]["refunded_points"] <= payment["points_used"]
            else:
                done["payment not refunded"] += 1
                assert (after.postings, after.available) == (before.postings, before.available)
        elif kind == "return" and sales:
            sale = sales.pop(op[1] % len(sales))
            f.ingest_one(
                db,
                f.return_payload(prog, sale, [{"sku": "sku-1", "quantity": 1}], occurred_at=now),
                now=now,
            )
        elif kind == "activate":
            now += timedelta(days=op[1])
            run_jobs(db, ledger.activate_due, now)
        elif kind == "expire":
            now += timedelta(days=op[1])
            run_jobs(db, ledger.expire_due, now)
        after = check_invariants(db, prog, who)
        check_stock()
        before = after
    return done


@PROPERTY_SETTINGS
@given(
    ops=reward_operations,
    pending_days=st.sampled_from([0, 14]),
    months=st.sampled_from([None, 1]),
)
def test_ledger_and_stock_invariants_hold_with_rewards(
    fresh_db: Database, ops: list[tuple[Any, ...]], pending_days: int, months: int | None
) -> None:
    run_rewards(fresh_db, ops, pending_days, months)


def test_a_known_rewards_sequence(fresh_db: Database) -> None:
    """Every kind of step succeeds at least once: redeem, use, cancel (with and without
    a refund), a refund into a lot that expired meanwhile, coupon expiry with and without
    a refund, a return that leaves a negative balance."""
    ops: list[tuple[Any, ...]] = [
        ("redeem", 0),  # 30 points, stock 3, coupon 20 days, refunds on cancel and expiry
        ("redeem", 1),  # 20, unlimited, coupon 5 days, never refunds
        ("redeem", 2),  # 15, limit 1, coupon 2 days, refunds on cancel
        ("redeem", 2),  # refused: the limit
        ("use", 0),
        ("cancel", 0),  # refused: used
        ("cancel", 1),  # cancelled, no refund
        ("cancel", 2),  # cancelled, refund
        ("redeem", 0),
        ("redeem", 0),  # the last unit
        ("expire", 17),  # the first lot (earned 15 days before, 1 month) expires
        ("cancel", 4),  # its refund goes back to the expired lot and expires at once
        ("purchase", 2000, True),
        ("redeem", 1),
        ("coupons_expire", 6),  # a 30 (refund, expires at once) and the 20 (none)
        ("purchase", 5000, True),
        ("redeem", 0),
        ("return", 1),
        ("activate", 15),
        ("coupons_expire", 25),
        ("purchase", 9000, True),
        ("pay", 40, False),  # 40 points pay €0.40
        ("pay", 100_000, True),  # the rest of the balance pays part of a large order
        ("pay_refund", 0),  # the 40 points come back
        ("pay_refund", 0),  # refused: nothing left to refund
        ("pay", 10, False),  # paid from the refunded points
    ]
    done = run_rewards(fresh_db, ops, 14, 1)
    assert done["paid"] == 3
    assert done["payment refunded"] == 1
    assert done["payment not refunded"] == 1
    assert done["redeemed"] >= 7
    assert done["used"] == 1
    assert done["cancelled"] >= 3
    assert done["not cancelled"] >= 1
    assert done["coupons expired"] >= 3
