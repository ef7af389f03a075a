"""Reading the catalogue pages' forms (rewards, challenges): text fields to the values
the services take, and the services' validation errors back to the fields they concern.

Only the shape of the input is handled here (a date typed in the programme's time zone,
an amount in euros, a percentage); whether the values make a valid reward or challenge
is for ``RewardIn`` / ``ChallengeSpec`` and the services to say.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, DecimalException
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from treu.kit.money import currency_exponent
from treu.kit.text import N_

Values = dict[str, str]
Errors = dict[str, str]
"""Form field -> message id (already translated where it came with parameters)."""

GENERAL = "form"


class FormError(Exception):
    """A field whose text is not of the expected kind (``abc`` for a number)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def text_values(form: Mapping[str, Any], names: list[str]) -> Values:
    """The text fields ``names`` of a submitted form, trimmed ('' when absent)."""
    out: Values = {}
    for name in names:
        value = form.get(name)
        out[name] = value.strip() if isinstance(value, str) else ""
    return out


MAX_DIGITS = 15
"""Longer numbers are no one's stock, price or points (and would overflow a column)."""


def whole(values: Values, name: str) -> int | None:
    text = values.get(name, "")
    if not text:
        return None
    if len(text.lstrip("+-")) > MAX_DIGITS:
        raise FormError(name, N_("Enter a whole number."))
    try:
        return int(text)
    except ValueError:
        raise FormError(name, N_("Enter a whole number.")) from None


def _decimal(text: str) -> Decimal | None:
    """A finite decimal number of at most ``MAX_DIGITS`` characters, or None."""
    if len(text) > MAX_DIGITS + 2:
        return None
    try:
        number = Decimal(text)
    except DecimalException:
        return None
    if not number.is_finite() or number.adjusted() >= MAX_DIGITS:  # no arithmetic yet
        return None
    exponent = number.as_tuple().exponent
    return number if isinstance(exponent, int) and exponent >= -6 else None


def money_minor(values: Values, name: str, currency: str) -> int | None:
    """An amount typed in major units (``5``, ``5,50``, ``5.50``) as minor units."""
    text = values.get(name, "").replace(" ", "")
    if not text:
        return None
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    number = _decimal(text)
    if number is None:
        raise FormError(name, N_("Enter an amount such as 5.50."))
    amount = number * (10 ** currency_exponent(currency))
    if amount != amount.to_integral_value():
        raise FormError(name, N_("Enter an amount such as 5.50."))
    return int(amount)


def minor_text(amount: int | None, currency: str) -> str:
    if amount is None:
        return ""
    exponent = currency_exponent(currency)
    return f"{Decimal(amount) / (10**exponent):.{exponent}f}"


def basis_points(values: Values, name: str) -> int | None:
    """A percentage typed as ``10`` or ``12,5`` as basis points."""
    text = values.get(name, "").replace(",", ".").rstrip("% ")
    if not text:
        return None
    number = _decimal(text)
    if number is None:
        raise FormError(name, N_("Enter a percentage such as 10 or 12.5."))
    bp = number * 100
    if bp != bp.to_integral_value():
        raise FormError(name, N_("Enter a percentage such as 10 or 12.5."))
    return int(bp)


def int_text(value: int | None) -> str:
    return "" if value is None else str(value)


def percent_text(bp: int | None) -> str:
    if bp is None:
        return ""
    return f"{Decimal(bp) / 100:f}".rstrip("0").rstrip(".") if bp % 100 else str(bp // 100)


def local_time(values: Values, name: str, timezone: str) -> str | None:
    """A ``datetime-local`` value (the programme's wall clock) as an ISO instant."""
    text = values.get(name, "")
    if not text:
        return None
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        raise FormError(name, N_("Enter a date and time.")) from None
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=ZoneInfo(timezone))
    return naive.isoformat()


def local_text(value: datetime | str | None, timezone: str) -> str:
    """An instant as a ``datetime-local`` value in the programme's time zone."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H:%M")


_MESSAGES: dict[str, str] = {
    "missing": N_("Required."),
    "string_too_short": N_("Required."),
    "too_short": N_("Required."),
    "greater_than_equal": N_("At least {limit}."),
    "greater_than": N_("More than {limit}."),
    "less_than_equal": N_("At most {limit}."),
    "string_too_long": N_("At most {limit} characters."),
    "string_pattern_mismatch": N_("Not in the expected form."),
    "int_parsing": N_("Enter a whole number."),
    "int_type": N_("Enter a whole number."),
    "datetime_from_date_parsing": N_("Enter a date and time."),
    "literal_error": N_("Choose one of the options."),
    "enum": N_("Choose one of the options."),
    # The specifications' own refusals (PydanticCustomError), by type: their English
    # is written for the API's readers, with field names.
    "blank": N_("Required."),
    "window": N_("The end must be after the start."),
    "validity": N_("“Valid until” must be after “valid from”."),
    "reward_empty": N_("Give points, a badge or both."),
    "trigger_return": N_("Returns do not count towards challenges (they take progress back)."),
    "trigger_duplicate": N_("Choose each trigger once."),
    "line_trigger": N_(
        "Conditions on purchase lines need the trigger “purchase” alone (other events "
        "have no lines)."
    ),
    "goal_value": N_("A sum needs a value to add up when not only purchases count."),
    "max_completions_fixed": N_(
        "A fixed period is completed once at most; choose a repeating period for more."
    ),
    "limit_empty": N_("A limit needs a greatest number of times or of points."),
    "limits_duplicate": N_("At most one limit per period."),
    "badge_icon": N_("An icon is a web address (http or https) or an emoji."),
    "badge_missing": N_("A rule that only awards a badge needs the badge."),
    "line_condition_effect": N_(
        "A condition on lines needs points per unit, a multiplier, a percentage bonus or "
        "fixed points."
    ),
    "line_condition_scope": N_("A condition on lines needs an effect on lines."),
    "boost": N_("A bonus campaign needs a bonus."),
    "offer": N_("An offer gives points, a reward or both."),
}


def message_of(item: Mapping[str, Any], _: Callable[..., str]) -> str:
    """One pydantic error (``type``, ``msg``, ``ctx``; or an API error item with ``type``
    and ``msg``) in the page's language: by its type where Treu words it, else
    pydantic's English (without its "Value error, " prefix)."""
    template = _MESSAGES.get(str(item.get("type")))
    ctx = item.get("ctx") or {}
    limit = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("max_length", ""))))
    if template is None or ("{limit}" in template and limit == ""):
        return str(item["msg"]).removeprefix("Value error, ")
    return _(template, limit=limit)


def pydantic_errors(
    error: ValidationError,
    field_of: Callable[[tuple[Any, ...]], str],
    _: Callable[..., str],
    general: Callable[[str], tuple[str, str]] | None = None,
) -> Errors:
    """Each error of ``error`` on the form field ``field_of(loc)`` names; errors of the
    whole model go to ``general(message)`` (a field and a message) or to the form."""
    out: Errors = {}
    for item in error.errors():
        loc = tuple(item["loc"])
        kind = item["type"]
        if not loc or kind == "value_error":
            message = str(item["msg"]).removeprefix("Value error, ")
            field, text = general(message) if general else (GENERAL, message)
            if kind in _MESSAGES:  # a refusal of the whole specification that Treu words
                text = message_of(item, _)
            out.setdefault(field, text)
            continue
        out.setdefault(field_of(loc), message_of(item, _))
    return out


SNAKE = re.compile(r"[^a-z0-9]+")


def field_name(dotted: str) -> str:
    """``eligibility.min_tier`` -> ``eligibility_min_tier``."""
    return SNAKE.sub("_", dotted.lower()).strip("_")
