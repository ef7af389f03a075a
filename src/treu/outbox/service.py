"""Domain events into a transactional outbox.

The code that makes a change records what it did as a typed ``DomainEvent``
(``treu.outbox.events``) in the same unit of work; the events become ``outbox`` rows in
the same transaction as the change. A unit that rolls back leaves no row, a replayed
event (answered from what was stored) makes no change and so records none, and nothing
leaves the process before commit: delivery (e-mail, webhooks, inbox) reads the outbox
afterwards, at least once, with the row's id as the stable message id.

Two ways in:

* ``record(session, *events)`` from a service: the events wait on the session and are
  written by one ``INSERT`` just before the unit of work commits
  (``treu.db.session.before_commit``).
* ``add_to(batch, events)`` from code that writes through a ``WriteBatch`` (the ledger
  writer, the ingest): the rows go with the batch's other writes, in the same round
  trip. ``drain(session, batch)`` moves events recorded on the session into a batch the
  caller is about to flush, so a purchase's outbox rows cost no statement of their own.

Events with a ``key()`` (a job's notice that may be recorded twice) are written with
``ON CONFLICT DO NOTHING`` at commit and never go through a batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.db.base import WriteBatch, table_of
from treu.db.session import before_commit
from treu.kit.ids import new_id
from treu.kit.time import utc_now
from treu.outbox.events import DomainEvent
from treu.outbox.models import OutboxMessage

_PENDING = "treu.outbox.pending"
_TABLE = table_of(OutboxMessage)


def row(event: DomainEvent, now: datetime) -> dict[str, Any]:
    """The ``outbox`` row of ``event`` (values as the columns store them; ``key`` only
    where the event has one, so that batches send one column less)."""
    out = {
        "id": new_id(),
        "type": event.type,
        "programme_id": event.programme_id,
        "member_id": event.member_id,
        "payload": event.payload(),
        "occurred_at": event.occurred_at,
        "created_at": now,
    }
    key = event.key()
    if key is not None:
        out["key"] = key
    return out


class OutboxService:
    def record(self, session: Session, *events: DomainEvent) -> None:
        """Write ``events`` in this unit of work's transaction, just before it commits."""
        if not events:
            return
        pending: list[DomainEvent] | None = session.info.get(_PENDING)
        if pending is None:
            pending = session.info[_PENDING] = []
            before_commit(session, self._write_pending)
        pending.extend(events)

    def add_to(
        self, batch: WriteBatch, events: Iterable[DomainEvent], *, now: datetime | None = None
    ) -> None:
        """Put ``events`` (without keys) into ``batch``, to be written with it."""
        now = now or utc_now()
        batch.insert(_TABLE, [row(event, now) for event in events])

    def drain(self, session: Session, batch: WriteBatch, *, now: datetime | None = None) -> None:
        """Move the events waiting on ``session`` (those without keys) into ``batch``."""
        pending: list[DomainEvent] | None = session.info.get(_PENDING)
        if not pending:
            return
        keyed = [e for e in pending if e.key() is not None]
        self.add_to(batch, (e for e in pending if e.key() is None), now=now)
        pending[:] = keyed

    def _write_pending(self, session: Session) -> None:
        pending: list[DomainEvent] = session.info.pop(_PENDING, [])
        if not pending:
            return
        now = utc_now()
        rows = [row(event, now) for event in pending]
        connection = session.connection()
        plain = [r for r in rows if "key" not in r]
        if plain:
            connection.execute(_TABLE.insert(), plain)
        keyed = [r for r in rows if "key" in r]
        if keyed:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(_TABLE).on_conflict_do_nothing(
                index_elements=["key"], index_where=_TABLE.c.key.is_not(None)
            )
            connection.execute(statement, keyed)

    def messages(
        self,
        session: Session,
        *,
        member_id: uuid.UUID | None = None,
        programme_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[OutboxMessage]:
        """Outbox rows, oldest first (for tests and the delivery to come)."""
        query = select(OutboxMessage)
        if member_id is not None:
            query = query.where(OutboxMessage.member_id == member_id)
        if programme_id is not None:
            query = query.where(OutboxMessage.programme_id == programme_id)
        if types is not None:
            query = query.where(OutboxMessage.type.in_(types))
        return list(session.scalars(query.order_by(OutboxMessage.id).limit(limit)))


outbox = OutboxService()
