"""Browser sessions of the admin console and the member portal.

A session is a row (``web_sessions``) and a cookie holding 256 random bits; the row keeps
only the token's SHA-256. It ends at the earlier of an absolute lifetime and an idle
timeout (``POLICIES``), or when signed out (``revoked_at``). Server-side rows, not signed
cookies, because staff must be able to end a session at once (a role taken away, a
laptop lost) and a signed cookie cannot be taken back.

Every session has its own CSRF token (``csrf``) that each form carries in a hidden field;
a POST whose field does not match is refused (``treu.web.security``).

``last_seen_at`` is written at most once per ``TOUCH_EVERY``: the idle timeout needs it,
a write per page view would not pay.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from treu.auth.models import WebSession
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


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
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

    def end(self, session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> None:
        session.execute(
            update(WebSession)
            .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
            .values(revoked_at=now or utc_now())
        )

    def end_all(
        self, session: Session, *, kind: str, subject_id: uuid.UUID, now: datetime | None = None
    ) -> int:
        """End every session of a subject (password changed, account disabled)."""
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
