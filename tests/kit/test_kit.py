"""The framework-free helpers in ``treu.kit``: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treu.kit.ids import luhn_check_digit, luhn_valid, new_card_number, new_id
from treu.kit.money import (
    Rounding,
    currency_exponent,
    points_for_amount,
    round_points,
    to_major,
)
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.kit.time import add_months, end_of_year, ensure_utc, frozen, local_date, utc_now

# --- card numbers (Luhn) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["79927398713", "4539578763621486", "4111111111111111", "0000000000000000", "18"],
)
def test_known_valid_luhn_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number",
    ["79927398710", "4539578763621487", "4111111111111112", "", "7", "4111 1111 1111 1111"],
)
def test_invalid_luhn_numbers(number: str) -> None:
    assert not luhn_valid(number)


def test_check_digit_of_the_textbook_example() -> None:
    assert luhn_check_digit("7992739871") == 3


def test_generated_card_numbers_are_16_digit_luhn_valid_and_distinct() -> None:
    cards = {new_card_number() for _ in range(200)}
    assert len(cards) == 200
    for card in cards:
        assert len(card) == 16
        assert card.startswith("9276")
        assert luhn_valid(card)


def test_card_number_prefix_is_kept() -> None:
    card = new_card_number("12345")
    assert card.startswith("12345")
    assert len(card) == 16
    assert luhn_valid(card)


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_luhn_detects_every_single_digit_error(body: str) -> None:
    number = body + str(luhn_check_digit(body))
    assert luhn_valid(number)
    for position in range(len(number)):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            typo = number[:position] + digit + number[position + 1 :]
            assert not luhn_valid(typo)


def test_ids_are_time_ordered() -> None:
    ids = [new_id() for _ in range(100)]
    assert ids == sorted(ids)
    assert all(i.version == 7 for i in ids)


# --- money ------------------------------------------------------------------------------


def test_currency_exponents() -> None:
    assert currency_exponent("EUR") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("KWD") == 3


def test_to_major_is_exact() -> None:
    assert to_major(4290, "EUR") == Decimal("42.90")
    assert to_major(4290, "JPY") == Decimal(4290)
    assert to_major(4290, "KWD") == Decimal("4.290")


@pytest.mark.parametrize(
    ("value", "floor", "half_up", "ceil"),
    [
        ("42.90", 42, 43, 43),
        ("42.50", 42, 43, 43),
        ("42.49", 42, 42, 43),
        ("42.00", 42, 42, 42),
        ("0.01", 0, 0, 1),
        ("-1.5", -2, -2, -1),
    ],
)
def test_round_points(value: str, floor: int, half_up: int, ceil: int) -> None:
    assert round_points(Decimal(value), Rounding.floor) == floor
    assert round_points(Decimal(value), Rounding.half_up) == half_up
    assert round_points(Decimal(value), Rounding.ceil) == ceil


@pytest.mark.parametrize(
    ("amount_minor", "currency", "rate", "rounding", "points"),
    [
        (4290, "EUR", "1", Rounding.floor, 42),
        (4290, "EUR", "1", Rounding.half_up, 43),
        (4250, "EUR", "1", Rounding.half_up, 43),
        (4249, "EUR", "1", Rounding.half_up, 42),
        (4201, "EUR", "1", Rounding.ceil, 43),
        (4200, "EUR", "1", Rounding.ceil, 42),
        (1157, "EUR", "1", Rounding.floor, 11),
        (1999, "EUR", "1.5", Rounding.floor, 29),
        (1999, "EUR", "0.25", Rounding.half_up, 5),
        # JPY has no minor unit: 1,999 yen at 1 point per 100 yen
        (1999, "JPY", "0.01", Rounding.floor, 19),
        (1999, "JPY", "0.01", Rounding.half_up, 20),
        (1950, "JPY", "0.01", Rounding.half_up, 20),
        (1949, "JPY", "0.01", Rounding.half_up, 19),
        (5, "JPY", "1", Rounding.floor, 5),
        # KWD has three decimals: 12.345 KWD
        (12345, "KWD", "1", Rounding.floor, 12),
        (12345, "KWD", "1", Rounding.ceil, 13),
        (12500, "KWD", "1", Rounding.half_up, 13),
        (12499, "KWD", "1", Rounding.half_up, 12),
        (999, "KWD", "1", Rounding.floor, 0),
        (999, "KWD", "1", Rounding.ceil, 1),
    ],
)
def test_points_for_amount(
    amount_minor: int, currency: str, rate: str, rounding: Rounding, points: int
) -> None:
    assert points_for_amount(amount_minor, currency, Decimal(rate), rounding) == points


@pytest.mark.parametrize("rounding", list(Rounding))
def test_no_points_for_nothing_or_refunds(rounding: Rounding) -> None:
    assert points_for_amount(0, "EUR", Decimal(1), rounding) == 0
    assert points_for_amount(-500, "EUR", Decimal(1), rounding) == 0


@given(
    amount=st.integers(min_value=0, max_value=10**11),
    rate=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False),
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_rounding_modes_are_ordered(amount: int, rate: Decimal, currency: str) -> None:
    floor = points_for_amount(amount, currency, rate, Rounding.floor)
    half = points_for_amount(amount, currency, rate, Rounding.half_up)
    ceil = points_for_amount(amount, currency, rate, Rounding.ceil)
    assert floor <= half <= ceil <= floor + 1
    assert floor >= 0


# --- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (datetime(2026, 1, 31, 12, tzinfo=UTC), 1, datetime(2026, 2, 28, 12, tzinfo=UTC)),
        (datetime(2028, 1, 31, 12, tzinfo=UTC), 1, datetime(2028, 2, 29, 12, tzinfo=UTC)),
        (datetime(2026, 3, 31, tzinfo=UTC), 1, datetime(2026, 4, 30, tzinfo=UTC)),
        (datetime(2026, 8, 31, tzinfo=UTC), 6, datetime(2027, 2, 28, tzinfo=UTC)),
        (
            datetime(2026, 11, 24, 10, 15, tzinfo=UTC),
            24,
            datetime(2028, 11, 24, 10, 15, tzinfo=UTC),
        ),
        (datetime(2026, 12, 15, tzinfo=UTC), 1, datetime(2027, 1, 15, tzinfo=UTC)),
        (datetime(2026, 1, 15, tzinfo=UTC), 12, datetime(2027, 1, 15, tzinfo=UTC)),
        (datetime(2026, 1, 15, tzinfo=UTC), 0, datetime(2026, 1, 15, tzinfo=UTC)),
        (datetime(2026, 3, 31, tzinfo=UTC), -1, datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), 12, datetime(2025, 2, 28, tzinfo=UTC)),
    ],
)
def test_add_months_clamps_the_day(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


def test_end_of_year_in_berlin_uses_the_winter_offset() -> None:
    end = end_of_year(2026, "Europe/Berlin")
    assert end == datetime(2026, 12, 31, 22, 59, 59, 999999, tzinfo=UTC)
    assert end.tzinfo is UTC
    assert local_date(end, "Europe/Berlin").isoformat() == "2026-12-31"
    assert local_date(end + timedelta(microseconds=1), "Europe/Berlin").isoformat() == "2027-01-01"


def test_end_of_year_in_utc_and_other_zones() -> None:
    assert end_of_year(2026, "UTC") == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    # New York is five hours behind UTC in winter.
    assert end_of_year(2026, "America/New_York") == datetime(
        2027, 1, 1, 4, 59, 59, 999999, tzinfo=UTC
    )


def test_local_date_crosses_midnight_in_berlin() -> None:
    # 23:30 UTC on 31 December is already New Year in Berlin.
    assert local_date(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "Europe/Berlin").year == 2027
    assert local_date(datetime(2026, 12, 31, 22, 30, tzinfo=UTC), "Europe/Berlin").year == 2026


def test_ensure_utc_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ensure_utc(datetime(2026, 11, 24, 10, 15))  # noqa: DTZ001


def test_ensure_utc_normalises_aware_datetimes() -> None:
    berlin_winter = timezone(timedelta(hours=1))
    value = ensure_utc(datetime(2026, 11, 24, 11, 15, tzinfo=berlin_winter))
    assert value == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    assert value.utcoffset() == timedelta(0)
    assert value.tzinfo is UTC


def test_utc_now_is_aware_and_can_be_frozen() -> None:
    assert utc_now().tzinfo is not None
    at = datetime(2030, 1, 1, tzinfo=UTC)
    with frozen(at):
        assert utc_now() == at
        with frozen(at + timedelta(days=1)):
            assert utc_now() == at + timedelta(days=1)
        assert utc_now() == at
    assert utc_now() != at


def test_frozen_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="time zone"), frozen(datetime(2030, 1, 1)):  # noqa: DTZ001
        pass


# --- cursors ----------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    key = {"before": "01a208e9-2fdb-76dd-973a-afae417770f8", "n": 3}
    cursor = encode_cursor(key)
    assert decode_cursor(cursor) == key
    assert "=" not in cursor
    assert cursor.isascii()
    assert "/" not in cursor
    assert "+" not in cursor


@given(
    st.dictionaries(
        st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=4
    )
)
def test_cursor_round_trips_any_key(key: dict[str, object]) -> None:
    assert decode_cursor(encode_cursor(key)) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "!!!!",
        "eyJiZWZvcmUiOi",  # a truncated object
        "WzEsMiwzXQ",  # [1,2,3]: valid JSON, but not an object
        "ImJlZm9yZSI",  # "before": a string, not an object
        "bnVsbA",  # null
        "__8",  # bytes that are not UTF-8
    ],
)
def test_invalid_cursors_are_rejected(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
