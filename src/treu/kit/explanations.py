"""Explanations of postings: one table of templates, one renderer, fed by the catalogue.

A posting stores its explanation in English (``postings.explanation``) and the facts
behind it in ``details``: a template name and its parameters, never personal data. Any
surface renders it again in the reader's language with ``render(details, lang)``. The
template names are in the database and are never renamed or dropped; a name's sentence
lives in the catalogue (``treu.kit.text``), whose message id is the English sentence.

A placeholder is filled from the parameter of its name:

* ``{amount}`` (any ``{x}`` whose parameters hold ``x_minor`` and ``currency``): the
  money amount as the language writes it ("€42.90", "42,90 €");
* ``{unit}``: one unit of ``currency`` ("€1", "1 €");
* ``{x:decimal}``: a decimal with the language's decimal sign ("1.5", "1,5"); ``{rate}``
  without the spec: the rate as the API spells it in any language ("1.5");
* ``{points_name}``: the programme's name for points (``points_name`` parameter), else
  the catalogue's "point"/"points", singular for a rate of exactly 1;
* ``{signed}``: ``points`` with its sign ("+5", "-5"); ``{why}``: a refund's cause;
* anything else: the parameter itself, a ``{"de": …, "en": …}`` one in the language;
  nothing for a parameter that is missing or null.

Rendering runs once per earn posting on the ingest path, so each template is parsed once
per language into literal parts and field functions; a call then only fills them in.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

from treu.kit.lang import LANGUAGES
from treu.kit.money import currency_exponent, format_money, format_rate
from treu.kit.text import N_, lookup, translate_plural

Params = Mapping[str, Any]
Field = Callable[[Params, str], str]

TEMPLATES: dict[str, str] = {
    # The foundation: earning at the base rate, returns, adjustments, expiry, payments.
    "earn.base": N_("{rate} {points_name} per {unit} on {amount}: +{points}"),
    "earn.blocked": N_("Member is blocked: no points for {amount}"),
    "reverse.return": N_("Return of {items} from order {order}: -{points}"),
    "adjust": N_("Manual adjustment: {reason}"),
    "expire": N_("{points} points earned on {earned} expired"),
    "settle": N_("{points} newly available points settle a negative balance"),
    "redeem": N_("Redeemed: {what}"),
    "refund": N_("Refunded: {what}: +{points}"),
    "payment": N_("Paid {amount} of order {order} with points: -{points}"),
    "refund.payment": N_("Points payment for order {order} refunded ({amount}): +{points}"),
    "donation": N_("Donation to {charity}: -{points}"),
    # Earning rules (treu.rules), tier multipliers (treu.tiers).
    # TRANSLATORS: keep {rate:decimal} as it is: the rate with the language's decimal sign.
    "rules.points_per_unit": N_("{rate:decimal} {points_name} per {unit} on {amount}: {signed}"),
    "rules.points_per_unit.lines": N_(
        "{name}: {rate:decimal} {points_name} per {unit} on {amount}: {signed}"
    ),
    "rules.multiplier": N_("{name} \u00d7{factor:decimal}: {signed}"),
    "rules.percent_bonus": N_("{name} +{percent:decimal}%: {signed}"),
    # TRANSLATORS: an earning rule's name and the points it gave ("+50").
    "rules.fixed": N_("{name}: {signed}"),
    "rules.badge_only": N_("{name}: badge \u201c{badge}\u201d"),
    "tiers.multiplier": N_("{tier} tier \u00d7{factor:decimal}: {signed}"),
    # Challenges; a completion that gave only a badge reads "...badge" (see _VARIANTS).
    "challenges.completed": N_("Challenge \u201c{name}\u201d completed: +{points}"),
    "challenges.completed.badge": N_(
        "Challenge \u201c{name}\u201d completed: badge \u201c{badge}\u201d"
    ),
    # Rewards: redemptions and their refunds.
    "rewards.redeem": N_("Redeemed: {reward}: -{points}"),
    "rewards.refund": N_("Refund: {reward} ({why}): +{points}"),
}
"""Template name (stored in ``postings.details``) -> message id."""

_VARIANTS: dict[str, str] = {"challenges.completed": "challenges.completed.badge"}
"""Templates whose posting reads differently when it gave no points but a badge."""

REASONS: dict[str, str] = {
    "condition_false": N_("condition not met"),
    "no_matching_lines": N_("no matching lines"),
    "outside_validity": N_("not valid at this time"),
    "excluded": N_("excluded by an exclusive rule"),
    "outranked": N_("a higher multiplier applies"),
    "no_points": N_("nothing to award"),
    "limit_day": N_("daily limit reached"),
    "limit_week": N_("weekly limit reached"),
    "limit_month": N_("monthly limit reached"),
    "limit_lifetime": N_("limit reached"),
    "limit": N_("limit reached"),
    "budget": N_("budget used up"),
    "not_originally_awarded": N_("not awarded on the original purchase"),
    "original_award": N_("held to the original award"),
}
"""Why an earning rule gave nothing or less (``Skip.reason``, ``Award.limited_by``)."""

_WHY: dict[str, str] = {
    "cancelled": N_("cancelled"),
    "expired": N_("coupon expired unused"),
}
"""Why a redemption's points came back (``rewards.refund``)."""


def reason_text(code: str, lang: str = "en") -> str:
    """The text of a rule's reason code; an unknown code is shown as it is."""
    msgid = REASONS.get(code)
    return code if msgid is None else lookup(_spoken(lang), msgid)


def render(details: Mapping[str, Any], lang: str = "en") -> str:
    """The explanation of a posting's ``details`` in ``lang`` (English when Treu does not
    speak ``lang``). Raises ``KeyError`` for a template name it does not know."""
    return render_explanation(details["template"], details.get("params") or {}, lang)


def render_explanation(template: str, params: Params, lang: str = "en") -> str:
    """The text of ``template`` with ``params`` (``render`` without the envelope)."""
    if lang not in LANGUAGES:
        lang = "en"
    if template in _VARIANTS and "badge" in params and int(params.get("points", 0)) <= 0:
        template = _VARIANTS[template]
    parts = _compiled.get((template, lang)) or _compile(template, lang)
    text = "".join([part if isinstance(part, str) else part(params, lang) for part in parts])
    limited = params.get("limited_by")
    if limited:
        text += f" ({reason_text(str(limited), lang)})"
    return text


# --------------------------------------------------------------------------- compiling

_compiled: dict[tuple[str, str], tuple[str | Field, ...]] = {}


def _compile(template: str, lang: str) -> tuple[str | Field, ...]:
    """The template's sentence in ``lang`` as literal parts and field functions."""
    parts: list[str | Field] = []
    for literal, name, spec, conversion in string.Formatter().parse(
        lookup(lang, TEMPLATES[template])
    ):
        if literal:
            parts.append(literal)
        if name is not None:
            if conversion or not name.isidentifier():
                raise ValueError(f"{template}: placeholder {{{name}}} is not a plain name")
            parts.append(field_of(name, spec or ""))
    compiled = tuple(parts)
    _compiled[(template, lang)] = compiled
    return compiled


def field_of(name: str, spec: str = "") -> Field:
    """How placeholder ``{name:spec}`` is filled (see the module docstring)."""
    if spec == "decimal":
        return lambda params, lang: _decimal(str(params.get(name, "")), lang)
    if spec:
        raise ValueError(f"unknown format {{{name}:{spec}}}")
    special = _SPECIAL.get(name)
    if special is not None:
        return special
    minor = f"{name}_minor"

    def value(params: Params, lang: str) -> str:
        currency = params.get("currency")
        if currency and minor in params:
            return format_money(int(params[minor]), str(currency), lang)
        return localized(params.get(name), lang)

    return value


def localized(value: Any, lang: str) -> str:
    """A parameter as text: a ``{"de": …, "en": …}`` one in ``lang``, else in English,
    else in whatever language it has."""
    if isinstance(value, Mapping):
        return str(value.get(lang) or value.get("en") or next((v for v in value.values() if v), ""))
    return "" if value is None else str(value)


def points_label(names: Any, lang: str, *, one: bool = False) -> str:
    """Pick the label for ``lang`` from ``{"en": {"one": "point", "other": "points"}, ...}``."""
    if not isinstance(names, dict):
        return str(names)
    label = names.get(lang) or names.get("en") or "points"
    if isinstance(label, dict):
        return str(label.get("one" if one else "other") or label.get("other") or "points")
    return str(label)


def _rate(params: Params, lang: str) -> str:
    return _plain(str(params.get("rate", "")))


def _signed(params: Params, lang: str) -> str:
    points = int(params.get("points", 0))
    return f"+{points}" if points >= 0 else str(points)


def _unit_field(params: Params, lang: str) -> str:
    if "unit" in params:
        return str(params["unit"])
    currency = params.get("currency")
    return _unit(str(currency), lang) if currency else ""


def _points_name(params: Params, lang: str) -> str:
    one = _is_one(str(params.get("rate", "2")))
    names = params.get("points_name")
    if names is None:
        return _default_points_name(lang, one)
    return points_label(names, lang, one=one)


def _why(params: Params, lang: str) -> str:
    code = str(params.get("why", ""))
    msgid = _WHY.get(code)
    return code if msgid is None else lookup(lang, msgid)


_SPECIAL: dict[str, Field] = {
    "rate": _rate,
    "signed": _signed,
    "unit": _unit_field,
    "points_name": _points_name,
    "why": _why,
}


def _spoken(lang: str) -> str:
    return lang if lang in LANGUAGES else "en"


# Every earning posting renders its explanation; these depend only on the programme's
# currency and rate, so each is worked out once.
@lru_cache(maxsize=256)
def _unit(currency: str, lang: str) -> str:
    """One unit of ``currency`` ("€1", "1 €")."""
    return (
        format_money(10 ** currency_exponent(currency), currency, lang)
        .replace(".00", "")
        .replace(",00", "")
    )


@lru_cache(maxsize=256)
def _decimal(value: str, lang: str) -> str:
    if not value:
        return ""
    text = format_rate(Decimal(value))
    return text.replace(".", ",") if lang == "de" else text


@lru_cache(maxsize=256)
def _plain(value: str) -> str:
    return format_rate(Decimal(value)) if value else ""


@lru_cache(maxsize=256)
def _is_one(rate: str) -> bool:
    return Decimal(rate) == 1


@lru_cache(maxsize=8)
def _default_points_name(lang: str, one: bool) -> str:
    return translate_plural(lang, "point", "points", 1 if one else 2)
