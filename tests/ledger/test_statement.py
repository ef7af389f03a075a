"""The member's own history (``ledger.statement``): newest first, pending points with
their release date, no ``settle`` postings, keyset pages."""

from __future__ import annotations

from datetime import timedelta

from tests import factories as f
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.ledger.service import ledger


def test_pending_points_carry_their_release_date_and_pages_follow_each_other(
    db: Database,
) -> None:
    prog = f.programme(db, pending_days=14)
    who = f.member(db, prog)
    f.adjust(db, who, 50, at=utc_now() - timedelta(days=1))
    bought = utc_now()
    f.ingest(
        db,
        *(
            f.purchase_payload(prog, who, amount_minor=1000 * (i + 1), occurred_at=bought)
            for i in range(3)
        ),
    )

    with db.unit_of_work(write=False) as session:
        first = ledger.statement(session, member_id=who.id, limit=2)
        assert first.next_cursor is not None
        second = ledger.statement(session, member_id=who.id, limit=2, cursor=first.next_cursor)
    lines = first.items + second.items
    assert second.next_cursor is None
    assert [line.posting.points for line in lines] == [30, 20, 10, 50]
    ids = [line.posting.id for line in lines]
    assert ids == sorted(ids, reverse=True)
    for line in lines[:3]:
        assert line.pending_until is not None
        assert abs(line.pending_until - (bought + timedelta(days=14))) < timedelta(seconds=1)
    assert lines[3].pending_until is None  # an adjustment is available at once


def test_other_members_postings_are_not_in_the_statement(db: Database) -> None:
    prog = f.programme(db)
    who, other = f.member(db, prog), f.member(db, prog)
    f.adjust(db, who, 5)
    f.adjust(db, other, 7)
    with db.unit_of_work(write=False) as session:
        mine = ledger.statement(session, member_id=who.id)
    assert [line.posting.points for line in mine.items] == [5]
    assert mine.items[0].pending_until is None
