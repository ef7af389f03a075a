"""A per-process cache of values that are dear to build and cheap to check.

The checkout and the ingest read a programme's compiled rules, active challenges and
reward catalogue on every request. Building them takes several queries and a compile;
knowing whether the last build is still current takes one light query (the *stamp*: the
ids and versions it was built from). So an entry is served as it is for ``seconds``;
after that the stamp is read again, and the value rebuilt only when the stamp changed.
A change made in this process calls ``invalidate`` and is seen at once; other processes
see it within ``seconds``.

Where nothing cheap tells whether a value is current (``stamp=None``), it is rebuilt
each time it expires. A *token* is what the caller knows for free (a version number on a
row it holds anyway): an entry built under another token is checked at once, without
waiting for it to expire.

Readers take no lock (one dict read); writers replace whole entries under a lock, so a
reader sees an old entry or a new one, never half of one. Two threads that miss at once
may both build; the last one stored wins, which is harmless for values that are equal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_NO_STAMP = object()


@dataclass
class _Entry(Generic[V]):
    value: V
    stamp: Any
    token: Any
    expires: float


class StampedCache(Generic[K, V]):
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._lock = threading.Lock()

    def get(
        self,
        key: K,
        *,
        build: Callable[[Any], V],
        stamp: Callable[[], Any] | None = None,
        token: Hashable = None,
    ) -> V:
        """The value for ``key``, built by ``build(stamp)`` when there is none yet or its
        stamp changed (``build`` gets what ``stamp()`` returned, or None)."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now and entry.token == token:
            return entry.value
        current = _NO_STAMP if stamp is None else stamp()
        if entry is not None and current is not _NO_STAMP and entry.stamp == current:
            entry.expires = now + self.seconds
            entry.token = token
            return entry.value
        value = build(None if current is _NO_STAMP else current)
        with self._lock:
            self._entries[key] = _Entry(value, current, token, now + self.seconds)
        return value

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
