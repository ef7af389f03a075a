"""Rendering pages: one Jinja2 environment over ``treu/web/templates``, the text
catalogue as ``_`` and locale-aware formatting.

Texts in templates are English message ids marked ``_("…")`` (or ``_("{n} members",
n=…)`` with placeholders): ``make texts`` extracts them with the Python ones
(``babel.cfg``), so pages, API texts and e-mails share one catalogue and German stays
complete (``tests/kit/test_texts.py``). Autoescaping is on, undefined variables are an
error (a misspelt name fails its test instead of rendering nothing).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import (
    format_date,
    format_datetime,
    get_date_format,
    get_datetime_format,
    get_time_format,
)
from babel.numbers import format_decimal
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from treu.kit.lang import LANGUAGES, Lang
from treu.kit.text import translate, translate_plural
from treu.web.nav import ADMIN, PORTAL
from treu.web.security import LANG_COOKIE

DEFAULT_LANG: Lang = "de"
"""Pages are German unless the user chose English (the retailer's staff and members)."""
STATIC = "/static"

_env = Environment(
    loader=PackageLoader("treu.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["admin_nav"] = ADMIN.visible
_env.globals["portal_nav"] = PORTAL.visible


@cache
def static_url(path: str) -> str:
    """``/static/<path>?v=<hash of the file>``: cached for a year by browsers, and a new
    release's file has a new address."""
    data = resources.files("treu.web").joinpath("static", path).read_bytes()
    return f"{STATIC}/{path}?v={hashlib.sha256(data).hexdigest()[:12]}"


def language(request: Request) -> Lang:
    chosen = request.cookies.get(LANG_COOKIE)
    for lang in LANGUAGES:
        if chosen == lang:
            return lang
    return DEFAULT_LANG


def translate_for(lang: str) -> Callable[..., str]:
    """The ``_`` of ``lang``: ``_("{n} members", n=3)``."""

    def _(msgid: str, **params: object) -> str:
        return translate(lang, msgid, **params)

    return _


def _locale(lang: str) -> str:
    return "de_DE" if lang == "de" else "en_GB"


@cache
def _group_separator(lang: str) -> str:
    """The locale's thousands separator, as Babel writes it ("." in German)."""
    return format_decimal(1000, locale=_locale(lang))[1]


def format_number(value: int | float, lang: str) -> str:
    """``format_decimal``, with whole numbers written directly: a member's page shows a
    few hundred, and Babel's formatting was a tenth of the console's member page."""
    if type(value) is int:
        text = f"{value:,}"
        separator = _group_separator(lang)
        return text if separator == "," else text.replace(",", separator)
    return format_decimal(value, locale=_locale(lang))


_CLDR_TO_STRFTIME = {
    "dd": "%d",
    "MM": "%m",
    "yy": "%y",
    "y": "%Y",
    "yyyy": "%Y",
    "HH": "%H",
    "mm": "%M",
}


@cache
def _short_datetime(lang: str) -> str | None:
    """The locale's short date and time ("dd.MM.yy, HH:mm") as a ``strftime`` format, or
    None when it has a field the translation does not know (Babel formats it then)."""
    locale = Locale.parse(_locale(lang))
    pattern = (
        str(get_datetime_format("short", locale))
        .replace("'", "")
        .replace("{0}", get_time_format("short", locale).pattern)
        .replace("{1}", get_date_format("short", locale).pattern)
    )
    out = []
    for letters, other in re.findall(r"([A-Za-z]+)|([^A-Za-z]+)", pattern):
        if other:
            out.append(other.replace("%", "%%"))
        elif letters in _CLDR_TO_STRFTIME:
            out.append(_CLDR_TO_STRFTIME[letters])
        else:
            return None
    return "".join(out)


def format_when(value: datetime, zone: ZoneInfo, lang: str) -> str:
    """``format_datetime(value, "short")`` in ``zone``, through ``strftime`` where the
    locale's pattern allows (Babel parsed and applied it per call: a third of the
    console's member page)."""
    fast = _short_datetime(lang)
    if fast is None:
        return format_datetime(value, "short", tzinfo=zone, locale=_locale(lang))
    return value.astimezone(zone).strftime(fast)


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    timezone: str = "UTC",
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered in the user's language; instants are shown in ``timezone``
    (the programme's, where the page is about one)."""
    lang = language(request)
    zone = ZoneInfo(timezone)

    _ = translate_for(lang)

    def number(value: int | float) -> str:
        return format_number(value, lang)

    def when(value: datetime | None) -> str:
        if value is None:
            return "—"
        return format_when(value, zone, lang)

    def day(value: date | datetime) -> str:
        if isinstance(value, datetime):
            value = value.date()
        return format_date(value, "medium", locale=_locale(lang))

    def ngettext(singular: str, plural: str, n: int, **params: object) -> str:
        """The form that fits ``n`` ("1 Punkt verfällt", "2 Punkte verfallen")."""
        return translate_plural(lang, singular, plural, n, **params)

    page = _env.get_template(template).render(
        request=request,
        lang=lang,
        _=_,
        ngettext=ngettext,
        number=number,
        when=when,
        day=day,
        static=static_url,
        path=request.url.path,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    )
    return HTMLResponse(page, status_code=status_code)
