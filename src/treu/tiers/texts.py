"""Sentences about tiers: what is missing, and why a tier changed (texts from the
catalogue, ``treu.kit.text``).

History entries store a template name and its parameters (never personal data) and the
English text; the German one is rendered from the parameters when asked for."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from treu.kit.money import format_money
from treu.kit.text import N_, translate, translate_plural

Lang = str

_WINDOW = {
    "rolling_12_months": N_("in the last 12 months"),
    "calendar_year": N_("in the qualification year"),
}


def day_text(day: date) -> str:
    return f"{day.day:02d}.{day.month:02d}.{day.year}"


def _number(value: int, lang: Lang) -> str:
    text = f"{value:,}"
    return text.replace(",", ".") if lang == "de" else text


def _points_name(points_name: Mapping[str, Any] | None, lang: Lang, count: int) -> str:
    name = (points_name or {}).get(lang)
    if isinstance(name, str):
        return name
    if isinstance(name, Mapping):
        label = name.get("one" if count == 1 else "other")
        if label:
            return str(label)
    return translate_plural(lang, "point", "points", count)


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
        return translate(
            lang, "{amount} spend", amount=format_money(value, currency or "EUR", lang)
        )
    count = _number(value, lang)
    if metric == "purchases":
        return translate_plural(lang, "{count} purchase", "{count} purchases", value, count=count)
    return f"{count} {_points_name(points_name, lang, value)}"


def _name(names: Mapping[str, Any] | None, lang: Lang) -> str:
    if not names:
        return translate(lang, "no tier")
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
    if keep and held_until is not None:
        return translate(lang, "{tier} is yours until {date}", tier=tier, date=day_text(held_until))
    if deadline is None:
        msgid = N_("{amount} to keep {tier}") if keep else N_("{amount} for {tier}")
        return translate(lang, msgid, amount=amount, tier=tier)
    if keep:
        msgid = N_("{amount} by {date} to keep {tier}")
    else:
        msgid = N_("{amount} by {date} for {tier}")
    return translate(lang, msgid, amount=amount, tier=tier, date=day_text(deadline))


_HISTORY = {
    "qualified": N_("Upgrade to {tier}: {value} {window} ({threshold} needed)"),
    "requalification_failed": N_("Down to {tier}: {value} {window}, {previous} needs {threshold}"),
    "membership_expired": N_("Paid membership {previous} ended on {date}; now {tier}"),
}


def history_text(template: str, params: Mapping[str, Any], lang: Lang = "en") -> str:
    """The text of a tier change (``tier_history.details``: the reason as template name
    and its parameters); an unknown reason is shown as it is."""
    values = {"tier": _name(params.get("to"), lang), "previous": _name(params.get("from"), lang)}
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

        window = _WINDOW.get(str(params.get("window")))
        values |= {
            "value": amount("value"),
            "threshold": amount("threshold"),
            "window": translate(lang, window) if window else "",
        }
        return translate(lang, _HISTORY[template], **values)
    until = params.get("until")
    values["date"] = day_text(date.fromisoformat(until)) if isinstance(until, str) else ""
    months = int(params.get("months", 0))
    if template == "membership_purchased":
        return translate_plural(
            lang,
            "{tier} bought for {count} month, until {date}",
            "{tier} bought for {count} months, until {date}",
            months,
            count=months,
            **values,
        )
    if template == "membership_renewed":
        return translate_plural(
            lang,
            "{tier} renewed for {count} month, until {date}",
            "{tier} renewed for {count} months, until {date}",
            months,
            count=months,
            **values,
        )
    if template in _HISTORY:
        return translate(lang, _HISTORY[template], **values)
    return template
