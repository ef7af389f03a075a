"""Message templates: Jinja2 in a sandbox, one file per message, part and language.

``templates/<lang>/<name>.subject.txt``, ``<name>.txt`` and ``<name>.html`` are the
parts of a message; ``layout.txt`` and ``layout.html`` wrap the bodies (greeting-free
frame, footer with the unsubscribe link). Texts live in these files, per language, not
in the gettext catalogue: a message is written as a whole, not assembled from sentences.
Numbers, money and dates are formatted by Babel for the language (``number``, ``money``
and ``date`` filters, and the ready-made variables of ``treu.messaging.channel``).

The renderer is the one the editable templates of the next increment will use, so it
treats a template as untrusted input:

* ``SandboxedEnvironment``: attribute access that leads out of the data
  (``''.__class__.__mro__``, ``cycler.__init__.__globals__``) raises ``SecurityError``,
  reported as a ``TemplateProblem`` with its line; nothing of the server is rendered.
* ``StrictUndefined`` plus a check before rendering: a template naming a variable it is
  not given fails with the line of that name, even inside a branch not taken — a typo
  must fail the preview, not send "Hallo ," to every member.
* Autoescaping in HTML parts (a first name ``<b>`` is shown, not interpreted); none in
  subjects and text parts, where escaping would show ``&amp;``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Literal

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2 import meta as jinja_meta
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import pass_context
from markupsafe import Markup

from treu.kit.money import to_major
from treu.messaging.errors import TemplateProblem

Part = Literal["subject", "text", "html"]
SUFFIX: dict[Part, str] = {"subject": ".subject.txt", "text": ".txt", "html": ".html"}
_TEMPLATE_FILE = "<template>"
"""The file name Jinja gives a template made from a string (its frames in tracebacks)."""


# --- locale formatting (Babel) -------------------------------------------------------------


def format_number(value: int | Decimal, lang: str) -> str:
    """``1.234`` in German, ``1,234`` in English."""
    return str(format_decimal(value, locale=lang))


def format_amount(amount_minor: int, currency: str, lang: str) -> str:
    """``1.234,50 €`` in German, ``€1,234.50`` in English."""
    return str(format_currency(to_major(amount_minor, currency), currency, locale=lang))


def format_day(value: date, lang: str) -> str:
    """``31.12.2026`` in German, ``Dec 31, 2026`` in English (CLDR's medium date)."""
    return str(format_date(value, format="medium", locale=lang))


def _lang(context: Context) -> str:
    return str(context.get("lang") or "en")


@pass_context
def _number_filter(context: Context, value: Any) -> str:
    return format_number(value, _lang(context))


@pass_context
def _money_filter(context: Context, amount_minor: Any, currency: str) -> str:
    return format_amount(int(amount_minor), currency, _lang(context))


@pass_context
def _date_filter(context: Context, value: Any) -> str:
    """A local date (or its ISO text); a datetime is taken by its own calendar date."""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    return format_day(value, _lang(context))


# --- the renderer ----------------------------------------------------------------------------


def _environment(*, autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(number=_number_filter, money=_money_filter, date=_date_filter)
    return env


class Renderer:
    """Compiles and renders template sources (compiled templates are cached by source)."""

    def __init__(self) -> None:
        self._envs = {False: _environment(autoescape=False), True: _environment(autoescape=True)}
        self._compiled = lru_cache(maxsize=512)(self._compile_uncached)
        self._checked = lru_cache(maxsize=512)(self._check_uncached)

    def compile(self, source: str, *, html: bool = False, name: str | None = None) -> Template:
        """The compiled template; a syntax error is a ``TemplateProblem`` with its line."""
        try:
            return self._compiled(source, html)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(exc.message or str(exc), line=exc.lineno, name=name) from None

    def check(
        self, source: str, names: Iterable[str], *, html: bool = False, name: str | None = None
    ) -> None:
        """Raise ``TemplateProblem`` when ``source`` does not compile or names a variable
        other than ``names`` (and the environment's globals), with the line of its first
        use."""
        try:
            self._checked(source, frozenset(names), html)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(exc.message or str(exc), line=exc.lineno, name=name) from None
        except _Unknown as exc:
            raise TemplateProblem(
                f"unknown variable {exc.variable!r}", line=exc.line, name=name
            ) from None

    def render(
        self,
        source: str,
        variables: Mapping[str, Any],
        lang: str,
        *,
        html: bool = False,
        name: str | None = None,
    ) -> str:
        """``source`` rendered with ``variables`` in ``lang`` (``lang`` is a variable too).

        Every failure is a ``TemplateProblem`` with the template's line: a syntax error, an
        unknown variable, what the sandbox refuses, an error inside an expression."""
        values = {**variables, "lang": lang}
        self.check(source, values, html=html, name=name)
        template = self.compile(source, html=html, name=name)
        try:
            return template.render(values)
        except SecurityError as exc:
            raise TemplateProblem(
                f"not allowed: {exc}", line=_template_line(exc), name=name
            ) from None
        except TemplateError as exc:
            raise TemplateProblem(str(exc), line=_template_line(exc), name=name) from None
        except Exception as exc:  # an expression's own error: 1 / 0, a bad filter argument
            raise TemplateProblem(
                f"{type(exc).__name__}: {exc}", line=_template_line(exc), name=name
            ) from None

    def _compile_uncached(self, source: str, html: bool) -> Template:
        return self._envs[html].from_string(source)

    def _check_uncached(self, source: str, names: frozenset[str], html: bool) -> None:
        env = self._envs[html]
        tree = env.parse(source)
        unknown = jinja_meta.find_undeclared_variables(tree) - names - set(env.globals)
        if not unknown:
            return
        first = min(
            (node.lineno, node.name)
            for node in tree.find_all(nodes.Name)
            if node.name in unknown and node.ctx == "load"
        )
        raise _Unknown(first[1], first[0])


class _Unknown(Exception):
    def __init__(self, variable: str, line: int) -> None:
        super().__init__(variable)
        self.variable = variable
        self.line = line


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at: Jinja rewrites the traceback so that
    the template's frames carry its file name and line numbers."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


renderer = Renderer()


def render(source: str, variables: Mapping[str, Any], lang: str, *, html: bool = False) -> str:
    """Render a template source (see ``Renderer.render``)."""
    return renderer.render(source, variables, lang, html=html)


# --- the shipped files -------------------------------------------------------------------


@cache
def source(name: str, part: Part, lang: str | None) -> str:
    """The text of a shipped template file (``lang`` None: a language-neutral page)."""
    folder = resources.files("treu.messaging").joinpath("templates")
    if lang is not None:
        folder = folder.joinpath(lang)
    return folder.joinpath(name + SUFFIX[part]).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class TemplateSource:
    """The three parts of a message that are not a shipped file: a programme's stored
    template (``treu.messaging.stored``). ``origin`` names it in errors."""

    subject: str
    text: str
    html: str
    origin: str = "stored"


def trusted_html(fragment: str) -> str:
    """``fragment`` marked safe for an HTML part (it is inserted as it is): only for
    markup Treu made itself, such as a QR code's SVG."""
    return Markup(fragment)


def render_message(
    name: str,
    variables: Mapping[str, Any],
    lang: str,
    *,
    stored: TemplateSource | None = None,
) -> Rendered:
    """A message in ``lang``: subject (one line), text and HTML, each body in its
    layout. The bodies are the shipped files of ``name``, or ``stored`` when given (the
    layout is always the shipped one)."""
    if stored is not None:
        where = f"{stored.origin} {lang}/{name}"
        parts = {"subject": stored.subject, "text": stored.text, "html": stored.html}
        names = {part: f"{where} {part}" for part in parts}
    else:
        parts = {part: source(name, part, lang) for part in ("subject", "text", "html")}
        names = {part: f"{lang}/{name}{SUFFIX[part]}" for part in parts}  # type: ignore[index]
    subject = " ".join(
        renderer.render(parts["subject"], variables, lang, name=names["subject"]).split()
    )
    text = renderer.render(parts["text"], variables, lang, name=names["text"])
    html = renderer.render(parts["html"], variables, lang, html=True, name=names["html"])
    framed = {**variables, "subject": subject}
    return Rendered(
        subject=subject,
        text=renderer.render(
            source("layout", "text", lang),
            {**framed, "content": text.strip("\n")},
            lang,
            name=f"{lang}/layout.txt",
        ),
        html=renderer.render(
            source("layout", "html", lang),
            {**framed, "content": Markup(html)},
            lang,
            html=True,
            name=f"{lang}/layout.html",
        ),
    )


def render_page(name: str, variables: Mapping[str, Any], lang: str | None) -> str:
    """A shipped HTML page (unsubscribe, development mailbox)."""
    where = f"{lang}/{name}.html" if lang else f"{name}.html"
    return renderer.render(
        source(name, "html", lang), variables, lang or "en", html=True, name=where
    )
