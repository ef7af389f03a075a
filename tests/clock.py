"""The suite owns its clock (a pytest plugin, loaded by ``conftest.py``).

Two tools, both built on time-machine (it moves ``datetime.now``, ``time.time`` and
friends for the whole process, including the in-process API server and the services,
which read the time through ``treu.kit.time.utc_now``):

* **The session clock.** ``--now VALUE`` (or ``TREU_TEST_NOW=VALUE``) runs the whole
  session as if the wall clock read VALUE when it started; time then ticks on as usual.
  VALUE is an instant with a zone or offset, e.g. ``2028-02-29T23:30 Europe/Berlin`` or
  ``2027-12-06T10:00:00+00:00``, or a shift of the real clock, ``+1y``, ``+90d``,
  ``-2h`` (units y, mo, d, h). ``make test`` runs the suite four times: on today's
  clock, one year ahead, on the leap-day evening 2028-02-29 23:30 in Berlin and at 00:30
  on 1 January 2027 in Berlin, when UTC is still in the old year (local date, month and
  year all differ from UTC's).
* **Tests written for a date.** A test whose dates are absolute (a fixed expiry at the
  end of 2026, a birthday in February) says when it pretends to run:
  ``@pytest.mark.now("2026-11-24T12:00:00Z")``; the clock travels there for that test
  (and ticks on). Every other test builds its dates relative to ``utc_now()``, so it
  passes on any day, which the shifted runs prove.
"""

from __future__ import annotations

import hashlib
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
        "--shard",
        default=None,
        help="K/N: run only the K-th of N shares of the tests. The shares change every "
        "week (their salt is the real clock's ISO week, or --shard-salt), so that over the "
        "weeks every test meets every shifted clock of `make test`",
    )
    parser.addoption("--shard-salt", default=None, help="the salt of --shard's shares")


_traveller: time_machine.travel | None = None
_label = "real clock"
_shard_label = ""


def pytest_configure(config: pytest.Config) -> None:
    import os

    global _traveller, _label
    config.addinivalue_line(
        "markers",
        "now(instant): the test's dates are absolute; run it with the clock at INSTANT "
        "(same formats as --now, shifts excluded)",
    )
    _configure_shard(config)
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
    return f"test clock: {_label}{_shard_label}"


_shard: tuple[int, int, str] | None = None


def _configure_shard(config: pytest.Config) -> None:
    """Read ``--shard`` before the clock travels: the salt is the real week."""
    global _shard, _shard_label
    value = config.getoption("--shard")
    if not value:
        return
    try:
        k, n = (int(part) for part in value.split("/"))
        if not 1 <= k <= n:
            raise ValueError(value)
    except ValueError:
        raise pytest.UsageError(f"--shard takes K/N with 1 <= K <= N, not {value!r}") from None
    year, week, _ = datetime.now(UTC).isocalendar()
    salt = config.getoption("--shard-salt") or f"{year}-W{week:02d}"
    _shard = (k, n, salt)
    _shard_label = f"; share {k}/{n} of the tests (salt {salt})"


def share_of(nodeid: str, salt: str, n: int) -> int:
    """Which of ``n`` shares (1..n) a test is in, for this salt."""
    digest = hashlib.sha256(f"{salt}:{nodeid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _shard is None:
        return
    k, n, salt = _shard
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if share_of(item.nodeid, salt, n) == k else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _written_for(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("now")
    if marker is None:
        yield
        return
    (value,) = marker.args
    if _SHIFT.match(value.strip()):
        raise pytest.UsageError(f"@pytest.mark.now takes an instant, not a shift: {value!r}")
    with time_machine.travel(parse_now(value), tick=True):
        yield
