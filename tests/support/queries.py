"""Counting the statements a page or a service sends to the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from treu.db.session import Database


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL of every statement sent on ``db``'s engines inside the block."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    engines = {db.write_engine, db.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
