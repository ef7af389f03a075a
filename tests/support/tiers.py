"""Tier test helpers shared by the tiers and journeys tests."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from treu.db.session import Database
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.tiers.service import tiers


def reevaluate(db: Database, prog: Programme, now: datetime) -> int:
    """The job's work for one programme (the shared test database holds many), in
    batches of two."""
    total = 0
    after: tuple[date, uuid.UUID] | None = None
    while True:
        with db.unit_of_work() as session:
            done, after = tiers.reevaluate_batch(
                session, programme=programmes.get(session, prog.id), now=now, after=after, limit=2
            )
        if done == 0:
            return total
        total += done
