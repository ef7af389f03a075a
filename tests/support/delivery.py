"""A channel for tests of the delivery core: it tells an in-process receiver about
every enrolment in one programme, as the real channels tell theirs."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from treu.db.session import Database
from treu.delivery.channel import Claimed, Outcome, Planned, SendFailed
from treu.kit.time import utc_now
from treu.ledger.service import ledger
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.outbox.models import OutboxMessage
from treu.programmes.models import Programme


@dataclass
class Receiver:
    """Counts what arrives, per delivery id; fails a target's first ``fail[target]``
    tries."""

    got: Counter[uuid.UUID] = field(default_factory=Counter)
    fail: dict[str, int] = field(default_factory=dict)
    tries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, delivery: Claimed) -> None:
        with self.lock:
            self.tries[delivery.target] += 1
            if self.tries[delivery.target] <= self.fail.get(delivery.target, 0):
                raise SendFailed("receiver said 503", status=503)
            self.got[delivery.id] += 1


@dataclass
class Enrolments:
    """A channel that tells a receiver about every enrolment in one programme (what the
    real channels do with their own receivers)."""

    receiver: Receiver
    programme_id: uuid.UUID
    name: str = "test"
    settled: list[Outcome] = field(default_factory=list)

    def plan(
        self, session: object, messages: Sequence[OutboxMessage], *, now: datetime
    ) -> list[Planned]:
        return [
            Planned(
                channel=self.name,
                target=str(m.member_id),
                dedupe_key=f"test:{m.id}",
                event_type=m.type,
                payload={"member": str(m.member_id)},
                programme_id=m.programme_id,
                member_id=m.member_id,
                outbox_id=m.id,
            )
            for m in messages
            if m.type == "member.enrolled" and m.programme_id == self.programme_id
        ]

    def sender(self) -> Enrolments:
        return self

    def send(self, delivery: Claimed) -> None:
        self.receiver.take(delivery)

    def close(self) -> None:
        pass

    def settle(self, session: object, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        self.settled.extend(outcomes)


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


def enrol(db: Database, prog: Programme, count: int) -> list[uuid.UUID]:
    with db.unit_of_work() as session:
        return [
            members.enrol(
                session,
                programme=prog,
                data=MemberCreate.model_validate(
                    {"programme": prog.slug, "external_id": uuid.uuid4().hex}
                ),
                writer=ledger.writer(session),
            ).id
            for _ in range(count)
        ]
