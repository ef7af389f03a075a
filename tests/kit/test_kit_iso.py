"""``treu.kit.time.iso``: the one spelling of an instant in answers. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from treu.kit.time import iso


def test_utc_is_written_with_z() -> None:
    assert iso(datetime(2026, 11, 24, 10, 15, tzinfo=UTC)) == "2026-11-24T10:15:00Z"
    assert iso(datetime(2026, 11, 24, 10, 15, 0, 123, tzinfo=UTC)) == (
        "2026-11-24T10:15:00.000123Z"
    )


def test_another_zone_is_the_same_instant_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 11, 24, 11, 15, tzinfo=berlin)) == "2026-11-24T10:15:00Z"


def test_none_stays_none_and_naive_is_refused() -> None:
    assert iso(None) is None
    with pytest.raises(ValueError, match="time zone"):
        iso(datetime(2026, 11, 24, 10, 15))  # noqa: DTZ001
