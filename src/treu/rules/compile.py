"""The compiler: published rules turned into one generated Python function per trigger.

``compile_programs`` runs once per publication (``compile_rule_set`` in
``treu.rules.engine`` wraps its result in a ``RuleSet``). It sorts the rules by
(priority, rule id), groups them by trigger and, for each trigger, writes the source of
ONE function that evaluates every order condition once and every line condition once per
line, returning one flag per rule and the matching line indices per line condition. Why
source code rather than an interpreter: a ``purchase`` then costs one call of compiled
code for all its conditions, and rules of other triggers cost nothing. (On the 50-rule
benchmark, interpreters evaluating the expressions one by one managed 165-1,450 carts/s,
plain compiled Python about 10,500: ``docs/rules.md``.)

Generating code is safe because ``treu.rules.expr`` writes every expression's Python
itself from a checked syntax tree (nothing a user typed reaches ``eval``); the function
runs with that module's runtime helpers as its only globals. ``RuleSet.source`` shows the
generated source for review and debugging.

The compiler also does the effects' arithmetic set-up ahead of time: each rate, factor
and percentage becomes an integer ratio, and each trigger gets the ``scale`` that makes
every amount the evaluator computes a whole number of ``1 / scale`` points. A
``CompiledRule`` holds what the evaluator needs per event as plain attributes, so the
evaluator goes back to the ``RuleSpec`` only for a validity window or a badge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from treu.kit.money import Rounding, currency_exponent
from treu.rules.expr import runtime_globals, translate
from treu.rules.spec import (
    LINE_SCOPE,
    ORDER_SCOPE,
    Fixed,
    Multiplier,
    PercentBonus,
    PointsPerUnit,
    RuleSpec,
)
from treu.rules.views import EventView, LineView, MemberView


@dataclass(frozen=True, slots=True)
class CompiledRuleInput:
    """One published rule as the caller loads it (paused rules are left out)."""

    rule_id: str
    version: int
    spec: RuleSpec


# Effect kinds. The evaluator groups applying rules into phases indexed by kind, so this
# is also the order awards are listed in: base points, multipliers, percentage bonuses,
# fixed points, badges. Plain ints: they are compared for every applying rule.
PPU, MULT, PERCENT, FIXED, BADGE = range(5)
_KIND = {
    "points_per_unit": PPU,
    "multiplier": MULT,
    "percent_bonus": PERCENT,
    "fixed": FIXED,
    "badge_only": BADGE,
}


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A rule as the evaluator reads it: the spec's facts it needs per event, worked out
    once (``scaled_rate`` is the rate in ``1 / scale`` points per minor unit)."""

    rule_id: str
    version: int
    spec: RuleSpec
    kind: int
    rounding: Rounding
    exclusive: bool
    lined: bool  # covers individual lines (exclusion blocks those lines only)
    uses_lines: bool  # amount computed on lines (all but badge_only and per-event fixed)
    match: int  # index into the generated function's line matches, or -1
    limited: bool
    windowed: bool
    ratio: tuple[int, int] = (0, 1)  # rate, factor or percent/100 as numerator, denominator
    scaled_rate: int = 0
    factor: Decimal = Decimal(0)
    count_limit: str | None = None
    points_limit: str | None = None
    name: str = ""
    effect: str = ""
    fixed: int = 0


@dataclass(slots=True, eq=False)
class Program:
    """One trigger's rules in evaluation order, its generated condition function and the
    ``scale`` of its amounts."""

    rules: tuple[CompiledRule, ...]
    conditions: Callable[[EventView, MemberView, tuple[LineView, ...]], tuple[Any, Any]]
    scale: int
    source: str
    has_multipliers: bool
    has_percent: bool


_NAMES = {"event": "e", "member": "m", "line": "ln"}


def compile_programs(
    rules: Sequence[CompiledRuleInput], *, currency: str, rounding: Rounding
) -> dict[str, Program]:
    """One ``Program`` per trigger, its rules in evaluation order (priority, rule id).

    Raises ``ExpressionError`` if a stored expression no longer compiles (it did when the
    rule was saved) and ``ValueError`` for duplicate rule ids."""
    ids = [r.rule_id for r in rules]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate rule ids")
    by_trigger: dict[str, list[CompiledRuleInput]] = {}
    for item in sorted(rules, key=lambda r: (r.spec.priority, r.rule_id)):
        by_trigger.setdefault(item.spec.trigger, []).append(item)
    exponent = currency_exponent(currency)
    return {
        trigger: _compile_trigger(trigger, items, rounding, exponent)
        for trigger, items in by_trigger.items()
    }


def _compile_trigger(
    trigger: str, items: list[CompiledRuleInput], rounding: Rounding, exponent: int
) -> Program:
    constants: dict[str, object] = {}
    order_lines: list[str] = []
    line_lines: list[str] = []
    flags: list[str] = []
    matches: list[str] = []
    compiled: list[CompiledRule] = []
    rate_dens: list[int] = [1]
    factor_product = 1
    percent_dens: list[int] = [1]
    for k, item in enumerate(items):
        spec = item.spec
        effect = spec.effect
        kind = _KIND[effect.type]
        flag = f"c{k}"
        flags.append(flag)
        code = "True"
        if spec.condition is not None:
            code = translate(spec.condition, ORDER_SCOPE, _NAMES, constants=constants)
        if spec.members is not None:
            # A member list: one hash look-up, before the condition.
            listed = f"_members{k}"
            constants[listed] = frozenset(str(member) for member in spec.members)
            code = f"m.id in {listed}" if code == "True" else f"m.id in {listed} and {code}"
        order_lines.append(f"    {flag} = {code}")
        match = -1
        if spec.line_condition is not None:
            match = len(matches)
            name = f"l{k}"
            matches.append(name)
            code = translate(spec.line_condition, LINE_SCOPE, _NAMES, constants=constants)
            order_lines.append(f"    {name} = []")
            line_lines.append(f"        if {flag} and {code}:\n            {name}.append(i)")
        ratio = (0, 1)
        factor = Decimal(0)
        if isinstance(effect, PointsPerUnit):
            ratio = effect.rate.as_integer_ratio()
            rate_dens.append(ratio[1])
        elif isinstance(effect, Multiplier):
            ratio = effect.factor.as_integer_ratio()
            factor_product *= ratio[1]
            factor = effect.factor
        elif isinstance(effect, PercentBonus):
            numerator, denominator = effect.percent.as_integer_ratio()
            ratio = (numerator, denominator * 100)
            percent_dens.append(ratio[1])
        lined = spec.line_scoped
        count_limit, points_limit = _limit_names(spec)
        compiled.append(
            CompiledRule(
                rule_id=item.rule_id,
                version=item.version,
                spec=spec,
                kind=kind,
                rounding=spec.rounding or rounding,
                exclusive=spec.stacking == "exclusive",
                lined=lined,
                uses_lines=kind in (PPU, MULT, PERCENT) or (kind == FIXED and lined),
                match=match,
                limited=bool(spec.limits) or spec.budget_points is not None,
                windowed=spec.valid_from is not None or spec.valid_until is not None,
                ratio=ratio,
                factor=factor,
                count_limit=count_limit,
                points_limit=points_limit,
                name=spec.name,
                effect=effect.type,
                fixed=effect.points if isinstance(effect, Fixed) else 0,
            )
        )
    # Every amount is an integer number of 1/scale points: rates divide 10**exponent *
    # lcm(rate denominators); each multiplier divides by its denominator at most once;
    # percentages divide by lcm(percent denominators).
    scale = 10**exponent * math.lcm(*rate_dens) * factor_product * math.lcm(*percent_dens)
    for rule in compiled:
        if rule.kind == PPU:
            numerator, denominator = rule.ratio
            rule.scaled_rate = numerator * (scale // (denominator * 10**exponent))
    body = [f"def _conditions_{trigger}(e, m, lines):", *order_lines]
    if line_lines:
        any_flag = " or ".join(f"c{k}" for k, r in enumerate(compiled) if r.match >= 0)
        body.append(f"    if {any_flag}:")
        body.append("        for i, ln in enumerate(lines):")
        body.extend("    " + text.replace("\n", "\n    ") for text in line_lines)
    flag_tuple = "(" + "".join(f + ", " for f in flags) + ")"
    match_tuple = "(" + "".join(m + ", " for m in matches) + ")"
    body.append(f"    return {flag_tuple}, {match_tuple}")
    source = "\n".join(body) + "\n"
    namespace = runtime_globals(constants)
    namespace["enumerate"] = enumerate
    exec(compile(source, f"<rules:{trigger}>", "exec"), namespace)
    return Program(
        rules=tuple(compiled),
        conditions=namespace[f"_conditions_{trigger}"],
        scale=scale,
        source=source,
        has_multipliers=factor_product > 1 or any(r.kind == MULT for r in compiled),
        has_percent=any(r.kind == PERCENT for r in compiled),
    )


def _limit_names(spec: RuleSpec) -> tuple[str | None, str | None]:
    """The reason code to report when a limit stops or caps the rule, if unambiguous."""
    counts = [f"limit_{limit.per}" for limit in spec.limits if limit.max_count is not None]
    points = [f"limit_{limit.per}" for limit in spec.limits if limit.max_points is not None]
    if spec.budget_points is not None:
        points.append("budget")
    return (counts[0] if len(counts) == 1 else None), (points[0] if len(points) == 1 else None)
