"""The development mailbox: e-mail kept in the database instead of sent.

In development mode without ``TREU_SMTP_HOST`` the e-mail channel's sender composes
each message (so a broken one fails here as it would over SMTP) and the channel's
``settle`` keeps the delivered ones in ``dev_mailbox``, in the unit of work that marks
them delivered: a message is in the mailbox exactly when its delivery is delivered, once
(``ON CONFLICT (delivery_id) DO NOTHING`` covers a send repeated after a lease ran
out). ``GET /dev/mailbox`` shows them, newest first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.config import DEV_SMTP_FROM
from treu.db.base import table_of
from treu.delivery.channel import Claimed, Outcome, SendFailed
from treu.kit.ids import new_id
from treu.messaging.email import compose, message_id
from treu.messaging.errors import MailNotFound
from treu.messaging.models import DevMail

_TABLE = table_of(DevMail)


class DevMailboxSender:
    """Checks that each message composes; the mailbox keeps it at ``settle``."""

    def __init__(self, sender: str = DEV_SMTP_FROM) -> None:
        self.sender = sender

    def send(self, delivery: Claimed) -> None:
        try:
            compose(delivery.payload, delivery_id=delivery.id, sender=self.sender)
        except (KeyError, TypeError, ValueError) as exc:
            raise SendFailed(f"cannot compose: {type(exc).__name__}: {exc}", retry=False) from exc

    def close(self) -> None:
        return None


class Mailbox:
    def keep(
        self,
        session: Session,
        outcomes: Sequence[Outcome],
        *,
        now: datetime,
        sender: str = DEV_SMTP_FROM,
    ) -> int:
        """Keep the delivered messages of a round; returns how many were offered."""
        rows = []
        for outcome in outcomes:
            if outcome.error is not None:
                continue
            delivery = outcome.delivery
            payload = delivery.payload
            headers = {
                "From": sender,
                "Message-ID": message_id(delivery.id, sender),
                **dict(payload.get("headers") or {}),
            }
            rows.append(
                {
                    "id": new_id(),
                    "delivery_id": delivery.id,
                    "programme_id": delivery.programme_id,
                    "member_id": delivery.member_id,
                    "recipient": str(payload["to"]),
                    "subject": str(payload["subject"]),
                    "text": str(payload["text"]),
                    "html": str(payload["html"]),
                    "headers": headers,
                    "sent_at": now,
                }
            )
        if not rows:
            return 0
        connection = session.connection()
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_TABLE).on_conflict_do_nothing(index_elements=["delivery_id"])
        connection.execute(statement, rows)
        return len(rows)

    def list(
        self,
        session: Session,
        *,
        to: str | None = None,
        limit: int = 50,
    ) -> list[DevMail]:
        """Newest first."""
        query = select(DevMail)
        if to is not None:
            query = query.where(DevMail.recipient == to.lower())
        return list(
            session.scalars(query.order_by(DevMail.sent_at.desc(), DevMail.id.desc()).limit(limit))
        )

    def get(self, session: Session, mail_id: uuid.UUID) -> DevMail:
        found = session.get(DevMail, mail_id)
        if found is None:
            raise MailNotFound(f"no message {mail_id} in the development mailbox")
        return found


mailbox = Mailbox()
