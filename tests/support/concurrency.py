"""Concurrency helpers: writers on real threads, each with its own unit of work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from treu.db.session import Database
from treu.errors import Busy

T = TypeVar("T")


def postgres_only(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("PostgreSQL only: SQLite serialises writers")


def in_parallel(n: int, task: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``task(0..n-1)`` on ``n`` threads released together; results or exceptions."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T | BaseException:
        barrier.wait()
        try:
            return task(i)
        except BaseException as exc:  # collected and asserted on by the caller
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def retrying(db: Database, work: Callable[[Any], T]) -> T:
    """One unit of work, tried again when the lock wait timed out (503 for a client)."""
    for attempt in range(3):
        try:
            with db.unit_of_work() as session:
                return work(session)
        except Busy:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
