from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin
from treu.kit.time import utc_now


class ApiKey(IdMixin, Base):
    """An API key. Only a SHA-256 of the key is stored: the key itself is 190 bits of
    randomness, so a slow password hash would add latency to every request and no safety.
    ``lookup`` (the first characters) finds the row without scanning."""

    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(100))
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class WebSession(IdMixin, Base):
    """A signed-in browser: a staff member in the admin console or a member in the
    portal. The cookie holds a random token; only its SHA-256 is stored, so a copy of
    the table signs nobody in. ``csrf`` is the token every form of the session carries."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_subject", "kind", "subject_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``staff`` or ``member``."""
    subject_id: Mapped[uuid.UUID]
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
