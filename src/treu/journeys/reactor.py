"""The event-triggered journeys (welcome, first purchase, tier upgrade), reacting to the
outbox.

``JourneyReactor`` plugs into delivery planning as a channel that plans no deliveries:
the delivery worker already reads every committed outbox row once (``dispatched_at``,
``SKIP LOCKED``), so reacting there costs no second scan of the outbox, no cursor of
its own, and nothing in the ingest. What it fires is recorded as ``campaign.message``
rows in the planning's own unit of work; they are planned in a later round like any
other row. History loaded by the demo or an import is marked dispatched, so it fires
nothing.

The first purchase reacts to the points a purchase earned (``points.earned``,
``points.pending``: their ``event_id`` names the purchase): one query per planning batch
keeps the purchases that are their member's first and happened within
``FIRST_PURCHASE_WITHIN`` (an imported purchase from last year is history). A purchase
that earned nothing records no such row; ``journeys.daily`` catches those."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from treu.delivery.channel import Claimed, Outcome, Planned, Sender
from treu.events.models import Event
from treu.journeys.daily import FIRST, first_purchases
from treu.journeys.models import Journey, JourneyKind
from treu.journeys.service import Target, journeys
from treu.outbox.models import OutboxMessage
from treu.programmes.models import Programme
from treu.tiers.service import tiers

NAME = "journeys"

WELCOME_WITHIN = timedelta(days=1)
"""As the e-mail channel's welcome: a member imported with an enrolment date further
back than this is not new."""

TRIGGERS: dict[str, JourneyKind] = {
    "member.enrolled": JourneyKind.welcome,
    "tier.changed": JourneyKind.tier_upgrade,
    "points.earned": JourneyKind.first_purchase,
    "points.pending": JourneyKind.first_purchase,
}


def _when(value: object) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class _NoSender:
    def send(self, delivery: Claimed) -> None:  # pragma: no cover - nothing is planned
        raise AssertionError("the journey reactor plans no deliveries")

    def close(self) -> None:  # pragma: no cover
        pass


class JourneyReactor:
    name = NAME

    def plan(
        self, session: Session, messages: Sequence[OutboxMessage], *, now: datetime
    ) -> list[Planned]:
        wanted = [m for m in messages if m.type in TRIGGERS and m.member_id is not None]
        if not wanted:
            return []
        live = {
            (j.programme_id, JourneyKind(j.kind)): j
            for j in journeys.enabled(
                session, set(TRIGGERS.values()), {m.programme_id for m in wanted}
            )
        }
        if not live:
            return []
        targets: dict[uuid.UUID, list[Target]] = defaultdict(list)
        purchases: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        for message in wanted:
            journey = live.get((message.programme_id, TRIGGERS[message.type]))
            if journey is None or message.member_id is None:
                continue
            if journey.kind == JourneyKind.first_purchase:
                event_id = message.payload.get("event_id")
                if event_id is not None:
                    purchases[journey.id].add(uuid.UUID(str(event_id)))
                continue
            target = self._target(session, journey, message)
            if target is not None:
                targets[journey.id].append(target)
        by_id = {j.id: j for j in live.values()}
        for journey_id, event_ids in purchases.items():
            query = first_purchases(by_id[journey_id].programme_id, now).where(
                Event.id.in_(sorted(event_ids))
            )
            targets[journey_id].extend(
                Target(member_id, FIRST)
                for member_id in sorted({r[0] for r in session.execute(query)})
            )
        for journey_id, found in targets.items():
            journey = by_id[journey_id]
            programme = session.get_one(Programme, journey.programme_id)
            journeys.fire(session, journey, programme, found, now=now)
        return []

    def _target(self, session: Session, journey: Journey, message: OutboxMessage) -> Target | None:
        assert message.member_id is not None
        payload = message.payload
        if message.type == "member.enrolled":
            enrolled = _when(payload.get("enrolled_at"))
            if enrolled is not None and enrolled < message.occurred_at - WELCOME_WITHIN:
                return None
            return Target(message.member_id, "enrolled")
        # tier.changed: upgrades only, each one its own occasion
        programme = session.get_one(Programme, message.programme_id)
        ladder = tiers.ladder(session, programme)
        new = ladder.get(payload.get("to_tier"))
        old = ladder.get(payload.get("from_tier"))
        if new is None or (old is not None and old.rank >= new.rank):
            return None
        return Target(
            message.member_id,
            f"{new.code}:{message.id}",
            facts={"tier": new.code, "previous_tier": old.code if old is not None else None},
        )

    def sender(self) -> Sender:
        return _NoSender()

    def settle(self, session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        return None
