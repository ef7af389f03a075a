"""``WriteBatch.add_within``: a counter many units of work add to and none may take past
its limit (a slot of a rule's budget), sent after the batch's other writes and, on
PostgreSQL, in the batch's one statement when it is the batch's only addition."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event, select

from tests import factories as f
from treu.db.base import WriteBatch, table_of
from treu.db.fastpath import COMBINE_MAX_ROWS
from treu.db.session import Database
from treu.members.models import Member
from treu.rules.models import Rule, RuleBudgetSlot

SLOTS = table_of(RuleBudgetSlot)
MEMBERS = table_of(Member)


def _counter(db: Database, *, used: int, allowance: int) -> uuid.UUID:
    """A rule with one budget slot (slot 3) holding ``used`` of ``allowance``."""
    prog = f.programme(db)
    rule = f.rule(
        db,
        prog,
        name="Bonus",
        trigger="app_installed",
        effect={"type": "fixed", "points": 10},
        budget_points=1000,
    )
    with db.unit_of_work() as session:
        session.add(RuleBudgetSlot(rule_id=rule.id, slot=3, used=used, allowance=allowance))
    return rule.id


def _add(batch: WriteBatch, rule_id: uuid.UUID, amount: int) -> int:
    return batch.add_within(
        SLOTS,
        where={"rule_id": rule_id, "slot": 3},
        column="used",
        amount=amount,
        limit="allowance",
    )


def _flush(db: Database, batch: WriteBatch) -> tuple[list[int | None], list[str]]:
    statements: list[str] = []

    def listener(*args: Any) -> None:
        statements.append(args[2])

    with db.unit_of_work() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", listener)
        added = batch.flush(connection)
    return added, statements


def _used(db: Database, *rules: uuid.UUID) -> list[int]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(select(Rule.id, Rule.budget_used).where(Rule.id.in_(rules)))
        found = dict(rows.all())  # dict(rows) would take the result for a mapping
    return [found[r] for r in rules]


@pytest.mark.parametrize("others", [0, 1, COMBINE_MAX_ROWS + 1])
def test_additions_within_the_limit_add_and_one_past_it_changes_nothing(
    db: Database, others: int
) -> None:
    """With no other write, with a few and with more than one statement takes: the new
    values come back in the order added, None where the limit would have been passed."""
    fits = _counter(db, used=60, allowance=100)
    full = _counter(db, used=95, allowance=100)
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(others)]
    batch = WriteBatch()
    batch.update(MEMBERS, [{"id": p.id, "first_name": f"Name {n}"} for n, p in enumerate(people)])
    assert (_add(batch, fits, 30), _add(batch, full, 10)) == (0, 1)
    added, _ = _flush(db, batch)
    assert added == [90, None]
    assert _used(db, fits, full) == [90, 95]
    with db.unit_of_work(write=False) as session:
        names = [session.get_one(Member, p.id).first_name for p in people]
    assert names == [f"Name {n}" for n in range(others)]


def test_a_batch_s_only_addition_is_its_one_statement_s_result(db: Database) -> None:
    rule = _counter(db, used=0, allowance=100)
    prog = f.programme(db)
    who = f.member(db, prog)
    for amount, expected in ((100, [100]), (1, [None])):
        batch = WriteBatch()
        batch.update(MEMBERS, [{"id": who.id, "first_name": "Ada"}])
        _add(batch, rule, amount)
        added, statements = _flush(db, batch)
        assert added == expected
        if db.dialect == "postgresql":
            assert len(statements) == 1
            assert statements[0].startswith('WITH w0 AS (UPDATE "members"')
    assert _used(db, rule) == [100]


def test_two_additions_to_one_row_go_one_after_the_other(db: Database) -> None:
    """One statement would apply only one of them (its parts share a snapshot)."""
    rule = _counter(db, used=0, allowance=100)
    prog = f.programme(db)
    who = f.member(db, prog)
    batch = WriteBatch()
    batch.update(MEMBERS, [{"id": who.id, "first_name": "Ada"}])
    _add(batch, rule, 50)
    _add(batch, rule, 40)
    _add(batch, rule, 20)
    added, _ = _flush(db, batch)
    assert added == [50, 90, None]
    assert _used(db, rule) == [90]


def test_a_condition_on_none_is_refused() -> None:
    with pytest.raises(ValueError, match="None"):
        WriteBatch().add_within(
            SLOTS, where={"rule_id": None}, column="used", amount=1, limit="allowance"
        )
