"""The seam for reactions: what plugs into the ingest, when each step runs, and that a
reaction can refuse an event without anything of it being written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests import factories as f
from treu.db.base import WriteBatch
from treu.db.session import Database
from treu.errors import Invalid
from treu.events.ingest import EventService
from treu.events.models import Event
from treu.events.reactions import REACTIONS
from treu.events.schemas import AnyEvent, event_adapter
from treu.events.seam import IngestRun, Item, Outcome, ReactionRun
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme


class Refused(Invalid):
    code = "refused_by_reaction"


class Recorder:
    """Writes down every call, refuses events whose store is ``refuse-<step>``."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        self.calls.append(("validate", event.id))
        if getattr(event, "store", None) == "refuse-validate":
            raise Refused("refused before anything")

    def start(self, run: IngestRun) -> ReactionRun:
        self.calls.append(("start", [event.id for _, event, _ in run.open()]))
        return _RecorderRun(self, run)


class _RecorderRun(ReactionRun):
    def __init__(self, recorder: Recorder, run: IngestRun) -> None:
        self.recorder = recorder
        self.run = run

    def check(self, item: Item) -> None:
        self.recorder.calls.append(("check", item.event.id))
        assert item.row is None
        if getattr(item.event, "store", None) == "refuse-check":
            raise Refused("refused before processing")

    def react(self, item: Item) -> None:
        assert item.row is not None
        self.recorder.calls.append(("react", item.event.id))
        assert item.answer is not None
        item.answer.note = f"recorded {item.row['type']}"

    def flush(self, batch: WriteBatch) -> None:
        self.recorder.calls.append(("flush", None))


def ingest(db: Database, service: EventService, *payloads: dict[str, Any]) -> list[Outcome]:
    events = [event_adapter.validate_python(p) for p in payloads]
    with db.unit_of_work() as session:
        return service.ingest(session, events)


def test_the_reactions_run_in_their_list_order() -> None:
    assert [reaction.name for reaction in REACTIONS] == [
        "coupons",
        "tiers",
        "badges",
        "challenges",
        "campaigns",
    ]


def test_a_reaction_sees_every_step_in_order_and_adds_to_the_answer(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    recorder = Recorder()
    service = EventService([*REACTIONS, recorder])
    at = utc_now() - timedelta(minutes=5)
    one, two = (f.purchase_payload(prog, who, occurred_at=at) for _ in range(2))
    refused = f.purchase_payload(prog, who, occurred_at=at) | {"store": "refuse-check"}
    outcomes = ingest(db, service, one, refused, two)
    assert [o.status for o in outcomes] == [201, 422, 201]
    assert outcomes[1].error is not None
    assert outcomes[1].error.code == "refused_by_reaction"
    assert [o.body.note for o in (outcomes[0], outcomes[2]) if o.body] == [
        "recorded purchase",
        "recorded purchase",
    ]
    ids = [one["id"], refused["id"], two["id"]]
    assert recorder.calls == [
        *(("validate", i) for i in ids),
        ("start", ids),
        ("check", ids[0]),
        ("react", ids[0]),
        ("check", ids[1]),
        ("check", ids[2]),
        ("react", ids[2]),
        ("flush", None),
    ]
    with db.unit_of_work(write=False) as session:
        stored = set(session.scalars(select(Event.key).where(Event.key.in_(ids))))
    assert stored == {ids[0], ids[2]}  # the refused event wrote nothing
    earned = [o.body.points.earned for o in outcomes if o.body is not None]
    assert f.balance(db, who).available == sum(earned) > 0


def test_a_refusal_before_the_members_enrols_nobody(db: Database) -> None:
    prog = f.programme(db, auto_enrol=True)
    recorder = Recorder()
    service = EventService([*REACTIONS, recorder])
    email = f"{f.unique('new')}@example.com"
    payload = f.purchase_payload(prog, None) | {
        "member": {"email": email},
        "store": "refuse-validate",
    }
    [outcome] = ingest(db, service, payload)
    assert (outcome.status, outcome.error.code if outcome.error else None) == (
        422,
        "refused_by_reaction",
    )
    assert [name for name, _ in recorder.calls] == ["validate", "start", "flush"]
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).where(Member.email == email)) == 0
