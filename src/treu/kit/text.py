"""The text catalogue: every sentence a member or a cashier reads, in their language.

**Message ids are the English texts** (``"Birthday this month"``, ``"{points} points
expire on {date}"``), the usual gettext convention with English as the source language:
the sentence stands where the code uses it, ``pybabel extract`` finds it there, a
translator sees the real sentence, and a changed English sentence marks its translation
fuzzy for review instead of silently keeping an old meaning. English needs no catalogue
(its texts are the ids); ``locale/<lang>/LC_MESSAGES/treu.po`` holds the others, German
complete (a test says so). Texts that are stored and rendered again later (postings'
explanations) keep stable *template names* in the database; ``treu.kit.explanations``
maps each name to its message id.

Placeholders are ``str.format`` fields (``{points}``); plural texts go through
``translate_plural`` with the catalogue's own ``Plural-Forms`` rule ("1 Monat",
"2 Monate"). Number, money and date formatting stay with the caller (``treu.kit.money``):
a catalogue holds words, not locale data.

**Loading, not compiling.** The ``.po`` files are read with Babel's ``read_po`` the first
time a language is asked for and kept in memory for the life of the process: a few
milliseconds once, then one dictionary look-up per text. Nothing is generated, so a fresh
clone runs with ``make run`` and an installed package needs only the ``.po`` files
(package data) — no ``.mo`` in the repository to fall out of date, no compile step in
the build. Untranslated and fuzzy entries fall back to the English text, as gettext does.
``make texts`` runs ``pybabel extract`` and ``update`` for developers.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import IO

from treu.kit.lang import LANGUAGES

DOMAIN = "treu"
SOURCE_LANGUAGE = "en"


def N_(msgid: str) -> str:
    """Mark ``msgid`` for ``pybabel extract`` where it is stored or looked up later
    (tables of reasons, explanation templates); returns it unchanged."""
    return msgid


@dataclass(frozen=True, slots=True)
class Catalogue:
    """One language's translations: ``texts[msgid]``, ``plurals[singular]`` (one form
    per plural category) and ``plural(n)``, the index of the form for ``n``."""

    lang: str
    texts: dict[str, str] = field(default_factory=dict)
    plurals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    plural: Callable[[int], int] = field(default=gettext.c2py("n != 1"))


def po_path(lang: str) -> Traversable:
    """Where the catalogue of ``lang`` lives inside the package."""
    return resources.files("treu").joinpath("locale", lang, "LC_MESSAGES", f"{DOMAIN}.po")


@cache
def catalogue(lang: str) -> Catalogue:
    """The catalogue of ``lang``, read once per process; an empty one (English texts)
    for English and for a language Treu does not speak."""
    if lang == SOURCE_LANGUAGE or lang not in LANGUAGES:
        return Catalogue(SOURCE_LANGUAGE)
    path = po_path(lang)
    if not path.is_file():
        return Catalogue(lang)
    with path.open("rb") as file:
        return parse(file, lang)


def parse(file: IO[bytes], lang: str) -> Catalogue:
    """A ``.po`` file's usable translations: fuzzy, empty and obsolete entries are left
    out, so their English text is shown."""
    from babel.messages.pofile import read_po  # only when a catalogue is first read

    po = read_po(file, locale=lang, domain=DOMAIN, ignore_obsolete=True)
    texts: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    for message in po:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple | list):
            forms = tuple(str(form) for form in message.string or ())
            if forms and all(forms):
                plurals[str(message.id[0])] = forms
        elif message.string:
            texts[str(message.id)] = str(message.string)
    return Catalogue(lang, texts, plurals, gettext.c2py(po.plural_expr))


def lookup(lang: str, msgid: str) -> str:
    """The text of ``msgid`` in ``lang``, placeholders unfilled (English if untranslated)."""
    return catalogue(lang).texts.get(msgid, msgid)


def translate(lang: str, msgid: str, /, **params: object) -> str:
    """``msgid`` in ``lang`` with ``params`` filled in:
    ``translate("de", "{points} points expire on {date}", points=120, date="31.12.")``
    is ``"120 Punkte verfallen am 31.12."``."""
    return catalogue(lang).texts.get(msgid, msgid).format(**params)


def translate_plural(lang: str, singular: str, plural: str, n: int, /, **params: object) -> str:
    """The form of ``singular``/``plural`` that fits ``n`` in ``lang``, filled in:
    ``translate_plural("de", "{count} purchase", "{count} purchases", 2, count=2)`` is
    ``"2 Einkäufe"``. ``n`` only chooses the form; the number shown is a parameter like
    any other (formatted as the language writes numbers: "1.234")."""
    found = catalogue(lang)
    forms = found.plurals.get(singular)
    if forms is None:
        text = singular if n == 1 else plural
    else:
        text = forms[min(found.plural(n), len(forms) - 1)]
    return text.format(**params)
