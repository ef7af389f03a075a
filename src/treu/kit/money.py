"""Money and points arithmetic. No floats: amounts are integer minor units, rates are Decimals.

Rounding is always explicit (``Rounding``), because "1 point per EUR 1 on EUR 42.90"
must give the same answer on every node, in every language, forever.
"""

from __future__ import annotations

import enum
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Annotated

from babel import Locale
from babel.numbers import format_currency, get_currency_precision, get_currency_symbol
from pydantic import PlainSerializer


class Rounding(enum.StrEnum):
    floor = "floor"
    half_up = "half_up"
    ceil = "ceil"


_MODES = {
    Rounding.floor: ROUND_FLOOR,
    Rounding.half_up: ROUND_HALF_UP,
    Rounding.ceil: ROUND_CEILING,
}


@lru_cache(maxsize=512)
def currency_exponent(currency: str) -> int:
    """Number of minor-unit digits (EUR 2, JPY 0, KWD 3), from CLDR via Babel."""
    return int(get_currency_precision(currency))


def is_known_currency(currency: str) -> bool:
    return currency in _currencies()


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def to_major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def round_points(value: Decimal, rounding: Rounding) -> int:
    return int(value.to_integral_value(rounding=_MODES[rounding]))


def points_for_amount(
    amount_minor: int, currency: str, points_per_unit: Decimal, rounding: Rounding
) -> int:
    """Points earned on ``amount_minor`` at ``points_per_unit`` points per major unit.

    Exact integer arithmetic on the rate's fraction (every purchase line goes through
    here, and Decimal rounding was the slowest part of computing a purchase)."""
    if amount_minor <= 0:
        return 0
    numerator, denominator = _ratio(points_per_unit, currency)
    scaled = amount_minor * numerator
    if rounding is Rounding.floor:
        return scaled // denominator
    if rounding is Rounding.ceil:
        return -(-scaled // denominator)
    return (2 * scaled + denominator) // (2 * denominator)  # half up (amounts are > 0)


@lru_cache(maxsize=1024)
def _ratio(points_per_unit: Decimal, currency: str) -> tuple[int, int]:
    numerator, denominator = points_per_unit.as_integer_ratio()
    return numerator, denominator * 10 ** currency_exponent(currency)


def format_money(amount_minor: int, currency: str, locale: str = "en") -> str:
    """'€42.90' in English, '42,90 €' in German (CLDR patterns via Babel).

    Babel's ``format_currency`` costs ~100 µs a call, and every earn posting renders an
    amount, so the locale's pattern is looked up once and applied here by hand; a test
    checks the result equals Babel's for many amounts, currencies and locales."""
    style = _money_style(currency, locale)
    if amount_minor < 0 or style is None:
        # Negative patterns (de_CH: "EUR-42.90") and Indian grouping: Babel does it.
        return str(format_currency(to_major(amount_minor, currency), currency, locale=locale))
    prefix, suffix, decimal, group, exponent = style
    whole, frac = divmod(amount_minor, 10**exponent)
    number = f"{whole:,}".replace(",", group)
    if exponent:
        number += decimal + str(frac).rjust(exponent, "0")
    return f"{prefix}{number}{suffix}"


@lru_cache(maxsize=256)
def _money_style(currency: str, locale: str) -> tuple[str, str, str, str, int] | None:
    loc = Locale.parse(locale)
    pattern = loc.currency_formats["standard"].pattern.split(";")[0]
    if "#,##0" not in pattern or "#,##,##0" in pattern:
        return None
    symbols = loc.number_symbols["latn"]
    symbol = get_currency_symbol(currency, locale)
    start = min(i for i, ch in enumerate(pattern) if ch in "#0")
    end = max(i for i, ch in enumerate(pattern) if ch in "#0") + 1
    prefix = pattern[:start].replace("¤", symbol)
    suffix = pattern[end:].replace("¤", symbol)
    return prefix, suffix, symbols["decimal"], symbols["group"], currency_exponent(currency)


def format_rate(rate: Decimal) -> str:
    """A rate without trailing zeros: 1, 1.5, 0.25."""
    normalised = rate.normalize()
    return format(normalised, "f") if normalised == normalised.to_integral() else str(normalised)


Rate = Annotated[Decimal, PlainSerializer(format_rate, return_type=str, when_used="json")]
"""A multiplier or earn rate in an answer: one spelling, as given and without the
database's trailing zeros ("1.5", never "1.5000"); texts for people use the locale's
decimal sign ("x1,5")."""


def liability_minor(points: int, point_value_minor: Decimal) -> int:
    """What ``points`` are worth in minor units, rounded half-up to a whole unit."""
    value = Decimal(points) * Decimal(point_value_minor)
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))
