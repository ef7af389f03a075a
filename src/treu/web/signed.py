"""Who is signed in, for the console and the portal alike: the session from the cookie
and the account it belongs to, read in one statement in a read-only unit of work (a page
view writes nothing). Only when the session is due a ``last_seen_at`` touch (once per
``TOUCH_EVERY``), or its account can no longer sign in, does a short write follow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from sqlalchemy.orm import InstrumentedAttribute

from treu.auth.sessions import Current, web_sessions
from treu.db.session import Database


def database(request: Request) -> Database:
    """The pages' one way to the database (the app's)."""
    db: Database = request.app.state.db
    return db


def resolve(
    request: Request,
    *,
    cookie: str,
    kind: str,
    subject: Sequence[InstrumentedAttribute[Any]],
    usable: Callable[[Any], bool],
) -> tuple[Current, Any] | None:
    """The valid session of the ``cookie`` and its account's ``subject`` columns; None
    without one. An account that is gone or not ``usable`` (closed, disabled) has its
    session ended at once."""
    token = request.cookies.get(cookie)
    if not token:
        return None
    db = database(request)
    with db.unit_of_work(write=False) as session:
        found = web_sessions.resolve_with(session, token, kind=kind, subject=subject)
    if found is None:
        return None
    if found.row is None or not usable(found.row):
        with db.unit_of_work() as session:
            web_sessions.end(session, found.current.id)
        return None
    if found.touch:
        with db.unit_of_work() as session:
            web_sessions.touch(session, found.current.id)
    return found.current, found.row
