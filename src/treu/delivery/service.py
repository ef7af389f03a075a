"""Delivery from the outbox: plan, claim, record (see ``treu.delivery.channel``).

Every step is a short unit of work the caller owns; no transaction spans a send.

* ``dispatch`` takes outbox rows nobody has planned (``dispatched_at IS NULL``; on
  PostgreSQL ``FOR UPDATE SKIP LOCKED``, so two workers plan disjoint rows), writes the
  channels' deliveries (``ON CONFLICT (dedupe_key) DO NOTHING``) and marks the rows.
* ``claim`` takes due deliveries (``SKIP LOCKED`` again) and leases them: their
  ``next_attempt_at`` moves to the end of the lease, so a worker that dies mid-send
  leaves them to the next worker after the lease, and a slow one keeps them.
* ``record`` writes each outcome, only if the delivery is still the caller's (the
  attempt number it claimed), so a send finished after its lease ran out and was taken
  over records nothing twice.

Why not a queue library: procrastinate (the best-kept PostgreSQL queue for Python) has
no SQLite backend and would be a second store next to the outbox, which already is the
durable queue written in the business transaction; what it would add — a claim with
``SKIP LOCKED`` — is one query here (docs/delivery.md).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.delivery.channel import Channel, Claimed, Outcome, Planned
from treu.delivery.models import Delivery, DeliveryStatus
from treu.errors import Conflict, NotFound
from treu.kit.ids import new_id
from treu.outbox.models import OutboxMessage

_DUE_SQL = text("deliveries.status IN ('pending', 'failed')")
_UNDISPATCHED_SQL = text("outbox.dispatched_at IS NULL")
_TABLE = table_of(Delivery)


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"
    title = "Delivery not found"


class DeliveryNotDead(Conflict):
    code = "delivery_not_dead"
    title = "Only a dead or failed delivery can be retried by hand"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: try ``n`` waits ``base·2^(n-1)``, at most
    ``cap``, scaled by a random factor in [0.5, 1] so that receivers coming back from an
    outage are not hit by every retry in the same second."""

    base_seconds: float = 10.0
    cap_seconds: float = 3600.0
    max_attempts: int = 12

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        plain = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        factor = (rng or random).uniform(0.5, 1.0)
        return timedelta(seconds=plain * factor)


@dataclass(frozen=True, slots=True)
class Depth:
    """How far delivery is behind (``treu jobs status``, ``GET /v1/outbox``)."""

    undispatched: int
    """Outbox rows not planned yet."""
    oldest_undispatched_at: datetime | None
    by_status: dict[str, int]
    oldest_due_at: datetime | None
    """The earliest ``next_attempt_at`` among pending and failed deliveries."""

    def lag_seconds(self, now: datetime) -> float:
        """How long the oldest waiting work has waited (0 when nothing waits)."""
        starts = [t for t in (self.oldest_undispatched_at, self.oldest_due_at) if t]
        return max(0.0, (now - min(starts)).total_seconds()) if starts else 0.0


class DeliveryService:
    def dispatch(
        self,
        session: Session,
        channels: Sequence[Channel],
        *,
        now: datetime,
        limit: int = 500,
    ) -> int:
        """Plan the deliveries of up to ``limit`` undispatched outbox rows; returns how
        many rows were dispatched (0: nothing left)."""
        query = (
            select(OutboxMessage)
            .where(_UNDISPATCHED_SQL)
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        messages = list(session.scalars(query))
        if not messages:
            return 0
        planned: list[Planned] = []
        for channel in channels:
            planned.extend(channel.plan(session, messages, now=now))
        self.add(session, planned, now=now)
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([m.id for m in messages]))
            .values(dispatched_at=now)
            # the rows just read are not used again: matching them in the session (the
            # default) compared every id with every id, a fifth of planning's time
            .execution_options(synchronize_session=False)
        )
        return len(messages)

    def add(self, session: Session, planned: Sequence[Planned], *, now: datetime) -> None:
        """Write deliveries, once per dedupe key (a key written before is skipped)."""
        if not planned:
            return
        rows = [
            {
                "id": new_id(),
                "dedupe_key": p.dedupe_key,
                "outbox_id": p.outbox_id,
                "programme_id": p.programme_id,
                "member_id": p.member_id,
                "channel": p.channel,
                "target": p.target,
                "event_type": p.event_type,
                "payload": p.payload,
                "status": DeliveryStatus.pending.value,
                "attempts": 0,
                "next_attempt_at": max(now, p.not_before) if p.not_before else now,
                "created_at": now,
                "updated_at": now,
            }
            for p in planned
        ]
        connection = session.connection()
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_TABLE).on_conflict_do_nothing(index_elements=["dedupe_key"])
        connection.execute(statement, rows)

    def claim(
        self,
        session: Session,
        *,
        now: datetime,
        limit: int,
        lease: timedelta,
        channels: Sequence[str] | None = None,
    ) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries to the caller (see the module docstring)."""
        query = (
            select(Delivery)
            .where(_DUE_SQL, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if channels is not None:
            query = query.where(Delivery.channel.in_(channels))
        rows = list(session.scalars(query))
        if not rows:
            return []
        until = now + lease
        session.execute(
            update(_TABLE)
            .where(_TABLE.c.id == bindparam("b_id"))
            .values(attempts=bindparam("b_attempts"), next_attempt_at=until, updated_at=now),
            [{"b_id": row.id, "b_attempts": row.attempts + 1} for row in rows],
        )
        return [
            Claimed(
                id=row.id,
                channel=row.channel,
                target=row.target,
                event_type=row.event_type,
                payload=row.payload,
                programme_id=row.programme_id,
                member_id=row.member_id,
                attempt=row.attempts + 1,
                created_at=row.created_at,
            )
            for row in rows
        ]

    def outcome(
        self,
        delivery: Claimed,
        error: Exception | None,
        *,
        backoff: Backoff,
        status: int | None = None,
    ) -> Outcome:
        """What a send came to; ``status``: the receiver's answer to an arrival."""
        from treu.delivery.channel import SendFailed

        if error is None:
            return Outcome(delivery, None, status=status)
        failed = error if isinstance(error, SendFailed) else SendFailed(_describe(error))
        dead = not failed.retry or delivery.attempt >= backoff.max_attempts
        return Outcome(delivery, failed, dead=dead)

    def record(
        self,
        session: Session,
        outcomes: Sequence[Outcome],
        *,
        now: datetime,
        backoff: Backoff,
        rng: random.Random | None = None,
    ) -> None:
        """Write the outcomes of a round (only for deliveries still leased by this
        round: same attempt number)."""
        delivered = [o for o in outcomes if o.error is None]
        failed = [o for o in outcomes if o.error is not None]
        mine = (_TABLE.c.id == bindparam("b_id")) & (_TABLE.c.attempts == bindparam("b_attempt"))
        if delivered:
            session.execute(
                update(_TABLE)
                .where(mine)
                .values(
                    status=DeliveryStatus.delivered.value,
                    delivered_at=now,
                    updated_at=now,
                    last_error=None,
                    last_status=bindparam("b_status"),
                ),
                [
                    {"b_id": o.delivery.id, "b_attempt": o.delivery.attempt, "b_status": o.status}
                    for o in delivered
                ],
            )
        if failed:
            session.execute(
                update(_TABLE)
                .where(mine)
                .values(
                    status=bindparam("b_state"),
                    next_attempt_at=bindparam("b_next"),
                    last_error=bindparam("b_error"),
                    last_status=bindparam("b_status"),
                    updated_at=now,
                ),
                [
                    {
                        "b_id": o.delivery.id,
                        "b_attempt": o.delivery.attempt,
                        "b_state": (
                            DeliveryStatus.dead.value if o.dead else DeliveryStatus.failed.value
                        ),
                        "b_next": now if o.dead else now + backoff.delay(o.delivery.attempt, rng),
                        "b_error": o.error.error[:2000] if o.error else None,
                        "b_status": o.error.status if o.error else None,
                    }
                    for o in failed
                ],
            )

    def retry(self, session: Session, delivery_id: uuid.UUID, *, now: datetime) -> Delivery:
        """Put a dead (or failed) delivery back to be sent now, keeping its id, and
        with a fresh count of attempts."""
        row = session.scalars(
            select(Delivery).where(Delivery.id == delivery_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise DeliveryNotFound(f"no delivery {delivery_id}")
        if row.status not in (DeliveryStatus.dead.value, DeliveryStatus.failed.value):
            raise DeliveryNotDead(f"delivery {delivery_id} is {row.status}")
        row.status = DeliveryStatus.pending.value
        row.attempts = 0
        row.next_attempt_at = now
        row.updated_at = now
        session.flush()
        return row

    def get(self, session: Session, delivery_id: uuid.UUID) -> Delivery:
        row = session.get(Delivery, delivery_id)
        if row is None:
            raise DeliveryNotFound(f"no delivery {delivery_id}")
        return row

    def list(
        self,
        session: Session,
        *,
        status: str | None = None,
        channel: str | None = None,
        target: str | None = None,
        member_id: uuid.UUID | None = None,
        programme_ids: Sequence[uuid.UUID] | None = None,
        before: uuid.UUID | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Deliveries newest first (keyset on the time-ordered id)."""
        query = select(Delivery)
        if status is not None:
            query = query.where(Delivery.status == status)
        if channel is not None:
            query = query.where(Delivery.channel == channel)
        if target is not None:
            query = query.where(Delivery.target == target)
        if member_id is not None:
            query = query.where(Delivery.member_id == member_id)
        if programme_ids is not None:
            query = query.where(Delivery.programme_id.in_(programme_ids))
        if before is not None:
            query = query.where(Delivery.id < before)
        return list(session.scalars(query.order_by(Delivery.id.desc()).limit(limit)))

    def depth(self, session: Session) -> Depth:
        undispatched, oldest = session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(_UNDISPATCHED_SQL)
        ).one()
        counts: Counter[str] = Counter()
        for status, count in session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ):
            counts[status] = int(count)
        oldest_due = session.scalar(select(func.min(Delivery.next_attempt_at)).where(_DUE_SQL))
        return Depth(
            undispatched=int(undispatched),
            oldest_undispatched_at=oldest,
            by_status={s.value: int(counts.get(s.value, 0)) for s in DeliveryStatus},
            oldest_due_at=oldest_due,
        )

    def skip_history(self, session: Session, *, before: datetime, now: datetime) -> int:
        """Mark outbox rows that occurred before ``before`` as dispatched without
        delivering them (a loaded history, such as the demo's years of purchases, is
        not news to anyone)."""
        result = cast(
            CursorResult[Any],
            session.execute(
                update(OutboxMessage)
                .where(_UNDISPATCHED_SQL, OutboxMessage.occurred_at < before)
                .values(dispatched_at=now)
            ),
        )
        return int(result.rowcount or 0)


def _describe(error: Exception) -> str:
    text_ = str(error)
    return f"{type(error).__name__}: {text_}" if text_ else type(error).__name__


deliveries = DeliveryService()
