"""Large batches take the COPY path on PostgreSQL; what it writes must read back the same."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from tests import factories as f
from treu.db.base import COPY_THRESHOLD, WriteBatch, table_of
from treu.db.session import Database
from treu.events.models import PurchaseLine
from treu.kit.time import utc_now
from treu.ledger.models import Account
from treu.members.models import Member, MemberStatus
from treu.programmes.models import Programme


def test_large_batch_round_trips_and_replays_identically(db: Database) -> None:
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 12})
    who = f.member(db, prog)
    lines = [
        {
            "sku": "4001",
            "name": "Bio Vollmilch",
            "category": "dairy",
            "quantity": 2,
            "unit_price_minor": 129,
            "tags": ["organic", "ü-tag"],
        },
        {
            "sku": "7002",
            "name": 'Kaffee "Crema"\t\\',
            "category": None,
            "quantity": 1,
            "unit_price_minor": 899,
            "tags": [],
        },
    ]
    # Event ids are the client's: the replay look-up sends them as one JSON list.
    awkward = ['a"b', "c\\d", "e,f", "{g}", "h i", "NULL", "ü€", "tab\there"]
    payloads = [
        f.purchase_payload(prog, who, lines=lines, event_id=f"{f.unique('ev')}-{awkward[n % 8]}")
        for n in range(COPY_THRESHOLD + 8)
    ]
    first = f.ingest(db, *payloads)
    assert [o.status for o in first] == [201] * len(payloads)
    again = f.ingest(db, *payloads)
    assert [o.status for o in again] == [200] * len(payloads)
    assert [o.body for o in again] == [o.body for o in first]
    assert f.balance(db, who).pending == 11 * len(payloads)
    assert f.verify(db, prog) == []
    with db.unit_of_work(write=False) as session:
        names = set(
            session.scalars(select(PurchaseLine.name).where(PurchaseLine.member_id == who.id))
        )
        tags = session.scalars(
            select(PurchaseLine.tags)
            .where(PurchaseLine.member_id == who.id, PurchaseLine.sku == "4001")
            .limit(1)
        ).one()
        count = session.scalar(
            select(func.count()).select_from(PurchaseLine).where(PurchaseLine.member_id == who.id)
        )
    assert names == {"Bio Vollmilch", 'Kaffee "Crema"\t\\'}
    assert tags == ["organic", "ü-tag"]
    assert count == 2 * len(payloads)


def test_many_updates_go_out_as_one_statement_and_keep_every_value(db: Database) -> None:
    """From COPY_THRESHOLD rows on, PostgreSQL updates a table with one UPDATE … FROM
    json_to_recordset(rows); NULLs, JSON, awkward text and times must arrive as with
    single-row updates, and a batch that updates one row twice keeps the later value
    (single-row path)."""
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(COPY_THRESHOLD + 3)]
    when = utc_now().replace(microsecond=0)
    rows = [
        {"member_id": p.id, "available": n, "pending": 0, "lifetime_earned": n, "updated_at": when}
        for n, p in enumerate(people)
    ]
    statements = _update_watched(db, Account, rows, key="member_id")
    if db.dialect == "postgresql":
        updates = [s for s in statements if s.startswith('UPDATE "accounts"')]
        assert len(updates) == 1
        assert "json_to_recordset" in updates[0]
    distinct = [
        {
            "id": p.id,
            "first_name": None if i % 2 else f'n{i} "Crema"\t\\ {{x,y}} ü',
            "attributes": {"i": i, "ü": [i], "quote": 'a "b" \\n'},
        }
        for i, p in enumerate(people)
    ]
    _update_members(db, distinct)
    with db.unit_of_work(write=False) as session:
        stored = _profiles(session, prog)
    assert stored == {r["id"]: (r["first_name"], r["attributes"]) for r in distinct}
    twice = [
        {"id": people[0].id, "first_name": "first", "attributes": {"a": 1}},
        *(
            {"id": p.id, "first_name": None, "attributes": {"size": "M", "n": i}}
            for i, p in enumerate(people[1:])
        ),
        {"id": people[0].id, "first_name": "second", "attributes": {"a": 2}},
    ]
    _update_members(db, twice)
    with db.unit_of_work(write=False) as session:
        found = {
            m: (a, life, u)
            for m, a, life, u in session.execute(
                select(
                    Account.member_id,
                    Account.available,
                    Account.lifetime_earned,
                    Account.updated_at,
                ).where(Account.programme_id == prog.id)
            )
        }
        profiles = _profiles(session, prog)
    assert {m: (a, life) for m, (a, life, _) in found.items()} == {
        p.id: (n, n) for n, p in enumerate(people)
    }
    assert {u.astimezone(UTC) for _, _, u in found.values()} == {when}
    assert profiles[people[0].id] == ("second", {"a": 2})
    assert profiles[people[5].id] == (None, {"size": "M", "n": 4})


def test_many_updates_with_values_json_cannot_carry_still_arrive(db: Database) -> None:
    """A Decimal (a programme's earn rate) has no JSON form in orjson: such rows go out
    as column arrays instead, with the same result."""
    progs = [f.programme(db) for _ in range(COPY_THRESHOLD + 1)]
    rows = [
        {"id": p.id, "points_per_currency_unit": Decimal(f"{n}.25"), "name": f"P {n} 'x'"}
        for n, p in enumerate(progs)
    ]
    statements = _update_watched(db, Programme, rows)
    if db.dialect == "postgresql":
        updates = [s for s in statements if s.startswith('UPDATE "programmes"')]
        assert len(updates) == 1
        assert "unnest" in updates[0]
    with db.unit_of_work(write=False) as session:
        stored = {
            pid: (rate, name)
            for pid, rate, name in session.execute(
                select(Programme.id, Programme.points_per_currency_unit, Programme.name).where(
                    Programme.id.in_([p.id for p in progs])
                )
            )
        }
    assert stored == {r["id"]: (r["points_per_currency_unit"], r["name"]) for r in rows}


def _update_watched(
    db: Database, model: Any, rows: list[dict[str, Any]], key: str = "id"
) -> list[str]:
    """Write ``rows`` with one ``WriteBatch.update``; the statements it sent."""
    statements: list[str] = []
    with db.unit_of_work() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", _collect(statements))
        batch = WriteBatch()
        batch.update(table_of(model), rows, key=key)
        batch.flush(connection)
    return statements


def _update_members(db: Database, rows: list[dict[str, Any]]) -> None:
    with db.unit_of_work() as session:
        batch = WriteBatch()
        batch.update(table_of(Member), rows)
        batch.flush(session.connection())


def _profiles(session: Session, prog: Programme) -> dict[Any, tuple[Any, Any]]:
    """Each member's first name and attributes, by member id."""
    return {
        m: (n, attrs)
        for m, n, attrs in session.execute(
            select(Member.id, Member.first_name, Member.attributes).where(
                Member.programme_id == prog.id
            )
        )
    }


def _collect(into: list[str]) -> Any:
    def listener(*args: Any) -> None:
        into.append(args[2])

    return listener


def _lines(count: int) -> list[dict[str, Any]]:
    return [
        {"sku": f"s{n}", "category": "misc", "quantity": 1, "unit_price_minor": 250}
        for n in range(count)
    ]


def test_large_batch_writes_lines_before_locking_and_drops_those_of_failed_purchases(
    db: Database,
) -> None:
    """On PostgreSQL a large batch writes its purchase lines before it locks the accounts
    (their key to the event is checked at commit); a purchase that fails afterwards (a
    closed member) leaves no line behind, and the others keep all of theirs."""
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(12)]
    closed = people[3]
    with db.unit_of_work() as session:
        session.execute(
            update(Member).where(Member.id == closed.id).values(status=MemberStatus.closed.value)
        )
    payloads = [f.purchase_payload(prog, p, lines=_lines(3)) for p in people]
    statements: list[str] = []
    listener = _collect(statements)
    event.listen(db.write_engine, "before_cursor_execute", listener)
    try:
        outcomes = f.ingest(db, *payloads)
    finally:
        event.remove(db.write_engine, "before_cursor_execute", listener)
    assert [o.status for o in outcomes] == [422 if p is closed else 201 for p in people]
    if db.dialect == "postgresql":
        copy_lines = next(i for i, s in enumerate(statements) if 'COPY "purchase_lines"' in s)
        lock = next(i for i, s in enumerate(statements) if "FOR UPDATE" in s)
        assert copy_lines < lock
    with db.unit_of_work(write=False) as session:
        per_member = dict(
            session.execute(
                select(PurchaseLine.member_id, func.count())
                .where(PurchaseLine.programme_id == prog.id)
                .group_by(PurchaseLine.member_id)
            ).all()
        )
    assert per_member == {p.id: 3 for p in people if p is not closed}
    assert f.verify(db, prog) == []


def test_large_batch_with_a_return_of_its_own_purchase_keeps_the_returned_quantity(
    db: Database,
) -> None:
    """A return updates the lines of a purchase earlier in its batch before they are
    written, so such a batch writes its lines with its events."""
    prog = f.programme(db)
    who = f.member(db, prog)
    buys = [f.purchase_payload(prog, who, lines=_lines(3)) for _ in range(12)]
    back = f.return_payload(prog, buys[0]["id"], [{"sku": "s1", "quantity": 1}])
    outcomes = f.ingest(db, *buys, back)
    assert [o.status for o in outcomes] == [201] * 13
    with db.unit_of_work(write=False) as session:
        returned = session.scalar(
            select(func.sum(PurchaseLine.returned_quantity)).where(PurchaseLine.member_id == who.id)
        )
    assert returned == 1
    assert f.verify(db, prog) == []


def test_skip_existing_inserts_leave_present_rows_alone_on_every_path(
    db: Database, monkeypatch: Any
) -> None:
    """``WriteBatch.insert(skip_existing=True)``: one statement (small units), the
    pipeline (large ones: COPY cannot skip, so they are plain INSERTs) and the Core path
    all write the new rows and leave the present ones as they were."""
    from treu.campaigns.models import CampaignExposure
    from treu.db import fastpath

    prog = f.programme(db)
    campaign = f.campaign(db, prog, activate=False)
    table = table_of(CampaignExposure)
    now = utc_now()

    def rows(members: list[Member], arm: str) -> list[dict[str, Any]]:
        return [
            {
                "campaign_id": campaign.id,
                "member_id": m.id,
                "programme_id": prog.id,
                "arm": arm,
                "first_seen_at": now,
                "event_id": None,
                "recorded_at": now,
            }
            for m in members
        ]

    def arms() -> dict[Any, str]:
        with db.unit_of_work(write=False) as session:
            found = session.execute(
                select(CampaignExposure.member_id, CampaignExposure.arm).where(
                    CampaignExposure.campaign_id == campaign.id
                )
            ).all()
        return dict(found)

    everyone = [f.member(db, prog) for _ in range(COPY_THRESHOLD + 4)]
    written: list[Member] = []
    for size, combine in ((2, True), (COPY_THRESHOLD + 2, True), (COPY_THRESHOLD + 4, False)):
        monkeypatch.setattr(fastpath, "_combine", combine)
        batch = WriteBatch()
        # the first ``len(written)`` are there as "treated": sent again as "held_out"
        batch.insert(table, rows(everyone[:size], "held_out"), skip_existing=True)
        with db.unit_of_work() as session:
            batch.flush(session.connection())
        found = arms()
        assert len(found) == size
        assert all(found[m.id] == "treated" for m in written)
        written = everyone[:size]
        with db.unit_of_work() as session:  # mark them, to see the next round keep them
            session.execute(
                update(CampaignExposure)
                .where(CampaignExposure.campaign_id == campaign.id)
                .values(arm="treated")
            )
