from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
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
