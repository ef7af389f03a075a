"""The ``media`` table: small images uploaded in the console, kept in the database.

Images are small (at most ``MAX_BYTES`` in, re-encoded) and few (one per reward), so
the database is the simplest place that every Treu installation already backs up; no
file store to configure. ``sha256`` is of the stored (re-encoded) bytes and goes into
the image's address, so an address never changes meaning and may be cached for a year.
"""

from __future__ import annotations

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin


class Media(IdMixin, TimestampMixin, Base):
    __tablename__ = "media"

    content_type: Mapped[str] = mapped_column(String(32))
    """``image/png``, ``image/jpeg`` or ``image/webp``: what Treu wrote, not what the
    uploader said."""
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    actor: Mapped[str] = mapped_column(String(200))
