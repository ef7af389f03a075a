"""/v1/segments and /v1/members/{id}/scores over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import time_machine
from sqlalchemy import select
from typer.testing import CliRunner

from tests import factories
from tests.api_helpers import Api, assert_problem
from treu import cli
from treu.db.session import Database
from treu.insights.segmenting import SegmentIn, segments
from treu.kit.pagination import encode_cursor
from treu.kit.time import utc_now
from treu.programmes.service import programmes
from treu.segments.models import MemberMetricsState


def test_segments_over_the_api(api: Api, db: Database) -> None:
    prog = factories.programme(db)
    anna, ben, cleo = (factories.member(db, prog) for _ in range(3))
    for who in (anna, ben):
        factories.ingest_one(
            db,
            factories.purchase_payload(
                prog, who, amount_minor=3000, occurred_at=utc_now() - timedelta(days=3)
            ),
        )
    admin, reader = api.headers("admin"), api.headers("members:read")
    client = api.client

    r = client.post(
        "/v1/segments",
        headers=admin,
        json={
            "programme": prog.slug,
            "slug": "buyers",
            "name": "Buyers",
            "expression": "metrics.purchases_365 >= 1 and scores.rfm_segment != None",
        },
    )
    assert r.status_code == 201, r.text
    segment = r.json()
    assert (segment["member_count"], segment["computed_at"]) == (0, None)
    sid = segment["id"]

    bad = client.post(
        "/v1/segments",
        headers=admin,
        json={"programme": prog.slug, "slug": "bad", "name": "Bad", "expression": "metrics.nope"},
    )
    body = assert_problem(bad, 422, "invalid_segment")
    assert body["errors"][0]["field"] == "expression"
    assert body["errors"][0]["column"] == 9
    assert_problem(
        client.post(
            "/v1/segments",
            headers=admin,
            json={"programme": prog.slug, "slug": "buyers", "name": "Again", "expression": "True"},
        ),
        409,
        "segment_exists",
    )
    assert client.post(f"/v1/segments/{sid}/refresh", headers=reader).status_code == 403

    r = client.post(f"/v1/segments/{sid}/refresh", headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["entered"], r.json()["left"], r.json()["segment"]["member_count"]) == (2, 0, 2)

    page = client.get(f"/v1/segments/{sid}/members", headers=reader, params={"limit": 1})
    assert page.status_code == 200, page.text
    rest = client.get(
        f"/v1/segments/{sid}/members",
        headers=reader,
        params={"limit": 1, "cursor": page.json()["next_cursor"]},
    )
    listed = [i["member_id"] for i in page.json()["items"] + rest.json()["items"]]
    assert sorted(listed) == sorted([str(anna.id), str(ben.id)])
    assert rest.json()["next_cursor"] is None

    for bad in ({"before": 10**30}, {"before": -1}, {"before": True}, {"before": "x"}):
        assert_problem(
            client.get(
                f"/v1/segments/{sid}/changes",
                headers=reader,
                params={"cursor": encode_cursor(bad)},
            ),
            422,
            "validation_error",
        )
    changes = client.get(f"/v1/segments/{sid}/changes", headers=reader).json()["items"]
    assert sorted((c["member_id"], c["change"]) for c in changes) == sorted(
        [(str(anna.id), "entered"), (str(ben.id), "entered")]
    )

    scores = client.get(f"/v1/members/{anna.id}/scores", headers=reader)
    assert scores.status_code == 200, scores.text
    assert scores.json()["segments"] == ["buyers"]
    assert (scores.json()["frequency_365"], scores.json()["spend_365_minor"]) == (1, 3000)
    assert scores.json()["recency_days"] == 3
    assert scores.json()["rfm_segment"] is not None
    as_of = scores.json()["metrics_as_of"]
    # Recency is counted to the moment of the request; the other metrics are as of the
    # refresh until the next one.
    with time_machine.travel(utc_now() + timedelta(days=10), tick=False):
        later = client.get(f"/v1/members/{anna.id}/scores", headers=reader).json()
    assert (later["recency_days"], later["frequency_365"], later["metrics_as_of"]) == (
        13,
        1,
        as_of,
    )
    none_yet = client.get(f"/v1/members/{cleo.id}/scores", headers=reader).json()
    assert none_yet["segments"] == []
    assert (none_yet["rfm_segment"], none_yet["recency_days"]) == (None, None)
    assert (none_yet["frequency_365"], none_yet["metrics_as_of"]) == (0, as_of)
    never = factories.member(db, factories.programme(db))  # a programme never refreshed
    unknown = client.get(f"/v1/members/{never.id}/scores", headers=reader).json()
    assert (unknown["frequency_365"], unknown["metrics_as_of"]) == (None, None)
    assert_problem(
        client.get(f"/v1/members/{prog.id}/scores", headers=reader), 404, "member_not_found"
    )

    r = client.patch(f"/v1/segments/{sid}", headers=admin, json={"status": "paused"})
    assert r.json()["status"] == "paused"
    assert client.get(f"/v1/members/{anna.id}/scores", headers=reader).json()["segments"] == []
    listed_segments = client.get("/v1/segments", headers=reader, params={"programme": prog.slug})
    assert [s["slug"] for s in listed_segments.json()["items"]] == ["buyers"]

    assert client.delete(f"/v1/segments/{sid}", headers=admin).status_code == 204
    assert_problem(client.get(f"/v1/segments/{sid}", headers=reader), 404, "segment_not_found")


def test_the_command_line_lists_and_refreshes(db: Database, runner: CliRunner) -> None:
    prog = factories.programme(db)
    anna = factories.member(db, prog)
    factories.ingest_one(db, factories.purchase_payload(prog, anna, amount_minor=500))
    with db.unit_of_work() as session:
        segments.create(
            session,
            programme=programmes.get(session, prog.id),
            data=SegmentIn(slug="buyers", name="Buyers", expression="metrics.purchases > 0"),
        )
    result = runner.invoke(cli.app, ["segments", "refresh", "--programme", prog.slug])
    assert result.exit_code == 0, result.output
    assert "buyers: 1 members (+1 -0)" in result.output
    listed = runner.invoke(cli.app, ["segments", "list", "--programme", prog.slug])
    assert listed.exit_code == 0, listed.output
    assert "buyers" in listed.output
    assert "never" not in listed.output


def test_the_command_line_rebuilds_the_kept_metrics_when_asked(
    db: Database, runner: CliRunner
) -> None:
    prog = factories.programme(db)
    anna = factories.member(db, prog)
    factories.ingest_one(db, factories.purchase_payload(prog, anna, amount_minor=500))

    def rebuilt_at() -> datetime:
        with db.unit_of_work(write=False) as session:
            return session.scalars(
                select(MemberMetricsState.rebuilt_at).where(
                    MemberMetricsState.programme_id == prog.id
                )
            ).one()

    args = ["segments", "refresh", "--programme", prog.slug]
    assert runner.invoke(cli.app, args).exit_code == 0
    first = rebuilt_at()  # a programme's first refresh rebuilds
    assert runner.invoke(cli.app, args).exit_code == 0
    assert rebuilt_at() == first  # the next ones update only what changed
    result = runner.invoke(cli.app, [*args, "--rebuild"])
    assert result.exit_code == 0, result.output
    assert rebuilt_at() > first
