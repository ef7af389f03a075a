"""Tier maths without a database: which tier a member's activity qualifies for on a day,
how long that lasts without more activity, and what is missing for the next tier.

Days are dates in the programme's time zone. ``Activity`` maps a day to what counted
that day (points, spend in minor units, purchases); the programme's metric picks one.

Windows:

* ``rolling_12_months``: on day D the window is ``[D - 12 months + 1 day, D]``: on
  24.11.2026 it runs from 25.11.2025. A day's activity leaves the window 12 months
  later (a 29 February leaves on 1 March).
* ``calendar_year``: the year so far; a tier reached in a year is kept through the next
  year, so on day D a member holds the better of what this year so far and the whole of
  last year reached. Everybody starting at zero on 1 January would otherwise lose their
  tier on New Year's Day.
"""

from __future__ import annotations

import calendar
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from treu.programmes.models import TierMetric, TierWindow

ONE_DAY = timedelta(days=1)


class DayActivity(NamedTuple):
    points: int = 0
    spend_minor: int = 0
    purchases: int = 0

    def metric(self, metric: TierMetric | str) -> int:
        if metric == TierMetric.spend:
            return self.spend_minor
        if metric == TierMetric.purchases:
            return self.purchases
        return self.points

    def plus(self, other: DayActivity) -> DayActivity:
        return DayActivity(
            self.points + other.points,
            self.spend_minor + other.spend_minor,
            self.purchases + other.purchases,
        )


Activity = Mapping[date, DayActivity]


@dataclass(frozen=True)
class TierDef:
    """One tier as the maths and the hot path see it (immutable, cached per programme)."""

    code: str
    rank: int
    name: Mapping[str, str]
    threshold: int
    multiplier: Decimal = Decimal(1)
    flags: tuple[str, ...] = ()
    benefits: tuple[Mapping[str, str], ...] = ()
    purchasable: bool = False
    description: Mapping[str, str] | None = None

    def label(self, lang: str = "en") -> str:
        return str(self.name.get(lang) or self.name.get("en") or self.code)


@dataclass(frozen=True)
class Ladder:
    """A programme's tiers, lowest rank first (thresholds rise with the rank)."""

    tiers: tuple[TierDef, ...]
    _by_code: dict[str, TierDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.tiers, key=lambda t: t.rank))
        object.__setattr__(self, "tiers", ordered)
        object.__setattr__(self, "_by_code", {t.code: t for t in ordered})

    def __bool__(self) -> bool:
        return bool(self.tiers)

    def get(self, code: str | None) -> TierDef | None:
        return self._by_code.get(code) if code is not None else None

    @property
    def base(self) -> TierDef | None:
        """The tier everybody holds: the lowest, if its threshold is 0."""
        if self.tiers and self.tiers[0].threshold == 0:
            return self.tiers[0]
        return None

    def reached(self, value: int) -> TierDef | None:
        """The highest tier whose threshold ``value`` reaches."""
        found = None
        for tier in self.tiers:
            if tier.threshold <= value:
                found = tier
            else:
                break
        return found

    def above(self, code: str | None) -> TierDef | None:
        """The next tier up from ``code`` (from nothing: the lowest)."""
        current = self.get(code)
        for tier in self.tiers:
            if current is None or tier.rank > current.rank:
                return tier
        return None

    def rank(self, code: str | None) -> int:
        """-1 for no tier, so that any tier outranks none."""
        tier = self.get(code)
        return tier.rank if tier is not None else -1

    def higher(self, a: str | None, b: str | None) -> str | None:
        return a if self.rank(a) >= self.rank(b) else b

    def down(self, code: str | None, steps: int) -> str | None:
        """``steps`` tiers below ``code`` (None below the lowest)."""
        current = self.get(code)
        if current is None:
            return None
        below = [t for t in self.tiers if t.rank < current.rank]
        if steps > len(below):
            return None
        return below[-steps].code if steps > 0 else current.code


# --------------------------------------------------------------------------- dates


def add_months(day: date, months: int) -> date:
    """Calendar months, the day clamped to the month's end (31.01. + 1 month = 28.02.)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def window_start(day: date, window: TierWindow | str) -> date:
    if window == TierWindow.calendar_year:
        return date(day.year, 1, 1)
    return add_months(day, -12) + ONE_DAY


def leaves_window(day: date) -> date:
    """The first day on which ``day``'s activity no longer counts (rolling window)."""
    candidate = add_months(day, 12)
    while window_start(candidate, TierWindow.rolling_12_months) <= day:
        candidate += ONE_DAY
    return candidate


def load_from(days: Iterable[date], window: TierWindow | str) -> date:
    """The earliest day whose activity can matter for evaluations on ``days``."""
    first = min(days)
    if window == TierWindow.calendar_year:
        return date(first.year - 1, 1, 1)  # last year's total still holds a tier
    return window_start(first, window)


# --------------------------------------------------------------------------- sums


def _picker(metric: TierMetric | str) -> Callable[[DayActivity], int]:
    """``DayActivity.metric`` as one attribute read: a page's tier status sums a year of
    days several times, and comparing the metric per day was most of it."""
    name = {TierMetric.spend: "spend_minor", TierMetric.purchases: "purchases"}.get(
        TierMetric(metric), "points"
    )
    return operator.attrgetter(name)


def total(activity: Activity, metric: TierMetric | str, start: date, end: date) -> int:
    pick = _picker(metric)
    return sum(pick(a) for d, a in activity.items() if start <= d <= end)


def value_on(
    activity: Activity, metric: TierMetric | str, window: TierWindow | str, day: date
) -> int:
    """What counts on ``day``: the rolling window, or the calendar year so far."""
    return total(activity, metric, window_start(day, window), day)


def qualified(
    ladder: Ladder,
    activity: Activity,
    metric: TierMetric | str,
    window: TierWindow | str,
    day: date,
) -> TierDef | None:
    """The tier the activity qualifies for on ``day``."""
    reached = ladder.reached(value_on(activity, metric, window, day))
    if window == TierWindow.calendar_year:
        last_year = total(activity, metric, date(day.year - 1, 1, 1), date(day.year - 1, 12, 31))
        kept = ladder.reached(last_year)
        if kept is not None and (reached is None or kept.rank > reached.rank):
            return kept
    return reached if reached is not None else ladder.base


def valid_until(
    tier: TierDef,
    activity: Activity,
    metric: TierMetric | str,
    window: TierWindow | str,
    day: date,
) -> date | None:
    """The last day ``tier`` stays qualified without further activity; None if the
    activity does not qualify for it on ``day``; ``date.max`` for a threshold of 0."""
    if tier.threshold == 0:
        return date.max
    if window == TierWindow.calendar_year:
        if value_on(activity, metric, window, day) >= tier.threshold:
            return date(day.year + 1, 12, 31)
        last_year = total(activity, metric, date(day.year - 1, 1, 1), date(day.year - 1, 12, 31))
        return date(day.year, 12, 31) if last_year >= tier.threshold else None
    start = window_start(day, window)
    pick = _picker(metric)
    days = sorted(d for d in activity if start <= d <= day)
    value = sum(pick(activity[d]) for d in days)
    if value < tier.threshold:
        return None
    for d in days:
        value -= pick(activity[d])
        if value < tier.threshold:
            return leaves_window(d) - ONE_DAY
    return None  # unreachable: a threshold > 0 is not met by an empty window


class Missing(NamedTuple):
    """``amount`` more of the metric by ``deadline`` (None: no deadline) reaches or keeps
    ``tier``."""

    tier: TierDef
    amount: int
    deadline: date | None


def to_reach(
    tier: TierDef,
    activity: Activity,
    metric: TierMetric | str,
    window: TierWindow | str,
    day: date,
) -> Missing:
    """What is missing for ``tier`` counted from ``day``. Rolling: the deadline is the
    day before the oldest counted activity leaves the window (after it, more is needed);
    none when nothing counts yet. Calendar: the end of the year."""
    value = value_on(activity, metric, window, day)
    amount = max(tier.threshold - value, 0)
    if window == TierWindow.calendar_year:
        return Missing(tier, amount, date(day.year, 12, 31))
    start = window_start(day, window)
    pick = _picker(metric)
    counted = [d for d, a in activity.items() if start <= d <= day and pick(a) != 0]
    deadline = leaves_window(min(counted)) - ONE_DAY if counted else None
    return Missing(tier, amount, deadline)


def to_keep(
    tier: TierDef,
    activity: Activity,
    metric: TierMetric | str,
    window: TierWindow | str,
    day: date,
    *,
    held_until: date | None = None,
) -> Missing | None:
    """What keeps ``tier`` beyond the date it is certain until. None for a tier everybody
    holds. ``held_until``: the end of a grace period or a bought membership, used when the
    activity alone does not qualify any more."""
    if tier.threshold == 0:
        return None
    until = valid_until(tier, activity, metric, window, day)
    if window == TierWindow.calendar_year:
        this_year = value_on(activity, metric, window, day)
        deadline = date(day.year, 12, 31)
        if until is None and held_until is not None:
            deadline = min(deadline, held_until)
        return Missing(tier, max(tier.threshold - this_year, 0), deadline)
    if until is None:
        value = value_on(activity, metric, window, day)
        return Missing(tier, max(tier.threshold - value, 0), held_until)
    after = until + ONE_DAY
    still = total(activity, metric, window_start(after, window), after)
    return Missing(tier, max(tier.threshold - still, 0), until)


def activity_of(rows: Iterable[tuple[date, int, int, int]]) -> dict[date, DayActivity]:
    return {day: DayActivity(points, spend, purchases) for day, points, spend, purchases in rows}
