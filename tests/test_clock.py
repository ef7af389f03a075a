"""The suite's own clock (tests/clock.py): how --now / TREU_TEST_NOW and the ``now``
marker read their instants, and that a marked test runs at its instant."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.clock import parse_now
from treu.kit.time import utc_now

REAL = datetime(2026, 12, 6, 19, 45, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


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


SPREAD_TESTS = """
import pytest
from treu.kit.time import utc_now

@pytest.mark.parametrize("n", range(24))
def test_year(n):
    print(f"YEAR {n} {utc_now().year}")

@pytest.mark.now("2029-06-01T12:00:00Z")
@pytest.mark.parametrize("n", range(4))
def test_marked(n):
    print(f"MARKED {n} {utc_now().year}")

@pytest.mark.parametrize("n", range(6))
def test_fails(n):
    assert utc_now().year == 1999
"""


def test_spread_clocks_give_each_test_one_clock_and_leave_marked_tests_alone(
    tmp_path: Path,
) -> None:
    """``--clocks`` in a pytest run of its own: the tests meet both clocks, each test the same
    clock every time for a salt, marked tests keep their instant, and a failure names its
    clock."""
    (tmp_path / "test_spread.py").write_text(SPREAD_TESTS, encoding="utf-8")

    def run(salt: str) -> tuple[dict[str, int], str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.clock", "-s", "-q",
             "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
             str(tmp_path / "test_spread.py"),
             "--clocks", "now;2040-01-01T00:00Z", "--clock-salt", salt],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
            env={k: v for k, v in os.environ.items() if k != "TREU_TEST_NOW"},
        )  # fmt: skip
        years = {
            f"{kind} {n}": int(year)
            for kind, n, year in re.findall(r"(YEAR|MARKED) (\d+) (\d+)", done.stdout)
        }
        return years, done.stdout

    years, out = run("2026-W49")
    assert len(years) == 28, out
    spread = [years[f"YEAR {n}"] for n in range(24)]
    assert 2040 in spread
    assert len(set(spread)) == 2  # the real year and 2040
    assert all(years[f"MARKED {n}"] == 2029 for n in range(4))
    assert run("2026-W49")[0] == years  # the same split for the same salt
    assert "6 failed, 28 passed" in out
    assert "this test ran on the clock 'now'" in out
    assert "this test ran on the clock '2040-01-01T00:00Z' (repeat it: --now=" in out
