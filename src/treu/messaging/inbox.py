"""The in-app inbox: the member's own messages, shown by the portal and apps.

``InboxChannel`` plans the same messages as e-mail (``treu.messaging.channel.CATALOGUE``,
rendered the same way, stored templates included) for every member who has not withdrawn
inbox consent — the inbox is the member's own space inside the programme, so
transactional messages need no address and no programme switch, while marketing needs
inbox consent granted (``consents.may_send``). Each delivery's key is
``inbox:<outbox id>``; its payload holds the rendered title and bodies.

There is nothing to send: ``send`` does nothing, and ``settle`` writes the
``inbox_messages`` rows in the unit of work that marks the deliveries delivered
(``ON CONFLICT (id) DO NOTHING``, the row's id being the delivery's), as the
development mailbox does: a message is in the inbox exactly when its delivery is
delivered, once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.config import Settings
from treu.db.base import table_of
from treu.delivery.channel import Channel, Claimed, Outcome, Planned, Sender
from treu.errors import Invalid
from treu.kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from treu.members.models import Member, MemberStatus
from treu.messaging.channel import EmailChannel, Facts, MessageSpec, Owned
from treu.messaging.errors import InboxMessageNotFound
from treu.messaging.models import ConsentChannel, InboxMessage
from treu.messaging.templates import Rendered

log = logging.getLogger("treu.messaging")

NAME = "inbox"
_TABLE = table_of(InboxMessage)


class _NoSend:
    """The inbox's sender: the message arrives when ``settle`` writes it."""

    def send(self, delivery: Claimed) -> None:
        return None

    def close(self) -> None:
        return None


class InboxChannel(EmailChannel):
    """The e-mail channel's planning with the inbox's consent, reach and delivery."""

    name = NAME
    consent_channel = ConsentChannel.inbox

    def __init__(
        self,
        settings: Settings,
        *,
        catalogue: Mapping[str, MessageSpec] | None = None,
        owned: Owned | None = None,
    ) -> None:
        super().__init__(settings, catalogue=catalogue, owned=owned)
        self.catalogue = {t: spec for t, spec in self.catalogue.items() if spec.inbox}

    def reaches(self, member: Member) -> bool:
        return member.status != MemberStatus.closed

    def allowed(self, session: Session, programme_ids: set[uuid.UUID]) -> Mapping[uuid.UUID, bool]:
        """The programme's switch is about e-mail; the inbox is always there."""
        return dict.fromkeys(programme_ids, True)

    def planned(
        self, spec: MessageSpec, facts: Facts, rendered: Rendered, unsubscribe: str
    ) -> Planned:
        member = facts.member
        marketing = "marketing:" if spec.kind == "marketing" else ""  # counted for the cap
        return Planned(
            channel=NAME,
            target=str(member.id),
            dedupe_key=f"{NAME}:{marketing}{facts.message.id}",
            event_type=facts.message.type,
            payload={
                "title": rendered.subject,
                "text": rendered.text,
                "html": rendered.html,
                "language": facts.lang,
                "kind": spec.kind,
                "template": spec.template,
            },
            programme_id=member.programme_id,
            member_id=member.id,
            outbox_id=facts.message.id,
            not_before=self.not_before(facts),  # quiet hours hold it back as in e-mail
        )

    def sender(self) -> Sender:
        return _NoSend()

    def settle(self, session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        inbox.keep(session, outcomes, now=now)


@dataclass(frozen=True, slots=True)
class InboxPage:
    items: list[InboxMessage]
    next_cursor: str | None
    unread: int


class Inbox:
    def keep(self, session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> int:
        """Write the delivered messages of a round; returns how many were offered."""
        rows = [
            {
                "id": outcome.delivery.id,
                "programme_id": outcome.delivery.programme_id,
                "member_id": outcome.delivery.member_id,
                "event_type": outcome.delivery.event_type,
                "title": str(outcome.delivery.payload["title"]),
                "body_text": str(outcome.delivery.payload["text"]),
                "body_html": str(outcome.delivery.payload["html"]),
                "created_at": now,
                "read_at": None,
            }
            for outcome in outcomes
            if outcome.error is None and outcome.delivery.member_id is not None
        ]
        if not rows:
            return 0
        connection = session.connection()
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(
            dialect.insert(_TABLE).on_conflict_do_nothing(index_elements=["id"]), rows
        )
        return len(rows)

    def list(
        self,
        session: Session,
        *,
        member_id: uuid.UUID,
        unread_only: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> InboxPage:
        """Newest first (ids are the deliveries', time-ordered), keyset-paginated, with
        the count of unread messages."""
        query = select(InboxMessage).where(InboxMessage.member_id == member_id)
        if unread_only:
            query = query.where(InboxMessage.read_at.is_(None))
        if cursor:
            query = query.where(InboxMessage.id < _before(cursor))
        rows = list(session.scalars(query.order_by(InboxMessage.id.desc()).limit(limit + 1)))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"before": str(rows[-1].id)})
        return InboxPage(rows, next_cursor, self.unread(session, member_id))

    def unread(self, session: Session, member_id: uuid.UUID) -> int:
        return int(
            session.scalar(
                select(func.count()).where(
                    InboxMessage.member_id == member_id, InboxMessage.read_at.is_(None)
                )
            )
            or 0
        )

    def get(self, session: Session, *, member_id: uuid.UUID, message_id: uuid.UUID) -> InboxMessage:
        """One of the member's messages; another member's is not found (not forbidden:
        its existence is not theirs to learn)."""
        found = session.get(InboxMessage, message_id)
        if found is None or found.member_id != member_id:
            raise InboxMessageNotFound(f"no message {message_id} in this member's inbox")
        return found

    def mark_read(
        self, session: Session, *, member_id: uuid.UUID, message_id: uuid.UUID, now: datetime
    ) -> InboxMessage:
        """Read once: reading it again keeps the first time."""
        found = self.get(session, member_id=member_id, message_id=message_id)
        if found.read_at is None:
            found.read_at = now
            session.flush()
        return found

    def mark_all_read(self, session: Session, *, member_id: uuid.UUID, now: datetime) -> int:
        """Returns how many were unread."""
        result = session.execute(
            update(InboxMessage)
            .where(InboxMessage.member_id == member_id, InboxMessage.read_at.is_(None))
            .values(read_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _before(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(decode_cursor(cursor).get("before")))
    except (InvalidCursor, ValueError) as exc:
        raise Invalid(
            "cursor is not valid; use next_cursor from the previous page", field="cursor"
        ) from exc


inbox = Inbox()


_warned = False


def inbox_channels(settings: Settings, *, owned: Owned | None = None) -> list[Channel]:
    """The inbox channel, or — without a key to sign its unsubscribe links
    (``TREU_SECRET_KEY``; development has a fixed one) — none, with a warning, once."""
    global _warned
    if settings.signing_key() is not None:
        return [InboxChannel(settings, owned=owned)]
    if not _warned:
        _warned = True
        log.warning("TREU_SECRET_KEY is not set: no in-app inbox messages (docs/email.md)")
    return []
