"""A birthday is refused only when it lies in the future everywhere on Earth, and the
check reads Treu's clock (not the machine's date), so it holds on any day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from pydantic import ValidationError

from treu.kit.time import utc_now
from treu.members.schemas import MemberUpdate


def test_a_birthday_today_anywhere_is_accepted_and_tomorrow_everywhere_is_not() -> None:
    # The leap-day evening: 22:30 UTC on 29 February is already 1 March from UTC+1:30 on
    # and 12:30 on 1 March in Kiribati (UTC+14), the first place a day begins.
    with time_machine.travel(datetime(2028, 2, 29, 22, 30, tzinfo=UTC), tick=False):
        assert MemberUpdate(birthday=date(2028, 2, 29)).birthday == date(2028, 2, 29)
        assert MemberUpdate(birthday=date(2028, 3, 1)).birthday == date(2028, 3, 1)
        with pytest.raises(ValidationError, match="birthday must be a date in the past"):
            MemberUpdate(birthday=date(2028, 3, 2))


def test_the_birthday_check_follows_the_clock_not_the_calendar_it_was_written_on() -> None:
    tomorrow_everywhere = (utc_now() + timedelta(days=2)).date()
    with pytest.raises(ValidationError, match="in the past"):
        MemberUpdate(birthday=tomorrow_everywhere)
    with time_machine.travel(utc_now() + timedelta(days=3), tick=False):
        assert MemberUpdate(birthday=tomorrow_everywhere).birthday == tomorrow_everywhere


def test_a_birthday_before_1900_is_refused() -> None:
    with pytest.raises(ValidationError, match="in the past"):
        MemberUpdate(birthday=date(1899, 12, 31))
