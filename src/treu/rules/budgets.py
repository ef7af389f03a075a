"""Rule budgets as several counters: ``SLOTS`` rows per rule (``rule_budget_slots``).

A campaign's budget is what every purchase of the campaign adds to. Kept in one row,
that row is locked from the purchase's write to its commit, so the campaign's purchases
took turns there: on PostgreSQL, with 12 purchases at a time, about five of them were
waiting for that row at any moment (``pg_stat_activity``), and a campaign's purchases
ran at 0.7 to 0.9 of a plain programme's rate, lower the longer the run.

So a budget is split. Each slot has ``used`` (points given through it) and an
``allowance``: how far ``used`` may grow without looking at the other slots. The
allowances add up to the budget, so the slots together never give more than the budget,
however many purchases add to them at once:

* A purchase far from the budget's end adds what it gave to *one* slot (its member's,
  ``slot_of``; a batch adds each member's points to that member's slot), guarded:
  ``UPDATE … SET used = used + :given WHERE … AND used + :given <= allowance AND cap =
  :budget`` (``add``, sent with the purchase's other writes). Purchases of different
  slots do not wait for each other.
* When that slot has no room left, or its allowances were computed for another budget
  (``cap``: the budget was changed), the guard fails, the purchase raises ``BudgetRace``
  and is processed again with *every* slot of the rule locked (``lock``): it sees the
  exact total, gives at most what is left, and writes the slots back with the allowances
  shared out anew (``rebalanced``): each slot gets an equal share of what is left.
* Near the end, the shares are smaller than a purchase's points, so purchases go through
  the locked path one at a time, and the budget stops exactly when spent.

The total (``Rule.budget_used``) is the slots' sum. A rule without a budget (a targeted
offer's without one) counts what it gave in slot 0, with no allowance.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from treu.db.base import Query, WriteBatch, table_of
from treu.rules.models import Rule, RuleBudgetSlot, RuleVersion

SLOTS = 16
"""Slots per rule: purchases at once that rarely meet on one row."""

TABLE = table_of(RuleBudgetSlot)

Slot = tuple[int, int, int, int | None]
"""(slot, used, allowance, cap) of one row."""

_TOTALS = Query(
    lambda among: (
        select(
            RuleBudgetSlot.rule_id,
            # bigint, not numeric: psycopg would make a Decimal of the sum
            cast(func.sum(RuleBudgetSlot.used), BigInteger),
        )
        .where(among(RuleBudgetSlot.rule_id, "rules"))
        .group_by(RuleBudgetSlot.rule_id)
    )
)
_LOCKED = Query(
    lambda among: (
        select(
            RuleBudgetSlot.rule_id,
            RuleBudgetSlot.slot,
            RuleBudgetSlot.used,
            RuleBudgetSlot.allowance,
            RuleBudgetSlot.cap,
        )
        .where(among(RuleBudgetSlot.rule_id, "rules"))
        .order_by(RuleBudgetSlot.rule_id, RuleBudgetSlot.slot)
        .with_for_update()
    )
)


def totals(connection: Connection, rule_ids: Iterable[str]) -> dict[str, int]:
    """What each rule has given, read without a lock (0 for a rule that gave nothing)."""
    ids = sorted(set(rule_ids))
    found = dict.fromkeys(ids, 0)
    if ids:
        for rule_id, used in _TOTALS.rows(connection, rules=[uuid.UUID(r) for r in ids]):
            found[str(rule_id)] = int(used or 0)
    return found


def lock(connection: Connection, rule_ids: Iterable[str]) -> dict[str, list[Slot]]:
    """Every slot of each rule, locked until the commit (in rule and slot order; rows
    that are not there yet are made first), for the exact total and a rebalance. A unit
    of work locks all the budgets it needs in one call: two units taking the same rows in
    the same order never wait for each other (optimistic units add in that order too)."""
    ids = sorted(set(rule_ids))
    if not ids:
        return {}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(TABLE).on_conflict_do_nothing(),
        [
            {"rule_id": uuid.UUID(rid), "slot": slot, "used": 0, "allowance": 0, "cap": None}
            for rid in ids
            for slot in range(SLOTS)
        ],
    )
    found: dict[str, list[Slot]] = {rid: [] for rid in ids}
    for rule_id, slot, used, allowance, cap in _LOCKED.rows(
        connection, rules=[uuid.UUID(r) for r in ids]
    ):
        found[str(rule_id)].append((slot, int(used), int(allowance), cap))
    return found


def used_of(slots: list[Slot]) -> int:
    """What a rule has given: its locked slots' sum (``lock``)."""
    return sum(used for _slot, used, _allowance, _cap in slots)


def published_caps(connection: Connection, rule_ids: Iterable[str]) -> dict[str, int | None]:
    """Each rule's budget as published now (None: none). A process's rules are cached
    for a few seconds: a unit that locked the slots gives at most the smaller of this and
    its own figure, so that a budget lowered elsewhere is not shared out again at the old
    one by a process that has not heard of it yet."""
    ids = [uuid.UUID(r) for r in sorted(set(rule_ids))]
    if not ids:
        return {}
    rows = connection.execute(
        select(RuleVersion.rule_id, RuleVersion.spec)
        .join(Rule, (Rule.id == RuleVersion.rule_id) & (Rule.version == RuleVersion.version))
        .where(Rule.id.in_(ids))
    )
    return {str(rule_id): spec.get("budget_points") for rule_id, spec in rows}


def rebalanced(
    rule_id: str, slots: list[Slot], *, given: int, cap: int | None
) -> list[dict[str, Any]]:
    """The rows of a rule's locked slots (``lock``) once ``given`` more points are added
    (to slot 0), with what is left of ``cap`` shared out as the slots' allowances
    (none without a budget)."""
    used = {slot: slot_used for slot, slot_used, _allowance, _cap in slots}
    used[0] = used.get(0, 0) + given
    share, extra = divmod(max((cap or 0) - sum(used.values()), 0), len(used))
    return [
        {
            "rule_id": uuid.UUID(rule_id),
            "slot": slot,
            "used": used[slot],
            "allowance": used[slot] + share + (1 if i < extra else 0) if cap is not None else 0,
            "cap": cap,
        }
        for i, slot in enumerate(sorted(used))
    ]


def slot_of(member_id: uuid.UUID) -> int:
    """The member's slot: a member's purchases add to one slot, members spread over all."""
    return member_id.int % SLOTS


def add(batch: WriteBatch, rule_id: str, *, slot: int, given: int, cap: int) -> int:
    """Add ``given`` to one slot with the unit's other writes, within its allowance and
    only while its allowances are those of ``cap`` (the budget as this process knows
    it); the index of the addition in what ``batch.flush`` returns (None: refused)."""
    return batch.add_within(
        TABLE,
        where={"rule_id": uuid.UUID(rule_id), "slot": slot, "cap": cap},
        column="used",
        amount=given,
        limit="allowance",
    )


def write(batch: WriteBatch, rows: list[dict[str, Any]]) -> None:
    """The rows of ``rebalanced``, over the locked ones."""
    batch.update(TABLE, rows, key=("rule_id", "slot"))
