"""How a member earns, in one sentence for people: the programme's published base rate
(``points_per_currency_unit``; earning rules come on top of it) and the member's tier
multiplier. The portal's home page shows it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from babel.numbers import format_decimal

from treu.kit.money import currency_exponent, format_money
from treu.kit.text import translate, translate_plural
from treu.programmes.models import Programme


def _points_name(points_name: Mapping[str, Any] | None, lang: str, count: Decimal) -> str:
    name = (points_name or {}).get(lang)
    one = count == 1
    if isinstance(name, str):
        return name
    if isinstance(name, Mapping):
        label = name.get("one" if one else "other")
        if label:
            return str(label)
    return translate_plural(lang, "point", "points", 1 if one else 2)


def how_to_earn(
    programme: Programme,
    *,
    lang: str,
    multiplier: Decimal | None = None,
    tier: str | None = None,
) -> str:
    """ "You earn 1 point per €1 you spend." (+ the tier's multiplier); a programme without a
    base rate (its earning is all rules) says that purchases and promotions earn."""
    locale = "de_DE" if lang == "de" else "en_GB"
    rate = Decimal(programme.points_per_currency_unit).normalize()
    if rate <= 0:
        return translate(
            lang,
            "Promotions and campaigns of {programme} earn you {points_name}.",
            programme=programme.name,
            points_name=_points_name(programme.points_name, lang, Decimal(2)),
        )
    unit = format_money(10 ** currency_exponent(programme.currency), programme.currency, lang)
    text = translate(
        lang,
        "You earn {rate} {points_name} per {unit} you spend.",
        rate=format_decimal(rate, locale=locale),
        points_name=_points_name(programme.points_name, lang, rate),
        unit=unit,
    )
    if multiplier is not None and multiplier > 1 and tier:
        text += " " + translate(
            lang,
            "As a {tier} member you earn {factor} times as many.",
            tier=tier,
            factor=format_decimal(multiplier.normalize(), locale=locale),
        )
    return text
