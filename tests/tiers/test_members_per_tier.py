"""``tiers.members_per_tier``: how many members hold each tier now, in one query, as
``tiers.current`` decides it (the base tier without a tier row, a bought tier while it
lasts, closed members not counted)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, update

from tests import factories as f
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.service import programmes
from treu.tiers.service import tiers


def test_counts_members_per_tier_in_one_query(db: Database) -> None:
    prog = f.tiered(db)
    now = utc_now()
    newcomer = f.member(db, prog)  # no activity: bronze, the base tier
    silver = f.member(db, prog)
    gold = f.member(db, prog)
    bought = f.member(db, prog)
    closed = f.member(db, prog)
    f.ingest_one(db, f.purchase_payload(prog, silver, amount_minor=15_000, occurred_at=now))
    f.ingest_one(db, f.purchase_payload(prog, gold, amount_minor=25_000, occurred_at=now))
    f.ingest_one(db, f.purchase_payload(prog, closed, amount_minor=25_000, occurred_at=now))
    f.ingest_one(db, f.membership_payload(prog, bought, now - timedelta(days=1), "gold", 12))
    with db.unit_of_work() as session:
        session.execute(update(Member).where(Member.id == closed.id).values(status="closed"))
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with db.unit_of_work(write=False) as session:
        attached = programmes.get(session, prog.id)
        tiers.ladder(session, attached)  # warm the ladder cache: only the count is measured
        event.listen(session.connection(), "before_cursor_execute", count)
        counts = tiers.members_per_tier(session, attached)
        event.remove(session.connection(), "before_cursor_execute", count)
        assert len(statements) == 1
        for who in (newcomer, silver, gold, bought):
            info = tiers.current(session, who.id)
            assert info is not None
            assert counts.get(info.code, 0) >= 1
    assert counts == {"bronze": 1, "silber": 1, "gold": 2}

    # a bought tier that ran out counts as the qualified one, as in ``current``
    later = now + timedelta(days=400)
    with db.unit_of_work(write=False) as session:
        attached = programmes.get(session, prog.id)
        assert tiers.members_per_tier(session, attached, now=later) == {
            "bronze": 2,
            "silber": 1,
            "gold": 1,
        }
