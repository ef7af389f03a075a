"""The rule expression language: values, None-safety, exact numbers, type and syntax
errors with positions, and the generated code."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from treu.rules.expr import (
    BOOL,
    FUNCTIONS,
    INT,
    NUMBER,
    RUNTIME,
    STR,
    ExpressionError,
    Record,
    Scope,
    check,
    compile_condition,
    list_of,
    optional,
    runtime_globals,
    translate,
)
from treu.rules.spec import EVENT, LINE, LINE_SCOPE, MEMBER, ORDER_SCOPE


def views(**member_fields: Any) -> dict[str, Any]:
    """Plain objects with the scope's fields (the engine's views are tested with the
    engine; conditions only read attributes)."""
    line = SimpleNamespace(
        sku="4001",
        name="Bio Vollmilch",
        category="dairy",
        quantity=2,
        unit_price_minor=129,
        total_minor=258,
        tags=("organic", "regional"),
    )
    event = SimpleNamespace(
        type="purchase",
        channel="app",
        store="berlin-01",
        currency="EUR",
        total_minor=4290,
        item_count=3,
        line_count=2,
        weekday=6,  # Saturday 2026-12-05, 11:15 in Berlin
        hour=11,
        date=date(2026, 12, 5),
        attrs={
            "coupon": "WELCOME",
            "rating": 5,
            "verified": True,
            "tags": ["a", "b"],
            "score": "high",
            "nested": {"x": 1},
        },
    )
    member = SimpleNamespace(
        tier=None,
        segments=frozenset({"vip", "newsletter"}),
        days_enrolled=30,
        birthday_month=True,
        language="de",
        channel=None,
        attrs={"employee": False},
        known=True,
    )
    for name, value in member_fields.items():
        setattr(member, name, value)
    return {"event": event, "member": member, "line": line}


def run(source: str, **member_fields: Any) -> object:
    condition = compile_condition(source, LINE_SCOPE)
    return condition(**views(**member_fields))


TRUE_CASES = [
    # fields, literals, operators
    "event.type == 'purchase'",
    "event.channel == 'app' and event.store == 'berlin-01'",
    "event.currency == 'EUR'",
    "event.total_minor == 4290",
    "event.item_count == 3 and event.line_count == 2",
    "event.weekday == 6 and event.hour == 11",
    "event.weekday in [6, 7]",
    "event.weekday in (6, 7)",
    "event.channel in {'app', 'web'}",
    "event.channel not in []",
    "not (event.channel in [])",
    "1 <= event.weekday <= 7",
    "0 <= event.hour < 24 > 12",
    "event.total_minor > 1000 or member.known",
    "not member.birthday_month == False",
    "member.birthday_month",
    "member.days_enrolled == 30",
    "member.language == 'de'",
    "member.known",
    "'vip' in member.segments and 'gold' not in member.segments",
    "'organic' in line.tags",
    "'sale' not in line.tags",
    "line.sku == '4001' and line.quantity == 2",
    "line.unit_price_minor * line.quantity == line.total_minor",
    "line.category == 'dairy'",
    "line.name == 'Bio Vollmilch'",
    "'milch' in line.name",
    # exact numbers: Decimal, never float
    "event.total_minor * 0.1 == 429",
    "0.1 + 0.2 == 0.3",
    "event.total_minor / 100 == 42.9",
    "event.total_minor / 0 == 0",
    "event.total_minor // 0 == 0 and event.total_minor % 0 == 0",
    "7 // 2 == 3 and -7 // 2 == -4",
    "7.5 // 2 == 3",
    "7 % 3 == 1 and -7 % 3 == 2",
    "7.5 % 2 == 1.5",
    "-event.hour == -11",
    "+event.hour == 11",
    "1_000 == 1000",
    "-1.5 < 0",
    # dates
    "event.date == '2026-12-05'",
    "'2026-12-01' <= event.date < '2027-01-01'",
    # conditional expression
    "(2 if member.known else 1.5) == 2",
    "(1 if event.channel == 'pos' else None) == None",
    # None-safety: tier is None
    "member.tier == None",
    "member.tier != 'gold'",
    "not member.tier == 'gold'",
    "not member.tier > 'a'",
    "not member.tier <= 'z'",
    "not 'o' in member.tier",
    "lower(member.tier) == None",
    "not startswith(member.tier, 'g')",
    "len(member.tier) == 0",
    # free-form attributes (any)
    "event.attrs['coupon'] == 'WELCOME'",
    "event.attrs['rating'] >= 4",
    "event.attrs['rating'] == 5.0",
    "not event.attrs['missing'] >= 4",
    "event.attrs['missing'] == None",
    "not event.attrs['score'] > 3",  # str vs int: false, not an error
    "not event.attrs['nested'] < 3",
    "event.attrs['verified'] == True",
    "'a' in event.attrs['tags']",
    "not 'a' in event.attrs['rating']",
    "not 1 in event.attrs['score']",
    "'ig' in event.attrs['score']",
    "event.attrs['coupon'] in ['WELCOME', 'HELLO']",
    "not event.attrs['tags'] in ['a']",
    "len(event.attrs['tags']) == 2 and len(event.attrs['rating']) == 0",
    "has_any(event.attrs['tags'], ['b', 'c'])",
    "not has_any(event.attrs['score'], ['h'])",
    "has_all(event.attrs['tags'], ['a', 'b'])",
    "member.attrs['employee'] == False",
    "upper(event.attrs['coupon']) == 'WELCOME' and upper(event.attrs['rating']) == None",
    "startswith(event.attrs['coupon'], 'WEL') and not endswith(event.attrs['rating'], '5')",
    # every function
    "len(line.tags) == 2 and len(line.sku) == 4 and len(member.segments) == 2",
    "abs(-3) == 3 and abs(event.hour - 20) == 9 and abs(-1.5) == 1.5",
    "min(event.hour, 5, 7) == 5 and min(1, 0.5) == 0.5",
    "max(event.hour, 5) == 11 and max(2, 2.5) == 2.5",
    "lower('ABC') == 'abc' and lower(line.category) == 'dairy'",
    "upper(line.sku) == '4001' and upper(event.channel) == 'APP'",
    "startswith(line.sku, '40') and not startswith(line.sku, '7')",
    "endswith(line.sku, '01') and endswith(event.store, '-01')",
    "has_any(line.tags, ['vegan', 'organic'])",
    "not has_any(line.tags, [])",
    "has_all(line.tags, ['organic', 'regional'])",
    "has_all(line.tags, [])",
    "not has_all(line.tags, ['organic', 'vegan'])",
    "has_any(member.segments, line.tags) == False",
    "has_all(line.tags, line.tags)",
    # layout: whitespace and several lines
    "  member.known  ",
    "member.known and\n    event.channel == 'app'",
]


@pytest.mark.parametrize("source", TRUE_CASES)
def test_true_expressions(source: str) -> None:
    assert run(source) is True


@pytest.mark.parametrize("source", TRUE_CASES)
def test_negated_expressions_are_false(source: str) -> None:
    assert run(f"not ({source})") is False


@pytest.mark.parametrize(
    ("source", "fields", "expected"),
    [
        ("member.tier == 'gold'", {"tier": "gold"}, True),
        ("member.tier == 'gold'", {"tier": None}, False),
        ("member.tier in ['silver', 'gold']", {"tier": "silver"}, True),
        ("member.tier in ['silver', 'gold']", {"tier": None}, False),
        ("member.tier >= 'g'", {"tier": "gold"}, True),
        ("member.tier >= 'g'", {"tier": None}, False),
        ("lower(member.tier) == 'gold'", {"tier": "GOLD"}, True),
        ("member.birthday_month", {"birthday_month": False}, False),
        ("member.days_enrolled > 10", {"days_enrolled": 0}, False),
        ("member.language == 'de'", {"language": None}, False),
    ],
)
def test_member_dependent_values(source: str, fields: dict[str, Any], expected: bool) -> None:
    assert run(source, **fields) is expected


def test_anonymous_member() -> None:
    condition = compile_condition("member.known or member.tier == 'gold'", ORDER_SCOPE)
    values = views(known=False, tier=None)
    assert condition(event=values["event"], member=values["member"]) is False


def test_numbers_are_decimal_not_float() -> None:
    condition = compile_condition("event.total_minor * 0.1 == 429", ORDER_SCOPE)
    assert "0.1" in repr(
        [v for k, v in condition.function.__globals__.items() if k.startswith("_k")]
    )
    assert isinstance(
        next(v for k, v in condition.function.__globals__.items() if k == "_k0"), Decimal
    )
    scope = Scope({"x": Record("x", {"n": INT})})
    assert check("x.n / 3", scope) == NUMBER
    assert check("x.n // 3", scope) == INT
    assert check("x.n + 1", scope) == INT
    assert check("x.n + 1.5", scope) == NUMBER
    assert check("x.n % 2.5", scope) == NUMBER


def test_types_of_expressions() -> None:
    assert check("lower(member.tier)", ORDER_SCOPE) == optional(STR)
    assert check("lower(event.type)", ORDER_SCOPE) == STR
    assert check("event.attrs['x']", ORDER_SCOPE).kind == "any"
    assert check("['a', 'b']", ORDER_SCOPE) == list_of(STR)
    assert check("[1, 2.5]", ORDER_SCOPE) == list_of(NUMBER)
    assert check("len(line.tags)", LINE_SCOPE) == INT
    assert check("event.channel == 'app'", ORDER_SCOPE) == BOOL
    assert str(optional(STR)) == "str or None"
    assert str(list_of(STR)) == "list[str]"


def test_scope_description_lists_every_field() -> None:
    described = LINE_SCOPE.describe()
    for record in (EVENT, MEMBER, LINE):
        for name in record.fields:
            assert f"{record.name}.{name}" in described
    assert described["event.channel"] == "str or None"
    assert described["member.segments"] == "set[str]"
    assert described["event.attrs"] == "map of any"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        (
            "line.colour == 'red'",
            "'line.colour' (line has: sku, name, category",
            1,
            6,
        ),
        (
            "line.categry == 'x'",
            "'line.categry' (did you mean 'line.category'?)",
            1,
            6,
        ),
        (
            "event.chanel == 'app'",
            "unknown field 'event.chanel' (did you mean 'event.channel'?)",
            1,
            7,
        ),
        ("event.type == 1", "cannot compare str with int", 1, 15),
        ("event.channel > 5", "cannot compare str with int", 1, 17),
        ("event.date > 5", "cannot compare date with int", 1, 14),
        ("member.known == 1", "cannot compare bool with int", 1, 17),
        ("member.known == None", "cannot compare bool with None: it is never None", 1, 17),
        ("event.total_minor", "condition must be bool, but this is int", 1, 1),
        ("lower(event.type)", "condition must be bool, but this is str", 1, 1),
        ("event.attrs['x']", "condition must be bool, but this is any", 1, 1),
        ("member.known and event.hour", "and/or needs True/False, but 'event.hour' is int", 1, 18),
        ("not event.type", "not needs True/False, but 'event.type' is str", 1, 5),
        ("event.total_minor + 'a' > 0", "'+' needs numbers, but 'a' is str", 1, 21),
        ("event.attrs['n'] + 1 > 0", "'+' needs numbers, but 'event.attrs['n']' is any", 1, 1),
        ("-event.type == 1", "unary minus needs numbers", 1, 2),
        (
            "line.tags > 'a'",
            "'>' needs numbers, strings or dates, but 'line.tags' is list[str]",
            1,
            1,
        ),
        ("member.known < True", "'<' needs numbers, strings or dates", 1, 1),
        ("line.tags == ['a']", "lists cannot be compared with == or !=", 1, 14),
        (
            "event.date == '2026-13-01'",
            "'2026-13-01' is not a date; write dates as 'YYYY-MM-DD'",
            1,
            15,
        ),
        (
            "(1 if member.known else 'a') == 1",
            "both branches must have the same type (int vs str)",
            1,
            2,
        ),
        ("(1 if event.hour else 2) == 1", "needs True/False", 1, 7),
        ("event.weekday in 'abc'", "'in' on a string looks for a substring", 1, 1),
        ("event.weekday in event.hour", "'in' needs a list, set or string on the right", 1, 18),
        ("event.weekday in ['a']", "cannot look for int in list[str]", 1, 1),
        ("[1, 'a'] == [1]", "all items must have the same type (int vs str)", 1, 5),
        ("event.weekday in [event.hour]", "collection items must be literals", 1, 19),
        ("event.weekday in [[1]]", "collection items must be literals", 1, 19),
        ("len(member.known) > 0", "len() needs a string or a list", 1, 5),
        ("len(line.sku, 1) > 0", "len() takes 1 argument, got 2", 1, 1),
        ("min(1) == 1", "min() takes at least 2 arguments, got 1", 1, 1),
        ("max(event.type, 1) == 1", "max() needs numbers", 1, 5),
        ("abs('a') == 1", "abs() needs numbers", 1, 5),
        ("lower(event.hour) == 'a'", "lower() needs a string", 1, 7),
        ("upper(1) == 'A'", "upper() needs a string", 1, 7),
        ("startswith(line.sku)", "startswith() takes 2 arguments, got 1", 1, 1),
        ("endswith(line.sku, 1)", "endswith() needs a string", 1, 20),
        ("has_any(line.sku, ['a'])", "has_any() needs lists, but 'line.sku' is str", 1, 9),
        ("has_all(line.tags, [1])", "cannot look for int in list[str]", 1, 20),
        ("has_any(line.tags, 'a')", "has_any() needs lists", 1, 20),
        ("len(x=line.sku) > 0", "keyword arguments are not allowed", 1, 7),
        (
            "line.sku.startswith('4')",
            "method calls are not allowed; write startswith(value, ...)",
            1,
            1,
        ),
        ("line.sku.strip() == ''", "method calls are not allowed (functions: len, abs", 1, 1),
        ("round(event.hour) == 1", "unknown function 'round'", 1, 1),
        ("lenn(line.tags) == 1", "unknown function 'lenn' (did you mean 'len'?)", 1, 1),
        ("lower == 1", "'lower' is a function; call it", 1, 1),
        (
            "event.attrs['a']['b'] == 1",
            '[...] is only allowed on attribute maps, e.g. event.attrs["key"]',
            1,
            1,
        ),
        ("event.attrs[1] == 1", "the key must be a string literal", 1, 13),
        ("event.attrs[line.sku] == 1", "the key must be a string literal", 1, 13),
        ("line.tags[0] == 'a'", "[...] is only allowed on attribute maps", 1, 1),
        ("line.tags[0:1] == 'a'", "slices are not allowed", 1, 11),
        ("event.type['a'] == 1", "'event.type' is str", 1, 1),
        ("member", "'member' is a record; use one of its fields, e.g. member.tier", 1, 1),
        ("event == 1", "'event' is a record", 1, 1),
        ("event.attrs == 1", "'event.attrs' is an attribute map", 1, 1),
        ("tier == 'gold'", "unknown name 'tier' (available: event, member, line)", 1, 1),
        ("evnt.type == 'a'", "unknown name 'evnt' (did you mean 'event'?)", 1, 1),
        ("event.type is None", "'is' is not allowed; use == None or != None", 1, 1),
        ("event.hour >> 1 == 0", "bitwise and matrix operators are not allowed", 1, 1),
        ("~event.hour == 0", "bitwise operators are not allowed", 1, 1),
        ("event.hour ** 2 == 4", "** (power) is not allowed", 1, 1),
        ("b'x' == b'x'", "bytes literals are not allowed", 1, 1),
        ("1j == 1j", "complex numbers are not allowed", 1, 1),
        ("... == 1", "Ellipsis is not allowed", 1, 1),
        ("{'a': 1} == 1", "dict literals are not allowed", 1, 1),
        ("0.1234567890123456 > 0", "too many decimal places (at most 15)", 1, 1),
        ("1e16 > 0", "number too large", 1, 1),
        ("10000000000000000 > 0", "number too large (at most 1,000,000,000,000,000)", 1, 1),
        ("event.total_minor > ", "syntax error", 1, 21),
        ("event.total_minor >", "syntax error", 1, 20),
        ("(event.total_minor > 1", "syntax error", 1, 1),
        ("event.total_minor > 1)", "syntax error", 1, 22),
        ("event..type == 'a'", "syntax error", 1, 7),
        ("event.type = 'a'", "syntax error", 1, 1),
        ("x if", "syntax error", 1, 5),
        ("", "expression is empty", 1, 1),
        ("   \n ", "expression is empty", 1, 1),
        ("member.known and\n  event.type == 1", "cannot compare str with int", 2, 17),
        ("member.known and\r\n  event.type == 1", "cannot compare str with int", 2, 17),
        ("'äöü' == event.total_minor", "cannot compare str with int", 1, 10),
        ("'äöü' == 'x' and event.typo", "unknown field 'event.typo'", 1, 24),
        ("event.type == 'a' and €", "unexpected character '€'", 1, 23),
        ("event.type == 'a'\x00", "control characters are not allowed", 1, 18),
    ],
)
def test_errors_have_positions(source: str, message: str, line: int, column: int) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_condition(source, LINE_SCOPE)
    error = info.value
    assert message in error.message
    assert (error.line, error.column) == (line, column), error.to_dict()
    # offset is the same position, 0-based, into the source
    lines = source.replace("\r\n", "\n").split("\n")
    expected = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    if "\r\n" in source:
        expected += line - 1
    assert error.offset == expected
    assert error.to_dict() == {
        "message": error.message,
        "line": line,
        "column": column,
        "offset": error.offset,
    }
    assert str(error).endswith(f"(line {line}, column {column})")


def test_line_fields_are_unknown_in_order_conditions() -> None:
    with pytest.raises(ExpressionError, match="unknown name 'line'"):
        compile_condition("'organic' in line.tags", ORDER_SCOPE)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown name"):
        check("nothing", ORDER_SCOPE)


# --------------------------------------------------------------------------- generated code


def test_translate_uses_the_given_names_and_hoists_constants() -> None:
    constants: dict[str, object] = {}
    code = translate(
        "event.channel == 'app' and line.unit_price_minor * 1.5 > 300 and "
        "event.weekday in [6, 7] and event.date >= '2026-12-01'",
        LINE_SCOPE,
        {"event": "e", "member": "m", "line": "ln"},
        constants=constants,
    )
    assert "e.channel" in code
    assert "ln.unit_price_minor" in code
    assert "event" not in code
    assert "line." not in code
    assert set(constants) == {"_k0", "_k1", "_k2"}
    assert Decimal("1.5") in constants.values()
    assert frozenset({6, 7}) in constants.values()
    assert date(2026, 12, 1) in constants.values()
    # A second translation into the same dict gets fresh names.
    translate(
        "event.hour * 2.5 > 1",
        LINE_SCOPE,
        {"event": "e", "member": "m", "line": "ln"},
        constants=constants,
    )
    assert len(constants) == 4


def test_translate_without_constants_inlines_them() -> None:
    code = translate(
        "event.total_minor * 1.5 > 10 and event.weekday in [6, 7] and event.date > '2026-01-01'",
        ORDER_SCOPE,
        {"event": "e", "member": "m"},
    )
    assert "_rt_D('1.5')" in code
    assert "_rt_date(2026, 1, 1)" in code
    namespace = runtime_globals()
    values = views()
    assert eval(f"lambda e, m: {code}", namespace)(values["event"], values["member"]) is True


def test_translate_needs_every_root_named() -> None:
    with pytest.raises(ValueError, match="no variable name for member"):
        translate("event.hour > 1", ORDER_SCOPE, {"event": "e"})


def test_translate_result_type() -> None:
    assert translate("event.hour + 1", ORDER_SCOPE, {"event": "e", "member": "m"}, result=None)
    with pytest.raises(ExpressionError, match="condition must be bool"):
        translate("event.hour + 1", ORDER_SCOPE, {"event": "e", "member": "m"})


def test_compiled_condition_runs_without_builtins() -> None:
    condition = compile_condition("len(line.tags) == 2", LINE_SCOPE)
    assert condition.function.__globals__["__builtins__"] == {}
    assert condition.source == "len(line.tags) == 2"
    assert condition.python.startswith("def _condition(event, member, line):")
    assert set(RUNTIME) >= {f"_rt_{name}" for name in ("lower", "upper", "has_any", "has_all")}
    assert len(FUNCTIONS) == 11


def test_plain_comparison_chains_stay_chains() -> None:
    condition = compile_condition("1 <= event.weekday <= 7", ORDER_SCOPE)
    assert "1 <= event.weekday <= 7" in condition.python
    # With an optional value in the middle, each link is None-safe on its own.
    condition = compile_condition("'a' <= member.tier <= 'z'", ORDER_SCOPE)
    assert "_rt_le" in condition.python
    values = views(tier="gold")
    assert condition(event=values["event"], member=values["member"]) is True


def test_custom_scope() -> None:
    scope = Scope({"order": Record("order", {"total": INT, "coupon": optional(STR)})})
    condition = compile_condition("order.total > 10 and order.coupon == None", scope)

    class Order:
        total = 11
        coupon = None

    assert condition(order=Order()) is True
