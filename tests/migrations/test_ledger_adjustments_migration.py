"""Migration 0013: manual adjustments move from ``events`` (type ``adjustment``) to
``ledger_adjustments`` with their ids, and back on a downgrade."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, inspect, select, update

from tests import factories as f
from treu.db.session import Database
from treu.errors import IdempotencyConflict
from treu.events.models import Event
from treu.kit.ids import new_id
from treu.ledger.adjustments import Adjustment, adjustments
from treu.ledger.models import LedgerAdjustment, PostingKind
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.migrations import downgrade, upgrade
from treu.programmes.models import Programme

T0 = datetime(2026, 11, 24, 10, 20, tzinfo=UTC)
COLUMNS = [c.key for c in LedgerAdjustment.__table__.columns]


def stored(db: Database) -> dict[Any, dict[str, Any]]:
    with db.unit_of_work(write=False) as session:
        return {
            row.id: {column: getattr(row, column) for column in COLUMNS}
            for row in session.scalars(select(LedgerAdjustment))
        }


def adjustment_events(db: Database) -> dict[Any, Event]:
    with db.unit_of_work(write=False) as session:
        return {e.id: e for e in session.scalars(select(Event).where(Event.type == "adjustment"))}


def migrate(db: Database, revision: str) -> None:
    db.dispose()
    if revision == "head":
        upgrade(db.url)
    else:
        downgrade(db.url, revision)
    db.dispose()


def adjust_as_before(db: Database, prog: Programme, who: Member) -> tuple[Any, dict[str, Any]]:
    """What ``treu.events.adjustments`` wrote up to revision 0012 for a credit of 25
    points with the Idempotency-Key ``old-1``: an event and the posting."""
    payload = {
        "member_id": str(who.id),
        "points": 25,
        "reason": "old goodwill",
        "allow_negative": False,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    event_id = new_id()
    with db.unit_of_work() as session:
        writer = ledger.writer(session, now=T0)
        account = writer.account(who.id)
        session.execute(
            insert(Event).values(
                id=event_id,
                programme_id=prog.id,
                key="adjustment:old-1",
                type="adjustment",
                member_id=who.id,
                payload_hash=digest,
                occurred_at=T0,
                received_at=T0,
                data={"points": 25},
                result={},
            )
        )
        posting = writer.earn(
            account,
            programme=prog,
            points=25,
            earned_at=T0,
            details={"template": "adjust", "params": {"reason": "old goodwill"}},
            event_id=event_id,
            actor="apikey:crm",
            reason="old goodwill",
            kind=PostingKind.adjust,
            pending=False,
        )
        writer.flush()
        result = {
            "member_id": str(who.id),
            "posting": posting.public() | {"reason": "old goodwill", "actor": "apikey:crm"},
            "balance": {"available": account.available, "pending": account.pending},
        }
        session.execute(update(Event).where(Event.id == event_id).values(result=result))
    return event_id, result


def test_adjustment_events_move_to_the_ledger_and_back(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    with db.unit_of_work() as session:
        made = adjustments.adjust(
            session,
            member=anna,
            adjustment=Adjustment(70, "goodwill", key="adjustment:new-1"),
            actor="apikey:crm",
            now=T0,
        ).result.public()
    before = stored(db)
    [made_id] = before

    migrate(db, "0012")
    assert "ledger_adjustments" not in inspect(db.write_engine).get_table_names()
    [down] = adjustment_events(db).values()
    assert (down.id, down.programme_id, down.member_id, down.key) == (
        made_id,
        prog.id,
        anna.id,
        "adjustment:new-1",
    )
    assert (down.data, down.result, down.received_at) == ({"points": 70}, made, T0)
    old_id, old_result = adjust_as_before(db, prog, ben)

    migrate(db, "head")
    assert adjustment_events(db) == {}
    after = stored(db)
    assert after[made_id] == before[made_id]
    moved = {k: v for k, v in after[old_id].items() if k != "payload_hash"}  # see the replay
    assert moved == {
        "id": old_id,
        "programme_id": prog.id,
        "member_id": ben.id,
        "key": "adjustment:old-1",
        "points": 25,
        "reason": "old goodwill",
        "actor": "apikey:crm",
        "result": old_result,
        "created_at": T0,
    }
    assert f.verify(db, prog) == []
    # The keys given before the upgrade still make retries safe.
    with db.unit_of_work() as session:
        replay = adjustments.adjust(
            session,
            member=ben,
            adjustment=Adjustment(25, "old goodwill", key="adjustment:old-1"),
            actor="apikey:crm",
        )
    assert (replay.http_status, replay.result.public()) == (200, old_result)
    with pytest.raises(IdempotencyConflict), db.unit_of_work() as session:
        adjustments.adjust(
            session,
            member=ben,
            adjustment=Adjustment(26, "old goodwill", key="adjustment:old-1"),
            actor="apikey:crm",
        )
    assert f.balance(db, ben).available == 25
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
