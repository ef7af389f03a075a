"""Journey test helpers: switch a journey on, record consent, and look at what a
journey left behind (its outbox messages, the planned mails, the exposures)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from tests.messaging.conftest import SECRET
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.channel import Planned
from treu.delivery.service import deliveries
from treu.journeys.models import JourneyExposure, JourneyKind
from treu.journeys.reactor import JourneyReactor
from treu.journeys.service import journeys
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.members.schemas import MemberUpdate
from treu.members.service import members
from treu.messaging.channel import EmailChannel
from treu.messaging.consents import consents
from treu.outbox.models import OutboxMessage
from treu.outbox.service import outbox
from treu.programmes.models import Programme

CHANNEL = EmailChannel(
    Settings(secret_key=SECRET, public_url="https://treu.example"), owned=journeys.owned_types
)


def enable(db: Database, prog: Programme, kind: JourneyKind, **options: Any) -> None:
    with db.unit_of_work() as session:
        journeys.put(session, prog, kind, enabled=True, **options)


def consent(db: Database, who: Member, granted: bool = True) -> None:
    with db.unit_of_work() as session:
        consents.record(session, member=who, channel="email", granted=granted, source="test")


def close(db: Database, who: Member) -> None:
    with db.unit_of_work() as session:
        members.update(
            session,
            member=members.get(session, who.id),
            data=MemberUpdate.model_validate({"status": "closed"}),
        )


def messages(db: Database, who: Member) -> list[OutboxMessage]:
    with db.unit_of_work(write=False) as session:
        return outbox.messages(session, member_id=who.id, types=["campaign.message"])


def react(db: Database, who: Member, now: datetime | None = None) -> None:
    """The reactor's look at every outbox row of the member (as the worker's planning)."""
    with db.unit_of_work() as session:
        JourneyReactor().plan(
            session, outbox.messages(session, member_id=who.id), now=now or utc_now()
        )


def mails(
    db: Database, who: Member, now: datetime | None = None, *, every: bool = False
) -> list[Planned]:
    """Plan the member's journey messages (``every``: all their outbox rows), the
    reactor first as in the worker, and write the deliveries (the cap counts them)."""
    now = now or utc_now()
    react(db, who, now)
    with db.unit_of_work() as session:
        rows = outbox.messages(
            session, member_id=who.id, types=None if every else ["campaign.message"]
        )
        planned = CHANNEL.plan(session, rows, now=now)
        deliveries.add(session, planned, now=now)
        return planned


def exposures(db: Database, who: Member) -> list[JourneyExposure]:
    with db.unit_of_work(write=False) as session:
        found = session.scalars(
            select(JourneyExposure)
            .where(JourneyExposure.member_id == who.id)
            .order_by(JourneyExposure.at, JourneyExposure.step)
        )
        return list(found)
