"""Money and points arithmetic. No floats: amounts are integer minor units, rates are Decimals.

Rounding is always explicit (``Rounding``), because "1 point per EUR 1 on EUR 42.90"
must give the same answer on every node, in every language, forever.
"""

from __future__ import annotations

import enum
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from babel.numbers import format_currency, get_currency_precision


class Rounding(enum.StrEnum):
    floor = "floor"
    half_up = "half_up"
    ceil = "ceil"


_MODES = {
    Rounding.floor: ROUND_FLOOR,
    Rounding.half_up: ROUND_HALF_UP,
    Rounding.ceil: ROUND_CEILING,
}


def currency_exponent(currency: str) -> int:
    """Number of minor-unit digits (EUR 2, JPY 0, KWD 3), from CLDR via Babel."""
    return int(get_currency_precision(currency))


def is_known_currency(currency: str) -> bool:
    from babel.numbers import list_currencies

    return currency in list_currencies()


def to_major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def round_points(value: Decimal, rounding: Rounding) -> int:
    return int(value.to_integral_value(rounding=_MODES[rounding]))


def points_for_amount(
    amount_minor: int, currency: str, points_per_unit: Decimal, rounding: Rounding
) -> int:
    """Points earned on ``amount_minor`` at ``points_per_unit`` points per major unit."""
    if amount_minor <= 0:
        return 0
    return round_points(to_major(amount_minor, currency) * points_per_unit, rounding)


def format_money(amount_minor: int, currency: str, locale: str = "en") -> str:
    """'€42.90' in English, '42,90 €' in German."""
    return str(format_currency(to_major(amount_minor, currency), currency, locale=locale))


def format_rate(rate: Decimal) -> str:
    """A rate without trailing zeros: 1, 1.5, 0.25."""
    normalised = rate.normalize()
    return format(normalised, "f") if normalised == normalised.to_integral() else str(normalised)
