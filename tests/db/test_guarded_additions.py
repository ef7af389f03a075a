"""``WriteBatch.add_within``: a counter many units of work add to and none may take past
its cap (a rule's budget), sent after the batch's other writes and, on PostgreSQL, in
the batch's one statement when the batch is small."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select

from tests import factories as f
from treu.db.base import WriteBatch, table_of
from treu.db.fastpath import COMBINE_MAX_ROWS
from treu.db.session import Database
from treu.members.models import Member
from treu.rules.models import Rule

RULES = table_of(Rule)
MEMBERS = table_of(Member)


def _budgeted(db: Database, used: int) -> Rule:
    prog = f.programme(db)
    rule = f.rule(
        db,
        prog,
        name="Bonus",
        trigger="app_installed",
        effect={"type": "fixed", "points": 10},
        budget_points=100,
    )
    with db.unit_of_work() as session:
        session.get_one(Rule, rule.id).budget_used = used
    with db.unit_of_work(write=False) as session:
        return session.get_one(Rule, rule.id)


def _flush(db: Database, batch: WriteBatch) -> tuple[list[int | None], list[str]]:
    statements: list[str] = []

    def listener(*args: Any) -> None:
        statements.append(args[2])

    with db.unit_of_work() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", listener)
        added = batch.flush(connection)
    return added, statements


def _stored(db: Database, *rules: Rule) -> list[tuple[int, Any]]:
    with db.unit_of_work(write=False) as session:
        found = {
            rid: (used, at)
            for rid, used, at in session.execute(
                select(Rule.id, Rule.budget_used, Rule.updated_at).where(
                    Rule.id.in_([r.id for r in rules])
                )
            )
        }
    return [found[r.id] for r in rules]


@pytest.mark.parametrize("others", [0, 1, COMBINE_MAX_ROWS + 1])
def test_additions_within_the_cap_add_and_one_past_it_changes_nothing(
    db: Database, others: int
) -> None:
    """With no other write, with a few (one statement on PostgreSQL) and with more than
    one statement takes: the new values come back in the order added, None where the
    cap would have been passed, and ``updated_at`` stays (it says when the rule was
    edited)."""
    fits, full = _budgeted(db, used=60), _budgeted(db, used=95)
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(others)]
    batch = WriteBatch()
    batch.update(MEMBERS, [{"id": p.id, "first_name": f"Name {n}"} for n, p in enumerate(people)])
    first = batch.add_within(RULES, key={"id": fits.id}, column="budget_used", amount=30, cap=100)
    second = batch.add_within(RULES, key={"id": full.id}, column="budget_used", amount=10, cap=100)
    added, statements = _flush(db, batch)
    assert (first, second) == (0, 1)
    assert added == [90, None]
    assert _stored(db, fits, full) == [(90, fits.updated_at), (95, full.updated_at)]
    with db.unit_of_work(write=False) as session:
        names = [session.get_one(Member, p.id).first_name for p in people]
    assert names == [f"Name {n}" for n in range(others)]
    if db.dialect == "postgresql" and 0 < others <= COMBINE_MAX_ROWS:
        assert len(statements) == 1
        assert "UNION ALL" in statements[0]


def test_one_addition_with_other_writes_is_the_statement_s_result(db: Database) -> None:
    rule = _budgeted(db, used=0)
    prog = f.programme(db)
    who = f.member(db, prog)
    batch = WriteBatch()
    batch.update(MEMBERS, [{"id": who.id, "first_name": "Ada"}])
    batch.add_within(RULES, key={"id": rule.id}, column="budget_used", amount=100, cap=100)
    added, statements = _flush(db, batch)
    assert added == [100]
    assert _stored(db, rule) == [(100, rule.updated_at)]
    if db.dialect == "postgresql":
        assert len(statements) == 1
        assert statements[0].startswith('WITH w0 AS (UPDATE "members"')


def test_two_additions_to_one_row_go_one_after_the_other(db: Database) -> None:
    """One statement would apply only one of them (its parts share a snapshot)."""
    rule = _budgeted(db, used=0)
    prog = f.programme(db)
    who = f.member(db, prog)
    batch = WriteBatch()
    batch.update(MEMBERS, [{"id": who.id, "first_name": "Ada"}])
    batch.add_within(RULES, key={"id": rule.id}, column="budget_used", amount=50, cap=100)
    batch.add_within(RULES, key={"id": rule.id}, column="budget_used", amount=40, cap=100)
    batch.add_within(RULES, key={"id": rule.id}, column="budget_used", amount=20, cap=100)
    added, _ = _flush(db, batch)
    assert added == [50, 90, None]
    assert _stored(db, rule) == [(90, rule.updated_at)]
