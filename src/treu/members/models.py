from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class MemberStatus(enum.StrEnum):
    active = "active"
    blocked = "blocked"
    closed = "closed"


class Channel(enum.StrEnum):
    pos = "pos"
    web = "web"
    app = "app"
    phone = "phone"
    other = "other"


IDENTIFIER_FIELDS = ("email", "phone", "card_number", "external_id")


class Member(IdMixin, TimestampMixin, Base):
    """A member of one programme.

    Personal data lives here and nowhere else (never in postings, explanations or
    stored event payloads), so that erasure later touches one table.
    """

    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("programme_id", "email"),
        UniqueConstraint("programme_id", "phone"),
        UniqueConstraint("programme_id", "card_number"),
        UniqueConstraint("programme_id", "external_id"),
        Index("ix_members_programme_enrolled", "programme_id", "enrolled_at"),
    )

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    status: Mapped[str] = mapped_column(String(16), default=MemberStatus.active.value)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    card_number: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(128))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    birthday: Mapped[date | None]
    language: Mapped[str | None] = mapped_column(String(8))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    channel: Mapped[str] = mapped_column(String(16), default=Channel.other.value)
    enrolled_at: Mapped[datetime] = mapped_column(default=utc_now)


class MemberNote(IdMixin, Base):
    """A staff note on a member ("called about the missing points of 3 May"): what the
    next person who helps them should know. Written by support in the console; never
    shown to the member, part of their data export (it is about them)."""

    __tablename__ = "member_notes"
    __table_args__ = (Index("ix_member_notes_member", "member_id", "created_at"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    author: Mapped[str] = mapped_column(String(254))
    text: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class SignInCode(Base):
    """A member's current portal sign-in code (one row per member: a new code replaces
    the old; ``treu.members.codes``). Only an HMAC of the code is kept; ``tries`` counts
    wrong entries of this code; ``window_started_at``/``window_count`` count the codes
    sent in the current hour (the rate limit). ``code_hash`` is None once it was used."""

    __tablename__ = "sign_in_codes"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    code_hash: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    tries: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime]
    window_count: Mapped[int] = mapped_column(default=0)
