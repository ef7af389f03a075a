"""Challenge specifications and their compiled form, without a database: validation
with expression positions, periods in the programme's time zone, contributions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from treu.challenges.service import render_explanation
from treu.challenges.spec import (
    ChallengeSpec,
    CompiledChallenge,
    FixedWindow,
    RepeatingWindow,
    period_bounds,
    period_of,
)
from treu.kit.ids import new_id
from treu.ledger.explain import render
from treu.rules.engine import EventView, LineView, MemberView
from treu.rules.spec import expression_error_details

BERLIN = "Europe/Berlin"
AT = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)


def spec(**overrides: Any) -> ChallengeSpec:
    data: dict[str, Any] = {
        "code": "c1",
        "name": {"en": "Three", "de": "Drei"},
        "trigger": "purchase",
        "goal": {"type": "count", "target": 3},
        "window": {"type": "repeating", "every": "month"},
        "reward": {"points": 10},
    }
    data.update(overrides)
    return ChallengeSpec.model_validate(data)


def errors(**overrides: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        spec(**overrides)
    return [dict(e) for e in info.value.errors()]


def compiled(**overrides: Any) -> CompiledChallenge:
    return CompiledChallenge(new_id(), new_id(), "c1", spec(**overrides))


def cart(*lines: LineView, channel: str = "pos", store: str | None = None) -> EventView:
    return EventView.purchase(
        occurred_at=AT,
        timezone=BERLIN,
        currency="EUR",
        lines=list(lines),
        channel=channel,
        store=store,
    )


MEMBER = MemberView.of(at=AT, timezone=BERLIN, enrolled_at=datetime(2025, 1, 1, tzinfo=UTC))


# --------------------------------------------------------------------------- validation


def test_a_condition_error_names_field_line_and_column() -> None:
    [error] = errors(condition="event.channel == 'app' and\n  event.chanel == 'web'")
    details = expression_error_details(error)
    assert details is not None
    assert details["field"] == "condition"
    assert (details["line"], details["column"]) == (2, 9)  # at "chanel"
    assert "event.channel" in details["message"]  # the suggestion


def test_a_goal_value_error_names_the_goal() -> None:
    [error] = errors(goal={"type": "distinct", "target": 3, "value": "line.categroy"})
    details = expression_error_details(error)
    assert details is not None
    assert details["field"] == "goal.value"
    assert details["column"] == 6  # at "categroy"
    assert "line.category" in details["message"]


@pytest.mark.parametrize(
    ("overrides", "type_"),
    [
        (
            {"line_condition": "'x' in line.tags", "trigger": ["purchase", "review_submitted"]},
            "line_trigger",
        ),
        ({"trigger": ["review_submitted"], "goal": {"type": "sum", "target": 5}}, "goal_value"),
        ({"trigger": ["return"]}, "trigger_return"),
        ({"trigger": ["purchase", "purchase"]}, "trigger_duplicate"),
        ({"reward": {"points": 0}}, "reward_empty"),
        (
            {
                "window": {
                    "type": "fixed",
                    "starts_at": "2026-05-02T00:00:00Z",
                    "ends_at": "2026-05-01T00:00:00Z",
                }
            },
            "window",
        ),
        (
            {
                "window": {
                    "type": "fixed",
                    "starts_at": "2026-05-01T00:00:00Z",
                    "ends_at": "2026-06-01T00:00:00Z",
                },
                "max_completions": 3,
            },
            "max_completions_fixed",
        ),
    ],
)
def test_inconsistent_specs_are_refused(overrides: dict[str, Any], type_: str) -> None:
    assert [e["type"] for e in errors(**overrides)] == [type_]


def test_value_types_must_fit_the_goal() -> None:
    [error] = errors(goal={"type": "sum", "target": 5, "value": "line.category"})
    assert "sum goal cannot use a value of type str" in error["msg"]
    [error] = errors(goal={"type": "distinct", "target": 5, "value": "event.attrs"})
    assert error["type"] == "expression"
    # Line values need purchases only; event values work for every trigger.
    [error] = errors(
        trigger=["review_submitted"], goal={"type": "distinct", "target": 2, "value": "line.sku"}
    )
    assert "unknown name 'line'" in error["msg"]
    assert spec(
        trigger=["review_submitted"], goal={"type": "distinct", "target": 2, "value": "event.store"}
    )


def test_times_need_a_zone() -> None:
    [error] = errors(
        window={"type": "fixed", "starts_at": "2026-05-01T00:00:00", "ends_at": "2026-06-01"}
    )[:1]
    assert error["loc"][:2] == ("window", "fixed")


def test_the_frozen_part_leaves_texts_and_reward_free() -> None:
    one = spec()
    assert spec(name={"en": "Other"}, reward={"points": 99}).frozen_part == one.frozen_part
    assert spec(goal={"type": "count", "target": 4}).frozen_part != one.frozen_part
    assert spec(max_completions=None).frozen_part != one.frozen_part
    assert spec(condition="event.total_minor > 5").frozen_part != one.frozen_part
    berlin = {
        "type": "fixed",
        "starts_at": "2026-05-01T00:00:00+02:00",
        "ends_at": "2026-06-01T00:00:00+02:00",
    }
    utc = {"type": "fixed", "starts_at": "2026-04-30T22:00:00Z", "ends_at": "2026-05-31T22:00:00Z"}
    assert spec(window=berlin).frozen_part == spec(window=utc).frozen_part  # the same instants


# --------------------------------------------------------------------------- periods


def test_monthly_periods_follow_the_programme_time_zone() -> None:
    window = RepeatingWindow(every="month")
    late_may = period_of(window, datetime(2026, 5, 31, 21, 59, tzinfo=UTC), BERLIN)
    june = period_of(window, datetime(2026, 5, 31, 22, 0, tzinfo=UTC), BERLIN)
    assert late_may is not None
    assert june is not None
    assert late_may.key == "month:2026-05"
    assert june.key == "month:2026-06"
    assert june.starts_at == datetime(2026, 5, 31, 22, 0, tzinfo=UTC)
    assert june.ends_at == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
    december = period_of(window, datetime(2026, 12, 15, tzinfo=UTC), BERLIN)
    assert december is not None
    assert december.ends_at == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # winter time
    assert period_of(window, datetime(2026, 5, 31, 23, 0, tzinfo=UTC), "UTC") is not None
    assert period_bounds(window, "month:2026-06", BERLIN) == (june.starts_at, june.ends_at)


def test_weekly_periods_are_iso_weeks_starting_monday() -> None:
    window = RepeatingWindow(every="week")
    sunday = period_of(window, datetime(2026, 5, 10, 21, 59, tzinfo=UTC), BERLIN)
    monday = period_of(window, datetime(2026, 5, 10, 22, 0, tzinfo=UTC), BERLIN)
    assert sunday is not None
    assert monday is not None
    assert (sunday.key, monday.key) == ("week:2026-W19", "week:2026-W20")
    assert monday.starts_at == datetime(2026, 5, 10, 22, 0, tzinfo=UTC)
    new_year = period_of(window, datetime(2027, 1, 1, 12, tzinfo=UTC), BERLIN)
    assert new_year is not None
    assert new_year.key == "week:2026-W53"  # ISO week-numbering year
    assert period_bounds(window, "week:2026-W20", BERLIN) == (monday.starts_at, monday.ends_at)
    assert period_bounds(window, "nonsense", BERLIN) == (None, None)


def test_window_bounds_cut_periods() -> None:
    starts = datetime(2026, 5, 6, 12, tzinfo=UTC)
    window = RepeatingWindow(
        every="month", starts_at=starts, ends_at=datetime(2026, 7, 1, tzinfo=UTC)
    )
    assert period_of(window, starts.replace(hour=11), BERLIN) is None
    first = period_of(window, starts, BERLIN)
    assert first is not None
    assert first.starts_at == starts
    assert period_of(window, datetime(2026, 7, 1, tzinfo=UTC), BERLIN) is None
    fixed = FixedWindow(starts_at=starts, ends_at=datetime(2026, 6, 1, tzinfo=UTC))
    inside = period_of(fixed, starts, BERLIN)
    assert inside is not None
    assert (inside.key, inside.starts_at) == ("window", starts)
    assert period_of(fixed, datetime(2026, 6, 1, tzinfo=UTC), BERLIN) is None


# --------------------------------------------------------------------------- contributions


def test_count_with_condition_and_line_condition() -> None:
    challenge = compiled(
        condition="event.channel == 'app'", line_condition="'organic' in line.tags"
    )
    organic = LineView.of("1", unit_price_minor=100, tags=["organic"])
    plain = LineView.of("2", unit_price_minor=100)
    assert challenge.contribution(cart(organic, channel="app"), MEMBER) == 1
    assert challenge.contribution(cart(organic, channel="pos"), MEMBER) is None
    assert challenge.contribution(cart(plain, channel="app"), MEMBER) is None
    review = EventView.engagement("review_submitted", occurred_at=AT, timezone=BERLIN)
    assert challenge.contribution(review, MEMBER) is None


def test_distinct_values_skip_none_and_flatten_lists() -> None:
    categories = compiled(goal={"type": "distinct", "target": 3, "value": "line.category"})
    lines = [
        LineView.of("1", unit_price_minor=1, category="dairy"),
        LineView.of("2", unit_price_minor=1, category="dairy"),
        LineView.of("3", unit_price_minor=1),
        LineView.of("4", unit_price_minor=1, category="coffee"),
    ]
    assert categories.contribution(cart(*lines), MEMBER) == frozenset({"dairy", "coffee"})
    assert categories.contribution(cart(lines[2]), MEMBER) is None
    tags = compiled(goal={"type": "distinct", "target": 3, "value": "line.tags"})
    tagged = LineView.of("1", unit_price_minor=1, tags=["a", "b"])
    assert tags.contribution(cart(tagged), MEMBER) == frozenset({"a", "b"})
    weekday = compiled(goal={"type": "distinct", "target": 7, "value": "event.weekday"})
    assert weekday.contribution(cart(tagged), MEMBER) == frozenset({"3"})


def test_sums_count_whole_positive_numbers() -> None:
    spend = compiled(goal={"type": "sum", "target": 10_000})
    lines = [
        LineView.of("1", unit_price_minor=250, quantity=2),
        LineView.of("2", unit_price_minor=99),
    ]
    assert spend.contribution(cart(*lines), MEMBER) == 599
    halves = compiled(goal={"type": "sum", "target": 10, "value": "line.quantity / 2"})
    assert halves.contribution(cart(*lines), MEMBER) == 1  # 1 + 0 (0.5 rounds down)
    negative = compiled(goal={"type": "sum", "target": 10, "value": "0 - event.total_minor"})
    assert negative.contribution(cart(*lines), MEMBER) is None
    rating = compiled(
        trigger=["review_submitted"],
        goal={"type": "sum", "target": 10, "value": "event.attrs['rating']"},
    )
    good = EventView.engagement(
        "review_submitted", occurred_at=AT, timezone=BERLIN, attrs={"rating": 4}
    )
    words = EventView.engagement(
        "review_submitted", occurred_at=AT, timezone=BERLIN, attrs={"rating": "great"}
    )
    assert rating.contribution(good, MEMBER) == 4
    assert rating.contribution(words, MEMBER) is None


def test_member_use_is_detected() -> None:
    assert compiled(condition="member.days_enrolled > 30").uses_member
    assert not compiled(condition="event.total_minor > 30").uses_member
    assert compiled(goal={"type": "distinct", "target": 2, "value": "member.tier"}).uses_member


# --------------------------------------------------------------------------- texts


def test_explanations_in_both_languages() -> None:
    params = {"name": {"en": "3 purchases in May", "de": "3 Einkäufe im Mai"}, "points": 300}
    details = {"template": "challenges.completed", "params": params}
    assert render(details, "de") == "Challenge „3 Einkäufe im Mai“ geschafft: +300"
    assert render(details, "en") == "Challenge “3 purchases in May” completed: +300"
    only_en = {"name": {"en": "Reviews"}, "points": 5}
    assert render_explanation("challenges.completed", only_en, "de") == (
        "Challenge „Reviews“ geschafft: +5"
    )
    badge = {"name": {"en": "Reviews"}, "points": 0, "badge": {"en": "Critic", "de": "Kritiker"}}
    assert render_explanation("challenges.completed", badge, "de") == (
        "Challenge „Reviews“ geschafft: Abzeichen „Kritiker“"
    )


def test_the_openapi_examples_are_valid() -> None:
    from treu.challenges.schemas import EXAMPLE_CATEGORIES, EXAMPLE_CHALLENGE, EXAMPLE_REVIEWS
    from treu.challenges.service import parse_spec

    for example in (EXAMPLE_CHALLENGE, EXAMPLE_CATEGORIES, EXAMPLE_REVIEWS):
        assert parse_spec(example).code == example["code"]
