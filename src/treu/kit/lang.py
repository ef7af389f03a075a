"""The languages Treu speaks to members and cashiers, and how an answer picks one.

An answer meant for a member is in the language the caller asked for (the ``lang``
parameter, else the ``Accept-Language`` header when it names a language Treu speaks),
else in the member's own language, else in English.
"""

from __future__ import annotations

from typing import Literal, get_args

Lang = Literal["de", "en"]
LANGUAGES: tuple[Lang, ...] = get_args(Lang)
FALLBACK: Lang = "en"


def from_accept_language(header: str | None) -> Lang | None:
    """The language Treu speaks that ``Accept-Language`` (RFC 9110) prefers most, or None
    when it names none of them (or only with ``q=0``). ``*`` names none: it leaves the
    choice to the member's language. Malformed entries are passed over."""
    if not header:
        return None
    best: tuple[float, int] | None = None
    chosen: Lang | None = None
    for position, entry in enumerate(header.split(",")):
        tag, *params = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        primary = tag.split("-")[0].lower()
        if primary not in LANGUAGES or not 0 < quality <= 1:
            continue
        rank = (quality, -position)
        if best is None or rank > best:
            best, chosen = rank, primary
    return chosen


def member_language(requested: Lang | None, member_language: str | None) -> Lang:
    """What an answer for this member is written in (see the module docstring)."""
    if requested is not None:
        return requested
    if member_language in LANGUAGES:
        return member_language
    return FALLBACK
