"""Member metrics read set-based, RFM saved, segments materialised with their history,
and the ``segments.refresh`` job safe to run twice: on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from tests import factories
from treu.db.session import Database
from treu.errors import Invalid
from treu.events.schemas import event_adapter
from treu.insights.metrics import member_table
from treu.insights.segmenting import SegmentIn, SegmentPatch, segments
from treu.kit.time import local_date, utc_now
from treu.members.models import Member
from treu.messaging.consents import consents
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.segments.errors import SegmentExists
from treu.segments.membership import slugs_of
from treu.segments.models import MemberScore, SegmentChange, SegmentMember
from treu.segments.scores import rfm_metrics_of, save_scores
from treu.tiers.models import MemberTier
from treu.worker.jobs import run_job


def _buy(db: Database, prog: Programme, who: Member, days_ago: float, **kw: Any) -> str:
    payload = factories.purchase_payload(
        prog, who, occurred_at=utc_now() - timedelta(days=days_ago), **kw
    )
    factories.ingest_one(db, payload)
    return str(payload["id"])


def _create(db: Database, prog: Programme, slug: str, expression: str) -> Any:
    with db.unit_of_work() as session:
        programme = programmes.get(session, prog.id)
        return segments.create(
            session,
            programme=programme,
            data=SegmentIn(slug=slug, name=slug.title(), expression=expression),
        )


def _refresh(db: Database, prog: Programme, now: datetime | None = None) -> dict[str, Any]:
    with db.unit_of_work() as session:
        programme = programmes.get(session, prog.id)
        return {r.slug: r for r in segments.refresh(session, programme=programme, now=now)}


def test_metrics_of_a_programme(db: Database) -> None:
    prog = factories.programme(db)
    anna, ben, cleo = (factories.member(db, prog) for _ in range(3))
    _buy(db, prog, anna, 10, lines=factories.contract_lines(), channel="app")  # 1157
    first = _buy(db, prog, anna, 100, amount_minor=5000)
    _buy(db, prog, anna, 400, amount_minor=9999)  # outside 365 days
    factories.ingest_one(
        db,
        factories.return_payload(
            prog,
            first,
            [{"sku": "sku-1", "quantity": 1}],
            occurred_at=utc_now() - timedelta(days=5),
        ),
    )
    _buy(db, prog, ben, 200, amount_minor=700, channel="web")
    factories.ingest(
        db,
        event_adapter.dump_python(
            event_adapter.validate_python(
                {
                    "id": factories.unique("review"),
                    "type": "review_submitted",
                    "programme": prog.slug,
                    "member": factories.member_ref(ben),
                    "occurred_at": (utc_now() - timedelta(days=20)).isoformat(),
                    "attributes": {"product_sku": "4001", "rating": 5},
                }
            )
        ),
    )
    with db.unit_of_work() as session:
        member = session.get_one(Member, cleo.id)
        consents.record(session, member=member, channel="email", granted=True, source="pos")
        consents.record(session, member=member, channel="sms", granted=True, source="pos")
        consents.record(session, member=member, channel="sms", granted=False, source="api")
    this_month = local_date(utc_now(), prog.timezone).month
    other_month = this_month % 12 + 1
    with db.unit_of_work() as session:
        session.get_one(Member, cleo.id).birthday = date(1990, this_month, 1)
        session.get_one(Member, ben.id).birthday = date(1985, other_month, 28)

    with db.unit_of_work() as session:
        session.get_one(Member, anna.id).language = "en"
        session.get_one(Member, ben.id).language = None
        session.merge(MemberTier(member_id=ben.id, programme_id=prog.id, tier="gold"))
        save_scores(
            session,
            programme_id=prog.id,
            frame_or_rows=[{"member_id": cleo.id, "persona": "P2", "p_alive": 0.25}],
        )
    with db.unit_of_work(write=False) as session:
        channels = {m.id: m.channel for m in session.scalars(select(Member))}

    with db.unit_of_work() as session:  # a write unit: the metrics use a temporary table
        table = member_table(session, programme=programmes.get(session, prog.id))
    row = {member_id: i for i, member_id in enumerate(table.ids_of(None))}
    a, b, c = row[anna.id], row[ben.id], row[cleo.id]
    cols = table.columns
    # the tier is read per value (positions grouped); the members' and the scores' texts
    # and numbers per column, one pass over each table
    assert cols["member.language"].tolist()[a] == "en"
    assert pd.isna(cols["member.language"].tolist()[b])
    assert cols["member.tier"].tolist()[b] == "gold"
    assert [cols["member.channel"].tolist()[i] for i in (a, b, c)] == [
        channels[who.id] for who in (anna, ben, cleo)
    ]
    assert cols["scores.persona"].tolist()[c] == "P2"
    assert pd.isna(cols["scores.persona"].tolist()[a])  # no score row
    assert pd.isna(cols["scores.rfm_segment"].tolist()[c])  # a score row, this one empty
    assert cols["scores.p_alive"].tolist()[c] == 0.25
    assert np.isnan(cols["scores.p_alive"].tolist()[a])
    assert cols["metrics.purchases"].tolist()[a] == 3
    assert cols["metrics.purchases_365"].tolist()[a] == 2
    assert cols["metrics.purchases_90"].tolist()[a] == 1
    assert cols["metrics.spend_365"].tolist()[a] == 1157 + 5000 - 5000  # the return
    assert cols["metrics.spend_90"].tolist()[a] == 1157 - 5000
    assert cols["metrics.returns_365"].tolist()[a] == 1
    assert cols["metrics.recency_days"].tolist()[a] == 10
    assert cols["metrics.first_purchase_days"].tolist()[a] == 400
    assert np.isnan(cols["metrics.recency_days"].tolist()[c])
    assert cols["metrics.engagements_365"].tolist()[b] == 1
    assert cols["metrics.engagements_90"].tolist()[b] == 1
    assert cols["member.birth_month"].tolist()[c] == this_month
    assert cols["member.birth_month"].tolist()[b] == other_month
    assert np.isnan(cols["member.birth_month"].tolist()[a])
    assert cols["member.birthday_month"].tolist() == [i == c for i in range(len(table))]

    def members_with(field: str, value: str) -> set[int]:
        at, values = table.sets[field]
        return {int(i) for i in at[values == value]}

    assert members_with("metrics.channels", "app") == {a}
    assert members_with("metrics.channels", "web") == {b}
    assert members_with("metrics.categories", "dairy") == {a}
    assert members_with("metrics.tags", "organic") == {a}
    assert members_with("metrics.engagement_types", "review_submitted") == {b}
    assert members_with("member.consents", "email") == {c}
    assert members_with("member.consents", "sms") == set()


def _rfm(db: Database, prog: Programme) -> dict[Any, tuple[Any, ...]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(
                MemberScore.member_id,
                MemberScore.rfm_r,
                MemberScore.rfm_f,
                MemberScore.rfm_m,
                MemberScore.rfm_segment,
                MemberScore.computed_at,
            ).where(MemberScore.programme_id == prog.id)
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_rfm_rewrites_only_the_rows_whose_scores_changed(db: Database) -> None:
    """A day later with no purchase everyone's recency grew by a day and no row is
    written; a purchase that moves one member rewrites the rows whose scores moved,
    and what is stored then equals RFM written from nothing."""
    prog = factories.programme(db)
    people = [factories.member(db, prog) for _ in range(6)]
    start = utc_now()
    for rank, who in enumerate(people[:5]):  # 0: best, 4: worst; 5 never buys
        for time in range(5 - rank):
            _buy(db, prog, who, 3 + 40 * rank + time, amount_minor=1000 * (5 - rank))
    _refresh(db, prog, now=start)
    first = _rfm(db, prog)
    assert set(first) == {p.id for p in people[:5]}
    assert {row[-1] for row in first.values()} == {start}

    _refresh(db, prog, now=start + timedelta(days=1))
    assert _rfm(db, prog) == first  # nothing rewritten, computed_at kept

    for time in range(8):  # the worst buyer becomes the best
        _buy(db, prog, people[4], 0.5 + time / 100, amount_minor=20_000)
    later = start + timedelta(days=2)
    _refresh(db, prog, now=later)
    moved = _rfm(db, prog)
    assert moved[people[4].id][:3] == (5, 5, 5)
    rewritten = {who for who, row in moved.items() if row[-1] == later}
    assert people[4].id in rewritten
    assert rewritten == {who for who in moved if moved[who][:4] != first[who][:4]}
    assert all(moved[who] == first[who] for who in set(moved) - rewritten)

    with db.unit_of_work() as session:  # from nothing: the same scores
        session.execute(MemberScore.__table__.delete())
    _refresh(db, prog, now=later)
    assert {k: v[:4] for k, v in _rfm(db, prog).items()} == {k: v[:4] for k, v in moved.items()}


def test_refresh_materialises_members_counts_and_history(db: Database) -> None:
    prog = factories.programme(db)
    anna, ben, _cleo = (factories.member(db, prog) for _ in range(3))
    _buy(db, prog, anna, 3, amount_minor=60_000, channel="app")
    _buy(db, prog, ben, 200, amount_minor=1_000)
    big = _create(db, prog, "big", "metrics.spend_365 > 50000")
    app = _create(db, prog, "app", "'app' in metrics.channels and scores.rfm_r >= 3")
    buyers = _create(db, prog, "buyers", "scores.rfm_segment != None")

    first = _refresh(db, prog)
    assert {k: (v.member_count, v.entered, v.left) for k, v in first.items()} == {
        "app": (1, 1, 0),
        "big": (1, 1, 0),
        "buyers": (2, 2, 0),
    }
    again = _refresh(db, prog)
    assert {k: (v.entered, v.left) for k, v in again.items()} == {
        "app": (0, 0),
        "big": (0, 0),
        "buyers": (0, 0),
    }
    with db.unit_of_work(write=False) as session:
        assert slugs_of(session, member_id=anna.id) == {"app", "big", "buyers"}
        assert slugs_of(session, member_id=ben.id) == {"buyers"}
        scores = {
            s.member_id: s
            for s in session.scalars(select(MemberScore).where(MemberScore.programme_id == prog.id))
        }
        assert scores[anna.id].rfm_segment is not None
        kept = rfm_metrics_of(session, member_id=anna.id, programme_id=prog.id)
        assert kept is not None
        assert (kept.frequency_365, kept.spend_365_minor) == (1, 60_000)

    # Later, anna's big spend is older than a year: she leaves "big".
    later = _refresh(db, prog, now=utc_now() + timedelta(days=400))
    assert (later["big"].member_count, later["big"].left) == (0, 1)
    with db.unit_of_work(write=False) as session:
        changes = session.execute(
            select(SegmentChange.member_id, SegmentChange.change)
            .where(SegmentChange.segment_id == big.id)
            .order_by(SegmentChange.id)
        ).all()
        assert [tuple(c) for c in changes] == [(anna.id, "entered"), (anna.id, "left")]
        assert (
            session.scalars(
                select(SegmentMember.member_id).where(SegmentMember.segment_id == big.id)
            ).all()
            == []
        )
    assert app.slug == "app"
    assert buyers.slug == "buyers"


def test_one_refresh_moves_members_of_several_segments_and_lets_closed_members_go(
    db: Database,
) -> None:
    prog = factories.programme(db)
    anna, ben, cleo = (factories.member(db, prog) for _ in range(3))
    for who in (anna, ben):
        _buy(db, prog, who, 3, amount_minor=2_000, channel="app")
    buyers = _create(db, prog, "buyers", "metrics.purchases >= 1")
    app = _create(db, prog, "app", "'app' in metrics.channels")
    _refresh(db, prog)
    # anna closes her account; cleo buys on the web; ben buys again
    with db.unit_of_work() as session:
        session.get_one(Member, anna.id).status = "closed"
    _buy(db, prog, cleo, 1, amount_minor=1_000, channel="web")
    second = _refresh(db, prog)
    assert {k: (v.member_count, v.entered, v.left) for k, v in second.items()} == {
        "buyers": (2, 1, 1),  # cleo in, anna out
        "app": (1, 0, 1),  # anna out
    }
    with db.unit_of_work(write=False) as session:
        assert slugs_of(session, member_id=anna.id) == set()
        assert slugs_of(session, member_id=ben.id) == {"buyers", "app"}
        assert slugs_of(session, member_id=cleo.id) == {"buyers"}
        history = session.execute(
            select(SegmentChange.segment_id, SegmentChange.member_id, SegmentChange.change).where(
                SegmentChange.segment_id.in_([buyers.id, app.id])
            )
        ).all()
    assert sorted(
        (s == buyers.id, m == anna.id, c) for s, m, c in history if m != ben.id
    ) == sorted(
        [
            (True, True, "entered"),
            (True, True, "left"),
            (False, True, "entered"),
            (False, True, "left"),
            (True, False, "entered"),  # cleo
        ]
    )
    assert sum(1 for s, m, _ in history if m == ben.id) == 2  # entered both, once
    assert app.slug == "app"
    # nothing moves the next time
    third = _refresh(db, prog)
    assert all(v.entered == v.left == 0 for v in third.values())


def test_paused_segments_are_skipped_and_count_for_no_one(db: Database) -> None:
    prog = factories.programme(db)
    anna = factories.member(db, prog)
    _buy(db, prog, anna, 1, amount_minor=100)
    seg = _create(db, prog, "buyers", "metrics.purchases > 0")
    _refresh(db, prog)
    with db.unit_of_work() as session:
        segments.update(
            session, segment=segments.get(session, seg.id), data=SegmentPatch(status="paused")
        )
    assert _refresh(db, prog) == {}
    with db.unit_of_work(write=False) as session:
        assert slugs_of(session, member_id=anna.id) == frozenset()


def test_invalid_or_duplicate_segments_are_refused(db: Database) -> None:
    prog = factories.programme(db)
    _create(db, prog, "vip", "metrics.spend_365 > 100")
    with pytest.raises(SegmentExists):
        _create(db, prog, "vip", "metrics.spend_365 > 100")
    with pytest.raises(Invalid) as caught:
        _create(db, prog, "broken", "metrics.spend_365 > 100 and scores.nope > 1")
    (error,) = caught.value.extra["errors"]
    assert (error["field"], error["line"], error["column"]) == ("expression", 1, 36)


def test_the_job_refreshes_every_programme_and_is_safe_to_run_twice(fresh_db: Database) -> None:
    # A database of its own: the job walks every programme, and the shared one holds
    # hundreds from the other tests.
    db = fresh_db
    made = []
    for n in (1, 2):
        prog = factories.programme(db)
        for _ in range(n):
            _buy(db, prog, factories.member(db, prog), 1, amount_minor=100)
        made.append((_create(db, prog, "buyers", "metrics.purchases > 0"), n))
    assert run_job(db, "segments.refresh") >= 2
    assert run_job(db, "segments.refresh") >= 2
    with db.unit_of_work(write=False) as session:
        for seg, buyers in made:
            refreshed = segments.get(session, seg.id)
            assert refreshed.member_count == buyers
            assert refreshed.computed_at is not None
            changes = session.scalars(
                select(SegmentChange.id).where(SegmentChange.segment_id == seg.id)
            ).all()
            assert len(changes) == buyers  # entered once, not again on the second run


@pytest.mark.parametrize(
    ("zone", "day"),
    [("America/Santiago", datetime(2024, 9, 8, 16, 0, tzinfo=UTC)),  # 00:00 -> 01:00
     ("America/Havana", datetime(2024, 11, 3, 16, 0, tzinfo=UTC))],  # 01:00 -> 00:00
)  # fmt: skip
def test_a_day_whose_midnight_the_clocks_skip_or_repeat(
    db: Database, zone: str, day: datetime
) -> None:
    """Where a DST change falls at midnight, local midnight does not exist or comes
    twice: a member enrolled on such a day, refreshed on it, is one day old, not an error."""
    prog = factories.programme(db, timezone=zone)
    anna = factories.member(db, prog)
    with db.unit_of_work() as session:
        session.get_one(Member, anna.id).enrolled_at = day - timedelta(days=1)
    seg = _create(db, prog, "new", "member.days_enrolled == 1")
    assert _refresh(db, prog, now=day)["new"].member_count == 1
    assert slugs_of_member(db, anna) == {seg.slug}


def slugs_of_member(db: Database, who: Member) -> set[str]:
    with db.unit_of_work(write=False) as session:
        return set(slugs_of(session, member_id=who.id))


def test_a_programme_that_fails_does_not_stop_the_others(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job refreshes the programmes after a failing one, then fails naming it (the
    scheduler keeps that message in job_runs; the next run tries again)."""
    from treu.worker.jobs import ProgrammesFailed

    db = fresh_db
    made = []
    for _ in range(3):
        prog = factories.programme(db)
        _buy(db, prog, factories.member(db, prog), 1, amount_minor=100)
        made.append((prog, _create(db, prog, "buyers", "metrics.purchases > 0")))
    broken = made[1][0].id
    real = segments.refresh

    def refresh(session: Any, *, programme: Programme, now: datetime | None = None) -> Any:
        if programme.id == broken:
            raise RuntimeError("the disk is full")
        return real(session, programme=programme, now=now)

    monkeypatch.setattr(segments, "refresh", refresh)
    with pytest.raises(ProgrammesFailed, match=r"1 programme\(s\) failed: .*the disk is full"):
        run_job(db, "segments.refresh")
    with db.unit_of_work(write=False) as session:
        counts = [segments.get(session, seg.id).member_count for _, seg in made]
    assert counts == [1, 0, 1]


def test_a_segment_deleted_while_it_is_refreshed_goes_cleanly(
    db: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete waits for the refresh that holds the segment's row, then removes the
    members that refresh wrote: no foreign-key error, nothing left behind."""
    import threading
    import time

    from tests.support.concurrency import postgres_only
    from treu.insights import segmenting
    from treu.segments.models import Segment

    postgres_only(backend)
    prog = factories.programme(db)
    _buy(db, prog, factories.member(db, prog), 1, amount_minor=100)
    seg = _create(db, prog, "buyers", "metrics.purchases > 0")
    started = threading.Event()
    real = segmenting.member_table

    def slow_table(*args: Any, **kwargs: Any) -> Any:
        started.set()
        time.sleep(1.0)  # the refresh holds the segment's row meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(segmenting, "member_table", slow_table)
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            _refresh(db, prog)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    worker = threading.Thread(target=refresh)
    worker.start()
    assert started.wait(10)
    with db.unit_of_work() as session:
        segments.delete(session, segment=segments.get(session, seg.id))
    worker.join(10)
    assert errors == []
    with db.unit_of_work(write=False) as session:
        assert session.get(Segment, seg.id) is None
        left = session.scalars(select(SegmentMember).where(SegmentMember.segment_id == seg.id))
        assert list(left) == []


def test_texts_and_numbers_read_per_column_as_the_rows_hold_them(
    db: Database, backend: str
) -> None:
    from sqlalchemy import literal, null, union_all

    from treu.insights.metrics import read_columns

    rows = union_all(
        select(literal(0).label("pos"), literal("gold").label("tier"), literal(1.5).label("x")),
        select(literal(1), null(), null()),
        select(literal(2), literal(""), literal(-2.0)),
    ).subquery()
    with db.unit_of_work(write=False) as session:
        frame = read_columns(
            session.connection(),
            select(*rows.c).order_by(rows.c.pos),
            ["pos", "tier", "x"],
            texts=("tier",),
        )
        assert frame["pos"].tolist() == [0, 1, 2]
        assert frame["tier"].tolist()[0] == "gold"
        assert pd.isna(frame["tier"].tolist()[1])
        assert frame["tier"].tolist()[2] == ""
        assert frame["x"].tolist()[0] == 1.5
        assert np.isnan(frame["x"].tolist()[1])
        if backend == "postgresql":  # one string per column: a separator inside is refused
            broken = select(literal(0).label("pos"), literal("a\x1fb").label("tier"))
            with pytest.raises(ValueError, match="U\\+001F"):
                read_columns(session.connection(), broken, ["pos", "tier"], texts=("tier",))


def test_the_positions_leave_the_planner_as_it_was(db: Database, backend: str) -> None:
    from sqlalchemy import text

    from tests.support.concurrency import postgres_only

    postgres_only(backend)
    prog = factories.programme(db)
    _buy(db, prog, factories.member(db, prog), 1, amount_minor=100)
    with db.unit_of_work() as session:
        table = member_table(session, programme=programmes.get(session, prog.id))
        assert len(table) == 1
        settings = session.execute(
            text("SELECT current_setting('enable_indexscan'), current_setting('enable_bitmapscan')")
        ).one()
        assert tuple(settings) == ("on", "on")
