"""member_scores written set-based per column group, and the registry of trained models."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from sqlalchemy import select

from tests import factories
from treu.db.session import Database
from treu.segments.models import MemberScore
from treu.segments.models_registry import latest_model, list_models, record_model
from treu.segments.scores import save_scores


def _scores(db: Database, prog_id: object) -> dict[object, MemberScore]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(select(MemberScore).where(MemberScore.programme_id == prog_id))
        return {row.member_id: row for row in rows}


def test_each_computation_writes_only_its_own_columns(db: Database) -> None:
    prog = factories.programme(db)
    a, b = factories.member(db, prog), factories.member(db, prog)
    rfm = pd.DataFrame(
        {
            "member_id": [a.id, b.id],
            "recency_days": [3, 200],  # not a score column: ignored
            "rfm_r": [5, 1],
            "rfm_f": [5, 1],
            "rfm_m": [4, 1],
            "rfm_segment": ["champions", "lost"],
        }
    )
    with db.unit_of_work() as session:
        assert save_scores(session, programme_id=prog.id, frame_or_rows=rfm) == 2
    clv = pd.DataFrame(
        {
            "member_id": [str(a.id)],
            "clv_365_minor": [1234.6],
            "p_alive": [0.9],
            "churn_risk": [math.nan],
        }
    )
    with db.unit_of_work() as session:
        save_scores(
            session, programme_id=prog.id, frame_or_rows=clv, columns=["clv_365_minor", "p_alive"]
        )
    got = _scores(db, prog.id)
    assert (got[a.id].rfm_segment, got[a.id].rfm_r, got[a.id].rfm_m) == ("champions", 5, 4)
    assert (got[a.id].clv_365_minor, got[a.id].p_alive, got[a.id].churn_risk) == (1235, 0.9, None)
    assert got[b.id].clv_365_minor is None
    assert got[b.id].rfm_segment == "lost"


def test_rows_a_new_member_and_missing_values(db: Database) -> None:
    prog = factories.programme(db)
    a = factories.member(db, prog)
    with db.unit_of_work() as session:
        save_scores(
            session,
            programme_id=prog.id,
            frame_or_rows=[{"member_id": a.id, "persona": "weekend families", "churn_risk": None}],
        )
    got = _scores(db, prog.id)[a.id]
    assert (got.persona, got.churn_risk, got.clv_365_minor) == ("weekend families", None, None)
    assert got.rfm_r is None


def test_members_of_another_programme_are_not_written(db: Database) -> None:
    prog, other = factories.programme(db), factories.programme(db)
    mine, theirs = factories.member(db, prog), factories.member(db, other)
    with db.unit_of_work() as session:
        written = save_scores(
            session,
            programme_id=prog.id,
            frame_or_rows=[
                {"member_id": mine.id, "p_alive": 0.5},
                {"member_id": theirs.id, "p_alive": 0.5},
            ],
        )
    assert written == 1
    assert set(_scores(db, prog.id)) == {mine.id}
    assert _scores(db, other.id) == {}


def test_a_model_that_no_longer_scores_a_member_clears_only_its_columns(db: Database) -> None:
    prog, other = factories.programme(db), factories.programme(db)
    a, b, c = (factories.member(db, prog) for _ in range(3))
    theirs = factories.member(db, other)
    with db.unit_of_work() as session:
        for programme_id, who in ((prog.id, (a, b, c)), (other.id, (theirs,))):
            save_scores(
                session,
                programme_id=programme_id,
                frame_or_rows=[
                    {"member_id": m.id, "p_alive": 0.5, "clv_365_minor": 100, "persona": "P1"}
                    for m in who
                ],
            )
    with db.unit_of_work() as session:  # retrained: only a is scored now
        save_scores(
            session,
            programme_id=prog.id,
            frame_or_rows=[{"member_id": a.id, "p_alive": 0.75, "clv_365_minor": 300}],
            clear_others=True,
        )
    got = _scores(db, prog.id)
    assert (got[a.id].p_alive, got[a.id].clv_365_minor) == (0.75, 300)
    for m in (b, c):
        assert (got[m.id].p_alive, got[m.id].clv_365_minor) == (None, None)
        assert got[m.id].persona == "P1"  # another model's column
    mine = _scores(db, other.id)[theirs.id]  # another programme
    assert (mine.p_alive, mine.clv_365_minor) == (0.5, 100)


def test_saving_twice_in_one_unit_of_work_and_refusals(db: Database) -> None:
    prog = factories.programme(db)
    a = factories.member(db, prog)
    with db.unit_of_work() as session:
        save_scores(
            session, programme_id=prog.id, frame_or_rows=[{"member_id": a.id, "p_alive": 0.1}]
        )
        save_scores(
            session, programme_id=prog.id, frame_or_rows=[{"member_id": a.id, "p_alive": 0.2}]
        )
        with pytest.raises(ValueError, match="more than once"):
            save_scores(
                session,
                programme_id=prog.id,
                frame_or_rows=[
                    {"member_id": a.id, "p_alive": 0.3},
                    {"member_id": a.id, "p_alive": 0.4},
                ],
            )
        with pytest.raises(ValueError, match="not a score column"):
            save_scores(
                session,
                programme_id=prog.id,
                frame_or_rows=[{"member_id": a.id}],
                columns=["email"],
            )
    assert _scores(db, prog.id)[a.id].p_alive == 0.2


def test_many_members_in_few_statements(db: Database) -> None:
    from sqlalchemy import event

    prog = factories.programme(db)
    ids = [factories.member(db, prog).id for _ in range(30)]
    frame = pd.DataFrame({"member_id": ids, "churn_risk": [i / 30 for i in range(30)]})
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    engine = db.write_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with db.unit_of_work() as session:
            assert save_scores(session, programme_id=prog.id, frame_or_rows=frame) == 30
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    scored = _scores(db, prog.id)
    assert sorted(round(s.churn_risk or 0, 6) for s in scored.values()) == [
        round(i / 30, 6) for i in range(30)
    ]
    assert len([s for s in statements if "member_scores" in s]) <= 2


def test_models_get_the_next_version_per_kind(db: Database) -> None:
    prog = factories.programme(db)
    with db.unit_of_work() as session:
        first = record_model(
            session, programme_id=prog.id, kind="clv", metrics={"ll": -1.0}, params={"r": 0.2}
        )
        second = record_model(
            session,
            programme_id=prog.id,
            kind="clv",
            metrics={"ll": -0.5},
            params={},
            artifact=b"x",
        )
        churn = record_model(session, programme_id=prog.id, kind="churn", metrics={}, params={})
        assert (first.version, second.version, churn.version) == (1, 2, 1)
        with pytest.raises(ValueError, match="horoscope"):
            record_model(session, programme_id=prog.id, kind="horoscope", metrics={}, params={})
    with db.unit_of_work(write=False) as session:
        assert [(m.kind, m.version) for m in list_models(session, programme_id=prog.id)] == [
            ("churn", 1),
            ("clv", 2),
            ("clv", 1),
        ]
        assert [m.version for m in list_models(session, programme_id=prog.id, kind="clv")] == [2, 1]
        latest = latest_model(session, programme_id=prog.id, kind="clv")
        assert latest is not None
        assert (latest.metrics, latest.artifact) == ({"ll": -0.5}, b"x")
