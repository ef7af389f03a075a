"""The suite's own clock (tests/clock.py): how --now / TREU_TEST_NOW and the ``now``
marker read their instants, and that a marked test runs at its instant."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.clock import parse_now
from treu.kit.time import utc_now

REAL = datetime(2026, 12, 6, 19, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2028-02-29T23:30 Europe/Berlin", datetime(2028, 2, 29, 22, 30, tzinfo=UTC)),
        ("2028-07-01T08:00 Europe/Berlin", datetime(2028, 7, 1, 6, 0, tzinfo=UTC)),  # summer
        ("2027-12-06T10:00:00Z", datetime(2027, 12, 6, 10, 0, tzinfo=UTC)),
        ("2027-12-06T10:00:00+01:00", datetime(2027, 12, 6, 9, 0, tzinfo=UTC)),
        ("+1y", datetime(2027, 12, 6, 19, 45, tzinfo=UTC)),
        ("+2mo", datetime(2027, 2, 6, 19, 45, tzinfo=UTC)),
        ("+90d", REAL + timedelta(days=90)),
        ("-2h", REAL - timedelta(hours=2)),
    ],
)
def test_instants_and_shifts(value: str, expected: datetime) -> None:
    assert parse_now(value, real_now=REAL) == expected


def test_a_year_after_a_leap_day_is_the_last_of_february() -> None:
    leap = datetime(2028, 2, 29, 22, 30, tzinfo=UTC)
    assert parse_now("+1y", real_now=leap) == datetime(2029, 2, 28, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2028-02-29T23:30", "has no zone"),
        ("2028-02-30T23:30Z", "cannot read the test clock"),
        ("tomorrow", "cannot read the test clock"),
        ("2028-02-29T23:30 Mars/Olympus", "cannot read the test clock"),
        ("2028-02-29T23:30+01:00 Europe/Berlin", "not both"),
    ],
)
def test_unreadable_clocks_are_refused_with_a_sentence(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_now(value, real_now=REAL)


@pytest.mark.now("2026-12-31T23:30 Europe/Berlin")
def test_a_marked_test_runs_at_its_instant() -> None:
    now = utc_now()
    assert datetime(2026, 12, 31, 22, 30, tzinfo=UTC) <= now
    assert now < datetime(2026, 12, 31, 22, 40, tzinfo=UTC)  # the clock ticks on from there
    assert date.today() == date(2026, 12, 31)  # noqa: DTZ011 - time-machine moves it too


def test_the_shares_split_the_tests_and_change_with_the_salt() -> None:
    from tests.clock import share_of

    ids = [f"tests/x/test_{i}.py::test_{i}[sqlite]" for i in range(3000)]
    this_week = [share_of(i, "2026-W49", 3) for i in ids]
    assert set(this_week) == {1, 2, 3}
    assert all(900 < this_week.count(k) < 1100 for k in (1, 2, 3))
    assert this_week == [share_of(i, "2026-W49", 3) for i in ids]  # the same every time
    next_week = [share_of(i, "2026-W50", 3) for i in ids]
    moved = sum(a != b for a, b in zip(this_week, next_week, strict=True))
    assert 1800 < moved < 2200  # about two in three tests meet another clock
