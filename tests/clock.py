"""The suite owns its clock (a pytest plugin, loaded by ``conftest.py``).

Two tools, both built on time-machine (it moves ``datetime.now``, ``time.time`` and
friends for the whole process, including the in-process API server and the services,
which read the time through ``treu.kit.time.utc_now``):

* **The session clock.** ``--now VALUE`` (or ``TREU_TEST_NOW=VALUE``) runs the whole
  session as if the wall clock read VALUE when it started; time then ticks on as usual.
  VALUE is an instant with a zone or offset, e.g. ``2028-02-29T23:30 Europe/Berlin`` or
  ``2027-12-06T10:00:00+00:00``, or a shift of the real clock, ``+1y``, ``+90d``,
  ``-2h`` (units y, mo, d, h).
* **Spread clocks.** ``--clocks "now;+1y;2028-02-29T23:30 Europe/Berlin;…"`` gives every
  test one of these clocks (``now`` is the real one): the test starts at that instant,
  wherever the previous test left the clock, and its clock ticks on. Which test meets
  which clock is a hash of its id salted with the real clock's ISO week (or
  ``--clock-salt``), so the split changes every week and over the weeks every test meets
  every clock, while the suite runs once. ``make test`` spreads four clocks: today, one
  year ahead, the leap-day evening 2028-02-29 23:30 in Berlin and 00:30 on 1 January 2027
  in Berlin, when UTC is still in the old year (local date, month and year all differ
  from UTC's). A failing test's report names its clock and the ``--now`` that repeats it.
* **Tests written for a date.** A test whose dates are absolute (a fixed expiry at the
  end of 2026, a birthday in February) says when it pretends to run:
  ``@pytest.mark.now("2026-11-24T12:00:00Z")``; the clock travels there for that test
  (and ticks on), whatever ``--now`` or ``--clocks`` say. Every other test builds its
  dates relative to ``utc_now()``, so it passes on any day, which the spread clocks
  prove.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from treu.kit.time import add_months

_SHIFT = re.compile(r"^(?P<sign>[+-])(?P<amount>\d+)(?P<unit>y|mo|d|h)$")


def parse_now(value: str, *, real_now: datetime | None = None) -> datetime:
    """The instant VALUE names (see the module docstring), UTC-aware.

    Raises ``ValueError`` with a sentence that says what is accepted.
    """
    text = value.strip()
    real = real_now or datetime.now(UTC)
    shift = _SHIFT.match(text)
    if shift:
        amount = int(shift["amount"]) * (1 if shift["sign"] == "+" else -1)
        unit = shift["unit"]
        if unit == "y":
            return add_months(real, 12 * amount)
        if unit == "mo":
            return add_months(real, amount)
        return real + (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    instant, _, zone = text.partition(" ")
    try:
        parsed = datetime.fromisoformat(instant.replace("Z", "+00:00"))
        if zone:
            if parsed.tzinfo is not None:
                raise ValueError("give either an offset or a zone name, not both")
            parsed = parsed.replace(tzinfo=ZoneInfo(zone.strip()))
    except (ValueError, KeyError) as exc:
        raise ValueError(
            f"cannot read the test clock {value!r} ({exc}): give an instant with an offset "
            "or a zone ('2028-02-29T23:30 Europe/Berlin', '2027-12-06T10:00:00Z') "
            "or a shift of the real clock ('+1y', '+90d', '-2h')"
        ) from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(
            f"the test clock {value!r} has no zone: add an offset ('...+01:00', '...Z') "
            "or a zone name ('... Europe/Berlin')"
        )
    return parsed.astimezone(UTC)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--now",
        default=None,
        help="run the session as if the clock read this instant when it started "
        "('2028-02-29T23:30 Europe/Berlin', '+1y'; default: $TREU_TEST_NOW, else the real "
        "clock)",
    )
    parser.addoption(
        "--clocks",
        default=None,
        help="give each test one of these ';'-separated clocks ('now' is the real one; "
        "instants and shifts as for --now), chosen by a hash of its id salted with the ISO "
        "week (or --clock-salt): one pass of the suite meets every clock",
    )
    parser.addoption("--clock-salt", default=None, help="the salt of --clocks' split")


_traveller: time_machine.travel | None = None
_label = "real clock"
_clocks_label = ""


def pytest_configure(config: pytest.Config) -> None:
    global _traveller, _label
    config.addinivalue_line(
        "markers",
        "now(instant): the test's dates are absolute; run it with the clock at INSTANT "
        "(same formats as --now, shifts excluded)",
    )
    _configure_clocks(config)
    value = config.getoption("--now") or os.environ.get("TREU_TEST_NOW")
    if not value:
        return
    try:
        at = parse_now(value)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    _traveller = time_machine.travel(at, tick=True)
    _traveller.start()
    _label = f"travelled to {at.isoformat()} (from {value!r})"


def pytest_unconfigure(config: pytest.Config) -> None:
    global _traveller
    if _traveller is not None:
        _traveller.stop()
        _traveller = None


def pytest_report_header(config: pytest.Config) -> str:
    return f"test clock: {_label}{_clocks_label}"


_clocks: tuple[list[tuple[str, datetime | None]], str] | None = None
_started = datetime.now(UTC)
_CLOCK = pytest.StashKey[tuple[str, datetime | None]]()


def _configure_clocks(config: pytest.Config) -> None:
    """Read ``--clocks`` before any travel: the salt and the shifts start from the real
    clock, so every xdist worker computes the same instants and the same split."""
    global _clocks, _clocks_label, _started
    value = config.getoption("--clocks")
    if not value:
        return
    _started = datetime.now(UTC)
    if config.getoption("--now") or os.environ.get("TREU_TEST_NOW"):
        raise pytest.UsageError("give either --now (one clock) or --clocks (several), not both")
    clocks: list[tuple[str, datetime | None]] = []
    for part in value.split(";"):
        name = part.strip()
        if not name:
            continue
        try:
            clocks.append((name, None if name == "now" else parse_now(name)))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    if not clocks:
        raise pytest.UsageError(f"--clocks names no clock: {value!r}")
    year, week, _ = datetime.now(UTC).isocalendar()
    salt = config.getoption("--clock-salt") or f"{year}-W{week:02d}"
    _clocks = (clocks, salt)
    names = ", ".join(name for name, _ in clocks)
    _clocks_label = f"; each test on one of {len(clocks)} clocks ({names}; salt {salt})"


def share_of(nodeid: str, salt: str, n: int) -> int:
    """Which of ``n`` shares (1..n) a test is in, for this salt."""
    digest = hashlib.sha256(f"{salt}:{nodeid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _clocks is None:
        return
    clocks, salt = _clocks
    for item in items:
        item.stash[_CLOCK] = clocks[share_of(item.nodeid, salt, len(clocks)) - 1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    clock = item.stash.get(_CLOCK, None)
    if report.failed and clock is not None and item.get_closest_marker("now") is None:
        name, at = clock
        again = "" if at is None else f" (repeat it: --now={at.isoformat()!r} {item.nodeid})"
        report.sections.append(("test clock", f"this test ran on the clock {name!r}{again}"))


@pytest.fixture(autouse=True)
def _written_for(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("now")
    if marker is not None:
        (value,) = marker.args
        if _SHIFT.match(value.strip()):
            raise pytest.UsageError(f"@pytest.mark.now takes an instant, not a shift: {value!r}")
        at: datetime | None = parse_now(value)
    else:
        _, base = request.node.stash.get(_CLOCK, ("now", None))
        # Each clock runs on through the session as the real one does, so a test never
        # starts before the previous test on its clock began.
        at = None if base is None else base + (datetime.now(UTC) - _started)
    if at is None:
        yield
        return
    with time_machine.travel(at, tick=True):
        yield
