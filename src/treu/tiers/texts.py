"""German and English sentences about tiers: what is missing, and why a tier changed.

History entries store a template name and its parameters (never personal data) and the
English text; the German one is rendered from the parameters when asked for."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from treu.kit.money import format_money

Lang = str

_WINDOW = {
    "rolling_12_months": ("in the last 12 months", "in den letzten 12 Monaten"),
    "calendar_year": ("in the qualification year", "im Qualifikationsjahr"),
}


def day_text(day: date) -> str:
    return f"{day.day:02d}.{day.month:02d}.{day.year}"


def _number(value: int, lang: Lang) -> str:
    text = f"{value:,}"
    return text.replace(",", ".") if lang == "de" else text


def _points_name(points_name: Mapping[str, Any] | None, lang: Lang, count: int) -> str:
    default = {"en": ("point", "points"), "de": ("Punkt", "Punkte")}[lang]
    name = (points_name or {}).get(lang)
    if isinstance(name, str):
        return name
    if isinstance(name, Mapping):
        return str(name.get("one" if count == 1 else "other") or default[count != 1])
    return default[count != 1]


def quantity(
    metric: str,
    value: int,
    *,
    currency: str | None,
    points_name: Mapping[str, Any] | None,
    lang: Lang,
) -> str:
    """ "€120.00 spend", "350 points", "3 purchases" (and in German)."""
    if metric == "spend":
        money = format_money(value, currency or "EUR", lang)
        return f"{money} Umsatz" if lang == "de" else f"{money} spend"
    if metric == "purchases":
        if lang == "de":
            return f"{_number(value, lang)} {'Einkauf' if value == 1 else 'Einkäufe'}"
        return f"{_number(value, lang)} {'purchase' if value == 1 else 'purchases'}"
    return f"{_number(value, lang)} {_points_name(points_name, lang, value)}"


def _name(names: Mapping[str, Any] | None, lang: Lang) -> str:
    if not names:
        return "keine Stufe" if lang == "de" else "no tier"
    return str(names.get(lang) or names.get("en") or "")


def missing_text(
    *,
    amount: str,
    tier: str,
    deadline: date | None,
    keep: bool,
    held_until: date | None,
    lang: Lang,
) -> str:
    """ "€120.00 spend by 31.12.2026 for Gold"; "€80.00 spend by 30.06.2027 to keep Gold";
    "Gold is yours until 31.12.2027" (nothing missing)."""
    de = lang == "de"
    if keep and held_until is not None:
        return (
            f"{tier} bleibt Ihnen bis {day_text(held_until)}"
            if de
            else f"{tier} is yours until {day_text(held_until)}"
        )
    by = (f" bis {day_text(deadline)}" if de else f" by {day_text(deadline)}") if deadline else ""
    if keep:
        return f"{amount}{by}, um {tier} zu behalten" if de else f"{amount}{by} to keep {tier}"
    return f"{amount}{by} für {tier}" if de else f"{amount}{by} for {tier}"


def history_text(template: str, params: Mapping[str, Any], lang: Lang = "en") -> str:
    de = lang == "de"
    to = _name(params.get("to"), lang)
    from_ = _name(params.get("from"), lang)
    if template in ("qualified", "requalification_failed"):
        metric = str(params.get("metric", "points"))
        currency = params.get("currency")
        names = params.get("points_name")

        def amount(key: str) -> str:
            return quantity(
                metric,
                int(params.get(key, 0)),
                currency=str(currency) if currency else None,
                points_name=names if isinstance(names, Mapping) else None,
                lang=lang,
            )

        value, threshold = amount("value"), amount("threshold")
        window = _WINDOW.get(str(params.get("window")), ("", ""))[1 if de else 0]
        if template == "qualified":
            if de:
                return f"Aufstieg zu {to}: {value} {window} ({threshold} nötig)"
            return f"Upgrade to {to}: {value} {window} ({threshold} needed)"
        if de:
            return f"Abstieg zu {to}: {value} {window}, {from_} braucht {threshold}"
        return f"Down to {to}: {value} {window}, {from_} needs {threshold}"
    until = params.get("until")
    until_text = day_text(date.fromisoformat(until)) if isinstance(until, str) else ""
    count = int(params.get("months", 0))
    months = (
        f"{count} {'Monat' if count == 1 else 'Monate'}"
        if de
        else f"{count} {'month' if count == 1 else 'months'}"
    )
    if template == "membership_purchased":
        if de:
            return f"{to} für {months} gekauft, bis {until_text}"
        return f"{to} bought for {months}, until {until_text}"
    if template == "membership_renewed":
        if de:
            return f"{to} um {months} verlängert, bis {until_text}"
        return f"{to} renewed for {months}, until {until_text}"
    if template == "membership_expired":
        if de:
            return f"Bezahlte Mitgliedschaft {from_} endete am {until_text}; jetzt {to}"
        return f"Paid membership {from_} ended on {until_text}; now {to}"
    return template
