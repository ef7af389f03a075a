"""What campaigns need of the rules engine, on its own (no database): the ``bucket``
function (stable, typed, missing ids compare false), member lists, and fixed points per
matching line (with exclusion, caps and returns)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from treu.kit.money import Rounding
from treu.rules.engine import (
    CompiledRuleInput,
    EventView,
    LineView,
    MemberView,
    RuleSet,
    compile_rule_set,
)
from treu.rules.expr import ExpressionError, bucket_of, compile_condition
from treu.rules.spec import LINE_SCOPE, ORDER_SCOPE, RuleSpec

TZ = "Europe/Berlin"
AT = datetime(2026, 12, 5, 10, 15, tzinfo=UTC)
BASE: dict[str, Any] = {"type": "points_per_unit", "rate": "1"}


def compiled(*specs: tuple[str, dict[str, Any]]) -> RuleSet:
    inputs = [
        CompiledRuleInput(
            rule_id, 1, RuleSpec.model_validate({"name": rule_id, "trigger": "purchase"} | fields)
        )
        for rule_id, fields in specs
    ]
    return compile_rule_set(inputs, currency="EUR", rounding=Rounding.floor, timezone=TZ)


def cart(*lines: LineView) -> EventView:
    return EventView.purchase(occurred_at=AT, timezone=TZ, currency="EUR", lines=lines)


def someone(member_id: uuid.UUID | None = None) -> MemberView:
    return MemberView.of(at=AT, timezone=TZ, id=member_id or uuid.uuid4())


# --------------------------------------------------------------------------- bucket


def test_bucket_is_pinned_across_processes_and_releases() -> None:
    """The arms of running campaigns depend on these numbers: they may never change."""
    assert bucket_of("0190a4c2-0000-7000-8000-000000000001", "campaign:x") == 35
    assert bucket_of("0190a4c2-0000-7000-8000-000000000002", "campaign:x") == 4
    assert bucket_of("0190a4c2-0000-7000-8000-000000000001", "campaign:y") == 79


def test_bucket_spreads_evenly() -> None:
    rng = random.Random(18)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(5_000)]
    counts = [0] * 10
    for value in ids:
        counts[bucket_of(value, "campaign:spread") // 10] += 1
    assert all(400 <= c <= 600 for c in counts), counts  # 500 each, within 4.5 sd


def test_bucket_in_a_condition() -> None:
    condition = compile_condition("bucket(member.id, 'campaign:x') >= 10", ORDER_SCOPE)
    event = cart(LineView.of("a", unit_price_minor=100))
    member_id = uuid.UUID("0190a4c2-0000-7000-8000-000000000001")  # bucket 35
    assert condition(event=event, member=someone(member_id)) is True
    low = compile_condition("bucket(member.id, 'campaign:x') < 10", ORDER_SCOPE)
    assert low(event=event, member=someone(member_id)) is False
    # No member id (an anonymous cart): every comparison is false.
    assert condition(event=event, member=MemberView.anonymous()) is False
    assert low(event=event, member=MemberView.anonymous()) is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("bucket(member.id) >= 1", "bucket() takes 2 arguments, got 1"),
        ("bucket(member.days_enrolled, 'x') >= 1", "bucket() needs a string"),
        ("bucket(member.id, 1) >= 1", "bucket() needs a string"),
        ("bucket(member.id, 'x')", "condition must be bool"),
    ],
)
def test_bucket_is_type_checked(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_condition(source, LINE_SCOPE)


# --------------------------------------------------------------------------- member lists


def test_a_member_list_limits_a_rule_to_its_members() -> None:
    listed, other = uuid.uuid4(), uuid.uuid4()
    ruleset = compiled(
        ("base", {"effect": BASE}),
        (
            "listed",
            {
                "effect": {"type": "fixed", "points": 7},
                "members": [str(listed), str(listed)],
                "condition": "event.total_minor > 0",
            },
        ),
    )
    event = cart(LineView.of("a", unit_price_minor=500))
    assert ruleset.evaluate(event, someone(listed)).points == 5 + 7
    assert ruleset.evaluate(event, someone(other)).points == 5
    assert ruleset.evaluate(event, MemberView.anonymous()).points == 5
    spec = RuleSpec.model_validate(
        {"name": "x", "trigger": "purchase", "effect": BASE, "members": [str(listed)] * 2}
    )
    assert spec.members == [listed]  # one list, one spelling
    with pytest.raises(ValidationError, match="at most 10000 items"):
        RuleSpec.model_validate(
            {
                "name": "x",
                "trigger": "purchase",
                "effect": BASE,
                "members": [str(uuid.uuid4()) for _ in range(10_001)],
            }
        )


# --------------------------------------------------------------------------- fixed per line

NEAR = LineView.of("joghurt", unit_price_minor=79, quantity=3, tags=["near_best_before"])
BREAD = LineView.of("brot", unit_price_minor=250, tags=["near_best_before"])
COFFEE = LineView.of("kaffee", unit_price_minor=899)
PER_LINE = {
    "effect": {"type": "fixed", "points": 50, "scope": "lines"},
    "line_condition": "'near_best_before' in line.tags",
}


def test_fixed_points_on_each_matching_line() -> None:
    ruleset = compiled(("base", {"effect": BASE}), ("rescue", PER_LINE))
    result = ruleset.evaluate(cart(NEAR, BREAD, COFFEE), someone())
    award = result.award_for("rescue")
    assert award is not None
    assert (award.points, award.line_points) == (100, {0: 50, 1: 50})
    assert award.explanation() == "rescue: +100"
    assert result.points == 13 + 100
    assert result.line_points[0] >= 50
    assert result.line_points[2] < 50
    nothing = ruleset.evaluate(cart(COFFEE), someone())
    skip = nothing.skip_for("rescue")
    assert skip is not None
    assert skip.reason == "no_matching_lines"


def test_fixed_points_per_line_are_capped_and_recomputed_for_returns() -> None:
    ruleset = compiled(("base", {"effect": BASE}), ("rescue", PER_LINE | {"budget_points": 70}))
    event = cart(NEAR, BREAD, COFFEE)

    class Budget:
        def headroom(self, rule_id: str) -> tuple[int | None, int | None]:
            return (None, 70)

    capped = ruleset.evaluate(event, someone(), Budget())
    award = capped.award_for("rescue")
    assert award is not None
    assert (award.points, sum(award.line_points.values()), award.limited_by) == (70, 70, "budget")

    member = someone()
    whole = ruleset.evaluate(event, member)
    kept = ruleset.evaluate_subset(event, member, [0, 2], caps=whole.applied_points())
    assert points_of(kept)["rescue"] == 50  # the bread came back: its 50 go
    assert kept.line_points[1] == 0


def test_fixed_per_line_needs_lines() -> None:
    with pytest.raises(ValidationError, match="line conditions and line-scoped effects"):
        RuleSpec.model_validate(
            {
                "name": "x",
                "trigger": "review_submitted",
                "effect": {"type": "fixed", "points": 5, "scope": "lines"},
            }
        )
    # Per event (the default) it stays what it was: one award, no lines.
    ruleset = compiled(
        ("base", {"effect": BASE}), ("flat", {"effect": {"type": "fixed", "points": 5}})
    )
    flat = ruleset.evaluate(cart(NEAR, BREAD), someone()).award_for("flat")
    assert flat is not None
    assert (flat.points, flat.line_points) == (5, {})


def points_of(result: Any) -> dict[str, int]:
    return {a.rule_id: a.points for a in result.awards}
