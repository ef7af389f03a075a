"""Member metrics kept between refreshes (``treu.insights.member_metrics``): the
incremental update gives exactly what a full rebuild gives, on random histories and
refresh times, on SQLite and PostgreSQL; it recomputes only the members whose rows can
have changed; and an event committed after a refresh by a transaction that was already
open is not lost (PostgreSQL: transactions commit out of order).

Events are written straight into the tables (what is tested is the aggregation, not
the ingestion), dated relative to a fixed ``NOW`` that every refresh is given."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update
from sqlalchemy.engine import Connection

from tests import factories
from treu.db.base import table_of
from treu.db.session import Database
from treu.events.models import Event, PurchaseLine
from treu.insights import member_metrics
from treu.insights.metrics import MemberTable, drop_positions, member_table
from treu.kit.ids import new_id
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.segments.models import MemberMetricsState

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TYPES = ["purchase", "purchase", "purchase", "return", "review_submitted", "store_visit"]
CHANNELS = ["pos", "web", "app", None]
CATEGORIES = ["dairy", "coffee", None]
TAGS: list[list[Any]] = [[], ["organic"], ["organic", "vegan"], ["vegan"], ["vegan", "vegan"]]


@dataclass(frozen=True)
class Happening:
    """One event: whose, what, when (days before ``NOW``, negative: after it)."""

    who: int
    type: str
    days_before: float
    channel: str | None = "pos"
    amount: int = 1000
    category: str | None = "dairy"
    tags: tuple[str, ...] = ()


def _write(
    connection: Connection, prog: Programme, people: list[Member], done: list[Happening]
) -> None:
    events, lines = [], []
    for happening in done:
        event_id = new_id()
        at = NOW - timedelta(days=happening.days_before)
        amount = -happening.amount if happening.type == "return" else happening.amount
        commerce = happening.type in ("purchase", "return")
        events.append(
            {
                "id": event_id,
                "programme_id": prog.id,
                "key": uuid.uuid4().hex,
                "type": happening.type,
                "member_id": people[happening.who].id,
                "payload_hash": "x",
                "occurred_at": at,
                "received_at": at,
                "channel": happening.channel if commerce else None,
                "currency": "EUR" if commerce else None,
                "total_minor": amount if commerce else None,
                "data": {},
                "result": {},
            }
        )
        if happening.type == "purchase":
            lines.append(
                {
                    "event_id": event_id,
                    "programme_id": prog.id,
                    "member_id": people[happening.who].id,
                    "occurred_at": at,
                    "line_no": 1,
                    "sku": "sku-1",
                    "category": happening.category,
                    "quantity": 1,
                    "unit_price_minor": happening.amount,
                    "tags": list(happening.tags),
                    "returned_quantity": 0,
                }
            )
    if events:
        connection.execute(insert(table_of(Event)), events)
    if lines:
        connection.execute(insert(table_of(PurchaseLine)), lines)


def _happen(db: Database, prog: Programme, people: list[Member], done: list[Happening]) -> None:
    """Write the events, then wait until the ids' clock has left their millisecond: a
    refresh's mark is a millisecond, and an event made in the same one as the mark is
    (rightly) read again by the next refresh, which would make the counts of recomputed
    members depend on how fast the machine is."""
    with db.write_engine.begin() as connection:
        _write(connection, prog, people, done)
    written = new_id().int >> 80
    while new_id().int >> 80 <= written:
        time.sleep(0.0005)


class _Undo(Exception):
    pass


def _frame(table: MemberTable) -> tuple[pd.DataFrame, dict[str, list[tuple[int, Any]]]]:
    sets = {
        name: sorted(zip(at.tolist(), values.tolist(), strict=True))
        for name, (at, values) in table.sets.items()
    }
    return table.columns.copy(), sets


def _metrics(
    db: Database,
    prog: Programme,
    now: datetime,
    *,
    rebuild: bool = False,
    keep: bool = True,
    settle: timedelta = timedelta(0),
) -> tuple[pd.DataFrame, dict[str, list[tuple[int, Any]]]]:
    """The member table as of ``now`` (incremental unless ``rebuild``); with
    ``keep=False`` in a unit of work that is rolled back, so the kept metrics stay as
    they were."""
    out: list[Any] = []
    try:
        with db.unit_of_work() as session:
            programme = programmes.get(session, prog.id)
            table = member_table(
                session, programme=programme, now=now, rebuild=rebuild, settle=settle
            )
            drop_positions(session.connection())
            out.append(_frame(table))
            if not keep:
                raise _Undo
    except _Undo:
        pass
    return out[0]


def _same(
    left: tuple[pd.DataFrame, dict[str, list[tuple[int, Any]]]],
    right: tuple[pd.DataFrame, dict[str, list[tuple[int, Any]]]],
) -> None:
    pd.testing.assert_frame_equal(left[0], right[0])
    assert left[1] == right[1]


happenings = st.builds(
    Happening,
    who=st.integers(min_value=0, max_value=3),
    type=st.sampled_from(TYPES),
    # whole days and half days: events land exactly on the window boundaries of the
    # refresh times below (whole days apart) as well as between them
    days_before=st.integers(min_value=-60, max_value=900).map(float)
    | st.integers(min_value=-120, max_value=1800).map(lambda h: h / 2),
    channel=st.sampled_from(CHANNELS),
    amount=st.integers(min_value=1, max_value=20_000),
    category=st.sampled_from(CATEGORIES),
    tags=st.sampled_from(TAGS).map(tuple),
)
steps = st.lists(
    st.tuples(
        st.lists(happenings, max_size=8),
        # how far the refresh's now moves: often a little, sometimes back or far
        st.sampled_from([0, 1, 1, 2, 30, 90, 91, 275, -3]),
        # the mark's margin: none (every event below the mark), or so wide that every
        # event stays above it (counted once each through the folded list)
        st.sampled_from([timedelta(0), timedelta(days=10_000)]),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=st.lists(happenings, max_size=12), later=steps)
def test_incremental_metrics_equal_a_full_rebuild(
    db: Database, first: list[Happening], later: list[tuple[list[Happening], int, timedelta]]
) -> None:
    prog = factories.programme(db)
    people = [factories.member(db, prog) for _ in range(4)]
    _happen(db, prog, people, first)
    now = NOW
    _same(_metrics(db, prog, now), _metrics(db, prog, now, rebuild=True, keep=False))
    for done, days, settle in later:
        _happen(db, prog, people, done)
        now = now + timedelta(days=days)
        kept = _metrics(db, prog, now, settle=settle)
        _same(kept, _metrics(db, prog, now, rebuild=True, keep=False))


def _update(db: Database, prog: Programme, now: datetime, **kw: Any) -> member_metrics.Updated:
    with db.unit_of_work() as session:
        return member_metrics.update(
            session, programme_id=prog.id, now=now, settle=timedelta(0), **kw
        )


def test_only_members_whose_rows_can_change_are_recomputed_or_shifted(db: Database) -> None:
    prog = factories.programme(db)
    people = [factories.member(db, prog) for _ in range(4)]
    _happen(
        db,
        prog,
        people,
        [
            Happening(0, "purchase", 10),
            Happening(1, "purchase", 89.5),  # leaves the 90 days a day later
            Happening(2, "purchase", 364.5),  # leaves the 365 days a day later
            Happening(3, "purchase", -0.5),  # after now: counts a day later
        ],
    )
    assert _update(db, prog, NOW) == member_metrics.Updated(rebuilt=True, recomputed=3)
    assert _update(db, prog, NOW) == member_metrics.Updated(rebuilt=False, recomputed=0)
    assert _update(db, prog, NOW + timedelta(hours=1)).recomputed == 0
    # a day later: member 3's event is no longer in the future (recomputed), members 1
    # and 2 have a purchase that left the 90 or the 365 days (their counts shifted)
    day_later = member_metrics.Updated(rebuilt=False, recomputed=1, shifted=2)
    assert _update(db, prog, NOW + timedelta(days=1)) == day_later
    _happen(db, prog, people, [Happening(0, "review_submitted", 0)])
    # a new event is added to its member's row (none of the others is read)
    assert _update(db, prog, NOW + timedelta(days=1)) == member_metrics.Updated(False, 0, 0, 1)
    # a day back (a refresh that took its now before another committed): the same three
    assert _update(db, prog, NOW) == day_later
    # more than 90 days on or back, another definition, or asked: rebuilt from every event
    assert _update(db, prog, NOW + timedelta(days=91)).rebuilt
    assert _update(db, prog, NOW).rebuilt
    assert _update(db, prog, NOW, rebuild=True).rebuilt
    state = table_of(MemberMetricsState)
    with db.write_engine.begin() as connection:
        connection.execute(
            update(state).where(state.c.programme_id == prog.id).values(definition="older")
        )
    assert _update(db, prog, NOW).rebuilt
    assert not _update(db, prog, NOW).rebuilt  # the new definition was stored
    with db.write_engine.begin() as connection:
        member_metrics.forget(connection, prog.id)  # as a bulk load ends
    assert _update(db, prog, NOW).rebuilt


def test_recency_is_counted_from_the_kept_instant_to_each_refresh(db: Database) -> None:
    prog = factories.programme(db)
    people = [factories.member(db, prog)]
    _happen(db, prog, people, [Happening(0, "purchase", 10.25)])
    columns, _ = _metrics(db, prog, NOW)
    assert columns["metrics.recency_days"].tolist() == [10]
    columns, _ = _metrics(db, prog, NOW + timedelta(days=5))
    assert columns["metrics.recency_days"].tolist() == [15]
    assert columns["metrics.first_purchase_days"].tolist() == [15]


def _refreshed_pair(db: Database) -> tuple[Programme, list[Member]]:
    """Two members, one purchase, the metrics kept once; PostgreSQL only (these tests
    need other sessions that stay open)."""
    if db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite serialises writers")
    prog = factories.programme(db)
    people = [factories.member(db, prog) for _ in range(2)]
    _happen(db, prog, people, [Happening(0, "purchase", 3)])
    _metrics(db, prog, NOW)
    return prog, people


def test_an_event_committed_after_a_refresh_by_an_older_transaction_is_not_lost(
    db: Database,
) -> None:
    """A transaction makes an event id, a refresh runs and commits, then the
    transaction commits: its id is below what the refresh saw, yet the next refresh
    folds it in (the mark stays below the oldest open transaction)."""
    prog, people = _refreshed_pair(db)
    with db.write_engine.connect() as slow:
        slow.exec_driver_sql("SELECT 1")  # its transaction has begun
        _write(slow, prog, people, [Happening(1, "purchase", 2, amount=777)])
        time.sleep(0.05)  # the refresh's clock is past the event's id
        columns, _ = _metrics(db, prog, NOW)
        assert columns["metrics.purchases"].tolist() == [1, 0] or columns[
            "metrics.purchases"
        ].tolist() == [0, 1]
        slow.commit()
    kept = _metrics(db, prog, NOW)
    assert sorted(kept[0]["metrics.spend_90"].tolist()) == [777, 1000]
    _same(kept, _metrics(db, prog, NOW, rebuild=True, keep=False))


def test_a_role_that_cannot_see_other_sessions_keeps_its_mark(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's role without pg_monitor sees other roles' sessions as
    ``<insufficient privilege>``: it cannot know how old their transactions are, so the
    update keeps the mark it had (and says so) instead of moving past events they may
    still commit. A role that sees them moves it."""
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    prog, _ = _refreshed_pair(db)
    state = table_of(MemberMetricsState)

    def mark() -> uuid.UUID:
        with db.unit_of_work(write=False) as session:
            return session.execute(
                select(state.c.events_from).where(state.c.programme_id == prog.id)
            ).scalar_one()

    before = mark()
    time.sleep(0.01)  # the clock's millisecond moves on
    role = f"treu_plain_{uuid.uuid4().hex[:10]}"
    with db.write_engine.connect() as admin:
        admin.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        admin.exec_driver_sql(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
        )
        admin.commit()
    plain = Database(make_url(db.url).set(username=role).render_as_string(hide_password=False))
    try:
        with db.write_engine.connect() as other:
            other.exec_driver_sql("SELECT 1")  # another role's transaction, open
            with caplog.at_level("WARNING", logger=member_metrics.__name__):
                with plain.unit_of_work() as session:
                    member_metrics.update(
                        session, programme_id=prog.id, now=NOW, settle=timedelta(0)
                    )
            other.rollback()
        assert mark() == before
        assert "not visible in pg_stat_activity" in caplog.text
    finally:
        plain.dispose()
        with db.write_engine.connect() as admin:
            admin.exec_driver_sql(f'DROP OWNED BY "{role}"')
            admin.exec_driver_sql(f'DROP ROLE "{role}"')
            admin.commit()
    _metrics(db, prog, NOW)  # the test's own role sees every session
    assert mark() > before
