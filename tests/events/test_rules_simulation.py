"""Rule simulation: replaying a period's events through a draft rule set and through the
published rules, without writing anything."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests import factories as f
from tests.api_helpers import make_api
from treu.db.session import Database
from treu.errors import Invalid
from treu.events.models import Event
from treu.events.simulation import SimulationIn, liability_minor, simulate
from treu.ledger.models import Posting
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rules.models import Rule, RuleUsage, RuleVersion
from treu.rules.service import rules
from treu.rules.spec import RuleSpec

T0 = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)  # a Wednesday; Europe/Berlin is UTC+2
FROM = T0 - timedelta(days=1)
UNTIL = T0 + timedelta(days=2)
NOW = T0 + timedelta(days=5)

ORGANIC_X2: dict[str, Any] = {
    "name": "Organic x2",
    "trigger": "purchase",
    "line_condition": "'organic' in line.tags",
    "effect": {"type": "multiplier", "factor": "2", "scope": "lines"},
}
REVIEW_DAILY: dict[str, Any] = {
    "name": "Review bonus",
    "trigger": "review_submitted",
    "effect": {"type": "fixed", "points": 50},
    "limits": [{"per": "day", "max_count": 1}],
}


def draft(db: Database, prog: Programme, spec: dict[str, Any]) -> Rule:
    with db.unit_of_work() as session:
        return rules.create(
            session, programme=prog, spec=RuleSpec.model_validate(spec), actor="test"
        )


def publish(db: Database, prog: Programme, spec: dict[str, Any]) -> Rule:
    rule = draft(db, prog, spec)
    with db.unit_of_work() as session:
        return rules.publish(session, rules.get(session, rule.id), actor="test")


def line(sku: str, price: int, *, quantity: int = 1, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price_minor": price, "tags": list(tags)}


def buy(
    db: Database, prog: Programme, who: Member | None, at: datetime, lines: list[dict[str, Any]]
) -> dict[str, Any]:
    out = f.ingest_one(db, f.purchase_payload(prog, who, lines=lines, occurred_at=at), now=NOW)
    assert out.body is not None
    return out.body.public()


def review(db: Database, prog: Programme, who: Member, at: datetime) -> dict[str, Any]:
    payload = {
        "id": f.unique("review"),
        "type": "review_submitted",
        "programme": prog.slug,
        "member": {"member_id": str(who.id)},
        "occurred_at": at.isoformat(),
        "attributes": {"product_sku": "4001", "rating": 5},
    }
    out = f.ingest_one(db, payload, now=NOW)
    assert out.body is not None
    return out.body.public()


def run(
    db: Database,
    prog: Programme,
    *,
    start: datetime = FROM,
    end: datetime = UNTIL,
    **extra: Any,
) -> dict[str, Any]:
    request = SimulationIn.model_validate(
        {"programme": prog.slug, "from": start, "until": end, **extra}
    )
    with db.unit_of_work(write=False) as session:
        return simulate(session, request).model_dump(mode="json")


def by_rule(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["rule_id"]: item for item in summary["by_rule"]}


def test_draft_doubling_organic_shows_the_extra_points(db: Database) -> None:
    prog = f.programme(db, point_value_minor="0.5")
    anna, ben = f.member(db, prog), f.member(db, prog)
    # anna: 2 x 1.29 organic + 8.99 = 11.57 -> base 11; organic 2.58 -> +2 when doubled
    first = buy(db, prog, anna, T0, f.contract_lines())
    # ben: 2 x 5.00 organic + 3.45 = 13.45 -> base 13; organic 10.00 -> +10 when doubled
    second = buy(
        db,
        prog,
        ben,
        T0 + timedelta(hours=1),
        [line("a", 500, quantity=2, tags=("organic",)), line("b", 345)],
    )
    buy(db, prog, None, T0 + timedelta(hours=2), [line("c", 9_000, tags=("organic",))])
    buy(db, prog, anna, UNTIL + timedelta(hours=1), [line("d", 5_000, tags=("organic",))])
    organic = draft(db, prog, ORGANIC_X2)  # a draft: the ledger never saw it

    result = run(db, prog)

    credited = first["points"]["earned"] + second["points"]["earned"]
    assert credited == 24
    assert result["events"]["purchases"] == 3  # the one after `until` is outside
    assert result["events"]["anonymous"] == 1
    published, drafted = result["published"], result["draft"]
    assert published["points"] == credited
    assert published["members"] == 2
    assert drafted["points"] == credited + 2 + 10
    assert result["difference"] == {
        "points": 12,
        "liability_minor": drafted["liability_minor"] - published["liability_minor"],
        "members": 0,
    }
    # 24 points x 0.5 = 12; 36 x 0.5 = 18 (half-up on whole minor units)
    assert (published["liability_minor"], drafted["liability_minor"]) == (12, 18)
    assert published["currency"] == "EUR"
    assert by_rule(published).keys() == {"base"}
    rows = by_rule(drafted)
    assert rows[str(organic.id)] == {
        "rule_id": str(organic.id),
        "name": "Organic x2",
        "points": 12,
        "awards": 2,
        "members": 2,
        "liability_minor": 6,
    }
    assert rows["base"]["points"] == credited
    assert [r["points"] for r in drafted["by_rule"]] == sorted(
        (r["points"] for r in drafted["by_rule"]), reverse=True
    )
    assert any("half-up" in note for note in result["notes"])
    assert any("Returns are ignored" in note for note in result["notes"])
    assert result["seconds"] >= 0
    assert result["period"] == {
        "from": "2026-06-09T09:00:00Z",
        "until": "2026-06-12T09:00:00Z",
        "timezone": "Europe/Berlin",
    }


def test_daily_limited_review_counts_one_award_per_member_per_day(db: Database) -> None:
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    day = datetime(2026, 6, 10, tzinfo=UTC)
    for hour in (7, 12):
        review(db, prog, anna, day + timedelta(hours=hour))
    review(db, prog, anna, day + timedelta(hours=22, minutes=30))  # 00:30 on the 11th in Berlin
    review(db, prog, ben, day + timedelta(hours=8))
    review(db, prog, ben, day + timedelta(hours=9))
    rule = draft(db, prog, REVIEW_DAILY)

    result = run(db, prog, start=day - timedelta(days=1), end=day + timedelta(days=3))

    assert result["events"]["engagement"] == 5
    assert result["published"]["points"] == 0  # nothing published for reviews
    row = by_rule(result["draft"])[str(rule.id)]
    assert (row["awards"], row["points"], row["members"]) == (3, 150, 2)
    assert result["draft"]["members"] == 2
    assert result["difference"]["points"] == 150


def test_published_limits_start_at_zero_and_do_not_touch_the_counters(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    publish(db, prog, REVIEW_DAILY)
    review(db, prog, who, T0)
    review(db, prog, who, T0 + timedelta(hours=1))
    # A period starting after the first review: its counter does not count in the replay.
    result = run(db, prog, start=T0 + timedelta(minutes=30))
    assert result["published"]["points"] == 50  # ingestion gave the second review nothing


def test_excluded_rule_and_extra_rule(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    organic = publish(db, prog, ORGANIC_X2)
    bonus = publish(
        db,
        prog,
        {
            "name": "Big basket",
            "trigger": "purchase",
            "condition": "event.total_minor >= 1000",
            "effect": {"type": "fixed", "points": 5},
        },
    )
    paused = publish(
        db,
        prog,
        {"name": "Paused", "trigger": "purchase", "effect": {"type": "fixed", "points": 1000}},
    )
    with db.unit_of_work() as session:
        rules.pause(session, rules.get(session, paused.id), actor="test")
    buy(db, prog, who, T0, f.contract_lines())  # 11 + 2 organic + 5 big basket
    buy(db, prog, who, T0 + timedelta(hours=1), [line("x", 400, tags=("organic",))])  # 4 + 4

    extra = {
        "programme": prog.slug,  # as copied from a POST /v1/rules body: ignored
        "name": "Coffee lovers",
        "trigger": "purchase",
        "line_condition": "line.sku == '7002'",
        "effect": {"type": "points_per_unit", "rate": "3", "scope": "lines"},
    }
    result = run(db, prog, exclude=[str(organic.id)], rules=[extra])

    published, drafted = by_rule(result["published"]), by_rule(result["draft"])
    assert result["published"]["points"] == 11 + 2 + 5 + 4 + 4
    assert published.keys() == {"base", str(organic.id), str(bonus.id)}
    assert str(organic.id) not in drafted
    assert str(paused.id) not in drafted  # paused rules stay out of the draft set
    assert drafted["new-1"]["name"] == "Coffee lovers"
    assert drafted["new-1"]["points"] == 26  # 8.99 x 3 = 26.97, floor
    assert result["draft"]["points"] == 11 + 5 + 26 + 4
    assert result["difference"]["points"] == result["draft"]["points"] - (11 + 2 + 5 + 4 + 4)
    assert any("paused rules left out: 1" in note and "1 new" in note for note in result["notes"])

    without_base = run(db, prog, exclude=["base"])
    assert "base" not in by_rule(without_base["draft"])
    # multipliers multiply base-rate points: without the base rate only the fixed bonus
    assert without_base["draft"]["points"] == 5


def test_bad_exclusions_and_extra_rules_are_refused(db: Database) -> None:
    prog = f.programme(db)
    other = f.programme(db)
    foreign = draft(db, other, ORGANIC_X2)
    with pytest.raises(Invalid) as caught:
        run(
            db,
            prog,
            exclude=["nonsense", str(foreign.id)],
            rules=[
                {
                    "name": "Bad",
                    "trigger": "purchase",
                    "condition": "event.total_minor >",
                    "effect": {"type": "fixed", "points": 1},
                },
                {
                    "name": "Ghost",
                    "trigger": "ghost_event",
                    "effect": {"type": "fixed", "points": 1},
                },
            ],
        )
    errors = {e["field"]: e for e in caught.value.extra["errors"]}
    assert set(errors) == {"exclude.0", "exclude.1", "rules.0.condition", "rules.1.trigger"}
    assert errors["rules.0.condition"]["line"] == 1


def test_blocked_members_earn_nothing_in_the_replay(db: Database) -> None:
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    buy(db, prog, anna, T0, [line("a", 1_000)])
    buy(db, prog, ben, T0, [line("b", 2_000)])
    with db.unit_of_work() as session:
        session.execute(update(Member).where(Member.id == ben.id).values(status="blocked"))
    result = run(db, prog)
    assert result["events"]["members_not_earning"] == 1
    assert result["published"]["points"] == 10
    assert result["published"]["members"] == 1


def _counts(db: Database) -> dict[str, int]:
    with db.unit_of_work(write=False) as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Posting, Event, RuleUsage, Rule, RuleVersion)
        } | {"budget_used": int(session.scalar(select(func.sum(Rule.budget_used))) or 0)}


def test_nothing_is_written(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    publish(db, prog, REVIEW_DAILY)
    publish(
        db,
        prog,
        {
            "name": "Budgeted",
            "trigger": "purchase",
            "budget_points": 1_000,
            "effect": {"type": "fixed", "points": 3},
        },
    )
    draft(db, prog, ORGANIC_X2 | {"limits": [{"per": "week", "max_points": 100}]})
    review(db, prog, who, T0)
    buy(db, prog, who, T0, f.contract_lines())
    api = make_api(db)
    before = _counts(db)
    response = api.client.post(
        "/v1/rules/simulate",
        json={
            "programme": prog.slug,
            "from": FROM.isoformat(),
            "until": UNTIL.isoformat(),
            "rules": [REVIEW_DAILY],
        },
        headers=api.headers("admin"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["draft"]["points"] > body["published"]["points"]
    assert _counts(db) == before


def test_api_period_validation_and_auth(db: Database) -> None:
    prog = f.programme(db)
    api = make_api(db)
    url = "/v1/rules/simulate"

    def post(body: dict[str, Any], scope: str = "admin") -> Any:
        return api.client.post(url, json=body, headers=api.headers(scope))

    base = {"programme": prog.slug, "from": FROM.isoformat(), "until": UNTIL.isoformat()}
    assert post(base).status_code == 200
    backwards = post(base | {"until": (FROM - timedelta(hours=1)).isoformat()})
    assert backwards.status_code == 422
    assert backwards.headers["content-type"].startswith("application/problem+json")
    assert backwards.json()["code"] == "validation_error"
    assert backwards.json()["errors"][0]["field"] == "until"
    too_long = post(base | {"until": (FROM + timedelta(days=367)).isoformat()})
    assert too_long.status_code == 422
    assert "366" in too_long.json()["detail"]
    assert post(base | {"from": "2026-06-09T00:00:00"}).status_code == 422  # no zone
    assert post(base | {"programme": "no-such-programme"}).status_code == 404
    for scope in ("members:read", "events:write", "members:write"):
        assert post(base, scope).status_code == 403
    assert api.client.post(url, json=base).status_code == 401
    schema = api.client.get("/openapi.json").json()
    assert "examples" in str(schema["components"]["schemas"]["SimulationIn"])


def test_liability_rounds_half_up() -> None:
    from decimal import Decimal

    assert liability_minor(3, Decimal("0.5")) == 2  # 1.5 -> 2
    assert liability_minor(1, Decimal("0.4999")) == 0
    assert liability_minor(7, Decimal("1.25")) == 9  # 8.75 -> 9
    assert liability_minor(0, Decimal("3")) == 0


def test_published_replay_reproduces_what_the_ledger_credited(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strong check: ingest a random but reproducible mix of purchases and reviews in
    time order under several published rules (line multiplier, weekend bonus, percent
    bonus, daily-limited review, budget), then replay the period through the published
    set — every rule must come out with exactly the points the ledger credited."""
    prog = f.programme(db, point_value_minor="0.8")
    publish(db, prog, ORGANIC_X2)
    publish(db, prog, REVIEW_DAILY)
    publish(
        db,
        prog,
        {
            "name": "Weekend app",
            "trigger": "purchase",
            "condition": "event.channel == 'app' and event.weekday in [6, 7]",
            "effect": {"type": "multiplier", "factor": "1.5"},
        },
    )
    publish(
        db,
        prog,
        {
            "name": "Dairy +10%",
            "trigger": "purchase",
            "line_condition": "line.category == 'dairy'",
            "effect": {"type": "percent_bonus", "percent": "10"},
        },
    )
    publish(
        db,
        prog,
        {
            "name": "Launch",
            "trigger": "purchase",
            "budget_points": 60,
            "condition": "event.total_minor >= 2000",
            "effect": {"type": "fixed", "points": 25},
        },
    )
    people = [f.member(db, prog) for _ in range(4)]
    rng = random.Random(20260610)
    at = T0
    for _ in range(40):
        at += timedelta(minutes=rng.choice([0, 0, 10, 45, 120, 300, 700]))  # ties too
        who = rng.choice(people)
        if rng.random() < 0.35:
            review(db, prog, who, at)
            continue
        lines = [
            {
                "sku": f"s{k}",
                "category": rng.choice(["dairy", "coffee", "bakery"]),
                "quantity": rng.randrange(1, 4),
                "unit_price_minor": rng.randrange(49, 2_500),
                "tags": ["organic"] if rng.random() < 0.4 else [],
            }
            for k in range(rng.randrange(1, 5))
        ]
        payload = f.purchase_payload(
            prog, who, lines=lines, occurred_at=at, channel=rng.choice(["app", "pos"])
        )
        assert f.ingest_one(db, payload, now=at + timedelta(minutes=1)).ok

    result = run(db, prog, start=T0, end=at + timedelta(seconds=1))
    monkeypatch.setattr("treu.events.simulation.CHUNK", 3)  # many chunks, ties across them
    chunked = run(db, prog, start=T0, end=at + timedelta(seconds=1))
    assert chunked | {"seconds": 0} == result | {"seconds": 0}

    with db.unit_of_work(write=False) as session:
        postings = session.execute(
            select(Posting.rule_id, Posting.points, Posting.member_id).where(
                Posting.programme_id == prog.id, Posting.kind == "earn"
            )
        ).all()
    credited: Counter[str] = Counter()
    for rule_id, points, _ in postings:
        credited[str(rule_id) if rule_id else "base"] += points
    published = result["published"]
    assert published["points"] == sum(credited.values()) > 0
    assert {r["rule_id"]: r["points"] for r in published["by_rule"] if r["points"]} == dict(
        credited
    )
    assert published["members"] == len({m for _, p, m in postings if p > 0})
    assert published["liability_minor"] == liability_minor(
        published["points"], prog.point_value_minor
    )
    ids = {r["name"]: r["rule_id"] for r in published["by_rule"]}
    assert credited[ids["Launch"]] == 60  # the budget bit
    assert credited[ids["Review bonus"]] < 50 * result["events"]["engagement"]  # the limit bit
    assert credited[ids["Weekend app"]] > 0
    # the drafts equal the published versions: the two columns agree
    assert result["difference"] == {"points": 0, "liability_minor": 0, "members": 0}
