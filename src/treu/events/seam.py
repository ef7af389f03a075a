"""The seam between the ingest and what reacts to ingested events.

The ingest core (``treu.events.ingest``) validates events, resolves and locks their
members, earns their points by the earning rules and writes the ledger. Everything else
that follows from an event — the rules' badges, tiers counting activity, challenges
counting progress, coupons coming back with a returned order, and next campaigns,
journeys and notifications — is a ``Reaction``: one small module in
``treu.events.reactions`` and one line in its ordered list ``REACTIONS``. The core names
no feature.

A reaction's life in one unit of work of ingestion (a single event or a batch):

1. ``validate(session, event, programme)`` — for each new event, before any member is
   resolved or enrolled: raise a ``TreuError`` to refuse the event (nothing of it is
   written).
2. ``start(run)`` — once, after the members' accounts are locked and the earning rules
   loaded: read what the whole batch needs, in one query where it can (``run.open()``
   lists the events still to process). Returns the reaction's state for this unit of work.
   A reaction that knows members' tiers sets ``run.tiers``: the earning rules read it.
   The one that keeps the badges sets ``run.badges``: whoever awards a badge awards it
   there, so that a member holds each badge code once.
3. ``check(item)`` — before each event is processed (``item.row`` is None yet): raise a
   ``TreuError`` to refuse that event.
4. ``react(item)`` — after each event is processed, in order: ``item.row`` is what will be
   stored, ``item.answer`` the answer (a reaction fills its own field of it),
   ``item.evaluation`` what the earning rules gave. A ``TreuError`` here fails the event.
5. ``flush(batch)`` — once, in list order, before the ledger writer's own flush (so a
   reaction may still credit points through ``run.writer``): add the writes to ``batch``.
   A reaction may still complete its items' answers here: they are stored after it.

Reactions run in the order of ``REACTIONS``; a later one may rely on an earlier one's
state (the challenges read the tier the tiers reaction keeps and award badges through the
badges reaction's book).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.orm import Session

from treu.db.base import WriteBatch
from treu.errors import TreuError
from treu.events.schemas import AnyEvent, EventAnswer
from treu.ledger.service import LedgerWriter
from treu.members.service import MemberKey
from treu.programmes.models import Programme
from treu.rules.badges import BadgeBook
from treu.rules.engine import Evaluation

DEFERRED = 0
"""``Outcome.status`` of an event ``ingest(defer_locked=True)`` left for later."""


@dataclass
class Outcome:
    """What happened to one event: ``status`` 201 (processed), 200 (replay), an error, or
    ``DEFERRED``."""

    index: int
    event_id: str
    status: int
    body: EventAnswer | None = None
    error: TreuError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status != DEFERRED

    @classmethod
    def failed(cls, index: int, event: AnyEvent, error: TreuError) -> Outcome:
        return cls(index, event.id, error.http_status, error=error)


@dataclass
class Original:
    """A purchase a return in this unit of work refers to (stored earlier, or earlier in
    this very batch)."""

    id: uuid.UUID
    key: str
    member_id: uuid.UUID | None
    currency: str | None
    data: dict[str, Any]
    loaded: list[dict[str, Any]] = field(default_factory=list)
    dirty: bool = False
    occurred_at: datetime | None = None
    channel: str | None = None
    store: str | None = None
    new_rows: list[dict[str, Any]] | None = None
    """A purchase earlier in this batch: its line rows, made into ``lines`` only when a
    return asks (almost never; building them for every purchase was 6 % of a batch)."""

    @property
    def lines(self) -> list[dict[str, Any]]:
        if self.new_rows is not None:
            self.loaded = [
                {
                    "id": None,
                    "event_id": row["event_id"],
                    "line_no": row["line_no"],
                    "sku": row["sku"],
                    "name": row["name"],
                    "category": row["category"],
                    "tags": row["tags"],
                    "quantity": row["quantity"],
                    "unit_price_minor": row["unit_price_minor"],
                    "returned_quantity": 0,
                    "row": row,
                }
                for row in self.new_rows
            ]
            self.new_rows = None
        return self.loaded

    @property
    def fully_returned(self) -> bool:
        return all(x["returned_quantity"] >= x["quantity"] for x in self.lines)


class Tiers(Protocol):
    """Members' tiers as this unit of work knows them (``member.tier`` for the earning
    rules and challenges, and the tier multiplier a purchase records)."""

    def tier_of(self, member_id: uuid.UUID) -> str | None: ...

    def multiplier_of(self, member_id: uuid.UUID) -> Decimal | None: ...


@dataclass
class IngestRun:
    """What one unit of work of ingestion is about: the run-state the core's steps share
    (filled as they go) and the reactions read."""

    session: Session
    now: datetime
    writer: LedgerWriter
    events: Sequence[AnyEvent]
    programmes: Mapping[str, Programme]
    """By slug."""
    fresh: Sequence[int]
    """Indices of the events seen for the first time (not replays)."""
    outcomes: dict[int, Any]
    """Indices decided already (failed, replayed, deferred); the core fills it."""
    members: dict[int, MemberKey | None] = field(default_factory=dict)
    """The events' members, once resolved (None: anonymous or not found)."""
    originals: dict[tuple[uuid.UUID, str], Original] = field(default_factory=dict)
    """The purchases returns refer to, by (programme id, your event id)."""
    tiers: Tiers | None = None
    badges: BadgeBook | None = None

    def open(self) -> Iterator[tuple[int, AnyEvent, Programme]]:
        """The events still to process, in order."""
        for i in self.fresh:
            if i not in self.outcomes:
                event = self.events[i]
                yield i, event, self.programmes[event.programme]

    def original_of(self, programme: Programme, key: str | None) -> Original | None:
        return self.originals.get((programme.id, key)) if key is not None else None


@dataclass
class Item:
    """One event as the reactions see it."""

    index: int
    event: AnyEvent
    programme: Programme
    member: MemberKey | None
    row: dict[str, Any] | None = None
    """The stored event (None in ``check``); ``row["data"]`` is the event's record."""
    lines: list[dict[str, Any]] = field(default_factory=list)
    answer: EventAnswer | None = None
    """The answer for this event (None in ``check``)."""
    original: Original | None = None
    """For a return: the purchase."""
    evaluation: Evaluation | None = None
    """What the earning rules gave (None: not evaluated — a return, an anonymous or a
    blocked member's event)."""


class ReactionRun:
    """A reaction's state in one unit of work; every step does nothing unless
    overridden."""

    def check(self, item: Item) -> None:
        return None

    def react(self, item: Item) -> None:
        return None

    def flush(self, batch: WriteBatch) -> None:
        return None


class Reaction(Protocol):
    """A feature that reacts to ingested events (see the module docstring)."""

    name: str

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None: ...

    def start(self, run: IngestRun) -> ReactionRun: ...
