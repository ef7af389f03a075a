"""The rule-set evaluator and the rule specification: every effect, stacking, multiplier
stacking mode, rounding, limits, budget, validity, badges, trigger indexing, anonymous
carts, returns, explanations; and properties over random carts (hypothesis)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from treu.kit.money import Rounding, points_for_amount
from treu.rules.engine import (
    CompiledRuleInput,
    Evaluation,
    EventView,
    Headroom,
    LineView,
    MemberView,
    RuleSet,
    compile_rule_set,
    reason_text,
    render_explanation,
)
from treu.rules.spec import EVENT, LINE, MEMBER, RuleSetSettings, RuleSpec, expression_error_details

TZ = "Europe/Berlin"
SATURDAY = datetime(2026, 12, 5, 10, 15, tzinfo=UTC)  # 11:15 in Berlin
WEDNESDAY = datetime(2026, 12, 2, 10, 15, tzinfo=UTC)

BASE: dict[str, Any] = {"type": "points_per_unit", "rate": "1"}


def rule(rule_id: str, effect: dict[str, Any], **fields: Any) -> CompiledRuleInput:
    spec = RuleSpec.model_validate(
        {"name": fields.pop("name", rule_id.capitalize()), "trigger": "purchase"}
        | {"effect": effect}
        | fields
    )
    return CompiledRuleInput(rule_id, fields.pop("version", 1), spec)


def rules(
    *items: CompiledRuleInput,
    stacking: str = "additive",
    rounding: Rounding = Rounding.floor,
    scope: str = "order",
    currency: str = "EUR",
) -> RuleSet:
    return compile_rule_set(
        items,
        RuleSetSettings.model_validate({"multiplier_stacking": stacking}),
        currency=currency,
        rounding=rounding,
        rounding_scope=scope,
        timezone=TZ,
    )


def line(
    price: int,
    quantity: int = 1,
    *,
    tags: Sequence[str] = (),
    category: str | None = None,
    sku: str | None = None,
) -> LineView:
    return LineView.of(
        sku or f"sku-{price}",
        unit_price_minor=price,
        quantity=quantity,
        tags=tags,
        category=category,
    )


def cart(
    *lines: LineView, channel: str = "pos", at: datetime = SATURDAY, currency: str = "EUR"
) -> EventView:
    return EventView.purchase(
        occurred_at=at, timezone=TZ, currency=currency, lines=lines, channel=channel
    )


def member(**fields: Any) -> MemberView:
    values: dict[str, Any] = {"at": SATURDAY, "timezone": TZ} | fields
    return MemberView.of(**values)


ANNA = member(tier="silver", enrolled_at=datetime(2024, 1, 1, tzinfo=UTC))


def nbsp(text: str) -> str:
    """German amounts put a no-break space before the currency sign (CLDR)."""
    return text.replace(" €", "\u00a0€")


def points_of(result: Evaluation) -> dict[str, int]:
    return {a.rule_id: a.points for a in result.awards}


def reasons_of(result: Evaluation) -> dict[str, str]:
    return {s.rule_id: s.reason for s in result.skipped}


def check_sums(result: Evaluation) -> None:
    """total == sum of awards == sum of per-line points + the awards without lines."""
    assert result.points == sum(a.points for a in result.awards)
    unlined = sum(a.points for a in result.awards if a.effect in ("fixed", "badge_only"))
    assert result.points == sum(result.line_points) + unlined
    for award in result.awards:
        if award.effect not in ("fixed", "badge_only"):
            assert sum(award.line_points.values()) == award.points
            assert all(p != 0 for p in award.line_points.values())


class Limits:
    """A LimitView over a dict, recording which rules were asked about."""

    def __init__(self, rooms: dict[str, Any]) -> None:
        self.rooms = rooms
        self.asked: list[str] = []

    def headroom(self, rule_id: str) -> Any:
        self.asked.append(rule_id)
        return self.rooms.get(rule_id, (None, None))


# --------------------------------------------------------------------------- base


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("rate", ["1", "0.5", "3", "1.25", "0.01", "0"])
@pytest.mark.parametrize(
    "prices",
    [[4290], [129, 129, 899], [1], [99_999_999], [149, 149], [333, 333, 334], [0, 5]],
)
def test_base_only_equals_points_for_amount(
    rounding: Rounding, rate: str, prices: list[int]
) -> None:
    ruleset = rules(rule("base", {"type": "points_per_unit", "rate": rate}), rounding=rounding)
    result = ruleset.evaluate(cart(*(line(p) for p in prices)), ANNA)
    expected = points_for_amount(sum(prices), "EUR", Decimal(rate), rounding)
    assert result.points == expected
    check_sums(result)
    per_line = rules(
        rule("base", {"type": "points_per_unit", "rate": rate}), rounding=rounding, scope="line"
    ).evaluate(cart(*(line(p) for p in prices)), ANNA)
    assert per_line.points == sum(
        points_for_amount(p, "EUR", Decimal(rate), rounding) for p in prices
    )
    assert list(per_line.line_points) == [
        points_for_amount(p, "EUR", Decimal(rate), rounding) for p in prices
    ]


@pytest.mark.parametrize(("currency", "price", "expected"), [("JPY", 4290, 4290), ("KWD", 4290, 4)])
def test_currency_exponent(currency: str, price: int, expected: int) -> None:
    ruleset = rules(rule("base", BASE), currency=currency)
    assert ruleset.evaluate(cart(line(price), currency=currency), ANNA).points == expected


def test_event_in_another_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="currency USD"):
        rules(rule("base", BASE)).evaluate(cart(line(100), currency="USD"), ANNA)


# --------------------------------------------------------------------------- effects

ORGANIC = line(500, tags=["organic"], category="dairy")
COFFEE = line(3790, category="coffee")
REVIEW = EventView.engagement("review_submitted", occurred_at=SATURDAY, timezone=TZ)


@pytest.mark.parametrize(
    ("effect", "extra", "event", "expected"),
    [
        # points per unit on the order: 42.90 -> 42
        (BASE, {}, cart(ORGANIC, COFFEE), {"b": 42, "r": 42}),
        (
            {"type": "points_per_unit", "rate": "2.5"},
            {},
            cart(ORGANIC, COFFEE),
            {"b": 42, "r": 107},
        ),
        # on matching lines only: 3 points per EUR 1 on 5.00
        (
            {"type": "points_per_unit", "rate": "3", "scope": "lines"},
            {"line_condition": "'organic' in line.tags"},
            cart(ORGANIC, COFFEE),
            {"b": 42, "r": 15},
        ),
        # "lines" without a line condition: every line, rounded once per order
        (
            {"type": "points_per_unit", "rate": "1", "scope": "lines"},
            {},
            cart(ORGANIC, COFFEE),
            {"b": 42, "r": 42},
        ),
        # a multiplier multiplies the base (here: the base rule "b" below)
        ({"type": "multiplier", "factor": "2"}, {}, cart(ORGANIC, COFFEE), {"b": 42, "r": 42}),
        ({"type": "multiplier", "factor": "1.5"}, {}, cart(ORGANIC, COFFEE), {"b": 42, "r": 21}),
        (
            {"type": "multiplier", "factor": "2", "scope": "lines"},
            {"line_condition": "'organic' in line.tags"},
            cart(ORGANIC, COFFEE),
            {"b": 42, "r": 5},
        ),
        # percent of the base: 10 % of 42.90 -> 4.29 -> 4
        ({"type": "percent_bonus", "percent": "10"}, {}, cart(ORGANIC, COFFEE), {"b": 42, "r": 4}),
        (
            {"type": "percent_bonus", "percent": "50"},
            {"line_condition": "line.category == 'dairy'"},
            cart(ORGANIC, COFFEE),
            {"b": 42, "r": 2},
        ),
        # fixed points per event
        ({"type": "fixed", "points": 50}, {"trigger": "review_submitted"}, REVIEW, {"r": 50}),
        ({"type": "fixed", "points": 50}, {}, cart(ORGANIC), {"b": 5, "r": 50}),
    ],
)
def test_every_effect(
    effect: dict[str, Any], extra: dict[str, Any], event: EventView, expected: dict[str, int]
) -> None:
    ruleset = rules(rule("b", BASE, priority=1), rule("r", effect, **extra))
    result = ruleset.evaluate(event, ANNA)
    assert points_of(result) == expected
    check_sums(result)


def test_percent_bonus_counts_multiplier_points() -> None:
    ruleset = rules(
        rule("base", BASE),
        rule("double", {"type": "multiplier", "factor": "2"}),
        rule("bonus", {"type": "percent_bonus", "percent": "10"}),
    )
    result = ruleset.evaluate(cart(line(1000)), ANNA)
    assert points_of(result) == {"base": 10, "double": 10, "bonus": 2}


def test_badge_only_and_badges_besides_points() -> None:
    badge = {"code": "first-review", "name": {"en": "Reviewer", "de": "Rezensent"}, "icon": "🏅"}
    ruleset = rules(
        rule(
            "profile",
            {"type": "badge_only"},
            trigger="profile_completed",
            name="Complete profile",
            badge=badge,
        ),
        rule("review", {"type": "fixed", "points": 50}, trigger="review_submitted", badge=badge),
    )
    at = SATURDAY
    result = ruleset.evaluate(
        EventView.engagement("profile_completed", occurred_at=at, timezone=TZ), ANNA
    )
    assert result.points == 0
    assert [b.badge.code for b in result.badges] == ["first-review"]
    assert [a.effect for a in result.awards] == ["badge_only"]
    assert result.awards[0].explanation() == "Complete profile: badge “Reviewer”"
    assert result.awards[0].explanation("de") == "Complete profile: Abzeichen „Rezensent“"
    result = ruleset.evaluate(REVIEW, ANNA)
    assert result.points == 50
    assert [(b.rule_id, b.badge.name.en) for b in result.badges] == [("review", "Reviewer")]


# --------------------------------------------------------------------------- stacking


@pytest.mark.parametrize(
    ("rules_", "expected", "skipped"),
    [
        # combinable rules stack
        (
            [
                rule("base", BASE),
                rule(
                    "organic",
                    {"type": "points_per_unit", "rate": "3", "scope": "lines"},
                    line_condition="'organic' in line.tags",
                ),
            ],
            {"base": 42, "organic": 15},
            {},
        ),
        # an exclusive line rule first: the organic line earns only its 3 points per EUR 1
        (
            [
                rule("base", BASE, priority=100),
                rule(
                    "organic",
                    {"type": "points_per_unit", "rate": "3", "scope": "lines"},
                    line_condition="'organic' in line.tags",
                    stacking="exclusive",
                    priority=10,
                ),
            ],
            {"base": 37, "organic": 15},
            {},
        ),
        # the same exclusive rule after the base: the base already covered the line
        (
            [
                rule("base", BASE, priority=10),
                rule(
                    "organic",
                    {"type": "points_per_unit", "rate": "3", "scope": "lines"},
                    line_condition="'organic' in line.tags",
                    stacking="exclusive",
                    priority=100,
                ),
            ],
            {"base": 42, "organic": 15},
            {},
        ),
        # an exclusive order rule stops every later rule
        (
            [
                rule(
                    "app",
                    {"type": "points_per_unit", "rate": "2"},
                    stacking="exclusive",
                    priority=10,
                ),
                rule("base", BASE),
                rule("review", {"type": "fixed", "points": 5}),
            ],
            {"app": 85},
            {"base": "excluded", "review": "excluded"},
        ),
        # ... but not when its condition is false
        (
            [
                rule(
                    "app",
                    {"type": "points_per_unit", "rate": "2"},
                    stacking="exclusive",
                    priority=10,
                    condition="event.channel == 'app'",
                ),
                rule("base", BASE),
            ],
            {"base": 42},
            {"app": "condition_false"},
        ),
        # same priority: rule id order
        (
            [
                rule("b-second", {"type": "fixed", "points": 1}, stacking="exclusive"),
                rule("a-first", {"type": "fixed", "points": 2}, stacking="exclusive"),
            ],
            {"a-first": 2},
            {"b-second": "excluded"},
        ),
        # an exclusive line multiplier keeps the order-wide one off its lines
        (
            [
                rule("base", BASE, priority=1),
                rule(
                    "triple",
                    {"type": "multiplier", "factor": "3", "scope": "lines"},
                    line_condition="'organic' in line.tags",
                    stacking="exclusive",
                    priority=10,
                ),
                rule("double", {"type": "multiplier", "factor": "2"}, priority=50),
            ],
            {"base": 42, "triple": 10, "double": 37},
            {},
        ),
        # every line already taken by exclusive rules
        (
            [
                rule(
                    "all",
                    {"type": "points_per_unit", "rate": "1", "scope": "lines"},
                    stacking="exclusive",
                    priority=1,
                ),
                rule(
                    "organic",
                    {"type": "points_per_unit", "rate": "3", "scope": "lines"},
                    line_condition="'organic' in line.tags",
                ),
            ],
            {"all": 42},
            {"organic": "excluded"},
        ),
    ],
)
def test_stacking(
    rules_: list[CompiledRuleInput], expected: dict[str, int], skipped: dict[str, str]
) -> None:
    result = rules(*rules_).evaluate(cart(ORGANIC, COFFEE), ANNA)
    assert points_of(result) == expected
    for rule_id, reason in skipped.items():
        assert reasons_of(result)[rule_id] == reason
    check_sums(result)


def test_excluded_skip_names_the_excluding_rule() -> None:
    result = rules(
        rule("app", BASE, stacking="exclusive", priority=1), rule("base", BASE)
    ).evaluate(cart(COFFEE), ANNA)
    skip = result.skip_for("base")
    assert skip is not None
    assert skip.by == "app"
    assert skip.text() == "excluded by an exclusive rule"
    assert skip.text("de") == "durch eine exklusive Regel ausgeschlossen"


@pytest.mark.parametrize(
    ("stacking", "expected", "skipped"),
    [
        ("additive", {"base": 10, "double": 10, "half": 5}, {}),  # x2.5
        ("multiplicative", {"base": 10, "double": 10, "half": 10}, {}),  # x3
        ("highest", {"base": 10, "double": 10}, {"half": "outranked"}),  # x2
    ],
)
def test_multiplier_stacking(
    stacking: str, expected: dict[str, int], skipped: dict[str, str]
) -> None:
    ruleset = rules(
        rule("base", BASE, priority=1),
        rule("double", {"type": "multiplier", "factor": "2"}, priority=10),
        rule("half", {"type": "multiplier", "factor": "1.5"}, priority=20),
        stacking=stacking,
    )
    result = ruleset.evaluate(cart(line(1000)), ANNA)
    assert points_of(result) == expected
    assert {k: v for k, v in reasons_of(result).items() if k in skipped} == skipped
    check_sums(result)


def test_highest_multiplier_is_chosen_per_line() -> None:
    ruleset = rules(
        rule("base", BASE, priority=1),
        rule(
            "organic",
            {"type": "multiplier", "factor": "2", "scope": "lines"},
            line_condition="'organic' in line.tags",
        ),
        rule("app", {"type": "multiplier", "factor": "1.5"}),
        stacking="highest",
    )
    result = ruleset.evaluate(cart(line(1000, tags=["organic"]), line(2000)), ANNA)
    assert points_of(result) == {"base": 30, "organic": 10, "app": 10}
    award = result.award_for("app")
    assert award is not None
    assert award.line_points == {1: 10}


def test_multiplicative_order_is_rule_order() -> None:
    """Each rule's extra is what it adds to the running product (x1.5 then x2)."""
    ruleset = rules(
        rule("base", BASE, priority=1),
        rule("half", {"type": "multiplier", "factor": "1.5"}, priority=10),
        rule("double", {"type": "multiplier", "factor": "2"}, priority=20),
        stacking="multiplicative",
    )
    assert points_of(ruleset.evaluate(cart(line(1000)), ANNA)) == {
        "base": 10,
        "half": 5,
        "double": 15,
    }


@pytest.mark.parametrize("factor", ["0.5", "0.99", "0"])
def test_factors_below_one_are_refused(factor: str) -> None:
    # A posting never takes points away: fewer points on some lines are an exclusive
    # points_per_unit rule with a lower rate.
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        RuleSpec.model_validate(
            {
                "name": "Low",
                "trigger": "purchase",
                "effect": {"type": "multiplier", "factor": factor},
            }
        )


# --------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("rounding", "scope", "expected"),
    [
        (Rounding.floor, "order", 2),  # 2.98
        (Rounding.half_up, "order", 3),
        (Rounding.ceil, "order", 3),
        (Rounding.floor, "line", 2),  # 1.49 + 1.49
        (Rounding.half_up, "line", 2),
        (Rounding.ceil, "line", 4),
    ],
)
def test_rounding_modes_and_scopes(rounding: Rounding, scope: str, expected: int) -> None:
    ruleset = rules(rule("base", BASE), rounding=rounding, scope=scope)
    result = ruleset.evaluate(cart(line(149), line(149)), ANNA)
    assert result.points == expected
    check_sums(result)


def test_each_rule_is_rounded_on_its_own() -> None:
    ruleset = rules(
        rule("base", BASE),
        rule("bonus", {"type": "percent_bonus", "percent": "10"}, rounding="ceil"),
    )
    # base 2.98 -> 2 (programme: floor); bonus 0.298 -> 1 (rule: ceil)
    assert points_of(ruleset.evaluate(cart(line(149), line(149)), ANNA)) == {
        "base": 2,
        "bonus": 1,
    }


def test_line_split_adds_up_by_cumulative_rounding() -> None:
    ruleset = rules(rule("base", BASE), rounding=Rounding.half_up)
    result = ruleset.evaluate(cart(line(140), line(180), line(170)), ANNA)
    # 4.90 -> 5 points; running sums 1.40, 3.20, 4.90 round to 1, 3, 5: lines 1, 2, 2
    assert result.points == 5
    assert result.line_points == (1, 2, 2)
    floor = rules(rule("base", BASE)).evaluate(cart(*(line(99) for _ in range(10))), ANNA)
    # 9.90 -> 9 points over ten lines of 0.99: each line gets 0 or 1
    assert floor.points == 9
    assert sorted(set(floor.line_points)) == [0, 1]
    assert sum(floor.line_points) == 9


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("limits", "room", "points", "limited_by", "reason"),
    [
        ([{"per": "day", "max_count": 1}], (1, None), 50, None, None),
        ([{"per": "day", "max_count": 1}], (0, None), 0, None, "limit_day"),
        ([{"per": "week", "max_count": 1}], (0, None), 0, None, "limit_week"),
        ([{"per": "lifetime", "max_count": 1}], (0, None), 0, None, "limit_lifetime"),
        ([{"per": "month", "max_points": 100}], (None, 30), 30, "limit_month", None),
        ([{"per": "month", "max_points": 100}], (None, 0), 0, None, "limit_month"),
        ([{"per": "day", "max_points": 100}], (None, 50), 50, None, None),
        (
            [{"per": "day", "max_count": 1}, {"per": "week", "max_count": 3}],
            (0, None),
            0,
            None,
            "limit",
        ),
        (
            [{"per": "day", "max_count": 1}, {"per": "week", "max_count": 3}],
            Headroom(0, None, "week"),
            0,
            None,
            "limit_week",
        ),
        (
            [{"per": "day", "max_points": 80}],
            Headroom(None, 20, None, "budget"),
            20,
            "budget",
            None,
        ),
    ],
)
def test_limits(
    limits: list[dict[str, Any]],
    room: Any,
    points: int,
    limited_by: str | None,
    reason: str | None,
) -> None:
    ruleset = rules(
        rule("review", {"type": "fixed", "points": 50}, trigger="review_submitted", limits=limits)
    )
    view = Limits({"review": room})
    result = ruleset.evaluate(REVIEW, ANNA, view)
    assert view.asked == ["review"]
    assert result.points == points
    if reason is None:
        award = result.award_for("review")
        assert award is not None
        assert award.limited_by == limited_by
    else:
        assert reasons_of(result) == {"review": reason}


@pytest.mark.parametrize(
    ("room", "points", "reason"),
    [((None, None), 42, None), ((None, 10), 10, "budget"), ((None, 0), 0, "budget")],
)
def test_budget(room: tuple[int | None, int | None], points: int, reason: str | None) -> None:
    ruleset = rules(rule("base", BASE, budget_points=1_000))
    result = ruleset.evaluate(cart(ORGANIC, COFFEE), ANNA, Limits({"base": room}))
    assert result.points == points
    check_sums(result)
    if points and reason:
        award = result.award_for("base")
        assert award is not None
        assert award.limited_by == reason
        assert award.explanation() == "1 point per €1 on €42.90: +10 (budget used up)"
        assert award.explanation("de") == nbsp(
            "1 Punkt pro 1 € auf 42,90 €: +10 (Budget aufgebraucht)"
        )
    elif reason:
        assert reasons_of(result) == {"base": "budget"}


def test_capped_line_award_still_adds_up() -> None:
    ruleset = rules(rule("base", BASE, limits=[{"per": "day", "max_points": 100}]))
    result = ruleset.evaluate(
        cart(line(1999), line(2999), line(999)), ANNA, Limits({"base": (None, 37)})
    )
    assert result.points == 37
    award = result.award_for("base")
    assert award is not None
    assert award.line_points == {0: 12, 1: 19, 2: 6}
    assert award.limited_by == "limit_day"
    check_sums(result)


def test_headroom_is_asked_only_for_limited_rules_that_apply() -> None:
    ruleset = rules(
        rule("free", BASE),
        rule("limited", {"type": "fixed", "points": 5}, limits=[{"per": "day", "max_count": 1}]),
        rule(
            "never",
            {"type": "fixed", "points": 5},
            limits=[{"per": "day", "max_count": 1}],
            condition="event.channel == 'web'",
        ),
    )
    view = Limits({})
    assert ruleset.evaluate(cart(COFFEE), ANNA, view).points == 42
    assert view.asked == ["limited"]
    assert ruleset.evaluate(cart(COFFEE), ANNA, None).points == 42


def test_a_rule_stopped_by_its_limit_does_not_exclude() -> None:
    ruleset = rules(
        rule(
            "promo",
            {"type": "points_per_unit", "rate": "5"},
            stacking="exclusive",
            priority=1,
            limits=[{"per": "lifetime", "max_count": 1}],
        ),
        rule("base", BASE),
    )
    assert points_of(ruleset.evaluate(cart(COFFEE), ANNA, Limits({"promo": (0, None)}))) == {
        "base": 37
    }
    assert points_of(ruleset.evaluate(cart(COFFEE), ANNA, Limits({}))) == {"promo": 189}


def test_reason_texts() -> None:
    assert reason_text("limit_day") == "daily limit reached"
    assert reason_text("limit_day", "de") == "Tageslimit erreicht"
    assert reason_text("budget", "de") == "Budget aufgebraucht"
    assert reason_text("condition_false") == "condition not met"


# --------------------------------------------------------------------------- validity


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "at", "applies"),
    [
        (SATURDAY - timedelta(days=1), None, SATURDAY, True),
        (SATURDAY + timedelta(seconds=1), None, SATURDAY, False),
        (None, SATURDAY, SATURDAY, False),  # the end is exclusive
        (None, SATURDAY + timedelta(seconds=1), SATURDAY, True),
        (WEDNESDAY, SATURDAY, WEDNESDAY, True),
    ],
)
def test_validity_window(
    valid_from: datetime | None, valid_until: datetime | None, at: datetime, applies: bool
) -> None:
    ruleset = rules(
        rule(
            "xmas", {"type": "fixed", "points": 10}, valid_from=valid_from, valid_until=valid_until
        )
    )
    result = ruleset.evaluate(cart(COFFEE, at=at), ANNA)
    assert result.points == (10 if applies else 0)
    if not applies:
        assert reasons_of(result) == {"xmas": "outside_validity"}


def test_now_overrides_the_event_time() -> None:
    ruleset = rules(rule("xmas", {"type": "fixed", "points": 10}, valid_until=WEDNESDAY))
    assert ruleset.evaluate(cart(COFFEE, at=SATURDAY), ANNA).points == 0
    later_cart = cart(COFFEE, at=SATURDAY)
    assert ruleset.evaluate(later_cart, ANNA, now=WEDNESDAY - timedelta(hours=1)).points == 10


# --------------------------------------------------------------------------- conditions


def test_conditions_see_event_member_and_time() -> None:
    ruleset = rules(
        rule("base", BASE, priority=1),
        rule(
            "weekend-app",
            {"type": "multiplier", "factor": "1.5"},
            condition="event.channel == 'app' and event.weekday in [6, 7]",
        ),
        rule("gold", {"type": "fixed", "points": 100}, condition="member.tier == 'gold'"),
        rule("birthday", {"type": "fixed", "points": 7}, condition="member.birthday_month"),
    )
    saturday_app = cart(COFFEE, channel="app", at=SATURDAY)
    wednesday_app = cart(COFFEE, channel="app", at=WEDNESDAY)
    gold = member(tier="gold", birthday=date(1990, 12, 24))
    assert points_of(ruleset.evaluate(saturday_app, gold)) == {
        "base": 37,
        "weekend-app": 18,
        "gold": 100,
        "birthday": 7,
    }
    assert points_of(ruleset.evaluate(wednesday_app, ANNA)) == {"base": 37}


def test_anonymous_cart() -> None:
    ruleset = rules(
        rule("base", BASE),
        rule("members", {"type": "fixed", "points": 10}, condition="member.known"),
        rule("silver", {"type": "fixed", "points": 10}, condition="member.tier == 'silver'"),
    )
    result = ruleset.evaluate(cart(ORGANIC, COFFEE), MemberView.anonymous())
    assert points_of(result) == {"base": 42}
    assert reasons_of(result) == {"members": "condition_false", "silver": "condition_false"}


def test_trigger_indexing() -> None:
    ruleset = rules(
        rule("base", BASE, condition="event.total_minor > 0"),
        rule("review", {"type": "fixed", "points": 50}, trigger="review_submitted"),
        rule(
            "visit",
            {"type": "fixed", "points": 20},
            trigger="store_visit",
            condition="event.attrs['store_id'] == 'b1'",
        ),
    )
    assert ruleset.triggers == {"purchase", "review_submitted", "store_visit"}
    assert "store_id" not in ruleset.source("purchase")
    assert "store_id" in ruleset.source("store_visit")
    result = ruleset.evaluate(cart(COFFEE), ANNA)
    assert points_of(result) == {"base": 37}
    assert result.skipped == ()
    assert points_of(ruleset.evaluate(REVIEW, ANNA)) == {"review": 50}
    unknown = EventView.engagement("app_installed", occurred_at=SATURDAY, timezone=TZ)
    assert ruleset.evaluate(unknown, ANNA) == Evaluation(0, (), (), (), ())
    visit = EventView.engagement(
        "store_visit", occurred_at=SATURDAY, timezone=TZ, attrs={"store_id": "b1"}
    )
    assert ruleset.evaluate(visit, ANNA).points == 20
    assert ruleset.rule_ids("purchase") == ["base"]
    assert ruleset.condition_flags(cart(COFFEE), ANNA) == ((True,), ())


def test_one_generated_function_per_trigger() -> None:
    ruleset = rules(
        rule("a", BASE, condition="event.channel == 'app'"),
        rule(
            "b",
            {"type": "multiplier", "factor": "2", "scope": "lines"},
            line_condition="'organic' in line.tags",
        ),
        rule(
            "c",
            {"type": "points_per_unit", "rate": "2", "scope": "lines"},
            condition="member.known",
            line_condition="line.category == 'coffee'",
        ),
    )
    source = ruleset.source("purchase")
    assert source.count("def ") == 1
    assert source.count("for i, ln in enumerate(lines)") == 1
    flags, matches = ruleset.condition_flags(cart(ORGANIC, COFFEE, channel="app"), ANNA)
    assert flags == (True, True, True)
    assert matches == ([0], [1])
    flags, matches = ruleset.condition_flags(cart(ORGANIC, COFFEE), MemberView.anonymous())
    assert flags == (False, True, False)
    assert matches == ([0], [])  # c's line condition is not even evaluated


# --------------------------------------------------------------------------- views


def test_event_view_uses_the_programme_time_zone() -> None:
    late = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)  # Sunday 00:30 in Berlin
    event = cart(line(100, 2), line(50), at=late)
    assert (event.weekday, event.hour, event.date) == (7, 0, date(2026, 12, 6))
    assert (event.total_minor, event.item_count, event.line_count) == (250, 3, 2)
    with pytest.raises(ValueError, match="time zone"):
        cart(line(1), at=datetime(2026, 12, 5, 10))  # noqa: DTZ001 - testing the refusal


def test_member_view_counts_in_the_programme_time_zone() -> None:
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Berlin
    view = MemberView.of(
        at=at,
        timezone=TZ,
        enrolled_at=datetime(2026, 11, 30, 23, 10, tzinfo=UTC),  # 00:10 local
        birthday=date(1990, 12, 24),
        segments=["vip"],
    )
    assert view.days_enrolled == 0
    assert view.birthday_month is True
    assert view.known is True
    assert view.segments == frozenset({"vip"})
    assert MemberView.anonymous().known is False


def test_views_have_exactly_the_scope_fields() -> None:
    """The views and the declared scope must not drift apart."""
    assert set(EventView.__slots__) - {"lines", "occurred_at"} == set(EVENT.fields)
    assert set(MemberView.__slots__) == set(MEMBER.fields)
    assert set(LineView.__slots__) == set(LINE.fields)


# --------------------------------------------------------------------------- returns


def test_evaluate_subset_for_returns() -> None:
    ruleset = rules(
        rule("base", BASE),
        rule(
            "organic",
            {"type": "multiplier", "factor": "2", "scope": "lines"},
            line_condition="'organic' in line.tags",
        ),
        rule("big", {"type": "fixed", "points": 100}, condition="event.total_minor >= 4000"),
    )
    event = cart(ORGANIC, COFFEE, line(250, tags=["organic"]))
    full = ruleset.evaluate(event, ANNA)
    assert points_of(full) == {"base": 45, "organic": 7, "big": 100}
    kept = ruleset.evaluate_subset(event, ANNA, [0, 2])
    assert points_of(kept) == {"base": 7, "organic": 7}
    assert kept.line_points == (10, 0, 4)
    organic = kept.award_for("organic")
    assert organic is not None
    assert set(organic.line_points) == {0, 2}
    # returning the coffee reverses 45 + 7 + 100 - (7 + 7) points
    assert full.points - kept.points == 138
    assert ruleset.evaluate_subset(event, ANNA, [0, 1, 2]) == full
    assert ruleset.evaluate_subset(event, ANNA, []).points == 0


def test_caps_hold_each_rule_to_its_original_award() -> None:
    """A return must not make a rule give more than it did: here "small" only applies
    to orders under EUR 20, so the kept part alone would qualify for it."""
    ruleset = rules(
        rule("base", BASE),
        rule("small", {"type": "fixed", "points": 30}, condition="event.total_minor < 2000"),
        rule("double", {"type": "multiplier", "factor": "2"}),
    )
    event = cart(line(1500), line(1000))
    full = ruleset.evaluate(event, ANNA)
    assert points_of(full) == {"base": 25, "double": 25}
    kept = ruleset.evaluate_subset(event, ANNA, [0])
    assert points_of(kept) == {"base": 15, "small": 30, "double": 15}
    assert full.applied_points() == {"base": 25, "double": 25}
    held = ruleset.evaluate_subset(event, ANNA, [0], caps=full.applied_points())
    assert points_of(held) == {"base": 15, "double": 15}
    assert reasons_of(held)["small"] == "not_originally_awarded"
    assert full.points - held.points == 20
    # a cap below what the kept lines would earn cuts the award and says so
    capped = ruleset.evaluate_subset(event, ANNA, [0], caps={"base": 10, "double": 25})
    award = capped.award_for("base")
    assert award is not None
    assert (award.points, award.limited_by) == (10, "original_award")
    assert reason_text("original_award", "de") == "auf die ursprüngliche Gutschrift begrenzt"
    check_sums(capped)


# --------------------------------------------------------------------------- explanations


def test_explanations() -> None:
    ruleset = rules(
        rule("base", BASE, priority=1),
        rule(
            "organic",
            {"type": "points_per_unit", "rate": "3", "scope": "lines"},
            line_condition="'organic' in line.tags",
            name="Organic",
        ),
        rule(
            "double",
            {"type": "multiplier", "factor": "2", "scope": "lines"},
            line_condition="'organic' in line.tags",
            name="Organic",
            priority=20,
        ),
        rule("app", {"type": "multiplier", "factor": "1.5"}, name="App weekend", priority=30),
        rule("gold", {"type": "percent_bonus", "percent": "12.5"}, name="Gold bonus"),
        rule("coupon", {"type": "fixed", "points": 50}, name="Coupon"),
    )
    result = ruleset.evaluate(cart(ORGANIC, COFFEE), ANNA)
    assert result.explanations() == [
        "1 point per €1 on €42.90: +42",
        "Organic: 3 points per €1 on €5.00: +15",
        "Organic ×2: +20",  # noqa: RUF001
        "App weekend ×1.5: +28",  # noqa: RUF001
        "Gold bonus +12.5%: +13",
        "Coupon: +50",
    ]
    assert result.explanations("de") == [
        nbsp(text)
        for text in [
            "1 Punkt pro 1 € auf 42,90 €: +42",
            "Organic: 3 Punkte pro 1 € auf 5,00 €: +15",
            "Organic ×2: +20",  # noqa: RUF001
            "App weekend ×1,5: +28",  # noqa: RUF001
            "Gold bonus +12,5 %: +13",
            "Coupon: +50",
        ]
    ]
    details = result.awards[0].details()
    assert details == {
        "template": "rules.points_per_unit",
        "params": {
            "name": "Base",
            "points": 42,
            "rate": "1",
            "currency": "EUR",
            "amount_minor": 4290,
        },
        "rule_id": "base",
        "rule_version": 1,
    }
    assert render_explanation(details["template"], details["params"], "de").startswith("1 Punkt")
    check_sums(result)


# --------------------------------------------------------------------------- compilation


def test_compile_errors() -> None:
    with pytest.raises(ValueError, match="duplicate rule ids"):
        rules(rule("a", BASE), rule("a", BASE))
    with pytest.raises(ValueError, match="rounding_scope"):
        rules(rule("a", BASE), scope="cart")
    with pytest.raises(Exception, match="Nowhere"):
        compile_rule_set([], currency="EUR", rounding=Rounding.floor, timezone="Nowhere/City")


def test_input_order_does_not_matter() -> None:
    items = [
        rule("base", BASE),
        rule("x", {"type": "multiplier", "factor": "2"}, stacking="exclusive", priority=5),
        rule("y", {"type": "fixed", "points": 3}, priority=5),
        rule("z", {"type": "percent_bonus", "percent": "7"}),
    ]
    event = cart(ORGANIC, COFFEE)
    expected = rules(*items).evaluate(event, ANNA)
    for seed in range(5):
        shuffled = list(items)
        random.Random(seed).shuffle(shuffled)
        assert rules(*shuffled).evaluate(event, ANNA) == expected


# --------------------------------------------------------------------------- spec


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"condition": "event.type == 1"}, "cannot compare str with int"),
        ({"condition": "line.sku == 'a'"}, "unknown name 'line'"),
        (
            {"line_condition": "'a' in line.tags", "effect": {"type": "badge_only"}},
            "line_condition needs a points_per_unit, multiplier, percent_bonus or fixed effect",
        ),
        (
            {"line_condition": "'a' in line.tags", "effect": {"type": "fixed", "points": 1}},
            'line_condition needs the effect\'s scope to be "lines"',
        ),
        ({"line_condition": "'a' in line.tags"}, 'scope to be "lines"'),
        (
            {
                "trigger": "review_submitted",
                "effect": {"type": "multiplier", "factor": "2", "scope": "lines"},
            },
            "need the trigger 'purchase'",
        ),
        ({"effect": {"type": "badge_only"}}, "a badge_only rule needs a badge"),
        (
            {"valid_from": "2026-12-24T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"},
            "valid_until must be after valid_from",
        ),
        ({"valid_from": "2026-12-24T00:00:00"}, "timezone"),
        (
            {"limits": [{"per": "day", "max_count": 1}, {"per": "day", "max_points": 5}]},
            "at most one limit per period",
        ),
        ({"limits": [{"per": "day"}]}, "a limit needs max_count or max_points"),
        ({"limits": [{"per": "hour", "max_count": 1}]}, "'day', 'week', 'month' or 'lifetime'"),
        ({"trigger": "Purchase"}, "should match pattern"),
        ({"trigger": "x"}, "should match pattern"),
        ({"name": "  "}, "name must not be blank"),
        ({"effect": {"type": "multiplier", "factor": "0"}}, "greater than or equal to 1"),
        ({"effect": {"type": "points_per_unit", "rate": "-1"}}, "greater than or equal to 0"),
        ({"effect": {"type": "percent_bonus", "percent": "0"}}, "greater than 0"),
        ({"effect": {"type": "fixed", "points": -1}}, "greater than or equal to 0"),
        ({"effect": {"type": "cashback"}}, "does not match any of the expected tags"),
        ({"budget_points": 0}, "greater than or equal to 1"),
        ({"stacking": "greedy"}, "'combinable' or 'exclusive'"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
        (
            {"badge": {"code": "b", "name": {"en": "B"}, "icon": "not an icon"}},
            "icon must be an http(s) URL or an emoji",
        ),
    ],
)
def test_invalid_rule_specs(fields: dict[str, Any], error: str) -> None:
    data = {"name": "Rule", "trigger": "purchase", "effect": BASE} | fields
    with pytest.raises(ValidationError, match=error.replace("(", r"\(").replace(")", r"\)")):
        RuleSpec.model_validate(data)


def test_expression_errors_carry_their_position() -> None:
    with pytest.raises(ValidationError) as info:
        RuleSpec.model_validate(
            {
                "name": "Bad",
                "trigger": "purchase",
                "condition": "member.known and\n  event.chanel == 'app'",
                "line_condition": "line.sku == 1",
                "effect": {"type": "points_per_unit", "rate": "1", "scope": "lines"},
            }
        )
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("condition",), ("line_condition",)]
    details = [expression_error_details(dict(e)) for e in errors]
    assert details[0] == {
        "field": "condition",
        "message": "unknown field 'event.chanel' (did you mean 'event.channel'?)",
        "line": 2,
        "column": 9,
        "offset": 25,
    }
    assert details[1] is not None
    assert details[1]["column"] == 13
    assert errors[0]["msg"].endswith("(line 2, column 9)")
    assert expression_error_details({"type": "missing"}) is None


def test_rule_spec_round_trips_through_json() -> None:
    spec = RuleSpec.model_validate(
        {
            "name": "Organic",
            "description": "3 points per EUR 1 on organic products",
            "trigger": "purchase",
            "condition": " ",
            "line_condition": "'organic' in line.tags",
            "effect": {"type": "points_per_unit", "rate": "3", "scope": "lines"},
            "badge": {
                "code": "organic-fan",
                "name": {"en": "Organic fan", "de": "Bio-Fan"},
                "icon": "https://example.com/organic.svg",
            },
            "rounding": "half_up",
            "priority": 20,
            "stacking": "exclusive",
            "limits": [{"per": "month", "max_points": 500}],
            "budget_points": 100_000,
            "valid_from": "2026-12-01T00:00:00+01:00",
        }
    )
    assert spec.condition is None
    assert spec.line_scoped
    again = RuleSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert RuleSpec.model_json_schema()["properties"]["effect"]


# --------------------------------------------------------------------------- properties

POOL: list[CompiledRuleInput] = [
    rule("base", BASE, priority=10),
    rule("half", {"type": "points_per_unit", "rate": "0.5"}, condition="event.total_minor > 2000"),
    rule(
        "organic",
        {"type": "points_per_unit", "rate": "3", "scope": "lines"},
        line_condition="'organic' in line.tags",
        stacking="exclusive",
        priority=5,
    ),
    rule(
        "coffee",
        {"type": "multiplier", "factor": "2", "scope": "lines"},
        line_condition="line.category == 'coffee'",
    ),
    rule("app", {"type": "multiplier", "factor": "1.5"}, condition="event.channel == 'app'"),
    rule("third", {"type": "multiplier", "factor": "1.3333"}),
    rule("big", {"type": "multiplier", "factor": "1.75"}, condition="event.item_count > 5"),
    rule("bonus", {"type": "percent_bonus", "percent": "12.5"}),
    rule(
        "dairy",
        {"type": "percent_bonus", "percent": "33"},
        line_condition="line.category == 'dairy'",
        rounding="ceil",
    ),
    rule("fixed", {"type": "fixed", "points": 25}, condition="event.line_count >= 3"),
    rule(
        "badge",
        {"type": "badge_only"},
        badge={"code": "big", "name": {"en": "Big basket"}, "icon": "🧺"},
        condition="event.item_count >= 10",
    ),
    rule(
        "capped",
        {"type": "points_per_unit", "rate": "2"},
        limits=[{"per": "day", "max_points": 30}],
        stacking="exclusive",
        priority=200,
    ),
]

lines_strategy = st.lists(
    st.builds(
        line,
        st.integers(min_value=0, max_value=50_000),
        st.integers(min_value=1, max_value=5),
        tags=st.lists(st.sampled_from(["organic", "sale", "new"]), max_size=2),
        category=st.sampled_from([None, "coffee", "dairy", "bakery"]),
    ),
    min_size=0,
    max_size=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=lines_strategy,
    chosen=st.lists(st.sampled_from(range(len(POOL))), unique=True, min_size=1),
    stacking=st.sampled_from(["additive", "multiplicative", "highest"]),
    rounding=st.sampled_from(list(Rounding)),
    scope=st.sampled_from(["order", "line"]),
    channel=st.sampled_from(["app", "pos"]),
    headroom=st.none() | st.integers(min_value=0, max_value=40),
)
def test_properties(
    lines: list[LineView],
    chosen: list[int],
    stacking: str,
    rounding: Rounding,
    scope: str,
    channel: str,
    headroom: int | None,
) -> None:
    items = [POOL[i] for i in chosen]
    ruleset = rules(*items, stacking=stacking, rounding=rounding, scope=scope)
    event = cart(*lines, channel=channel)
    view = Limits({"capped": (None, headroom)})
    result = ruleset.evaluate(event, ANNA, view)
    # deterministic: the same inputs, or a freshly compiled copy, give the same result
    assert ruleset.evaluate(event, ANNA, view) == result
    assert (
        rules(*reversed(items), stacking=stacking, rounding=rounding, scope=scope).evaluate(
            event, ANNA, view
        )
        == result
    )
    check_sums(result)
    assert len(result.line_points) == len(lines)
    # every rule of the trigger is either awarded or skipped, once
    ids = [a.rule_id for a in result.awards] + [s.rule_id for s in result.skipped]
    assert sorted(ids) == sorted(item.rule_id for item in items)
    capped = result.award_for("capped")
    if capped is not None and headroom is not None:
        assert capped.points <= headroom
    # the subset with every line is the same evaluation
    assert ruleset.evaluate_subset(event, ANNA, range(len(lines)), view) == result
    # holding every rule to its own award changes nothing
    caps = result.applied_points()
    held = ruleset.evaluate_subset(event, ANNA, range(len(lines)), view, caps=caps)
    assert held.points == result.points
    assert points_of(held) == points_of(result)
    # base only: exactly points_for_amount
    if [item.rule_id for item in items] == ["base"] and scope == "order":
        expected = points_for_amount(event.total_minor, "EUR", Decimal(1), rounding)
        assert result.points == expected


@pytest.mark.parametrize("stacking", ["additive", "multiplicative", "highest"])
def test_amounts_are_exact(stacking: str) -> None:
    """Against a Fraction reference: awards are the exact amounts, rounded once."""
    from fractions import Fraction
    from math import floor

    prices = [1999, 333, 7]
    ruleset = rules(
        rule("base", {"type": "points_per_unit", "rate": "1.25"}, priority=1),
        rule("low", {"type": "multiplier", "factor": "1.75"}, priority=2),
        rule("third", {"type": "multiplier", "factor": "1.3333"}, priority=3),
        rule("bonus", {"type": "percent_bonus", "percent": "33"}, priority=4),
        stacking=stacking,
    )
    result = ruleset.evaluate(cart(*(line(p) for p in prices)), ANNA)
    base = [Fraction(p, 100) * Fraction(5, 4) for p in prices]
    low, third = Fraction(7, 4), Fraction(13333, 10000)
    if stacking == "additive":
        extras = {"low": [b * (low - 1) for b in base], "third": [b * (third - 1) for b in base]}
    elif stacking == "multiplicative":
        extras = {
            "low": [b * (low - 1) for b in base],
            "third": [b * low * (third - 1) for b in base],
        }
    else:
        extras = {"low": [b * (low - 1) for b in base]}
    earned = sum(base) + sum(sum(v) for v in extras.values())
    expected = {"base": floor(sum(base)), "bonus": floor(earned * Fraction(33, 100))}
    for rule_id, values in extras.items():
        exact = sum(values)
        expected[rule_id] = floor(exact) if exact >= 0 else -floor(-exact)
    assert points_of(result) == expected
    check_sums(result)


def test_engine_exports_what_it_did_as_one_module() -> None:
    """``treu.rules.engine`` used to hold the views, results and compiler too; other
    packages and integrators (``docs/rules.md``) import them from there."""
    from treu.rules import engine

    names = {
        "Award",
        "BadgeAward",
        "CompiledRuleInput",
        "Evaluation",
        "EventView",
        "Headroom",
        "LimitView",
        "LineView",
        "MemberView",
        "RuleSet",
        "Skip",
        "compile_rule_set",
        "reason_text",
        "render_explanation",
    }
    assert names <= set(engine.__all__)
    assert all(hasattr(engine, name) for name in names)
