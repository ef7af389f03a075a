"""Charity donations: charities per programme, donating points, per-charity totals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from tests import factories as f
from tests.api_helpers import Api
from treu import cli
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.kit.time import frozen
from treu.ledger.explain import render
from treu.ledger.models import Posting
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rewards.donations import CharityInactive, CharityNotFound, donations

TAFEL = {
    "code": "tafel",
    "name": {"de": "Tafel Deutschland e.V.", "en": "Tafel Deutschland (food banks)"},
    "description": {"de": "Lebensmittel retten", "en": "Rescuing food"},
    "url": "https://www.tafel.de",
}
NABU = {"code": "nabu", "name": {"de": "NABU", "en": "NABU (nature conservation)"}}


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code
    return body


def give(db: Database, who: Member, points: int) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(session, member=who, adjustment=Adjustment(points, "t"), actor="t")


def add_charity(api: Api, prog: Programme, body: dict[str, Any], scope: str = "admin") -> Any:
    return api.client.post(
        f"/v1/programmes/{prog.slug}/charities", json=body, headers=api.headers(scope)
    )


def donate(api: Api, who: Member, key: str | None = None, **body: Any) -> Any:
    return api.client.post(
        f"/v1/members/{who.id}/donations",
        json={"charity": "tafel", "points": 500} | body,
        headers=api.headers("members:write") | {"Idempotency-Key": key or f.unique("don")},
    )


def test_charities_are_configured_per_programme(api: Api, db: Database) -> None:
    prog = f.programme(db)
    other = f.programme(db)
    r = add_charity(api, prog, TAFEL)
    assert r.status_code == 201, r.text
    assert r.json()["name"]["de"] == "Tafel Deutschland e.V."
    assert r.json()["active"] is True
    problem(add_charity(api, prog, TAFEL), 409, "charity_exists")
    assert add_charity(api, other, TAFEL).status_code == 201  # another programme's
    problem(add_charity(api, prog, NABU, scope="members:write"), 403, "missing_scope")
    problem(add_charity(api, prog, {**NABU, "code": "Bad Code"}), 422, "validation_error")
    problem(add_charity(api, prog, {**NABU, "name": {}}), 422, "validation_error")
    assert add_charity(api, prog, NABU).status_code == 201
    listed = api.client.get(
        f"/v1/programmes/{prog.slug}/charities", headers=api.headers("members:read")
    ).json()
    assert [c["code"] for c in listed["items"]] == ["nabu", "tafel"]
    r = api.client.patch(
        f"/v1/programmes/{prog.slug}/charities/nabu",
        json={"active": False},
        headers=api.headers("admin"),
    )
    assert (r.status_code, r.json()["active"]) == (200, False)
    active = api.client.get(
        f"/v1/programmes/{prog.slug}/charities",
        params={"active": "true"},
        headers=api.headers("members:read"),
    ).json()
    assert [c["code"] for c in active["items"]] == ["tafel"]
    problem(
        api.client.patch(
            f"/v1/programmes/{prog.slug}/charities/nope",
            json={"active": False},
            headers=api.headers("admin"),
        ),
        404,
        "charity_not_found",
    )


def test_donate_points_directly(api: Api, db: Database) -> None:
    prog = f.programme(db, point_value_minor="0.5")
    add_charity(api, prog, TAFEL)
    anna = f.member(db, prog)
    give(db, anna, 1201)
    r = donate(api, anna, key="d-1", points=1001)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["charity"]["code"] == "tafel"
    assert (body["points"], body["value_minor"], body["currency"]) == (1001, 500, "EUR")
    again = donate(api, anna, key="d-1", points=1001)
    assert (again.status_code, again.json()) == (200, body)
    problem(donate(api, anna, key="d-1", points=5), 409, "idempotency_conflict")
    short = problem(donate(api, anna, points=201), 422, "insufficient_points")
    assert short["available"] == 200
    problem(donate(api, anna, charity="nope"), 404, "charity_not_found")
    with db.unit_of_work(write=False) as session:
        posting = session.get_one(Posting, uuid.UUID(body["posting_id"]))
        assert posting.kind == "redeem"
        assert posting.points == -1001
        assert posting.explanation == "Donation to Tafel Deutschland (food banks): -1001"
        assert render(posting.details, "de") == "Spende an Tafel Deutschland e.V.: -1001"
    assert f.balance(db, anna).available == 200
    assert f.verify(db, prog) == []


def test_an_inactive_charity_takes_no_donations(api: Api, db: Database) -> None:
    prog = f.programme(db)
    add_charity(api, prog, {**TAFEL, "active": False})
    anna = f.member(db, prog)
    give(db, anna, 1000)
    problem(donate(api, anna), 422, "charity_inactive")
    with pytest.raises(CharityInactive), db.unit_of_work() as session:
        donations.record(
            session,
            member_id=anna.id,
            programme_id=prog.id,
            charity="tafel",
            points=10,
            value_minor=10,
            currency="EUR",
            redemption_id=uuid.uuid4(),
        )
    assert f.balance(db, anna).available == 1000


def test_a_redeemed_donation_reward_is_recorded_once(api: Api, db: Database) -> None:
    """What the rewards feature calls after burning the points of a donation reward."""
    prog = f.programme(db)
    charity_id = uuid.UUID(add_charity(api, prog, TAFEL).json()["id"])
    anna = f.member(db, prog)
    redemption = uuid.uuid4()

    def record(charity: str | uuid.UUID = "tafel", points: int = 500) -> Any:
        with db.unit_of_work() as session:
            return donations.record(
                session,
                member_id=anna.id,
                programme_id=prog.id,
                charity=charity,
                points=points,
                value_minor=points,
                currency="EUR",
                redemption_id=redemption,
            )

    first = record()
    assert record(charity_id).id == first.id  # by id, same redemption: the same donation
    assert (first.points, first.value_minor, first.redemption_id) == (500, 500, redemption)
    with pytest.raises(CharityNotFound):
        record("nope")
    summary = api.client.get(
        f"/v1/programmes/{prog.slug}/donations/summary", headers=api.headers("admin")
    ).json()
    assert summary["items"][0]["points"] == 500


def test_per_charity_totals_for_a_period(api: Api, db: Database, tmp_path: Any) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    add_charity(api, prog, TAFEL)
    add_charity(api, prog, NABU)
    add_charity(api, prog, {"code": "empty", "name": {"en": "Nobody gives here"}})
    people = [f.member(db, prog) for _ in range(3)]
    for who in people:
        give(db, who, 10_000)
    # 23:30 in Berlin on 31 March is 21:30 UTC: it belongs to March.
    march_end = datetime(2026, 3, 31, 21, 30, tzinfo=UTC)
    april = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
    plan = [
        (march_end, people[0], "tafel", 100),
        (march_end, people[0], "tafel", 200),
        (march_end, people[1], "tafel", 300),
        (march_end, people[2], "nabu", 50),
        (april, people[2], "tafel", 1000),
    ]
    for at, who, charity, points in plan:
        with frozen(at):
            assert donate(api, who, charity=charity, points=points).status_code == 201

    def summary(**params: str) -> dict[str, Any]:
        r = api.client.get(
            f"/v1/programmes/{prog.slug}/donations/summary",
            params=params,
            headers=api.headers("admin"),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    march = summary(**{"from": "2026-03-01", "to": "2026-03-31", "lang": "de"})
    assert (march["from"], march["to"], march["currency"]) == ("2026-03-01", "2026-03-31", "EUR")
    rows = [(x["code"], x["donations"], x["donors"], x["points"]) for x in march["items"]]
    assert rows == [("tafel", 3, 2, 600), ("nabu", 1, 1, 50), ("empty", 0, 0, 0)]
    assert march["items"][0]["name"] == "Tafel Deutschland e.V."
    assert (march["total_points"], march["total_value_minor"]) == (650, 650)
    everything = summary()
    assert [(x["code"], x["donors"], x["points"]) for x in everything["items"][:2]] == [
        ("tafel", 3, 1600),
        ("nabu", 1, 50),
    ]
    april_only = summary(**{"from": "2026-04-01"})
    assert april_only["total_points"] == 1000
    problem(
        api.client.get(
            f"/v1/programmes/{prog.slug}/donations/summary",
            params={"from": "2026-04-02", "to": "2026-04-01"},
            headers=api.headers("admin"),
        ),
        422,
        "validation_error",
    )
    problem(
        api.client.get(
            f"/v1/programmes/{prog.slug}/donations/summary", headers=api.headers("members:read")
        ),
        403,
        "missing_scope",
    )
    with db.unit_of_work(write=False) as session:
        member_ids = session.scalars(
            select(Posting.member_id).where(Posting.programme_id == prog.id)
        ).all()
    assert set(member_ids) == {p.id for p in people}
    assert f.verify(db, prog) == []


def test_the_cli_prints_the_totals(api: Api, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = f.programme(db)
    add_charity(api, prog, TAFEL)
    anna = f.member(db, prog)
    give(db, anna, 1000)
    donate(api, anna, points=750)
    monkeypatch.setattr(cli, "open_database", lambda: db)
    monkeypatch.setattr(cli, "console", Console(soft_wrap=True, width=200))
    monkeypatch.setattr(cli, "err", Console(stderr=True, soft_wrap=True, width=200))
    today = datetime.now(UTC).date()
    result = CliRunner().invoke(
        cli.app,
        [
            "donations",
            "summary",
            "--programme",
            prog.slug,
            "--from",
            f"{today - timedelta(days=1):%Y-%m-%d}",
            "--to",
            f"{today + timedelta(days=1):%Y-%m-%d}",
            "--lang",
            "de",
        ],
    )
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if "tafel" in x)
    assert "Tafel Deutschland e.V." in line
    assert "750" in line
    assert "7,50" in line
    result = CliRunner().invoke(cli.app, ["donations", "summary", "--programme", "nope"])
    assert result.exit_code == 1
    assert "nope" in result.stderr
