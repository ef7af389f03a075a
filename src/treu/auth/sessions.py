"""Browser sessions of the admin console and the member portal.

A session is a row (``web_sessions``) and a cookie holding 256 random bits; the row keeps
only the token's SHA-256. It ends at the earlier of an absolute lifetime and an idle
timeout (``POLICIES``), or when signed out (``revoked_at``). Server-side rows, not signed
cookies, because staff must be able to end a session at once (a role taken away, a
laptop lost) and a signed cookie cannot be taken back. (A page process trusts a session
it has read for a few seconds, ``treu.web.signed``; its own changes end that at once.)

Every session has its own CSRF token (``csrf``) that each form carries in a hidden field;
a POST whose field does not match is refused (``treu.web.security``).

``last_seen_at`` is written at most once per ``TOUCH_EVERY``: the idle timeout needs it,
a write per page view would not pay.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from treu.auth.models import WebSession
from treu.db.base import Named
from treu.db.session import after_commit
from treu.kit.time import utc_now

TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Policy:
    lifetime: timedelta
    idle: timedelta


POLICIES = {
    "staff": Policy(lifetime=timedelta(hours=12), idle=timedelta(hours=2)),
    "member": Policy(lifetime=timedelta(days=30), idle=timedelta(days=30)),
}
"""Staff sessions are short (a console holds every member's data); a member stays signed
in on their own phone for a month, as shopping apps do."""


@dataclass(frozen=True, slots=True)
class Current:
    """A valid session, as a page needs it."""

    id: uuid.UUID
    kind: str
    subject_id: uuid.UUID
    csrf: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """A valid session with its subject's columns (``resolve_with``)."""

    current: Current
    row: Any
    """The subject's columns by name (None: the subject is gone)."""
    touch: bool
    last_seen_at: datetime
    expires_at: datetime


_RESOLVING: dict[tuple[tuple[str, str], ...], Named] = {}


def _resolving(subject: tuple[InstrumentedAttribute[Any], ...]) -> Named:
    """``resolve_with``'s read for these subject columns, built once (a page view's first
    read: prebuilt, its rows named tuples); the session's own columns are ``session_…``."""
    key = tuple((column.class_.__name__, column.key) for column in subject)
    found = _RESOLVING.get(key)
    if found is None:
        head = subject[0]
        found = _RESOLVING[key] = Named(
            "SessionRow",
            lambda: (
                select(
                    WebSession.id.label("session_id"),
                    WebSession.subject_id.label("session_subject_id"),
                    WebSession.csrf.label("session_csrf"),
                    WebSession.last_seen_at.label("session_last_seen_at"),
                    WebSession.expires_at.label("session_expires_at"),
                    WebSession.revoked_at.label("session_revoked_at"),
                    *subject,
                )
                .outerjoin(head.class_, head == WebSession.subject_id)
                .where(
                    WebSession.token_hash == bindparam("token_hash", type_=String()),
                    WebSession.kind == bindparam("kind", type_=String()),
                )
            ),
        )
    return found


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_COUNTING = threading.Lock()


class SessionService:
    generation = 0
    """Counts the changes made in this process that can end a session or change what a
    page knows of its account (``changed``): a page may trust a session it resolved
    under the same generation for a few seconds (``treu.web.signed``)."""

    def changed(self, session: Session | None = None) -> None:
        """A session or an account changed (in ``session``'s unit of work): counted now,
        and again once the unit has committed, so that a page that read the old row
        while the change was not yet committed does not trust what it read."""
        self._count()
        if session is not None:
            after_commit(session, self._count)

    @staticmethod
    def _count() -> None:
        with _COUNTING:
            SessionService.generation += 1

    def start(
        self, session: Session, *, kind: str, subject_id: uuid.UUID, now: datetime | None = None
    ) -> tuple[str, Current]:
        """A new session; returns the cookie's token (not stored) and the session."""
        now = now or utc_now()
        policy = POLICIES[kind]
        token = secrets.token_urlsafe(32)
        row = WebSession(
            token_hash=_hash(token),
            kind=kind,
            subject_id=subject_id,
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            last_seen_at=now,
            expires_at=now + policy.lifetime,
        )
        session.add(row)
        session.flush()
        return token, Current(row.id, kind, subject_id, row.csrf)

    def resolve(
        self, session: Session, token: str | None, *, kind: str, now: datetime | None = None
    ) -> Current | None:
        """The session of ``token`` if it is of ``kind`` and still valid, else None."""
        if not token or len(token) > 100:
            return None
        now = now or utc_now()
        row = session.scalar(
            select(WebSession).where(WebSession.token_hash == _hash(token), WebSession.kind == kind)
        )
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        if row.last_seen_at + POLICIES[kind].idle <= now:
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            session.execute(
                update(WebSession).where(WebSession.id == row.id).values(last_seen_at=now)
            )
        return Current(row.id, row.kind, row.subject_id, row.csrf)

    def resolve_with(
        self,
        session: Session,
        token: str | None,
        *,
        kind: str,
        subject: Sequence[InstrumentedAttribute[Any]],
        now: datetime | None = None,
    ) -> Resolved | None:
        """``resolve`` and the subject's ``subject`` columns (the first is its id; the
        session's own are named ``session_…``) in one statement, without writing: a page
        view only reads, and the caller touches the session (``touch``) when
        ``Resolved.touch`` says so. ``Resolved.row`` is None when the subject is gone."""
        if not token or len(token) > 100:
            return None
        now = now or utc_now()
        found = _resolving(tuple(subject)).first(
            session.connection(), token_hash=_hash(token), kind=kind
        )
        if found is None or found.session_revoked_at is not None:
            return None
        if found.session_expires_at <= now:
            return None
        if found.session_last_seen_at + POLICIES[kind].idle <= now:
            return None
        return Resolved(
            Current(found.session_id, kind, found.session_subject_id, found.session_csrf),
            found if found[6] is not None else None,
            touch=now - found.session_last_seen_at >= TOUCH_EVERY,
            last_seen_at=found.session_last_seen_at,
            expires_at=found.session_expires_at,
        )

    def touch(
        self, session: Session, session_id: uuid.UUID, *, now: datetime | None = None
    ) -> None:
        session.execute(
            update(WebSession)
            .where(WebSession.id == session_id)
            .values(last_seen_at=now or utc_now())
        )

    def end(self, session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> None:
        self.changed(session)
        session.execute(
            update(WebSession)
            .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
            .values(revoked_at=now or utc_now())
        )

    def end_all(
        self, session: Session, *, kind: str, subject_id: uuid.UUID, now: datetime | None = None
    ) -> int:
        """End every session of a subject (password changed, account disabled)."""
        self.changed(session)
        done = session.execute(
            update(WebSession)
            .where(
                WebSession.kind == kind,
                WebSession.subject_id == subject_id,
                WebSession.revoked_at.is_(None),
            )
            .values(revoked_at=now or utc_now())
        )
        return int(getattr(done, "rowcount", 0) or 0)


web_sessions = SessionService()
