"""Challenge definitions as marketing staff write them, and their compiled form.

A challenge is a goal over a window: "3 purchases in May" (``count``), "buy from 3
different categories" (``distinct`` over ``line.category``), "spend EUR 200 this month"
(``sum``), "write 2 reviews a week". Which events count is said with the earning rules'
expression language (``treu.rules.expr``): a ``condition`` over ``event`` and ``member``
and, for purchases, a ``line_condition`` over each cart line. Validating a
``ChallengeSpec`` compiles every expression, so a challenge with a syntax or type error
is never saved; the pydantic error carries the expression's line, column and offset in
``ctx`` exactly as for rules (``treu.rules.spec.expression_error_details`` reads it).

``CompiledChallenge.contribution`` is pure: given an event and a member view it answers
what the event adds to the goal (1 event, an amount, or a set of values), or None.
Periods (``period_of``) are calendar weeks or months in the programme's time zone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from treu.rules.engine import EventView, LineView, MemberView
from treu.rules.expr import (
    Condition,
    ExpressionError,
    Scope,
    check,
    compile_condition,
    runtime_globals,
    translate,
)
from treu.rules.spec import (
    LINE_SCOPE,
    ORDER_SCOPE,
    Badge,
    LocalizedText,
    Trigger,
    checked_condition,
    expression_error,
)

MAX_TARGET = 10**12
FIXED_PERIOD = "window"
"""Period key of a fixed window: it has exactly one period."""
TOTAL_PERIOD = "all"
"""Progress row that counts a member's completions over all periods (repeating windows)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- goals


class CountGoal(_Model):
    """``target`` matching events: "3 purchases", "2 reviews"."""

    type: Literal["count"] = "count"
    target: int = Field(ge=1, le=100_000, examples=[3])


class DistinctGoal(_Model):
    """``target`` different values of ``value``: over the matching lines of a purchase
    when it mentions ``line`` ("3 different categories": ``line.category``), else once per
    event ("3 different stores": ``event.store``). Missing values (None) do not count;
    a list (``line.tags``) counts each of its items."""

    type: Literal["distinct"] = "distinct"
    target: int = Field(ge=1, le=1_000, examples=[3])
    value: str = Field(min_length=1, examples=["line.category"])


class SumGoal(_Model):
    """``target`` as the sum of ``value`` over the matching lines (when it mentions
    ``line``) or events: spend in minor units (``line.total_minor``, the default for
    purchases), items (``line.quantity``), ... Only whole numbers above 0 count
    (decimals are rounded down)."""

    type: Literal["sum"] = "sum"
    target: int = Field(ge=1, le=MAX_TARGET, examples=[20_000])
    value: str | None = Field(
        default=None,
        description="Default for purchases: line.total_minor (spend in minor units)",
        examples=["line.total_minor"],
    )


Goal = Annotated[CountGoal | DistinctGoal | SumGoal, Field(discriminator="type")]


# --------------------------------------------------------------------------- windows


class FixedWindow(_Model):
    """One period from ``starts_at`` (inclusive) to ``ends_at`` (exclusive): "in May"."""

    type: Literal["fixed"] = "fixed"
    starts_at: AwareDatetime = Field(examples=["2026-05-01T00:00:00+02:00"])
    ends_at: AwareDatetime = Field(examples=["2026-06-01T00:00:00+02:00"])

    @model_validator(mode="after")
    def _order(self) -> FixedWindow:
        if self.ends_at <= self.starts_at:
            raise PydanticCustomError("window", "ends_at must be after starts_at")
        return self


class RepeatingWindow(_Model):
    """A new period every calendar week (Monday to Sunday) or month, in the programme's
    time zone; optionally only between ``starts_at`` and ``ends_at``."""

    type: Literal["repeating"] = "repeating"
    every: Literal["week", "month"]
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _order(self) -> RepeatingWindow:
        if self.starts_at is not None and self.ends_at is not None:
            if self.ends_at <= self.starts_at:
                raise PydanticCustomError("window", "ends_at must be after starts_at")
        return self


Window = Annotated[FixedWindow | RepeatingWindow, Field(discriminator="type")]


class Reward(_Model):
    """What completing the challenge gives: points (available at once) and/or a badge
    (each badge code is held once per member)."""

    points: int = Field(default=0, ge=0, le=10_000_000)
    badge: Badge | None = None

    @model_validator(mode="after")
    def _something(self) -> Reward:
        if self.points == 0 and self.badge is None:
            raise PydanticCustomError("reward_empty", "a reward needs points or a badge")
        return self


# --------------------------------------------------------------------------- spec


def value_scope(source: str, *, lines_allowed: bool) -> tuple[Scope, bool]:
    """The scope a goal ``value`` is evaluated in: per event, or per line when it
    mentions ``line``. Raises ``ExpressionError`` (of the scope the author meant)."""
    try:
        check(source, ORDER_SCOPE)
        return ORDER_SCOPE, False
    except ExpressionError:
        if not lines_allowed:
            raise
    check(source, LINE_SCOPE)  # its complaint, if any, knows every name
    return LINE_SCOPE, True


_SUMMABLE = ("int", "number", "any")
_DISTINCT = ("int", "number", "str", "date", "bool", "any", "list", "set")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ChallengeSpec(_Model):
    """One challenge. See docs/challenges.md."""

    code: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Unique in the programme; what shops and apps refer to",
        examples=["may-3-purchases"],
    )
    name: LocalizedText
    description: LocalizedText | None = None
    trigger: Annotated[list[Trigger], BeforeValidator(_as_list)] = Field(
        min_length=1,
        max_length=20,
        description="Event types that count: 'purchase' and/or engagement types",
        examples=[["purchase"], ["review_submitted"]],
    )
    condition: str | None = Field(
        default=None,
        description="Expression over event and member; empty means every event of the trigger",
        examples=["event.total_minor >= 2000"],
    )
    line_condition: str | None = Field(
        default=None,
        description="Expression over event, member and line (purchases only): only the "
        "matching lines count, and a purchase without one does not count at all",
        examples=["line.category != 'deposit'"],
    )
    goal: Goal
    window: Window
    max_completions: int | None = Field(
        default=1,
        ge=1,
        le=10_000,
        description="Completions per member over all periods (a period can be completed "
        "once); null = every period. A fixed window has one period.",
    )
    reward: Reward

    @field_validator("trigger")
    @classmethod
    def _triggers(cls, value: list[str]) -> list[str]:
        if "return" in value:
            raise PydanticCustomError(
                "trigger_return", "returns do not trigger challenges (they reduce progress)"
            )
        if len(set(value)) != len(value):
            raise PydanticCustomError("trigger_duplicate", "each trigger once")
        return value

    @field_validator("condition")
    @classmethod
    def _check_condition(cls, value: str | None) -> str | None:
        return checked_condition(value, ORDER_SCOPE, "condition")

    @field_validator("line_condition")
    @classmethod
    def _check_line_condition(cls, value: str | None) -> str | None:
        return checked_condition(value, LINE_SCOPE, "line_condition")

    @model_validator(mode="after")
    def _consistent(self) -> ChallengeSpec:
        purchases_only = self.trigger == ["purchase"]
        if self.line_condition is not None and not purchases_only:
            raise PydanticCustomError(
                "line_trigger",
                "a line_condition needs the trigger to be only 'purchase' "
                "(other events have no lines)",
            )
        goal = self.goal
        if isinstance(goal, DistinctGoal | SumGoal):
            source = goal.value
            if source is None:
                if not purchases_only:
                    raise PydanticCustomError(
                        "goal_value",
                        "a sum goal needs a value for triggers other than 'purchase' "
                        "(purchases sum line.total_minor by default)",
                    )
            else:
                try:
                    scope, _ = value_scope(source, lines_allowed=purchases_only)
                    kind = check(source, scope).kind
                except ExpressionError as exc:
                    raise expression_error("goal.value", exc) from None
                allowed = _SUMMABLE if isinstance(goal, SumGoal) else _DISTINCT
                if kind not in allowed:
                    raise PydanticCustomError(
                        "expression",
                        "{message} (line {line}, column {column})",
                        {
                            "field": "goal.value",
                            "message": f"a {goal.type} goal cannot use a value of type {kind}",
                            "line": 1,
                            "column": 1,
                            "offset": 0,
                        },
                    )
        if isinstance(self.window, FixedWindow) and self.max_completions not in (None, 1):
            raise PydanticCustomError(
                "max_completions_fixed",
                "a fixed window has one period and is completed at most once: "
                "use a repeating window for more completions",
            )
        return self

    @property
    def repeating(self) -> bool:
        return isinstance(self.window, RepeatingWindow)

    @property
    def frozen_part(self) -> dict[str, Any]:
        """What an active challenge may never change: what counts, how much is needed,
        when, and how often (changing it would change the meaning of progress already
        made). Names, descriptions and the reward stay editable."""
        data = self.model_dump()  # times compare as instants, whatever their offset
        keys = ("trigger", "condition", "line_condition", "goal", "window", "max_completions")
        return {key: data[key] for key in keys}


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True, slots=True)
class Period:
    key: str
    starts_at: datetime | None
    ends_at: datetime | None
    """Exclusive; bounded by the window's own start and end."""


def _week_start(day: date) -> date:
    return day - timedelta(days=day.isoweekday() - 1)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _at_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def period_of(window: FixedWindow | RepeatingWindow, at: datetime, timezone: str) -> Period | None:
    """The period ``at`` falls in, or None when it lies outside the window."""
    if isinstance(window, FixedWindow):
        if window.starts_at <= at < window.ends_at:
            return Period(FIXED_PERIOD, window.starts_at, window.ends_at)
        return None
    if window.starts_at is not None and at < window.starts_at:
        return None
    if window.ends_at is not None and at >= window.ends_at:
        return None
    zone = ZoneInfo(timezone)
    day = at.astimezone(zone).date()
    if window.every == "week":
        first = _week_start(day)
        after = first + timedelta(days=7)
        year, week, _ = first.isocalendar()
        key = f"week:{year}-W{week:02d}"
    else:
        first = _month_start(day)
        after = _next_month(first)
        key = f"month:{first.year}-{first.month:02d}"
    starts = _at_midnight(first, zone)
    ends = _at_midnight(after, zone)
    if window.starts_at is not None and window.starts_at > starts:
        starts = window.starts_at
    if window.ends_at is not None and window.ends_at < ends:
        ends = window.ends_at
    return Period(key, starts, ends)


def period_bounds(
    window: FixedWindow | RepeatingWindow, key: str, timezone: str
) -> tuple[datetime | None, datetime | None]:
    """Start and end of a stored period key (for the member's history)."""
    if key == FIXED_PERIOD and isinstance(window, FixedWindow):
        return window.starts_at, window.ends_at
    zone = ZoneInfo(timezone)
    try:
        if key.startswith("week:"):
            year, week = key[5:].split("-W")
            first = date.fromisocalendar(int(year), int(week), 1)
            after = first + timedelta(days=7)
        elif key.startswith("month:"):
            year, month = key[6:].split("-")
            first = date(int(year), int(month), 1)
            after = _next_month(first)
        else:
            return None, None
    except ValueError:
        return None, None
    return _at_midnight(first, zone), _at_midnight(after, zone)


# --------------------------------------------------------------------------- compiled

Contribution = int | frozenset[str]
"""What one event adds: a number (count and sum goals) or values (distinct goals)."""


def _compile_value(source: str, scope: Scope) -> Callable[..., Any]:
    names = {root: root for root in scope.roots}
    constants: dict[str, object] = {}
    expression = translate(source, scope, names, constants=constants, result=None)
    python = f"def _value({', '.join(names.values())}):\n    return {expression}\n"
    namespace = runtime_globals(constants)
    exec(compile(python, "<challenge value>", "exec"), namespace)
    function: Callable[..., Any] = namespace["_value"]
    return function


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return 0
    return max(int(value), 0)  # int() truncates; values below 0 count nothing


def _distinct_values(value: Any) -> Iterable[str]:
    if value is None or isinstance(value, dict):
        return ()
    if isinstance(value, list | tuple | set | frozenset):
        return [v for item in value for v in _distinct_values(item)]
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, date):
        return (value.isoformat(),)
    if isinstance(value, Decimal):
        return (str(value.normalize()),)
    return (str(value)[:200],)


@dataclass(eq=False)
class CompiledChallenge:
    """A challenge ready to judge events: its expressions compiled once."""

    id: uuid.UUID
    programme_id: uuid.UUID
    code: str
    spec: ChallengeSpec
    triggers: frozenset[str] = field(init=False)
    condition: Condition | None = field(init=False)
    line_condition: Condition | None = field(init=False)
    value: Callable[..., Any] | None = field(init=False)
    value_per_line: bool = field(init=False)
    uses_member: bool = field(init=False)
    uses_segments: bool = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        self.triggers = frozenset(spec.trigger)
        self.condition = compile_condition(spec.condition, ORDER_SCOPE) if spec.condition else None
        self.line_condition = (
            compile_condition(spec.line_condition, LINE_SCOPE) if spec.line_condition else None
        )
        goal = spec.goal
        source: str | None = None
        if isinstance(goal, DistinctGoal):
            source = goal.value
        elif isinstance(goal, SumGoal):
            source = goal.value or "line.total_minor"
        self.value, self.value_per_line = None, False
        generated = [c.python for c in (self.condition, self.line_condition) if c is not None]
        if source is not None:
            scope, self.value_per_line = value_scope(source, lines_allowed=True)
            self.value = _compile_value(source, scope)
            generated.append(translate(source, scope, {r: r for r in scope.roots}, result=None))
        self.uses_member = any("member." in text for text in generated)
        # As the rule engine decides it: only then is the member's segments' query made.
        self.uses_segments = any(".segments" in text for text in generated)

    @property
    def target(self) -> int:
        return self.spec.goal.target

    @property
    def distinct(self) -> bool:
        return isinstance(self.spec.goal, DistinctGoal)

    def contribution(self, event: EventView, member: MemberView) -> Contribution | None:
        """What ``event`` adds to this challenge's goal, or None if it does not count
        (wrong type, condition false, no matching line, nothing to add). The window is
        the caller's business (``period_of``)."""
        if event.type not in self.triggers:
            return None
        if self.condition is not None and not self.condition.function(event, member):
            return None
        lines: Sequence[LineView] = event.lines
        if self.line_condition is not None:
            check_line = self.line_condition.function
            lines = [line for line in lines if check_line(event, member, line)]
            if not lines:
                return None
        goal = self.spec.goal
        if isinstance(goal, CountGoal):
            return 1
        assert self.value is not None
        function = self.value
        try:
            if isinstance(goal, SumGoal):
                if self.value_per_line:
                    amount = sum(_number(function(event, member, line)) for line in lines)
                else:
                    amount = _number(function(event, member))
                return amount or None
            if self.value_per_line:
                values = frozenset(
                    v for line in lines for v in _distinct_values(function(event, member, line))
                )
            else:
                values = frozenset(_distinct_values(function(event, member)))
        except (ArithmeticError, TypeError, ValueError):
            return None  # a value must never break an event's ingestion
        return values or None
