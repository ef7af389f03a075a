"""Text PostgreSQL cannot store: the NUL character (SQLite can). A request carrying it is
the client's mistake (422), not Treu's (500)."""

from __future__ import annotations

from treu.errors import Invalid


class NulInText(Invalid):
    code = "nul_in_text"
    title = "Text contains a NUL character"


def nul_in_text(error: BaseException) -> NulInText | None:
    """The client error for ``error`` if it (or what caused it) is PostgreSQL's refusal of
    a NUL character in text, else None."""
    seen: set[int] = set()
    found: BaseException | None = error
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if "NUL (0x00)" in str(found) or "contain NUL" in str(found):
            return NulInText("text may not contain the NUL character (U+0000)")
        found = getattr(found, "orig", None) or found.__cause__ or found.__context__
    return None
