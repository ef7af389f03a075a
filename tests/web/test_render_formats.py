"""The pages' number and date-time formatting writes what Babel writes, faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_datetime
from babel.numbers import format_decimal
from hypothesis import given
from hypothesis import strategies as st

from treu.web.render import _locale, _short_datetime, format_number, format_when

ZONES = [ZoneInfo(z) for z in ("UTC", "Europe/Berlin", "America/Santiago", "Asia/Kolkata")]


@pytest.mark.parametrize("lang", ["de", "en"])
@given(value=st.integers(min_value=-(10**15), max_value=10**15))
def test_whole_numbers_as_babel_writes_them(lang: str, value: int) -> None:
    assert format_number(value, lang) == format_decimal(value, locale=_locale(lang))


@pytest.mark.parametrize("lang", ["de", "en"])
def test_other_numbers_go_to_babel(lang: str) -> None:
    assert format_number(1234.5, lang) == format_decimal(1234.5, locale=_locale(lang))


@pytest.mark.parametrize("lang", ["de", "en"])
@given(
    seconds=st.integers(min_value=0, max_value=200 * 365 * 86_400),
    zone=st.sampled_from(ZONES),
)
def test_instants_as_babel_writes_them_in_short(lang: str, seconds: int, zone: ZoneInfo) -> None:
    value = datetime(1950, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    expected = format_datetime(value, "short", tzinfo=zone, locale=_locale(lang))
    assert format_when(value, zone, lang) == expected


def test_both_languages_take_the_fast_way() -> None:
    assert _short_datetime("de") == "%d.%m.%y, %H:%M"
    assert _short_datetime("en") == "%d/%m/%Y, %H:%M"
