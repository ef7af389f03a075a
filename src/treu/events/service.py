"""Event ingestion as the entry points use it: the ingest core (``treu.events.ingest``)
with the reactions of ``treu.events.reactions``, each unit of work retried when a
concurrent delivery won a race.

This module composes; the core names no feature (an import-linter contract says so).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError

from treu.db.session import Database
from treu.events.ingest import EventService, legacy_payload_hash, payload_hash
from treu.events.reactions import REACTIONS
from treu.events.schemas import AnyEvent
from treu.events.seam import DEFERRED, Outcome
from treu.events.views import line_views, purchase_view
from treu.ledger.adjustments import Adjustment, AdjustmentService, adjustments
from treu.members.errors import IdentifierTaken
from treu.rules.errors import BudgetRace

__all__ = [
    "DEFER_FROM",
    "Adjustment",
    "AdjustmentService",
    "EventService",
    "Outcome",
    "adjustments",
    "events_service",
    "ingest_with_retry",
    "legacy_payload_hash",
    "line_views",
    "payload_hash",
    "purchase_view",
]

events_service = EventService(reactions=REACTIONS)


def ingest_with_retry(
    db: Database, events: list[AnyEvent], *, now: datetime | None = None, attempts: int = 3
) -> list[Outcome]:
    """Run ``ingest`` in its own unit of work; retry when a concurrent delivery of the
    same event (or a concurrent auto-enrolment) won a unique-constraint race.

    On PostgreSQL a batch of ``DEFER_FROM`` events or more runs in two units of work: the
    first takes the accounts nobody else holds and processes their events; the second,
    after the first has committed, waits for the remaining accounts and processes the
    events that need them (``ingest(defer_locked=True)``). The events of one member stay
    in order; a replay of the batch finds the first unit's events stored."""
    defer = len(events) >= DEFER_FROM and db.dialect == "postgresql"
    outcomes = _ingest_unit(db, events, now=now, attempts=attempts, defer_locked=defer)
    later = [o.index for o in outcomes if o.status == DEFERRED]
    if later:
        rest = _ingest_unit(db, [events[i] for i in later], now=now, attempts=attempts)
        for i, outcome in zip(later, rest, strict=True):
            outcome.index = i
            outcomes[i] = outcome
    return outcomes


DEFER_FROM = 32
"""The smallest batch ``ingest_with_retry`` lets skip accounts held elsewhere: for a few
events a second unit of work would cost more than the wait."""


def _ingest_unit(
    db: Database,
    events: list[AnyEvent],
    *,
    now: datetime | None,
    attempts: int,
    defer_locked: bool = False,
) -> list[Outcome]:
    return db.retrying(
        lambda session, attempt: events_service.ingest(
            session,
            events,
            now=now,
            optimistic=attempt == 0 and len(events) == 1,
            defer_locked=defer_locked,
            optimistic_budgets=attempt == 0,
        ),
        attempts=attempts,
        # enrol turns IntegrityError into IdentifierTaken; BudgetRace: again, budgets locked
        retry_on=(IntegrityError, IdentifierTaken, BudgetRace),
    )
