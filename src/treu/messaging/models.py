from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from treu.db.base import Base, IdMixin, TimestampMixin
from treu.kit.time import utc_now


class ConsentChannel(enum.StrEnum):
    email = "email"
    sms = "sms"
    push = "push"
    inbox = "inbox"


class Consent(IdMixin, Base):
    """One grant or withdrawal of a member's consent to be contacted over one channel.

    Append-only: the member's current state of a channel is its latest row, and the rows
    before it are the proof of what was agreed when, where and to which wording (GDPR
    Art. 7(1): the controller must be able to show consent was given)."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_member_channel", "member_id", "channel", "at"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    programme_id: Mapped[uuid.UUID]
    channel: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(32))
    """Where it was given or withdrawn: api, portal, pos, unsubscribe, import, …"""
    wording: Mapped[str | None] = mapped_column(String(64))
    """The version of the consent text the member saw (e.g. ``2026-11``)."""
    at: Mapped[datetime] = mapped_column(default=utc_now)


class ProgrammeMessaging(Base):
    """A programme's messaging switches; a programme without a row has the defaults."""

    __tablename__ = "programme_messaging"

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"), primary_key=True)
    transactional_email: Mapped[bool] = mapped_column(default=True)
    """Welcome, expiry notices, coupons, upgrades: sent unless the member withdrew
    e-mail consent. Off: the programme sends no transactional e-mail at all."""
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class DevMail(IdMixin, Base):
    """A message the development mailbox kept instead of sending it (``env =
    development`` without ``TREU_SMTP_HOST``). One per delivery: a delivery sent twice
    (a worker's lease ran out) is kept once."""

    __tablename__ = "dev_mailbox"

    delivery_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    programme_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID | None]
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]]
    sent_at: Mapped[datetime]


class MessageTemplate(IdMixin, TimestampMixin, Base):
    """A programme's own wording of one message in one language: it replaces the shipped
    files ``templates/<lang>/<key>.*`` for that programme (the layout stays: footer and
    unsubscribe link are not the programme's to drop). Saved only once it renders
    (``treu.messaging.stored``)."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("programme_id", "key", "lang"),)

    programme_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programmes.id"))
    key: Mapped[str] = mapped_column(String(64))
    """The message it words: ``welcome``, ``points_expiring``, … (the file names)."""
    lang: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)
    updated_by: Mapped[str] = mapped_column(String(128))


class InboxMessage(Base):
    """A message in a member's in-app inbox. Its id is the delivery's: written in the
    unit of work that marks the delivery delivered, once (``treu.messaging.inbox``)."""

    __tablename__ = "inbox_messages"
    __table_args__ = (Index("ix_inbox_messages_member", "member_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    programme_id: Mapped[uuid.UUID]
    member_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]
