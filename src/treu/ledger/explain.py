"""Human-readable explanations of postings, in English and German.

A posting stores its explanation in English (``postings.explanation``) and the facts
behind it in ``details`` (a template name plus parameters), so any surface can render
it again in the member's language. Explanations never contain personal data.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from treu.kit.money import format_money, format_rate

_TEMPLATES: dict[str, dict[str, str]] = {
    "earn.base": {
        "en": "{rate} {points_name} per {unit} on {amount}: +{points}",
        "de": "{rate} {points_name} pro {unit} auf {amount}: +{points}",
    },
    "earn.blocked": {
        "en": "Member is blocked: no points for {amount}",
        "de": "Mitglied gesperrt: keine Punkte für {amount}",
    },
    "reverse.return": {
        "en": "Return of {items} from order {order}: -{points}",
        "de": "Rückgabe von {items} aus Bestellung {order}: -{points}",
    },
    "adjust": {
        "en": "Manual adjustment: {reason}",
        "de": "Manuelle Korrektur: {reason}",
    },
    "expire": {
        "en": "{points} points earned on {earned} expired",
        "de": "{points} Punkte vom {earned} verfallen",
    },
    "settle": {
        "en": "{points} newly available points settle a negative balance",
        "de": "{points} neu verfügbare Punkte gleichen ein negatives Saldo aus",
    },
    "redeem": {
        "en": "Redeemed: {what}",
        "de": "Eingelöst: {what}",
    },
    "refund": {
        "en": "Refunded: {what}: +{points}",
        "de": "Erstattet: {what}: +{points}",
    },
    "payment": {
        "en": "Paid {amount} of order {order} with points: -{points}",
        "de": "{amount} der Bestellung {order} mit Punkten bezahlt: -{points}",
    },
    "refund.payment": {
        "en": "Points payment for order {order} refunded ({amount}): +{points}",
        "de": "Punktezahlung für Bestellung {order} erstattet ({amount}): +{points}",
    },
    "donation": {
        "en": "Donation to {charity}: -{points}",
        "de": "Spende an {charity}: -{points}",
    },
}


Renderer = Callable[[str, dict[str, Any], str], str]
_RENDERERS: dict[str, Renderer] = {}


def register(prefix: str, renderer: Renderer) -> None:
    """Let a feature package render its own templates (``prefix`` + anything): the
    earning rules register ``rules.``. ``renderer(template, params, lang)``."""
    _RENDERERS[prefix] = renderer


def render(details: dict[str, Any], locale: str = "en") -> str:
    name = details["template"]
    if name not in _TEMPLATES:
        prefix = name.split(".", 1)[0] + "."
        if prefix in _RENDERERS:
            return _RENDERERS[prefix](name, dict(details.get("params", {})), locale)
    template = _TEMPLATES[name]
    lang = locale if locale in template else "en"
    params: dict[str, Any] = dict(details.get("params", {}))
    for key, value in params.items():
        # A localised parameter (a reward's or a charity's name): {"de": ..., "en": ...}.
        if isinstance(value, dict) and key != "points_name":
            params[key] = value.get(lang) or value.get("en") or next(iter(value.values()), "")
    currency = params.get("currency")
    if currency is not None and "amount_minor" in params:
        params["amount"] = format_money(int(params["amount_minor"]), currency, lang)
    if currency is not None and "unit" not in params:
        params["unit"] = _unit(currency, lang)
    if "rate" in params:
        params["rate"] = _rate(str(params["rate"]))
    if "points_name" in params:
        one = _is_one(str(details["params"].get("rate", "2")))
        params["points_name"] = points_label(params["points_name"], lang, one=one)
    return template[lang].format(**params)


# Every earning posting renders its explanation; these depend only on the programme's
# currency and rate, so each is worked out once.
@lru_cache(maxsize=256)
def _unit(currency: str, lang: str) -> str:
    """One unit of ``currency`` ("€1", "1 €")."""
    return (
        format_money(10 ** _exponent(currency), currency, lang)
        .replace(".00", "")
        .replace(",00", "")
    )


@lru_cache(maxsize=256)
def _rate(rate: str) -> str:
    return format_rate(Decimal(rate))


@lru_cache(maxsize=256)
def _is_one(rate: str) -> bool:
    return Decimal(rate) == 1


def points_label(names: Any, lang: str, *, one: bool = False) -> str:
    """Pick the label for ``lang`` from ``{"en": {"one": "point", "other": "points"}, ...}``."""
    if not isinstance(names, dict):
        return str(names)
    label = names.get(lang) or names.get("en") or "points"
    if isinstance(label, dict):
        return str(label.get("one" if one else "other") or label.get("other") or "points")
    return str(label)


def _exponent(currency: str) -> int:
    from treu.kit.money import currency_exponent

    return currency_exponent(currency)
