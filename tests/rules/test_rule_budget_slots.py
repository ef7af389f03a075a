"""Rule budgets kept in slots (``treu.rules.budgets``): far from the end a purchase adds
to its member's slot alone, the allowances always add up to the budget, and a changed
budget is shared out anew before anything more is given."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from treu.db import fastpath
from treu.db.session import Database
from treu.events.schemas import event_adapter
from treu.events.service import events_service
from treu.ledger.models import Posting
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rules import budgets
from treu.rules.awards import Headroom
from treu.rules.models import Rule, RuleBudgetSlot
from treu.rules.service import Usage, rules
from treu.rules.spec import RuleSpec

T0 = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)
AT = T0 + timedelta(minutes=1)


def _bonus(db: Database, prog: Programme, budget: int, points: int = 40) -> Rule:
    return f.rule(
        db,
        prog,
        name="Launch bonus",
        trigger="app_installed",
        effect={"type": "fixed", "points": points},
        budget_points=budget,
    )


def _install(prog: Programme, who: Member) -> dict[str, Any]:
    return f.install_payload(prog, who, T0)


def _slots(db: Database, rule_id: uuid.UUID) -> dict[int, tuple[int, int, int | None]]:
    with db.unit_of_work(write=False) as session:
        return {
            slot: (used, allowance, cap)
            for slot, used, allowance, cap in session.execute(
                select(
                    RuleBudgetSlot.slot,
                    RuleBudgetSlot.used,
                    RuleBudgetSlot.allowance,
                    RuleBudgetSlot.cap,
                ).where(RuleBudgetSlot.rule_id == rule_id)
            )
        }


def _earned(db: Database, prog: Programme, who: Member) -> int:
    body = f.ingest_one(db, _install(prog, who), now=AT).body
    assert body is not None
    return body.points.earned


def test_rebalanced_adds_to_slot_0_and_shares_out_what_is_left() -> None:
    rule = str(uuid.uuid4())
    slots = [(0, 10, 99, 1000), (1, 5, 99, 1000), (2, 0, 0, None)]
    rows = budgets.rebalanced(rule, slots, given=20, cap=100)
    assert [(r["slot"], r["used"], r["allowance"], r["cap"]) for r in rows] == [
        # 100 - 35 = 65 left: 22, 22 and 21
        (0, 30, 52, 100),
        (1, 5, 27, 100),
        (2, 0, 21, 100),
    ]
    assert sum(r["allowance"] for r in rows) == 100
    # Spent (or over, after the budget was lowered): no slot may grow.
    over = budgets.rebalanced(rule, slots, given=200, cap=100)
    assert [r["allowance"] - r["used"] for r in over] == [0, 0, 0]
    # No budget (an offer without one): counted, no allowance.
    assert [r["allowance"] for r in budgets.rebalanced(rule, slots, given=1, cap=None)] == [
        0,
        0,
        0,
    ]


def test_far_from_the_end_an_optimistic_unit_adds_to_its_member_s_slot(db: Database) -> None:
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=100_000)
    first, second = f.member(db, prog), f.member(db, prog)
    # The first purchase finds no slots: it is processed again with them locked, and
    # shares the budget out.
    assert _earned(db, prog, first) == 40
    slots = _slots(db, rule.id)
    assert len(slots) == budgets.SLOTS
    assert sum(allowance for _used, allowance, _cap in slots.values()) == 100_000
    assert {cap for _used, _allowance, cap in slots.values()} == {100_000}
    # The second is added to its own slot, guarded, with nothing locked beforehand.
    with db.unit_of_work() as session:
        [done] = events_service.ingest(
            session,
            [event_adapter.validate_python(_install(prog, second))],
            now=AT,
            optimistic_budgets=True,
        )
        assert done.body is not None
        assert done.body.points.earned == 40
    after = _slots(db, rule.id)
    mine = second.id.int % budgets.SLOTS
    assert after[mine][0] == slots[mine][0] + 40
    assert {k: v for k, v in after.items() if k != mine} == {
        k: v for k, v in slots.items() if k != mine
    }
    with db.unit_of_work(write=False) as session:
        assert session.get_one(Rule, rule.id).budget_used == 80


def test_a_lowered_budget_is_shared_out_anew_and_stops_exactly(db: Database) -> None:
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=100_000)
    people = [f.member(db, prog) for _ in range(6)]
    assert [_earned(db, prog, who) for who in people[:2]] == [40, 40]
    with db.unit_of_work() as session:
        stored = session.get_one(Rule, rule.id)
        spec = RuleSpec.model_validate(stored.draft).model_copy(update={"budget_points": 150})
        rules.update(session, stored, spec=spec, actor="test")
        rules.publish(session, stored, actor="test")
    # The slots' allowances were for 100,000: no purchase may use them any more.
    assert [_earned(db, prog, who) for who in people[2:]] == [40, 30, 0, 0]
    slots = _slots(db, rule.id)
    assert sum(used for used, _allowance, _cap in slots.values()) == 150
    assert {cap for _used, _allowance, cap in slots.values()} == {150}


def test_concurrent_purchases_spread_over_the_slots_and_add_up(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=1_000_000, points=30)
    people = [f.member(db, prog) for _ in range(24)]
    assert _earned(db, prog, people[0]) == 30  # the slots shared out

    def buy(i: int) -> int:
        return _earned(db, prog, people[1 + i])

    earned = in_parallel(23, buy)
    assert earned == [30] * 23, earned
    slots = _slots(db, rule.id)
    with db.unit_of_work(write=False) as session:
        given = session.scalar(select(func.sum(Posting.points)).where(Posting.rule_id == rule.id))
    assert sum(used for used, _allowance, _cap in slots.values()) == given == 24 * 30
    assert sum(1 for used, _allowance, _cap in slots.values() if used) > 1
    assert sum(allowance for _used, allowance, _cap in slots.values()) == 1_000_000


@pytest.mark.parametrize("budget", [100, 1_000_000])
def test_a_campaign_budget_read_by_the_api_is_the_slots_sum(db: Database, budget: int) -> None:
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=budget)
    for _ in range(3):
        _earned(db, prog, f.member(db, prog))
    with db.unit_of_work(write=False) as session:
        used = session.get_one(Rule, rule.id).budget_used
    assert used == min(120, budget)


def _in_slot(db: Database, prog: Programme, slot: int) -> Member:
    while True:
        who = f.member(db, prog)
        if budgets.slot_of(who.id) == slot:
            return who


def test_a_batch_adds_each_member_s_points_to_the_member_s_slot(db: Database) -> None:
    """Far from the end a batch of ten members is not sent through the locked path for
    want of room in one slot (ten purchases' points would not fit one slot's share)."""
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=4_000)
    assert _earned(db, prog, f.member(db, prog)) == 40  # shared out: ~247 a slot
    people = [f.member(db, prog) for _ in range(10)]
    before = _slots(db, rule.id)
    with db.unit_of_work() as session:
        done = events_service.ingest(
            session,
            [event_adapter.validate_python(_install(prog, who)) for who in people],
            now=AT,
            optimistic_budgets=True,
        )
    assert [o.body.points.earned if o.body else None for o in done] == [40] * 10
    after = _slots(db, rule.id)
    expected = dict.fromkeys(range(budgets.SLOTS), 0)
    for who in people:
        expected[budgets.slot_of(who.id)] += 40
    assert {k: after[k][0] - before[k][0] for k in after} == expected


def test_budget_used_is_an_integer(db: Database) -> None:
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=1_000)
    _earned(db, prog, f.member(db, prog))
    with db.unit_of_work(write=False) as session:
        used = session.get_one(Rule, rule.id).budget_used
    assert type(used) is int
    assert used == 40


@pytest.mark.parametrize("budget", [1_000_000, 100])  # additions; locked (no room)
def test_two_units_with_events_of_two_programmes_in_opposite_orders_do_not_deadlock(
    db: Database, backend: str, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Both take the budgets' rows in rule and slot order, whatever the order of their
    events: each unit pauses after its first addition (or locking) until the other has
    made its own, which deadlocked when each went in the order of its events."""
    postgres_only(backend)
    pa, pb = f.programme(db), f.programme(db)
    for prog in (pa, pb):
        _bonus(db, prog, budget=budget, points=10)
        _earned(db, prog, f.member(db, prog))  # the slots shared out
    a1, a2 = _in_slot(db, pa, 3), _in_slot(db, pa, 3)
    b1, b2 = _in_slot(db, pb, 5), _in_slot(db, pb, 5)
    barriers = {name: threading.Barrier(2, timeout=2) for name in ("add", "lock")}

    def pausing(name: str, original: Any) -> Any:
        seen = threading.local()

        def wrapper(*args: Any) -> Any:
            out = original(*args)
            if not getattr(seen, "paused", False):
                seen.paused = True
                with contextlib.suppress(threading.BrokenBarrierError):
                    barriers[name].wait()  # the other unit has its first row too, or waits
            return out

        return wrapper

    monkeypatch.setattr(fastpath, "_add_pg", pausing("add", fastpath._add_pg))
    monkeypatch.setattr(budgets, "lock", pausing("lock", budgets.lock))
    orders = [[(pa, a1), (pb, b1)], [(pb, b2), (pa, a2)]]

    def buy(i: int) -> list[int]:
        outcomes = f.ingest(db, *(_install(prog, who) for prog, who in orders[i]), now=AT)
        return [o.status for o in outcomes]

    assert in_parallel(2, buy) == [[201, 201], [201, 201]]


def test_a_unit_holding_a_budget_it_read_before_it_was_lowered_gives_at_most_the_new_one(
    db: Database,
) -> None:
    """Another process may have cached the rule for a few seconds: locked, it gives no
    more than the budget as published now (and shares the slots out for that)."""
    prog = f.programme(db)
    rule = _bonus(db, prog, budget=100_000)
    who = f.member(db, prog)
    assert _earned(db, prog, who) == 40
    with db.unit_of_work(write=False) as session:
        stale = RuleSpec.model_validate(session.get_one(Rule, rule.id).draft)
    with db.unit_of_work() as session:
        stored = session.get_one(Rule, rule.id)
        rules.update(
            session, stored, spec=stale.model_copy(update={"budget_points": 150}), actor="t"
        )
        rules.publish(session, stored, actor="test")
    rid = str(rule.id)
    with db.unit_of_work() as session:
        usage = Usage(session, {rid: stale})  # as the other process still has it
        usage.load([(who.id, T0.date())])
        assert usage.specs[rid].budget_points == 150
        assert usage.view(who.id, T0.date()).headroom(rid) == Headroom(None, 110, None, "budget")
