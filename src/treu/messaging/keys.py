"""The messages Treu can word (no Jinja2 here: domain packages check names against it)."""

from __future__ import annotations

from importlib import resources


def message_keys() -> frozenset[str]:
    """The messages a template can word: those with shipped files (in English), but
    not a sign-in code (its wording is fixed: it must carry the code)."""
    folder = resources.files("treu.messaging").joinpath("templates").joinpath("en")
    return frozenset(
        entry.name.removesuffix(".subject.txt")
        for entry in folder.iterdir()
        if entry.name.endswith(".subject.txt") and entry.name != "sign_in_code.subject.txt"
    )
