"""One clock for the whole code base.

Everything in Treu is UTC-aware. ``utc_now`` is the only place that reads the wall
clock, so tests can freeze or move time by patching one function (see ``frozen``).
"""

from __future__ import annotations

import calendar
import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import overload
from zoneinfo import ZoneInfo

_override: datetime | None = None

CLOCK_SKEW = timedelta(hours=1)
"""How far in the future a till's or shop's clock may be before an event or record
dated by it is refused as lying in the future."""


def utc_now() -> datetime:
    """The current time, UTC-aware (or the frozen time inside ``frozen``)."""
    if _override is not None:
        return _override
    return datetime.now(UTC)


@contextlib.contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Freeze ``utc_now`` at ``at`` (tests and replays)."""
    global _override
    previous = _override
    _override = ensure_utc(at)
    try:
        yield
    finally:
        _override = previous


def ensure_utc(value: datetime) -> datetime:
    """Reject naive datetimes and normalise aware ones to UTC.

    A naive datetime is ambiguous (server local time? shop time?), so it is an error,
    never silently assumed to be UTC.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must carry a time zone (e.g. 2026-11-24T10:15:00Z)")
    return value.astimezone(UTC)


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
def iso(value: datetime | None) -> str | None:
    """An instant as every answer shows it: ISO 8601 in UTC with ``Z``
    (``2026-11-24T10:15:00Z``); ``None`` stays ``None``. An aware time in another zone is
    converted (the same instant), a naive one refused (``ensure_utc``)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = ensure_utc(value)
    return value.isoformat().replace("+00:00", "Z")


def add_months(value: datetime, months: int) -> datetime:
    """Add calendar months, clamping the day (31 Jan + 1 month = 28/29 Feb)."""
    month_index = value.month - 1 + months
    year = value.year + month_index // 12
    month = month_index % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def end_of_year(year: int, tz: str) -> datetime:
    """The last instant of ``year`` in the programme's time zone, as UTC.

    Fixed expiry means "at the end of 31 December" where the member lives, not in UTC:
    for Berlin that is 22:59:59.999999Z in winter.
    """
    zone = ZoneInfo(tz)
    local_midnight = datetime(year + 1, 1, 1, tzinfo=zone)
    return (local_midnight - timedelta(microseconds=1)).astimezone(UTC)


def local_date(value: datetime, tz: str) -> date:
    return value.astimezone(ZoneInfo(tz)).date()


QUIET_START, QUIET_END = "21:00", "08:00"
"""Marketing quiet hours of a programme that set none (its local time)."""


def time_of_day(text: str) -> time:
    """``"21:00"`` as a time of day (``ValueError`` for anything else)."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def quiet_until(now: datetime, tz: str, start: str, end: str) -> datetime | None:
    """The end of the quiet period ``now`` falls in (the programme's local time), or
    None outside it. A period may span midnight (21:00 to 08:00). Journeys and offers
    delay marketing messages to it."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    begin, finish = time_of_day(start), time_of_day(end)
    at = local.time()
    if begin == finish:
        return None
    if begin < finish:
        inside = begin <= at < finish
        day = local.date()
    else:
        inside = at >= begin or at < finish
        day = local.date() + timedelta(days=1) if at >= begin else local.date()
    if not inside:
        return None
    wake = datetime(day.year, day.month, day.day, finish.hour, finish.minute, tzinfo=zone)
    return wake.astimezone(UTC)
