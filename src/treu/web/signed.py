"""Who is signed in, for the console and the portal alike: the session from the cookie
and the account it belongs to, read in one statement in a read-only unit of work (a page
view writes nothing). Only when the session is due a ``last_seen_at`` touch (once per
``TOUCH_EVERY``), or its account can no longer sign in, does a short write follow.

A session read from the database is then trusted by this process for
``web_session_cache_seconds`` (``TREU_WEB_SESSION_CACHE_SECONDS``, 5 s; 0 turns it off)
without reading it again: the read and its transaction were a sixth of the portal home
page's CPU. Its expiry, idle timeout and touch are still checked on every page view. A
change this process makes to any session or account (signing out, a password, a role, a
disabled account, a member's status or profile: ``web_sessions.changed``) ends the trust
of every session at once; another process sees such a change within those seconds, as an
API key's revocation (``TREU_API_KEY_CACHE_SECONDS``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.orm import InstrumentedAttribute, object_session

from treu.auth.models import WebSession
from treu.auth.sessions import POLICIES, TOUCH_EVERY, Current, web_sessions
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.staff.models import StaffUser


def database(request: Request) -> Database:
    """The pages' one way to the database (the app's)."""
    db: Database = request.app.state.db
    return db


@dataclass(frozen=True, slots=True)
class _Trusted:
    until: float
    """``time.monotonic()`` until which the entry may be used."""
    generation: int
    current: Current
    row: Any
    last_seen_at: datetime
    expires_at: datetime


_TRUSTED: dict[tuple[str, str], _Trusted] = {}
_MOST = 10_000
"""Entries kept at most; the whole cache is dropped beyond (it fills again in seconds)."""


def _trusted(kind: str, token: str, now: datetime) -> _Trusted | None:
    hit = _TRUSTED.get((kind, token))
    if hit is None or hit.until <= time.monotonic():
        return None
    if hit.generation != web_sessions.generation or hit.expires_at <= now:
        return None
    if hit.last_seen_at + POLICIES[kind].idle <= now or now - hit.last_seen_at >= TOUCH_EVERY:
        return None  # the database decides (and the session is touched)
    return hit


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
    now = utc_now()
    settings = getattr(request.app.state, "settings", None)
    seconds = settings.web_session_cache_seconds if settings is not None else 0.0
    if seconds:
        hit = _trusted(kind, token, now)
        if hit is not None:
            return hit.current, hit.row
    generation = web_sessions.generation  # before the read: a change meanwhile wins
    db = database(request)
    with db.unit_of_work(write=False) as session:
        found = web_sessions.resolve_with(session, token, kind=kind, subject=subject, now=now)
    if found is None:
        return None
    if found.row is None or not usable(found.row):
        with db.unit_of_work() as session:
            web_sessions.end(session, found.current.id)
        return None
    seen = found.last_seen_at
    if found.touch:
        with db.unit_of_work() as session:
            web_sessions.touch(session, found.current.id, now=now)
        seen = now
    if seconds:
        if len(_TRUSTED) >= _MOST:
            _TRUSTED.clear()
        _TRUSTED[(kind, token)] = _Trusted(
            time.monotonic() + seconds, generation, found.current, found.row, seen, found.expires_at
        )
    return found.current, found.row


def _account_changed(_mapper: Any, _connection: Any, target: Any) -> None:
    web_sessions.changed(object_session(target))


# An account's row changed through the ORM (a password, a role, a member's status or
# profile): no session is trusted from before the change.
for _account in (StaffUser, Member, WebSession):
    event.listen(_account, "after_update", _account_changed)
    event.listen(_account, "after_delete", _account_changed)
