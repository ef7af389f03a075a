"""Earning rules end to end: published rules credit purchases and engagement events,
limits and budgets hold, returns are recomputed under the recorded rule versions, and
the checkout promises exactly what the purchase then credits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests import factories as f
from treu.checkout.service import CartIn, checkout
from treu.db.base import WriteBatch
from treu.db.session import Database
from treu.events.schemas import AnyEvent
from treu.events.service import events_service
from treu.ledger.explain import render
from treu.ledger.models import Posting
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rules.errors import BudgetRace
from treu.rules.models import MemberBadge, Rule
from treu.rules.service import Usage, rules
from treu.rules.spec import RuleSpec

T0 = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)  # a Wednesday


def review(prog: Programme, who: Member, at: datetime, **attributes: Any) -> dict[str, Any]:
    return {
        "id": f.unique("review"),
        "type": "review_submitted",
        "programme": prog.slug,
        "member": {"member_id": str(who.id)},
        "occurred_at": at.isoformat(),
        "attributes": {"product_sku": "4001", "rating": 5, **attributes},
    }


def postings_of(db: Database, who: Member) -> list[Posting]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(select(Posting).where(Posting.member_id == who.id).order_by(Posting.id))
        )


def test_line_multiplier_credits_a_posting_per_rule(db: Database) -> None:
    prog = f.programme(db)
    organic = f.rule(db, prog, **f.ORGANIC_X2)
    who = f.member(db, prog)
    out = f.ingest_one(db, f.purchase_payload(prog, who, lines=f.contract_lines(), occurred_at=T0))
    assert out.ok, out.error
    body = out.body
    assert body is not None
    # base: floor(11.57) = 11; organic milk 2.58 x (2 - 1) = 2 extra (floor)
    assert body.points.earned == 13
    assert [p["points"] for p in body.postings] == [11, 2]
    stored = postings_of(db, who)
    assert [(p.rule_id, p.rule_version) for p in stored] == [(None, None), (organic.id, 1)]
    assert stored[1].explanation == "Organic x2 \u00d72: +2"
    assert render(stored[1].details, "de").endswith("+2")
    assert f.balance(db, who).available == 13
    assert f.verify(db, prog) == []


def test_exclusive_line_rule_takes_lines_from_the_base_rate(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Organic 3 per euro",
        trigger="purchase",
        line_condition="'organic' in line.tags",
        effect={"type": "points_per_unit", "rate": "3", "scope": "lines"},
        stacking="exclusive",
        priority=10,
    )
    who = f.member(db, prog)
    out = f.ingest_one(db, f.purchase_payload(prog, who, lines=f.contract_lines(), occurred_at=T0))
    assert out.body is not None
    # organic milk 2.58 x 3 = 7 (floor); the base rate covers only the coffee: 8
    assert sorted(p["points"] for p in out.body.postings) == [7, 8]
    assert out.body.points.earned == 15


def test_daily_limit_stops_the_second_review_and_says_so(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Review bonus",
        trigger="review_submitted",
        effect={"type": "fixed", "points": 50},
        limits=[{"per": "day", "max_count": 1}],
    )
    who = f.member(db, prog)
    first = f.ingest_one(db, review(prog, who, T0), now=T0 + timedelta(hours=1))
    second = f.ingest_one(
        db, review(prog, who, T0 + timedelta(hours=2)), now=T0 + timedelta(hours=3)
    )
    next_day = f.ingest_one(
        db, review(prog, who, T0 + timedelta(days=1)), now=T0 + timedelta(days=1)
    )
    assert first.body is not None
    assert second.body is not None
    assert next_day.body is not None
    assert first.body.points.public() == {
        "earned": 50,
        "available": 50,
        "pending": 0,
        "reversed": 0,
    }
    assert second.body.points.earned == 0
    assert second.body.public()["limited"][0]["reason"] == "daily limit reached"
    assert next_day.body.points.earned == 50
    assert f.balance(db, who).available == 100


def test_budget_caps_a_rule_across_members(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Launch bonus",
        trigger="app_installed",
        effect={"type": "fixed", "points": 40},
        budget_points=100,
    )
    earned = []
    for _ in range(4):
        who = f.member(db, prog)
        event = {
            "id": f.unique("install"),
            "type": "app_installed",
            "programme": prog.slug,
            "member": {"member_id": str(who.id)},
            "occurred_at": T0.isoformat(),
            "attributes": {"platform": "ios"},
        }
        out = f.ingest_one(db, event, now=T0 + timedelta(minutes=1))
        assert out.body is not None
        earned.append((out.body.points.earned, out.body.public().get("limited")))
    assert [e[0] for e in earned] == [40, 40, 20, 0]  # the third capped, the fourth: used up
    assert earned[2][1] == [
        {
            "rule_id": earned[2][1][0]["rule_id"],
            "rule": "Launch bonus",
            "reason": "capped: budget used up",
        }
    ]
    assert earned[3][1][0]["reason"] == "budget used up"
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(Rule.budget_used).where(Rule.programme_id == prog.id)) == 100


def test_badge_is_awarded_once(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="First review",
        trigger="review_submitted",
        effect={"type": "badge_only"},
        badge={"code": "reviewer", "name": {"en": "Reviewer", "de": "Rezensent"}, "icon": "⭐"},
    )
    who = f.member(db, prog)
    first = f.ingest_one(db, review(prog, who, T0), now=T0 + timedelta(hours=1))
    again = f.ingest_one(db, review(prog, who, T0 + timedelta(days=2)), now=T0 + timedelta(days=2))
    assert first.body is not None
    assert again.body is not None
    assert first.body.public()["badges"][0]["code"] == "reviewer"
    assert again.body.badges == ()
    with db.unit_of_work(write=False) as session:
        codes = session.scalars(select(MemberBadge.code).where(MemberBadge.member_id == who.id))
        assert list(codes) == ["reviewer"]
    from tests.api_helpers import make_api

    api = make_api(db)
    listed = api.client.get(
        f"/v1/members/{who.id}/badges?lang=de", headers=api.headers("members:read")
    )
    assert listed.status_code == 200
    assert [(b["code"], b["name"], b["icon"]) for b in listed.json()["items"]] == [
        ("reviewer", "Rezensent", "⭐")
    ]


def test_engagement_attributes_are_checked(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    out = f.ingest(db, review(prog, who, T0, rating=9), now=T0 + timedelta(hours=1))[0]
    assert out.error is not None
    assert out.status == 422
    assert any(e["field"].endswith("rating") for e in out.error.extra["errors"])


def test_partial_return_is_recomputed_under_the_recorded_rules(db: Database) -> None:
    prog = f.programme(db)
    rule = f.rule(db, prog, **f.ORGANIC_X2)
    who = f.member(db, prog)
    bought = f.purchase_payload(prog, who, lines=f.contract_lines(), occurred_at=T0)
    assert f.ingest_one(db, bought).body.points.earned == 13  # type: ignore[union-attr]
    # The rule changes afterwards: the return still uses version 1.
    with db.unit_of_work() as session:
        current = rules.get(session, rule.id)
        changed = {
            **current.draft,
            "effect": {"type": "multiplier", "factor": "5", "scope": "lines"},
        }
        rules.update(session, current, spec=RuleSpec.model_validate(changed), actor="t")
        rules.publish(session, current, actor="t")
    back = f.ingest_one(
        db,
        f.return_payload(prog, bought["id"], [{"sku": "4001", "quantity": 2}]),
    )
    assert back.body is not None
    # kept: coffee 8.99 -> 8 points; the organic bonus goes with the milk: 13 - 8 = 5
    assert back.body.points.reversed == 5
    assert f.balance(db, who).available == 8
    assert f.verify(db, prog) == []


def test_checkout_explains_and_hints(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="App weekend",
        trigger="purchase",
        condition="event.channel == 'app' and event.weekday in [6, 7]",
        effect={"type": "multiplier", "factor": "1.5"},
    )
    saturday = datetime(2026, 6, 13, 10, 0, tzinfo=UTC)
    cart = CartIn.model_validate(
        {
            "programme": prog.slug,
            "channel": "app",
            "currency": "EUR",
            "occurred_at": saturday.isoformat(),
            "lines": f.contract_lines(),
            "lang": "de",
        }
    )
    with db.unit_of_work(write=False) as session:
        anonymous = checkout.evaluate(session, cart, now=saturday)
    assert anonymous.points.total == 16  # 11 + 11 x 0.5 = 5.5 -> 5
    assert (anonymous.member, anonymous.balance) == (None, None)
    assert anonymous.hints[0].code == "not_a_member"
    assert "16 Punkte" in anonymous.hints[0].text

    who = f.member(db, prog, birthday="1990-06-01")
    cart = CartIn.model_validate({**cart.model_dump(mode="json"), "member": f.member_ref(who)})
    with db.unit_of_work(write=False) as session:
        known = checkout.evaluate(session, cart, now=saturday)
    assert [r.points for r in known.rules] == [11, 5]
    assert known.rules[1].explanation.startswith("App weekend")
    assert {h.code for h in known.hints} == {"birthday_month"}
    assert known.balance is not None
    assert known.balance.available == 0


CART_LINES = st.lists(
    st.fixed_dictionaries(
        {
            "sku": st.sampled_from(["4001", "5001", "7002", "8001"]),
            "category": st.sampled_from(["dairy", "coffee", "pantry"]),
            "quantity": st.integers(1, 5),
            "unit_price_minor": st.integers(0, 5000),
            "tags": st.lists(st.sampled_from(["organic", "regional", "bbd"]), max_size=2),
        }
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture
def ruled(db: Database) -> tuple[Programme, list[Member]]:
    prog = f.programme(db, rounding="half_up")
    f.rule(db, prog, **f.ORGANIC_X2)
    f.rule(
        db,
        prog,
        name="Best before",
        trigger="purchase",
        line_condition="'bbd' in line.tags and line.unit_price_minor >= 100",
        effect={"type": "points_per_unit", "rate": "2.5", "scope": "lines"},
        stacking="exclusive",
        priority=5,
    )
    f.rule(
        db,
        prog,
        name="Big basket",
        trigger="purchase",
        condition="event.total_minor >= 3000",
        effect={"type": "fixed", "points": 25},
        limits=[{"per": "week", "max_count": 2}],
    )
    f.rule(
        db,
        prog,
        name="Pantry bonus",
        trigger="purchase",
        line_condition="line.category == 'pantry'",
        effect={"type": "percent_bonus", "percent": "10"},
    )
    return prog, [f.member(db, prog) for _ in range(3)]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=CART_LINES, who=st.integers(0, 2), channel=st.sampled_from(["pos", "web", "app"]))
def test_purchase_credits_what_checkout_promised(
    db: Database,
    ruled: tuple[Programme, list[Member]],
    lines: list[dict[str, Any]],
    who: int,
    channel: str,
) -> None:
    prog, people = ruled
    member = people[who]
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    cart = CartIn.model_validate(
        {
            "programme": prog.slug,
            "member": f.member_ref(member),
            "channel": channel,
            "currency": "EUR",
            "occurred_at": at.isoformat(),
            "lines": lines,
        }
    )
    with db.unit_of_work(write=False) as session:
        promised = checkout.evaluate(session, cart)
    out = f.ingest_one(
        db, f.purchase_payload(prog, member, lines=lines, occurred_at=at, channel=channel)
    )
    assert out.body is not None, out.error
    assert out.body.points.earned == promised.points.total
    assert sorted(p["points"] for p in out.body.postings) == sorted(
        r.points for r in promised.rules if r.points > 0
    )


def test_rule_with_bad_expression_is_refused_with_its_position(db: Database) -> None:
    from tests.api_helpers import make_api

    prog = f.programme(db)
    api = make_api(db)
    response = api.client.post(
        "/v1/rules",
        headers=api.headers("admin"),
        json={
            "programme": prog.slug,
            "name": "Broken",
            "trigger": "purchase",
            "condition": "event.channel == 'app' and event.total_minor > 'x'",
            "effect": {"type": "fixed", "points": 5},
        },
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_error"
    error = problem["errors"][0]
    assert error["field"] == "condition"
    assert error["line"] == 1
    assert error["column"] > 1
    assert "compare" in error["message"]


def test_rules_api_draft_publish_pause(db: Database) -> None:
    from tests.api_helpers import make_api

    prog = f.programme(db)
    api = make_api(db)
    admin = api.headers("admin")
    created = api.client.post(
        "/v1/rules",
        headers=admin,
        json={
            "programme": prog.slug,
            "name": "Review bonus",
            "trigger": "review_submitted",
            "effect": {"type": "fixed", "points": 50},
            "limits": [{"per": "day", "max_count": 1}],
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["status"] == "draft"
    assert rule["version"] is None
    rid = rule["id"]
    assert (
        api.client.post(f"/v1/rules/{rid}/publish", headers=api.headers("members:read")).status_code
        == 403
    )
    published = api.client.post(f"/v1/rules/{rid}/publish", headers=admin).json()
    assert published["status"] == "active"
    assert published["version"] == 1
    assert published["unpublished_changes"] is False
    again = api.client.post(f"/v1/rules/{rid}/publish", headers=admin)
    assert again.status_code == 409
    assert again.json()["code"] == "nothing_to_publish"
    stale = api.client.patch(
        f"/v1/rules/{rid}", headers={**admin, "If-Match": "0"}, json={"name": "X"}
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "stale_revision"
    patched = api.client.patch(
        f"/v1/rules/{rid}",
        headers={**admin, "If-Match": str(published["draft_revision"])},
        json={"effect": {"type": "fixed", "points": 60}},
    ).json()
    assert patched["unpublished_changes"] is True
    assert patched["published"]["effect"]["points"] == 50
    paused = api.client.post(f"/v1/rules/{rid}/pause", headers=admin).json()
    assert paused["status"] == "paused"
    who = f.member(db, prog)
    out = f.ingest_one(db, review(prog, who, datetime.now(UTC) - timedelta(minutes=1)))
    assert out.body is not None
    assert out.body.points.earned == 0
    resumed = api.client.post(f"/v1/rules/{rid}/publish", headers=admin).json()
    assert resumed["status"] == "active"
    assert resumed["version"] == 2
    listed = api.client.get(f"/v1/rules?programme={prog.slug}", headers=admin).json()
    assert [r["id"] for r in listed["items"]] == [rid]
    unknown = api.client.post(
        "/v1/rules",
        headers=admin,
        json={
            "programme": prog.slug,
            "name": "Y",
            "trigger": "no_such_event",
            "effect": {"type": "fixed", "points": 1},
        },
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_trigger"


def test_checkout_endpoint(db: Database) -> None:
    from tests.api_helpers import make_api

    prog = f.programme(db)
    api = make_api(db)
    who = f.member(db, prog)
    response = api.client.post(
        "/v1/checkout/evaluate",
        headers=api.headers("events:write"),
        json={
            "programme": prog.slug,
            "member": f.member_ref(who),
            "channel": "pos",
            "currency": "EUR",
            "lines": f.contract_lines(),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["points"]["total"] == 11
    assert body["lines"][1]["points"] + body["lines"][0]["points"] == 11
    assert body["rules"][0]["rule_id"] == "base"
    assert (
        api.client.post(
            "/v1/checkout/evaluate",
            headers=api.headers("members:write"),
            json={
                "programme": prog.slug,
                "channel": "pos",
                "currency": "EUR",
                "lines": f.contract_lines(),
            },
        ).status_code
        == 403
    )


def test_rule_set_uses_programme_rounding_and_rate(db: Database) -> None:
    prog = f.programme(db, points_per_currency_unit=Decimal("0.5"), rounding="ceil")
    who = f.member(db, prog)
    out = f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=1001, occurred_at=T0))
    assert out.body is not None
    assert out.body.points.earned == 6


def test_unknown_rule_id_is_404(db: Database) -> None:
    from tests.api_helpers import make_api

    api = make_api(db)
    missing = api.client.get(f"/v1/rules/{uuid.uuid4()}", headers=api.headers("admin"))
    assert missing.status_code == 404
    assert missing.json()["code"] == "rule_not_found"


def test_concurrent_reviews_respect_the_daily_cap(db: Database, backend: str) -> None:
    from tests.support.concurrency import in_parallel, postgres_only

    postgres_only(backend)
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Review bonus",
        trigger="review_submitted",
        effect={"type": "fixed", "points": 50},
        limits=[{"per": "day", "max_count": 1}],
    )
    who = f.member(db, prog)
    at = datetime.now(UTC) - timedelta(minutes=5)
    results = in_parallel(20, lambda i: f.ingest(db, review(prog, who, at))[0])
    earned = [r.body.points.earned for r in results if not isinstance(r, BaseException) and r.body]
    assert len(earned) == 20, results
    assert sorted(earned) == [0] * 19 + [50]
    assert f.balance(db, who).available == 50
    with db.unit_of_work(write=False) as session:
        from treu.rules.models import RuleUsage

        usage = session.scalars(select(RuleUsage).where(RuleUsage.member_id == who.id)).all()
        assert [(u.count, u.points) for u in usage] == [(1, 50)]


def _install(prog: Programme, who: Member) -> dict[str, Any]:
    return f.install_payload(prog, who, T0)


def test_an_optimistic_unit_hands_budget_edges_and_lost_races_to_a_locked_one(
    db: Database,
) -> None:
    """Budgets are read without a lock and added to one slot with the unit's other
    writes, guarded by the slot's allowance (``treu.rules.budgets``); a unit that
    reaches the budget's edge on that figure, or whose slot has no room left, raises
    ``BudgetRace`` and changes nothing."""
    prog = f.programme(db)
    rule = f.rule(
        db,
        prog,
        name="Launch bonus",
        trigger="app_installed",
        effect={"type": "fixed", "points": 40},
        budget_points=100,
    )
    first, second, third = (f.member(db, prog) for _ in range(3))
    at = T0 + timedelta(minutes=1)
    assert f.ingest_one(db, _install(prog, first), now=at).body.points.earned == 40  # type: ignore[union-attr]

    # 60 left, shared out among the slots (3 or 4 each): no slot has room for 40, so
    # the optimistic unit gives up, and the locked one gives the 40.
    with pytest.raises(BudgetRace), db.unit_of_work() as session:
        events_service.ingest(
            session, [_event(_install(prog, second))], now=at, optimistic_budgets=True
        )
    assert f.balance(db, second).available == 0
    assert f.ingest_one(db, _install(prog, second), now=at).body.points.earned == 40  # type: ignore[union-attr]
    with db.unit_of_work(write=False) as session:
        assert session.get_one(Rule, rule.id).budget_used == 80

    # At the edge (20 left for 40): the optimistic unit gives up, nothing is written …
    event = _install(prog, third)
    with pytest.raises(BudgetRace), db.unit_of_work() as session:
        events_service.ingest(session, [_event(event)], now=at, optimistic_budgets=True)
    assert f.balance(db, third).available == 0
    # … and the locked retry gives exactly what is left.
    assert f.ingest_one(db, event, now=at).body.points.earned == 20  # type: ignore[union-attr]

    # A race lost: the unit read 100 left, but the budget was spent before it settled.
    with db.unit_of_work() as session:
        usage = Usage(session, {str(rule.id): rules_spec(db, rule)}, optimistic=True)
        usage.budget_read[str(rule.id)] = 0
        usage.budget_used[str(rule.id)] = 0
        usage.record(third.id, T0.date(), str(rule.id), 40)
        batch = WriteBatch()
        usage.flush(batch)
        added = batch.flush(session.connection())
        assert added == [None]
        with pytest.raises(BudgetRace):
            usage.settle(added)
    with db.unit_of_work(write=False) as session:
        assert session.get_one(Rule, rule.id).budget_used == 100


def rules_spec(db: Database, rule: Rule) -> RuleSpec:
    with db.unit_of_work(write=False) as session:
        stored = session.get_one(Rule, rule.id)
        return RuleSpec.model_validate(stored.draft)


def _event(payload: dict[str, Any]) -> AnyEvent:
    return f.event_adapter.validate_python(payload)


def test_concurrent_budget_is_never_overspent(db: Database, backend: str) -> None:
    from tests.support.concurrency import in_parallel, postgres_only

    postgres_only(backend)
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Launch bonus",
        trigger="app_installed",
        effect={"type": "fixed", "points": 30},
        budget_points=200,
    )
    people = [f.member(db, prog) for _ in range(12)]
    at = datetime.now(UTC) - timedelta(minutes=5)

    def install(i: int) -> int:
        event = {
            "id": f.unique("install"),
            "type": "app_installed",
            "programme": prog.slug,
            "member": f.member_ref(people[i]),
            "occurred_at": at.isoformat(),
            "attributes": {"platform": "android"},
        }
        body = f.ingest(db, event)[0].body
        assert body is not None
        return body.points.earned

    earned = in_parallel(12, install)
    assert all(isinstance(e, int) for e in earned), earned
    assert sum(e for e in earned if isinstance(e, int)) == 200
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(Rule.budget_used).where(Rule.programme_id == prog.id)) == 200


def test_return_does_not_let_a_rule_apply_that_did_not_apply_to_the_order(db: Database) -> None:
    prog = f.programme(db)
    f.rule(
        db,
        prog,
        name="Small basket",
        trigger="purchase",
        condition="event.total_minor < 1000",
        effect={"type": "fixed", "points": 100},
    )
    who = f.member(db, prog)
    bought = f.purchase_payload(prog, who, lines=f.contract_lines(), occurred_at=T0)
    assert f.ingest_one(db, bought).body.points.earned == 11  # type: ignore[union-attr]
    back = f.ingest_one(db, f.return_payload(prog, bought["id"], [{"sku": "7002", "quantity": 1}]))
    assert back.body is not None
    # kept: the milk, 2.58 EUR -> 2 points; "Small basket" did not apply to the order and
    # does not apply to what is left of it either: 11 - 2 = 9 taken back
    assert back.body.points.reversed == 9
    assert f.balance(db, who).available == 2
