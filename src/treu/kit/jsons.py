"""JSON encoding on the hot paths, with orjson.

``json.dumps`` was the largest single item in a batch of 1,000 purchases (the stored
results, the postings' details, the answer); orjson does the same work several times
faster. Keys that are not strings (ints, UUIDs) are written as strings, as ``json``
does; datetimes, UUIDs and enums are written natively instead of failing."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


def dumps_sorted(value: Any) -> bytes:
    """Canonical form: keys sorted at every level, no whitespace."""
    return orjson.dumps(value, option=_OPTIONS | orjson.OPT_SORT_KEYS)


loads = orjson.loads
