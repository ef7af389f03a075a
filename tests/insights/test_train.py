"""``treu insights train``: every model from the history in the database, scores on the
members, a new version of each model per training, listed by ``GET /v1/insights/models``;
the worker's ``insights.train`` does the same for every programme."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests import factories as f
from tests.api_helpers import Api, assert_problem
from treu import cli
from treu.db.session import Database
from treu.demo.bulk import load_bulk
from treu.events.models import PurchaseLine
from treu.insights.segmenting import SegmentIn, segments
from treu.insights.train import STEPS, train
from treu.programmes.service import programmes
from treu.segments.models import MemberScore, Segment
from treu.worker.jobs import run_job

NOW = datetime(2026, 9, 1, 3, 0, tzinfo=UTC)


def _programme(db: Database, members: int = 400, purchases: int = 6000) -> str:
    slug = f.unique("train")
    load_bulk(db, members=members, purchases=purchases, seed=11, now=NOW, slug=slug)
    return slug


def test_train_writes_scores_and_versions(db: Database) -> None:
    slug = _programme(db)
    with db.unit_of_work() as session:
        segment = segments.create(
            session,
            programme=programmes.get(session, slug),
            data=SegmentIn(
                slug="likely-alive", name="Likely alive", expression="scores.p_alive > 0.5"
            ),
        )
        segment_id = segment.id
    seen: list[tuple[str, str]] = []
    report = train(db, programme=slug, now=NOW, on_step=lambda s: seen.append((s.name, s.status)))
    assert [s.name for s in report.steps] == list(STEPS)
    assert seen[0] == ("history", "running")
    assert [name for name, status in seen if status != "running"] == list(STEPS)
    for name in ("history", "clv", "personas"):
        assert report.step(name).status == "done", report.step(name).note
    assert report.step("segments").status == "done", report.step("segments").note
    assert report.step("churn").status == "done", report.step("churn").note
    assert report.step("clv").version == 1
    assert report.step("personas").version == 1
    with db.unit_of_work(write=False) as session:
        from treu.segments.models import InsightModel

        stamps = set(session.scalars(select(InsightModel.trained_at).where(
            InsightModel.programme_id == programmes.get(session, slug).id
        )))  # fmt: skip
    assert stamps == {NOW}  # the training's own time, not the wall clock

    with db.unit_of_work(write=False) as session:
        pid = programmes.get(session, slug).id
        rows = session.execute(
            select(MemberScore.p_alive, MemberScore.clv_365_minor, MemberScore.persona).where(
                MemberScore.programme_id == pid
            )
        ).all()
        buyers = session.scalar(
            select(func.count(func.distinct(PurchaseLine.member_id))).where(
                PurchaseLine.programme_id == pid
            )
        )
    assert buyers is not None
    assert buyers > 350  # the others never bought: nothing to score
    alive = [r.p_alive for r in rows if r.p_alive is not None]
    assert len(alive) == buyers
    assert all(0.0 <= p <= 1.0 for p in alive)
    assert all(r.clv_365_minor >= 0 for r in rows if r.p_alive is not None)
    personas = {r.persona for r in rows if r.persona is not None}
    k = report.step("personas").metrics["k"]
    assert personas == {f"P{i}" for i in range(1, k + 1)}

    with db.unit_of_work(write=False) as session:
        segment = session.get_one(Segment, segment_id)
        expected = sum(1 for p in alive if p > 0.5)
        assert segment.member_count == expected > 0  # the scores of this training
        assert (
            session.scalar(
                select(func.count())
                .select_from(MemberScore)
                .where(MemberScore.programme_id == pid, MemberScore.rfm_segment.is_not(None))
            )
            == buyers
        )

    again = train(db, programme=slug, now=NOW)
    assert again.step("clv").version == 2
    assert again.step("personas").version == 2
    assert again.step("churn").version == 2
    with db.unit_of_work(write=False) as session:
        risks = session.scalars(
            select(MemberScore.churn_risk).where(
                MemberScore.programme_id == pid, MemberScore.p_alive.is_not(None)
            )
        ).all()
    assert len(risks) == buyers
    assert all(r is not None and 0.0 <= r <= 1.0 for r in risks)


def test_models_are_listed_with_metrics(db: Database, api: Api) -> None:
    slug = _programme(db, members=200, purchases=3000)
    train(db, programme=slug, now=NOW)
    train(db, programme=slug, now=NOW)
    r = api.client.get(
        "/v1/insights/models", params={"programme": slug}, headers=api.headers("admin")
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["programme"] == slug
    clv = [m for m in body["models"] if m["kind"] == "clv"]
    assert [m["version"] for m in clv] == [2, 1]
    assert clv[0]["metrics"]["customers"] == 200
    assert set(clv[0]["params"]["bgnbd"]) == {"r", "alpha", "a", "b"}
    only = api.client.get(
        "/v1/insights/models",
        params={"programme": slug, "kind": "personas"},
        headers=api.headers("admin"),
    ).json()
    assert {m["kind"] for m in only["models"]} == {"personas"}
    assert only["models"][0]["params"]["personas"][0]["de"]

    refused = api.client.get(
        "/v1/insights/models", params={"programme": slug}, headers=api.headers("members:read")
    )
    assert refused.status_code == 403
    missing = api.client.get(
        "/v1/insights/models", params={"programme": "no-such"}, headers=api.headers("admin")
    )
    assert_problem(missing, 404, missing.json()["code"])


def test_the_command_reports_each_step(db: Database, runner: CliRunner) -> None:
    slug = _programme(db, members=150, purchases=2000)
    result = runner.invoke(cli.app, ["insights", "train", "--programme", slug])
    assert result.exit_code == 0, result.output
    for name in STEPS:
        assert name in result.output
    assert "trained in" in result.output


def test_an_empty_programme_skips_what_needs_purchases(db: Database) -> None:
    prog = f.programme(db)
    f.member(db, prog)
    report = train(db, programme=prog.slug, now=NOW)
    assert report.step("history").status == "done"
    assert report.step("clv").status == "skipped"
    assert report.step("personas").status == "skipped"


@pytest.mark.timeout(300)
def test_the_nightly_job_trains_every_programme(fresh_db: Database) -> None:
    first = _programme(fresh_db, members=120, purchases=1500)
    second = _programme(fresh_db, members=150, purchases=1500)
    trained = run_job(fresh_db, "insights.train", now=NOW)
    assert trained >= 4  # clv and personas of each, at least
    with fresh_db.unit_of_work(write=False) as session:
        for slug in (first, second):
            pid = programmes.get(session, slug).id
            buyers = session.scalar(
                select(func.count(func.distinct(PurchaseLine.member_id))).where(
                    PurchaseLine.programme_id == pid
                )
            )
            scored = session.scalar(
                select(func.count())
                .select_from(MemberScore)
                .where(MemberScore.programme_id == pid, MemberScore.p_alive.is_not(None))
            )
            assert scored == buyers
            assert buyers > 100


def test_a_step_skipped_later_takes_its_old_results_back_and_a_failing_one_stops_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three years on nobody bought in the last year: personas and recommendations are
    skipped, and the old persona codes (which would name other groups after a new
    training) and stored recommendations go; a step that fails is reported as failed,
    keeps its old results, and the steps after it still run."""
    from datetime import timedelta

    from treu.insights import train as training
    from treu.segments.models import MemberRecommendation

    slug = _programme(db)
    first = train(db, programme=slug, now=NOW)
    assert first.step("personas").status == "done"
    assert first.step("recommend").status == "done", first.step("recommend").note

    def stored() -> tuple[int, int]:
        with db.unit_of_work(write=False) as session:
            pid = programmes.get(session, slug).id
            personas = session.scalar(
                select(func.count()).where(
                    MemberScore.programme_id == pid, MemberScore.persona.is_not(None)
                )
            )
            recommended = session.scalar(
                select(func.count()).where(MemberRecommendation.programme_id == pid)
            )
        return int(personas or 0), int(recommended or 0)

    before = stored()
    assert before[0] > 0
    assert before[1] > 0

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training, "find_personas", broken)
    failed = train(db, programme=slug, now=NOW)
    assert failed.step("personas").status == "failed"
    assert "RuntimeError: out of memory" in failed.step("personas").note
    assert [failed.step(s).status for s in ("recommend", "segments")] == ["done", "done"]
    assert stored() == before  # a failure keeps what the last training wrote
    monkeypatch.undo()

    later = train(db, programme=slug, now=NOW + timedelta(days=3 * 365))
    assert later.step("personas").status == "skipped"
    assert later.step("recommend").status == "skipped"
    assert later.step("clv").status == "done"
    assert stored() == (0, 0)


def test_only_members_who_bought_in_the_last_year_get_stored_recommendations(
    db: Database,
) -> None:
    """Five old purchases of one product do not make a member active (the model's
    weights add up over days; activity is the date of the last purchase)."""
    from datetime import timedelta

    from treu.segments.models import MemberRecommendation

    prog = f.programme(db)
    old, recent = f.member(db, prog), f.member(db, prog)
    milk = {"sku": "4001", "name": "Milch", "category": "dairy", "tags": []}
    bread = {"sku": "2001", "name": "Brot", "category": "bakery", "tags": []}
    for days in (500, 510, 520, 530, 540):
        f.ingest(
            db,
            f.purchase_payload(
                prog, old, lines=[{**milk, "quantity": 1, "unit_price_minor": 99}],
                occurred_at=NOW - timedelta(days=days),
            ),
        )  # fmt: skip
    for days in (5, 40):
        f.ingest(
            db,
            f.purchase_payload(
                prog, recent,
                lines=[{**p, "quantity": 1, "unit_price_minor": 99} for p in (milk, bread)],
                occurred_at=NOW - timedelta(days=days),
            ),
        )  # fmt: skip
    report = train(db, programme=prog.slug, now=NOW)
    assert report.step("recommend").status == "done", report.step("recommend").note
    with db.unit_of_work(write=False) as session:
        members = set(
            session.scalars(
                select(MemberRecommendation.member_id).where(
                    MemberRecommendation.programme_id == prog.id
                )
            )
        )
    assert members == {recent.id}


def test_no_churn_probability_is_made_up_from_single_purchases(db: Database) -> None:
    """Everyone bought once: BG/NBD cannot be fitted and the model has nothing to learn
    from, so churn is skipped rather than writing days-since-purchase as a probability."""
    from datetime import timedelta

    prog = f.programme(db)
    for days in (3, 30, 60, 90, 120, 150):
        f.ingest(
            db, f.purchase_payload(prog, f.member(db, prog), occurred_at=NOW - timedelta(days=days))
        )
    report = train(db, programme=prog.slug, now=NOW)
    assert report.step("churn").status == "skipped", report.step("churn").note
    assert "no churn probability" in report.step("churn").note
    with db.unit_of_work(write=False) as session:
        risks = session.scalars(
            select(MemberScore.churn_risk).where(MemberScore.programme_id == prog.id)
        ).all()
    assert all(r is None for r in risks)


def test_the_nightly_job_fails_naming_a_failed_step(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from treu.insights import train as training
    from treu.worker.jobs import ProgrammesFailed

    slug = _programme(fresh_db, members=120, purchases=1500)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training, "find_personas", broken)
    with pytest.raises(ProgrammesFailed, match=rf"{slug}: personas: RuntimeError: out of memory"):
        run_job(fresh_db, "insights.train", now=NOW)
