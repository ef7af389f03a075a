"""The rule-set evaluator: what an event earns under a published rule set.

``compile_rule_set`` runs once per publication. It sorts the rules by (priority, rule
id), groups them by trigger and generates ONE Python function per trigger that
evaluates every order condition once and every line condition once per line. A
``purchase`` therefore costs one call of compiled code for all its conditions, and rules
of other triggers cost nothing.

``RuleSet.evaluate`` then applies the effects in pure integer arithmetic: every amount is
an integer multiple of ``1 / scale``, where ``scale`` is chosen per trigger so that rates,
multiplier factors and percentages divide exactly (never a float, never an intermediate
rounding). Each rule's award is rounded once, with the rule's rounding, per order (or per
line with ``rounding_scope="line"``). The semantics, with worked examples, are in
``docs/rules.md``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from operator import add, sub
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from treu.kit.explanations import reason_text, render_explanation
from treu.kit.money import Rounding, currency_exponent
from treu.rules.expr import runtime_globals, translate
from treu.rules.spec import (
    LINE_SCOPE,
    ORDER_SCOPE,
    Badge,
    BadgeOnly,
    Fixed,
    Multiplier,
    PercentBonus,
    PointsPerUnit,
    RuleSetSettings,
    RuleSpec,
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class LineView:
    """One cart line as conditions see it (``line.*``)."""

    sku: str
    name: str | None
    category: str | None
    quantity: int
    unit_price_minor: int
    total_minor: int
    tags: tuple[str, ...]

    @classmethod
    def of(
        cls,
        sku: str,
        *,
        unit_price_minor: int,
        quantity: int = 1,
        total_minor: int | None = None,
        name: str | None = None,
        category: str | None = None,
        tags: Iterable[str] = (),
    ) -> LineView:
        """``total_minor`` defaults to quantity x unit price (what purchases earn on)."""
        total = quantity * unit_price_minor if total_minor is None else total_minor
        return cls(sku, name, category, quantity, unit_price_minor, total, tuple(tags))


@dataclass(frozen=True, slots=True)
class EventView:
    """The event as conditions see it (``event.*``), plus its lines and time."""

    type: str
    channel: str | None
    store: str | None
    currency: str | None
    total_minor: int
    item_count: int
    line_count: int
    weekday: int
    hour: int
    date: dt.date
    attrs: Mapping[str, Any]
    lines: tuple[LineView, ...]
    occurred_at: dt.datetime

    @classmethod
    def purchase(
        cls,
        *,
        occurred_at: dt.datetime,
        timezone: str,
        currency: str,
        lines: Sequence[LineView],
        channel: str | None = None,
        store: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        type: str = "purchase",
    ) -> EventView:
        """A purchase (or a cart at the checkout): totals come from the lines, weekday,
        hour and date from ``occurred_at`` in the programme's ``timezone``."""
        local = _local(occurred_at, timezone)
        return cls(
            type=type,
            channel=channel,
            store=store,
            currency=currency,
            total_minor=sum(line.total_minor for line in lines),
            item_count=sum(line.quantity for line in lines),
            line_count=len(lines),
            weekday=local.isoweekday(),
            hour=local.hour,
            date=local.date(),
            attrs=attrs if attrs is not None else _EMPTY,
            lines=tuple(lines),
            occurred_at=occurred_at,
        )

    @classmethod
    def engagement(
        cls,
        type: str,
        *,
        occurred_at: dt.datetime,
        timezone: str,
        attrs: Mapping[str, Any] | None = None,
        channel: str | None = None,
        store: str | None = None,
    ) -> EventView:
        """An engagement event (``review_submitted``, ...): no lines, no amount."""
        local = _local(occurred_at, timezone)
        return cls(
            type=type,
            channel=channel,
            store=store,
            currency=None,
            total_minor=0,
            item_count=0,
            line_count=0,
            weekday=local.isoweekday(),
            hour=local.hour,
            date=local.date(),
            attrs=attrs if attrs is not None else _EMPTY,
            lines=(),
            occurred_at=occurred_at,
        )

    def with_lines(self, kept: Sequence[int]) -> EventView:
        """The same event with only the lines at ``kept`` (indices into ``lines``):
        what the kept part of a partly returned order would have earned."""
        lines = tuple(self.lines[i] for i in kept)
        removed = sum(line.total_minor for line in self.lines) - sum(
            line.total_minor for line in lines
        )
        return EventView(
            type=self.type,
            channel=self.channel,
            store=self.store,
            currency=self.currency,
            total_minor=self.total_minor - removed,
            item_count=sum(line.quantity for line in lines),
            line_count=len(lines),
            weekday=self.weekday,
            hour=self.hour,
            date=self.date,
            attrs=self.attrs,
            lines=lines,
            occurred_at=self.occurred_at,
        )


@dataclass(frozen=True, slots=True)
class MemberView:
    """The member as conditions see it (``member.*``)."""

    tier: str | None
    segments: frozenset[str]
    days_enrolled: int
    birthday_month: bool
    language: str | None
    channel: str | None
    attrs: Mapping[str, Any]
    known: bool

    @classmethod
    def of(
        cls,
        *,
        at: dt.datetime,
        timezone: str,
        enrolled_at: dt.datetime | None = None,
        birthday: dt.date | None = None,
        tier: str | None = None,
        segments: Iterable[str] = (),
        language: str | None = None,
        channel: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> MemberView:
        """A known member as of ``at`` (the event time): days since enrolment and the
        birthday month are counted in the programme's ``timezone``."""
        local = _local(at, timezone).date()
        days = 0
        if enrolled_at is not None:
            days = max((local - _local(enrolled_at, timezone).date()).days, 0)
        return cls(
            tier=tier,
            segments=frozenset(segments),
            days_enrolled=days,
            birthday_month=birthday is not None and birthday.month == local.month,
            language=language,
            channel=channel,
            attrs=attrs if attrs is not None else _EMPTY,
            known=True,
        )

    @classmethod
    def anonymous(cls) -> MemberView:
        """A cart without a member (the checkout shows what it would earn)."""
        return cls(None, frozenset(), 0, False, None, None, _EMPTY, False)


def _local(at: dt.datetime, timezone: str) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("datetime must carry a time zone")
    return at.astimezone(ZoneInfo(timezone))


# --------------------------------------------------------------------------- limits


class Headroom(NamedTuple):
    """What a rule may still award this member; None = unlimited. ``*_limit`` name the
    binding limit ("day", "week", "month", "lifetime", "budget") when the caller knows."""

    awards_left: int | None
    points_left: int | None
    awards_limit: str | None = None
    points_limit: str | None = None


class LimitView(Protocol):
    """Implemented by the caller from its stored counters (per member and rule)."""

    def headroom(self, rule_id: str) -> tuple[int | None, int | None] | Headroom:
        """(awards left, points left) over all of the rule's per-member limits and its
        budget combined; None = unlimited. Called only for rules that have limits and
        whose conditions hold."""
        ...


# --------------------------------------------------------------------------- results
# Texts (reasons, award explanations) come from the catalogue: ``treu.kit.explanations``.


class Award:
    """What one rule gives this event. ``line_points`` maps line index -> points and sums
    to ``points`` for line-based effects; it is empty for fixed and badge_only awards.
    ``amount_minor`` is the amount a points_per_unit rule earned on.

    Read-only by convention; the per-line split is built when first read (the ingest
    path only needs ``points``)."""

    __slots__ = (
        "_covered",
        "_line_points",
        "_parts",
        "amount_minor",
        "badge",
        "currency",
        "effect",
        "limited_by",
        "points",
        "rule",
        "rule_id",
        "rule_name",
        "version",
    )

    def __init__(
        self,
        rule_id: str,
        version: int,
        rule: RuleSpec,
        points: int,
        *,
        currency: str,
        limited_by: str | None = None,
        amount_minor: int = 0,
        covered: Sequence[int] = (),
        parts: Sequence[int] = (),
        line_points: Mapping[int, int] | None = None,
    ) -> None:
        self.rule_id = rule_id
        self.version = version
        self.rule = rule
        self.rule_name = rule.name
        self.effect = rule.effect.type
        self.badge = rule.badge
        self.points = points
        self.currency = currency
        self.limited_by = limited_by
        self.amount_minor = amount_minor
        self._covered = covered
        self._parts = parts
        self._line_points = dict(line_points) if line_points is not None else None

    @property
    def line_points(self) -> dict[int, int]:
        if self._line_points is None:
            self._line_points = {i: p for i, p in zip(self._covered, self._parts, strict=True) if p}
        return self._line_points

    def _key(self) -> tuple[Any, ...]:
        return (
            self.rule_id,
            self.version,
            self.points,
            sorted(self.line_points.items()),
            self.limited_by,
            self.amount_minor,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Award) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Award(rule_id={self.rule_id!r}, version={self.version}, effect={self.effect!r}, "
            f"points={self.points}, line_points={self.line_points}, "
            f"limited_by={self.limited_by!r})"
        )

    def remapped(self, index: Sequence[int]) -> Award:
        """The same award with line ``j`` renamed ``index[j]``."""
        return Award(
            self.rule_id,
            self.version,
            self.rule,
            self.points,
            currency=self.currency,
            limited_by=self.limited_by,
            amount_minor=self.amount_minor,
            line_points={index[i]: p for i, p in self.line_points.items()},
        )

    @property
    def template(self) -> str:
        return _template(self.rule)

    @property
    def params(self) -> dict[str, Any]:
        """The facts behind the explanation (JSON-ready)."""
        spec = self.rule
        effect = spec.effect
        params: dict[str, Any] = {"name": spec.name, "points": self.points}
        if isinstance(effect, PointsPerUnit):
            params["rate"] = str(effect.rate)
            params["currency"] = self.currency
            params["amount_minor"] = self.amount_minor
        elif isinstance(effect, Multiplier):
            params["factor"] = str(effect.factor)
        elif isinstance(effect, PercentBonus):
            params["percent"] = str(effect.percent)
        elif isinstance(effect, BadgeOnly) and spec.badge is not None:
            params["badge"] = spec.badge.name.model_dump()
        if self.limited_by is not None:
            params["limited_by"] = self.limited_by
        return params

    def explanation(self, lang: str = "en") -> str:
        return render_explanation(self.template, self.params, lang)

    def details(self) -> dict[str, Any]:
        """What to store with a posting to render the explanation again later."""
        return {
            "template": self.template,
            "params": self.params,
            "rule_id": self.rule_id,
            "rule_version": self.version,
        }


class BadgeAward(NamedTuple):
    rule_id: str
    version: int
    badge: Badge


class Skip(NamedTuple):
    """A rule of the trigger that gave nothing, and why (``reason`` is a code, see
    ``reason_text``; ``by`` is the excluding rule's id for ``excluded``)."""

    rule_id: str
    version: int
    rule_name: str
    reason: str
    by: str | None = None

    def text(self, lang: str = "en") -> str:
        return reason_text(self.reason, lang)


@dataclass(slots=True)
class Evaluation:
    """The result: ``points`` == sum of the awards' points == sum of ``line_points`` +
    the fixed awards. Awards are listed base first, then multipliers, percentage
    bonuses, fixed points and badges (each group in rule order)."""

    points: int
    awards: tuple[Award, ...]
    line_points: tuple[int, ...]
    badges: tuple[BadgeAward, ...]
    skipped: tuple[Skip, ...]

    def explanations(self, lang: str = "en") -> list[str]:
        return [award.explanation(lang) for award in self.awards]

    def award_for(self, rule_id: str) -> Award | None:
        return next((a for a in self.awards if a.rule_id == rule_id), None)

    def skip_for(self, rule_id: str) -> Skip | None:
        return next((s for s in self.skipped if s.rule_id == rule_id), None)

    def applied_points(self) -> dict[str, int]:
        """Points per rule that applied, including rules that applied but rounded to
        nothing (their exact amounts still count for multipliers and bonuses). Store it
        with the purchase and pass it as ``caps`` when recomputing after a return."""
        applied = {award.rule_id: award.points for award in self.awards}
        for skip in self.skipped:
            if skip.reason in ("no_points", "outranked"):
                applied[skip.rule_id] = 0
        return applied


# --------------------------------------------------------------------------- compilation


@dataclass(frozen=True, slots=True)
class CompiledRuleInput:
    """One published rule as the caller loads it (paused rules are left out)."""

    rule_id: str
    version: int
    spec: RuleSpec


_PPU, _MULT, _PERCENT, _FIXED, _BADGE = range(5)
_KIND = {
    "points_per_unit": _PPU,
    "multiplier": _MULT,
    "percent_bonus": _PERCENT,
    "fixed": _FIXED,
    "badge_only": _BADGE,
}


@dataclass(slots=True, eq=False)
class _Rule:
    rule_id: str
    version: int
    spec: RuleSpec
    kind: int
    rounding: Rounding
    exclusive: bool
    lined: bool  # covers individual lines (exclusion blocks those lines only)
    uses_lines: bool  # amount computed on lines (all effects but fixed and badge_only)
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
class _Applied:
    """A rule that applies to this event, the lines it covers and its exact amounts."""

    rule: _Rule
    covered: Sequence[int]
    cap: int | None
    cap_reason: str | None
    values: list[int] | None = None


@dataclass(slots=True, eq=False)
class _Program:
    rules: tuple[_Rule, ...]
    conditions: Callable[[EventView, MemberView, tuple[LineView, ...]], tuple[Any, Any]]
    scale: int
    source: str
    has_multipliers: bool
    has_percent: bool


_NAMES = {"event": "e", "member": "m", "line": "ln"}


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
    ids = [r.rule_id for r in rules]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate rule ids")
    by_trigger: dict[str, list[CompiledRuleInput]] = {}
    for item in sorted(rules, key=lambda r: (r.spec.priority, r.rule_id)):
        by_trigger.setdefault(item.spec.trigger, []).append(item)
    exponent = currency_exponent(currency)
    programs = {
        trigger: _compile_trigger(trigger, items, rounding, exponent)
        for trigger, items in by_trigger.items()
    }
    return RuleSet(
        programs,
        settings=settings,
        currency=currency,
        rounding=rounding,
        rounding_scope=str(rounding_scope),
        timezone=timezone,
    )


def _compile_trigger(
    trigger: str, items: list[CompiledRuleInput], rounding: Rounding, exponent: int
) -> _Program:
    constants: dict[str, object] = {}
    order_lines: list[str] = []
    line_lines: list[str] = []
    flags: list[str] = []
    matches: list[str] = []
    compiled: list[_Rule] = []
    rate_dens: list[int] = [1]
    factor_product = 1
    percent_dens: list[int] = [1]
    for k, item in enumerate(items):
        spec = item.spec
        effect = spec.effect
        kind = _KIND[effect.type]
        flag = f"c{k}"
        flags.append(flag)
        if spec.condition is not None:
            code = translate(spec.condition, ORDER_SCOPE, _NAMES, constants=constants)
            order_lines.append(f"    {flag} = {code}")
        else:
            order_lines.append(f"    {flag} = True")
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
            _Rule(
                rule_id=item.rule_id,
                version=item.version,
                spec=spec,
                kind=kind,
                rounding=spec.rounding or rounding,
                exclusive=spec.stacking == "exclusive",
                lined=lined,
                uses_lines=kind in (_PPU, _MULT, _PERCENT),
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
        if rule.kind == _PPU:
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
    return _Program(
        rules=tuple(compiled),
        conditions=namespace[f"_conditions_{trigger}"],
        scale=scale,
        source=source,
        has_multipliers=factor_product > 1 or any(r.kind == _MULT for r in compiled),
        has_percent=any(r.kind == _PERCENT for r in compiled),
    )


def _limit_names(spec: RuleSpec) -> tuple[str | None, str | None]:
    """The reason code to report when a limit stops or caps the rule, if unambiguous."""
    counts = [f"limit_{limit.per}" for limit in spec.limits if limit.max_count is not None]
    points = [f"limit_{limit.per}" for limit in spec.limits if limit.max_points is not None]
    if spec.budget_points is not None:
        points.append("budget")
    return (counts[0] if len(counts) == 1 else None), (points[0] if len(points) == 1 else None)


# --------------------------------------------------------------------------- evaluation


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
        programs: Mapping[str, _Program],
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
        program: _Program,
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
            if rule.kind == _PPU:
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
        if phases[_MULT]:
            extra = self._multiply(applied, phases[_MULT], base)
        if phases[_PERCENT]:
            earned = base if extra is None else list(map(add, base, extra))
            for position in phases[_PERCENT]:
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
                if rule.kind == _FIXED:
                    points = rule.fixed
                elif rule.kind == _BADGE:
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
    if kind != _PPU:
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


def _template(spec: RuleSpec) -> str:
    effect = spec.effect
    if isinstance(effect, PointsPerUnit):
        return "rules.points_per_unit" if effect.scope == "order" else "rules.points_per_unit.lines"
    return f"rules.{effect.type}"


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
