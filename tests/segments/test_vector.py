"""Segment expressions over whole columns: the rules language's meaning, no database."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from treu.insights.metrics import MemberTable
from treu.insights.vector import SET_FIELDS, compile_segment, empty_table
from treu.rules.expr import ExpressionError


def _table() -> MemberTable:
    """Three members: 0 a gold app buyer at risk, 1 a silver shop buyer, 2 no purchases."""
    base = empty_table()
    columns: dict[str, Any] = {}
    for name, empty in base.columns.items():
        if empty.dtype == object:
            columns[name] = np.array([None, None, None], dtype=object)
        elif empty.dtype == bool:
            columns[name] = np.zeros(3, dtype=bool)
        else:
            columns[name] = np.zeros(3, dtype=empty.dtype)
    columns["member.tier"] = np.array(["gold", "silver", None], dtype=object)
    columns["member.language"] = np.array(["de", "en", None], dtype=object)
    columns["member.birthday_month"] = np.array([True, False, False])
    columns["metrics.spend_365"] = np.array([80_000, 12_000, 0])
    columns["metrics.purchases_365"] = np.array([10, 3, 0])
    columns["metrics.recency_days"] = np.array([40.0, 3.0, np.nan])
    columns["scores.churn_risk"] = np.array([0.7, 0.1, np.nan])
    columns["scores.rfm_segment"] = np.array(["at_risk", "champions", None], dtype=object)
    sets = dict.fromkeys(SET_FIELDS, (np.zeros(0, dtype="int64"), np.array([], dtype=object)))
    sets["metrics.channels"] = (np.array([0, 0, 1]), np.array(["app", "pos", "pos"], dtype=object))
    sets["metrics.categories"] = (
        np.array([0, 0, 1]),
        np.array(["dairy", "coffee", "dairy"], dtype=object),
    )
    return MemberTable([], pd.DataFrame(columns), sets)


def _who(source: str) -> list[int]:
    table = _table()
    table.member_ids = ["a", "b", "c"]  # type: ignore[list-item]
    return [int(i) for i in np.flatnonzero(compile_segment(source).evaluate(table))]


@pytest.mark.parametrize(
    ("source", "members"),
    [
        ('metrics.spend_365 > 50000 and scores.churn_risk > 0.6 and member.tier == "gold"', [0]),
        ("scores.churn_risk > 0.05", [0, 1]),
        ("scores.churn_risk == None", [2]),
        ("scores.churn_risk != None", [0, 1]),
        ('member.tier != "gold"', [1, 2]),
        ('member.tier in ["gold", "silver"]', [0, 1]),
        ('member.tier not in ["gold"]', [1, 2]),
        ("'app' in metrics.channels", [0]),
        ("'app' not in metrics.channels", [1, 2]),
        ("has_any(metrics.categories, ['coffee', 'tea'])", [0]),
        ("has_all(metrics.categories, ['coffee', 'dairy'])", [0]),
        ("len(metrics.channels) >= 1", [0, 1]),
        ("metrics.recency_days <= 30", [1]),
        ("not (metrics.recency_days <= 30)", [0, 2]),
        ("metrics.spend_365 / metrics.purchases_365 > 5000", [0]),
        ("metrics.spend_365 // 0 == 0", [0, 1, 2]),
        ("1 < metrics.purchases_365 < 5", [1]),
        ("member.birthday_month or scores.rfm_segment == 'champions'", [0, 1]),
        ("lower(member.language) == 'de'", [0]),
        ("startswith(scores.rfm_segment, 'cham')", [1]),
        ("(metrics.spend_365 if member.tier == 'gold' else 0) > 100", [0]),
        ("max(metrics.spend_365, 20000) == 20000", [1, 2]),
        # Two columns compared, and None in a list (pandas hands out read-only arrays).
        ("metrics.purchases_365 == metrics.purchases_365", [0, 1, 2]),
        ("member.tier != member.language", [0, 1]),
        ("member.tier in ['gold', None]", [0, 2]),
        ("scores.rfm_segment not in [None, 'at_risk']", [1]),
        # 'if … else' keeps text as text, even when it looks like a number.
        ("('1' if member.birthday_month else '2') == '1'", [0]),
        ("len(member.tier if member.birthday_month else 'abc') == 3", [1, 2]),
        ("'go' in (member.tier if member.birthday_month else 'xx')", [0]),
        ("(metrics.recency_days if member.birthday_month else None) == None", [1, 2]),
    ],
)
def test_expressions_select_the_members_the_rules_language_would(
    source: str, members: list[int]
) -> None:
    assert _who(source) == members


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("metrics.spend > 5", "unknown field 'metrics.spend'", 9),
        ("metrics.spend_365 >", "syntax error", 20),
        ("member.tier", "must be bool", 1),
        ("event.total_minor > 5", "unknown name 'event'", 1),
        ("bucket(member.tier, 'x') < 5", "bucket() is not available", 1),
        (
            "'app' in (metrics.channels if member.birthday_month else metrics.categories)",
            "if … else",
            11,
        ),
    ],
)
def test_an_invalid_expression_is_refused_with_its_position(
    source: str, message: str, column: int
) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_segment(source)
    assert message in caught.value.message
    assert caught.value.column == column
