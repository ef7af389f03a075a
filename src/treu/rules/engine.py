"""The rule-set evaluator: what an event earns under a published rule set.

The engine in four modules (the expression language ``expr`` and the rule definitions
``spec`` underneath them):

* ``treu.rules.views``: the event, its lines and the member as conditions see them,
  built by the caller;
* ``treu.rules.compile``: once per publication, each trigger's rules become one
  generated Python function for all their conditions, plus the integer set-up of their
  effects (why generated code: see that module);
* this module: ``compile_rule_set``, which puts the compiled triggers in a ``RuleSet``,
  and ``RuleSet.evaluate``, which runs for every ingested event and every checkout
  preview;
* ``treu.rules.awards``: what evaluation returns (``Evaluation``, ``Award``, ``Skip``)
  and the ``LimitView`` through which the caller reports limits.

``RuleSet.evaluate`` calls the trigger's generated function once, walks the rules in
order (validity window, exclusion, conditions, matching lines, caps, limits), then
applies the effects in pure integer arithmetic: every amount is an integer multiple of
``1 / scale``, where ``scale`` is chosen per trigger so that rates, multiplier factors
and percentages divide exactly (never a float, never an intermediate rounding). Each
rule's award is rounded once, with the rule's rounding, per order (or per line with
``rounding_scope="line"``). The semantics, with worked examples, are in
``docs/rules.md``.

This runs on the hot path of ingest, so it reads what the compiler worked out ahead
(``CompiledRule``'s plain attributes) and computes on lists: one vector operation per rule
over the lines it covers.

Everything other packages import from ``treu.rules.engine`` is still importable from
here (the views, the results, ``CompiledRuleInput`` and the catalogue's ``reason_text``
and ``render_explanation``): ``docs/rules.md`` shows integrators this import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from operator import add, sub
from typing import Any, Literal
from zoneinfo import ZoneInfo

from treu.kit.explanations import reason_text, render_explanation
from treu.kit.money import Rounding
from treu.rules.awards import (
    Award,
    BadgeAward,
    Evaluation,
    Headroom,
    LimitView,
    Skip,
)
from treu.rules.compile import (
    BADGE,
    FIXED,
    MULT,
    PERCENT,
    PPU,
    CompiledRule,
    CompiledRuleInput,
    Program,
    compile_programs,
)
from treu.rules.spec import RuleSetSettings
from treu.rules.views import EventView, LineView, MemberView


def compile_rule_set(
    rules: Sequence[CompiledRuleInput],
    settings: RuleSetSettings | None = None,
    *,
    currency: str,
    rounding: Rounding,
    rounding_scope: Literal["order", "line"] | str = "order",
    timezone: str,
) -> RuleSet:
    """Compile published rules into a ``RuleSet`` (once per publication).

    Raises ``ExpressionError`` if a stored expression no longer compiles (it did when the
    rule was saved) and ``ValueError`` for duplicate rule ids."""
    settings = settings or RuleSetSettings()
    if rounding_scope not in ("order", "line"):
        raise ValueError(f"rounding_scope must be 'order' or 'line', not {rounding_scope!r}")
    ZoneInfo(timezone)  # fail now, not at the first event
    programs = compile_programs(rules, currency=currency, rounding=rounding)
    return RuleSet(
        programs,
        settings=settings,
        currency=currency,
        rounding=rounding,
        rounding_scope=str(rounding_scope),
        timezone=timezone,
    )


# --------------------------------------------------------------------------- evaluation


@dataclass(slots=True, eq=False)
class _Applied:
    """A rule that applies to this event, the lines it covers and its exact amounts."""

    rule: CompiledRule
    covered: Sequence[int]
    cap: int | None
    cap_reason: str | None
    values: list[int] | None = None


def _order_parts(values: list[int], scale: int, mode: Rounding) -> tuple[int, list[int]]:
    """Round a rule's exact amount once over the order and spread the points over its
    lines by cumulative rounding: line k gets round(amount of lines 1..k) minus
    round(amount of lines 1..k-1). The parts add up to the rounded total exactly, each
    line is within one point of its exact share, and it costs three C-level passes."""
    if not values:
        return 0, []
    cumulative = list(accumulate(values))
    if cumulative[-1] < 0:  # a reducing multiplier: round the size, keep the sign
        points, parts = _order_parts([-v for v in values], scale, mode)
        return -points, [-p for p in parts]
    if mode is Rounding.floor:
        rounded = [c // scale for c in cumulative]
    elif mode is Rounding.ceil:
        rounded = [-(-c // scale) for c in cumulative]
    else:
        double = 2 * scale
        rounded = [(2 * c + scale) // double for c in cumulative]
    return rounded[-1], [rounded[0], *map(sub, rounded[1:], rounded[:-1])]


def _line_parts(values: list[int], scale: int, mode: Rounding) -> list[int]:
    """Round a rule's exact amount on each line (``rounding_scope="line"``)."""
    if values and min(values) < 0:
        return [-p for p in _line_parts([-v for v in values], scale, mode)]
    if mode is Rounding.floor:
        return [v // scale for v in values]
    if mode is Rounding.ceil:
        return [-(-v // scale) for v in values]
    double = 2 * scale
    return [(2 * v + scale) // double for v in values]


def _shrink(parts: list[int], keep: int) -> None:
    """Scale ``parts`` (all >= 0) down to sum to ``keep`` (capping), proportionally with
    largest remainders, ties to the lower line."""
    total = sum(parts)
    if total <= 0:
        return
    shares = [p * keep // total for p in parts]
    rest = keep - sum(shares)
    if rest > 0:
        remainders = [p * keep % total for p in parts]
        order = sorted(range(len(parts)), key=remainders.__getitem__, reverse=True)
        for j in order[:rest]:
            shares[j] += 1
    parts[:] = shares


class RuleSet:
    """A compiled, immutable rule set. Thread-safe: evaluation only reads it."""

    def __init__(
        self,
        programs: Mapping[str, Program],
        *,
        settings: RuleSetSettings,
        currency: str,
        rounding: Rounding,
        rounding_scope: str,
        timezone: str,
    ) -> None:
        self._programs = dict(programs)
        self.settings = settings
        self.currency = currency
        self.rounding = rounding
        self.rounding_scope = rounding_scope
        self.timezone = timezone
        self._stacking = settings.multiplier_stacking

    @property
    def triggers(self) -> frozenset[str]:
        return frozenset(self._programs)

    @property
    def uses_segments(self) -> bool:
        """Whether a condition reads ``member.segments``: only then do callers look the
        member's segments up (one query), so rule sets without them cost nothing more."""
        return any(".segments" in program.source for program in self._programs.values())

    def source(self, trigger: str) -> str:
        """The generated Python of a trigger's conditions (for review and debugging)."""
        return self._programs[trigger].source

    def rule_ids(self, trigger: str) -> list[str]:
        """Rule ids of ``trigger`` in evaluation order."""
        program = self._programs.get(trigger)
        return [r.rule_id for r in program.rules] if program else []

    def condition_flags(
        self, event: EventView, member: MemberView
    ) -> tuple[tuple[bool, ...], tuple[list[int], ...]]:
        """The generated function's raw output (benchmarks and tests): one flag per
        rule of the event's trigger, and the matching line indices per line condition."""
        program = self._programs.get(event.type)
        if program is None:
            return (), ()
        flags, matches = program.conditions(event, member, event.lines)
        return tuple(flags), tuple(matches)

    def evaluate(
        self,
        event: EventView,
        member: MemberView,
        limits: LimitView | None = None,
        now: dt.datetime | None = None,
        *,
        caps: Mapping[str, int] | None = None,
    ) -> Evaluation:
        """What ``event`` earns ``member``. ``now`` is the time validity windows are
        checked at (default: the event's time). No side effects; deterministic.

        ``caps`` (rule id -> points, from ``Evaluation.applied_points()`` of the original
        purchase) is for recomputing an order after a return: every rule is held to what
        it gave then, and a rule not in ``caps`` does not apply at all (even one without
        limits, for which ``limits`` is never consulted)."""
        program = self._programs.get(event.type)
        lines = event.lines
        if program is None:
            return Evaluation(0, (), (0,) * len(lines), (), ())
        if event.currency is not None and lines and event.currency != self.currency:
            raise ValueError(
                f"event currency {event.currency} differs from the programme's {self.currency}"
            )
        at = now if now is not None else event.occurred_at
        flags, matches = program.conditions(event, member, lines)
        n = len(lines)
        everything = range(n)
        blocked: list[bool] | None = None
        stopper: str | None = None
        skipped: list[Skip] = []
        applied: list[_Applied] = []
        for k, rule in enumerate(program.rules):
            if rule.windowed and not rule.spec.active_at(at):
                skipped.append(Skip(rule.rule_id, rule.version, rule.name, "outside_validity"))
                continue
            if stopper is not None:
                skipped.append(Skip(rule.rule_id, rule.version, rule.name, "excluded", stopper))
                continue
            if not flags[k]:
                skipped.append(Skip(rule.rule_id, rule.version, rule.name, "condition_false"))
                continue
            covered: Sequence[int] = ()
            if rule.uses_lines:
                source: Sequence[int] = matches[rule.match] if rule.match >= 0 else everything
                covered = source if blocked is None else [i for i in source if not blocked[i]]
                if rule.lined and not covered:
                    reason = "no_matching_lines" if not source else "excluded"
                    skipped.append(Skip(rule.rule_id, rule.version, rule.name, reason))
                    continue
            cap: int | None = None
            cap_reason: str | None = None
            if caps is not None:
                allowed = caps.get(rule.rule_id)
                if allowed is None:
                    skipped.append(
                        Skip(rule.rule_id, rule.version, rule.name, "not_originally_awarded")
                    )
                    continue
                if allowed >= 0:  # a reduction (factor below 1) is not capped
                    cap, cap_reason = allowed, "original_award"
            if rule.limited and limits is not None:
                room = limits.headroom(rule.rule_id)
                awards_left, points_left = room[0], room[1]
                if awards_left is not None and awards_left <= 0:
                    reason = _named(room, 2) or rule.count_limit or "limit"
                    skipped.append(Skip(rule.rule_id, rule.version, rule.name, reason))
                    continue
                if points_left is not None and (cap is None or points_left < cap):
                    cap_reason = _named(room, 3) or rule.points_limit or "limit"
                    if points_left <= 0:
                        skipped.append(Skip(rule.rule_id, rule.version, rule.name, cap_reason))
                        continue
                    cap = points_left
            applied.append(_Applied(rule, covered, cap, cap_reason))
            if rule.exclusive:
                if rule.lined:
                    if blocked is None:
                        blocked = [False] * n
                    for i in covered:
                        blocked[i] = True
                else:
                    stopper = rule.rule_id
        return self._award(program, lines, applied, skipped)

    def evaluate_subset(
        self,
        event: EventView,
        member: MemberView,
        kept: Sequence[int],
        limits: LimitView | None = None,
        now: dt.datetime | None = None,
        *,
        caps: Mapping[str, int] | None = None,
    ) -> Evaluation:
        """Evaluate the same event with only the lines at ``kept``; line indices in the
        result refer to the ORIGINAL event's lines. A return reverses
        ``evaluate(event).points - evaluate_subset(event, kept).points``; pass the
        original awards as ``caps`` so no rule gives the kept lines more than it gave
        the whole order (a rule whose condition only holds for the smaller order)."""
        result = self.evaluate(event.with_lines(kept), member, limits, now, caps=caps)
        index = list(kept)
        line_points = [0] * len(event.lines)
        for position, points in enumerate(result.line_points):
            line_points[index[position]] += points
        awards = tuple(a.remapped(index) for a in result.awards)
        return Evaluation(result.points, awards, tuple(line_points), result.badges, result.skipped)

    # ---- effects

    def _award(
        self,
        program: Program,
        lines: tuple[LineView, ...],
        applied: list[_Applied],
        skipped: list[Skip],
    ) -> Evaluation:
        """Amounts per rule and line (exact, in 1/scale points), then rounded awards.

        Each effect is one vector operation per rule over the lines it covers, in rule
        order, which is the same as applying the rules line by line. Rules covering every
        line (order scope) use dense vectors, added with ``map(add, ...)``."""
        n = len(lines)
        scale = program.scale
        totals = [line.total_minor for line in lines]
        base = [0] * n
        phases: tuple[list[int], ...] = ([], [], [], [], [])
        for position, item in enumerate(applied):
            rule = item.rule
            phases[rule.kind].append(position)
            if rule.kind == PPU:
                rate = rule.scaled_rate
                covered = item.covered
                if type(covered) is range:
                    values = [rate * t for t in totals]
                    base = list(map(add, base, values))
                else:
                    values = [rate * totals[i] for i in covered]
                    for i, v in zip(covered, values, strict=True):
                        base[i] += v
                item.values = values
        extra: list[int] | None = None
        if phases[MULT]:
            extra = self._multiply(applied, phases[MULT], base)
        if phases[PERCENT]:
            earned = base if extra is None else list(map(add, base, extra))
            for position in phases[PERCENT]:
                item = applied[position]
                numerator, denominator = item.rule.ratio
                if type(item.covered) is range:
                    item.values = [e * numerator // denominator for e in earned]
                else:
                    item.values = [earned[i] * numerator // denominator for i in item.covered]
        line_scope = self.rounding_scope == "line"
        currency = self.currency
        awards: list[Award] = []
        badges: list[BadgeAward] = []
        line_points = [0] * n
        total = 0
        for phase in phases:
            for position in phase:
                item = applied[position]
                rule = item.rule
                spec = rule.spec
                covered = item.covered
                parts: list[int] = []
                if rule.kind == FIXED:
                    if rule.lined:  # the same points on each covered line
                        parts = [rule.fixed] * len(covered)
                        points = sum(parts)
                    else:
                        points = rule.fixed
                elif rule.kind == BADGE:
                    points = 0
                else:
                    exact = item.values
                    if exact is None:  # a multiplier outranked on every line
                        skipped.append(Skip(rule.rule_id, rule.version, rule.name, "outranked"))
                        continue
                    values = exact
                    if line_scope:
                        parts = _line_parts(values, scale, rule.rounding)
                        points = sum(parts)
                    else:
                        points, parts = _order_parts(values, scale, rule.rounding)
                limited_by: str | None = None
                cap = item.cap
                if cap is not None and points > cap:
                    points = cap
                    limited_by = item.cap_reason
                    if parts:
                        _shrink(parts, cap)
                if points == 0 and spec.badge is None:
                    skipped.append(Skip(rule.rule_id, rule.version, rule.name, "no_points"))
                    continue
                if parts:
                    if type(covered) is range:
                        line_points = list(map(add, line_points, parts))
                    else:
                        for i, p in zip(covered, parts, strict=True):
                            line_points[i] += p
                total += points
                awards.append(
                    Award(
                        rule.rule_id,
                        rule.version,
                        spec,
                        points,
                        currency=currency,
                        limited_by=limited_by,
                        amount_minor=_amount(rule.kind, covered, totals),
                        covered=covered,
                        parts=parts,
                    )
                )
                if spec.badge is not None:
                    badges.append(BadgeAward(rule.rule_id, rule.version, spec.badge))
        return Evaluation(total, tuple(awards), tuple(line_points), tuple(badges), tuple(skipped))

    def _multiply(
        self, applied: list[_Applied], positions: list[int], base: list[int]
    ) -> list[int]:
        """Each multiplier rule's extra points per covered line; returns the extra per line.

        additive: factors add up (x2 and x1.5 -> x2.5), the line never below x0;
        multiplicative: factors multiply (x3), each rule's extra is what it adds to the
        running product, in rule order; highest: only the largest factor on each line
        counts (ties: the first rule)."""
        n = len(base)
        stacking = self._stacking
        if stacking == "highest":
            best: list[Decimal | None] = [None] * n
            owner = [-1] * n
            for position in positions:
                item = applied[position]
                factor = item.rule.factor
                for i in item.covered:
                    current = best[i]
                    if current is None or factor > current:
                        best[i] = factor
                        owner[i] = position
            extra = [0] * n
            for position in positions:
                item = applied[position]
                a, d = item.rule.ratio
                mine = [i for i in item.covered if owner[i] == position]
                if not mine and item.covered:
                    item.values = None
                    continue
                values = [base[i] * (a - d) // d for i in mine]
                for i, v in zip(mine, values, strict=True):
                    extra[i] += v
                item.covered, item.values = mine, values
            return extra
        if stacking == "additive" and all(applied[p].rule.factor >= 1 for p in positions):
            extra = [0] * n
            for position in positions:
                item = applied[position]
                a, d = item.rule.ratio
                k = a - d
                if type(item.covered) is range:
                    values = [b * k // d for b in base]
                    extra = list(map(add, extra, values))
                else:
                    values = [base[i] * k // d for i in item.covered]
                    for i, v in zip(item.covered, values, strict=True):
                        extra[i] += v
                item.values = values
            return extra
        running = list(base)
        for position in positions:
            item = applied[position]
            a, d = item.rule.ratio
            if stacking == "multiplicative":
                values = [running[i] * (a - d) // d for i in item.covered]
            else:  # additive with a factor below 1: the line's factor stops at 0
                values = [
                    max(running[i] + base[i] * (a - d) // d, 0) - running[i] for i in item.covered
                ]
            for i, v in zip(item.covered, values, strict=True):
                running[i] += v
            item.values = values
        return [r - b for r, b in zip(running, base, strict=True)]


def _amount(kind: int, covered: Sequence[int], totals: list[int]) -> int:
    """What a points_per_unit rule earned on (for its explanation)."""
    if kind != PPU:
        return 0
    if type(covered) is range:
        return sum(totals)
    return sum([totals[i] for i in covered])


def _named(room: tuple[Any, ...], index: int) -> str | None:
    """The reason code for a limit the caller named in a ``Headroom``."""
    if len(room) > index and isinstance(room[index], str):
        name = str(room[index])
        return name if name in ("budget", "limit") or name.startswith("limit_") else f"limit_{name}"
    return None


__all__ = [
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
]
