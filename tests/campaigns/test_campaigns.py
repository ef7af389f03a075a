"""Bonus campaigns on both databases: the boost applies inside its window only, held-out
members get nothing and are recorded as held out, the budget stops the campaign exactly
(also under concurrent purchases), the checkout explains the award, a return keeps what
the kept lines earned, audiences, and the statistics of the two arms."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from treu.campaigns.models import Arm, Campaign, CampaignExposure
from treu.campaigns.service import campaigns
from treu.campaigns.stats import campaign_stats
from treu.checkout.service import CartIn, checkout
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme

ORGANIC = {
    "sku": "bio-apfel",
    "name": "Bio Äpfel",
    "category": "fruit",
    "quantity": 1,
    "unit_price_minor": 1200,
    "tags": ["organic"],
}
PLAIN = {"sku": "kaffee", "category": "coffee", "quantity": 1, "unit_price_minor": 899, "tags": []}
BASE = 20  # 12.00 + 8.99 at 1 point per EUR 1, rounded down per order
BOOST = 24  # x3 on the organic line's 12 base points: 2 x 12 extra


def lines() -> list[dict[str, Any]]:
    return [dict(ORGANIC), dict(PLAIN)]


def buy(
    db: Database,
    prog: Programme,
    who: Member,
    *,
    at: datetime | None = None,
    now: datetime | None = None,
    items: list[dict[str, Any]] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    at = at or utc_now() - timedelta(hours=1)
    payload = f.purchase_payload(
        prog, who, lines=items or lines(), occurred_at=at, event_id=event_id
    )
    outcome = f.ingest_one(db, payload, now=now or max(at, utc_now()) + timedelta(minutes=1))
    assert outcome.body is not None
    return outcome.body.public()


def campaign_points(body: dict[str, Any], found: Campaign) -> int:
    return sum(
        p["points"] for p in body["postings"] if p.get("rule", {}).get("id") == str(found.rule_id)
    )


def exposures(db: Database, found: Campaign) -> dict[uuid.UUID, CampaignExposure]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(CampaignExposure).where(CampaignExposure.campaign_id == found.id)
        ).all()
        for row in rows:
            session.expunge(row)
        return {row.member_id: row for row in rows}


def test_the_boost_applies_inside_the_window_and_not_outside(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=0)
    who = f.member(db, prog)
    starts = datetime.fromisoformat(found.spec["window"]["starts_at"])
    ends = datetime.fromisoformat(found.spec["window"]["ends_at"])

    first = utc_now() - timedelta(hours=1)
    inside = buy(db, prog, who, at=first)
    assert inside["points"]["earned"] == BASE + BOOST
    assert campaign_points(inside, found) == BOOST
    assert [p["explanation"] for p in inside["postings"]][-1] == "Bio-Woche \u00d73: +24"

    before = buy(db, prog, who, at=starts - timedelta(minutes=1))
    assert before["points"]["earned"] == BASE
    at_start = buy(db, prog, who, at=starts)
    assert at_start["points"]["earned"] == BASE + BOOST
    after = buy(db, prog, who, at=ends, now=ends + timedelta(hours=1))  # the end is exclusive
    assert after["points"]["earned"] == BASE
    # Recorded once, when the first event processed in the window occurred.
    assert exposures(db, found)[who.id].first_seen_at == first
    with db.unit_of_work(write=False) as session:
        stats = campaign_stats(session, campaigns.get(session, found.id), now=utc_now())
    assert stats.points_issued == 2 * BOOST
    assert (stats.budget.points, stats.budget.used, stats.budget.left) == (None, 2 * BOOST, None)
    assert (stats.treated, stats.held_out, stats.arms["treated"].purchases) == (1, 0, 2)


def test_held_out_members_get_nothing_and_are_recorded_as_held_out(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=50)
    treated, held = f.members_in_arms(db, prog, found, treated=2, held_out=2)
    at = utc_now() - timedelta(hours=2)
    for who in treated:
        body = buy(db, prog, who, at=at)
        assert (body["points"]["earned"], campaign_points(body, found)) == (BASE + BOOST, BOOST)
    for who in held:
        body = buy(db, prog, who, at=at)
        assert (body["points"]["earned"], campaign_points(body, found)) == (BASE, 0)
    # A second purchase changes nothing of what was recorded.
    later = at + timedelta(minutes=30)
    for who in (*treated, *held):
        buy(db, prog, who, at=later)

    found_exposures = exposures(db, found)
    assert {m: e.arm for m, e in found_exposures.items()} == {
        **{w.id: Arm.treated.value for w in treated},
        **{w.id: Arm.held_out.value for w in held},
    }
    for exposure in found_exposures.values():
        assert exposure.first_seen_at == at
        assert exposure.programme_id == prog.id
        assert exposure.event_id is not None


def test_nothing_is_recorded_without_a_running_campaign(db: Database) -> None:
    prog = f.programme(db)
    draft = f.campaign(db, prog, activate=False, holdout_percent=0)
    who = f.member(db, prog)
    assert buy(db, prog, who)["points"]["earned"] == BASE
    assert exposures(db, draft) == {}

    running = f.campaign(db, prog, holdout_percent=0)
    body = buy(db, prog, who)
    assert body["points"]["earned"] == BASE + BOOST
    with db.unit_of_work() as session:
        campaigns.pause(session, campaigns.get(session, running.id), actor="test")
    other = f.member(db, prog)
    assert buy(db, prog, other)["points"]["earned"] == BASE
    assert set(exposures(db, running)) == {who.id}

    # A return records nothing either, and an engagement event in the window does.
    with db.unit_of_work() as session:
        campaigns.activate(session, campaigns.get(session, running.id), actor="test")
    third = f.member(db, prog)
    event = {
        "id": f.unique("visit"),
        "type": "store_visit",
        "programme": prog.slug,
        "member": f.member_ref(third),
        "occurred_at": (utc_now() - timedelta(minutes=5)).isoformat(),
        "store": "berlin-01",
        "attributes": {},
    }
    f.ingest_one(db, event)
    assert set(exposures(db, running)) == {who.id, third.id}


def test_a_return_keeps_the_campaign_points_of_the_kept_lines(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=50)
    (who,), _ = f.members_in_arms(db, prog, found, treated=1, held_out=0)
    half = dict(ORGANIC, sku="bio-birne", unit_price_minor=600)
    at = utc_now() - timedelta(hours=3)
    body = buy(db, prog, who, at=at, items=[dict(ORGANIC), half, dict(PLAIN)], event_id="o-1")
    assert body["points"]["earned"] == 26 + 36  # base of 26.99; x3 on 18.00 organic
    back = f.return_payload(prog, "o-1", [{"sku": "kaffee", "quantity": 1}])
    returned = f.ingest_one(db, back)
    assert returned.body is not None
    # The coffee's base points go back (26 - 18); the campaign's 36 stay: the kept
    # organic lines are recomputed as the same member, in the same arm.
    assert returned.body.points.reversed == 8
    assert f.balance(db, who).available == 18 + 36


def test_points_on_each_matching_line(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(
        db,
        prog,
        name="Retten statt wegwerfen",
        holdout_percent=0,
        boost={"type": "points", "points": 50, "line_condition": "'near_best_before' in line.tags"},
    )
    who = f.member(db, prog)
    near = {"sku": "joghurt", "quantity": 3, "unit_price_minor": 79, "tags": ["near_best_before"]}
    also = {"sku": "brot", "quantity": 1, "unit_price_minor": 250, "tags": ["near_best_before"]}
    body = buy(db, prog, who, items=[near, also, dict(PLAIN)])
    assert campaign_points(body, found) == 100  # 50 per line, whatever its quantity
    assert "Retten statt wegwerfen: +100" in [p["explanation"] for p in body["postings"]]
    assert campaign_points(buy(db, prog, who, items=[dict(PLAIN)]), found) == 0


def test_the_budget_stops_the_campaign_exactly(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=0, budget_points=60)
    people = [f.member(db, prog) for _ in range(4)]
    given = [campaign_points(buy(db, prog, who), found) for who in people]
    assert given == [24, 24, 12, 0]  # the third capped, then nothing
    # The fourth member came after the budget was spent: the campaign had stopped.
    assert set(exposures(db, found)) == {who.id for who in people[:3]}
    with db.unit_of_work(write=False) as session:
        stats = campaign_stats(session, campaigns.get(session, found.id), now=utc_now())
        campaign = campaigns.get(session, found.id)
        assert not campaigns.running(campaign, budget_used=stats.budget.used, now=utc_now())
    assert (stats.budget.points, stats.budget.used, stats.budget.left) == (60, 60, 0)
    assert stats.points_issued == 60


def test_the_budget_is_never_exceeded_under_concurrent_purchases(
    db: Database, backend: str
) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=0, budget_points=100)
    people = [f.member(db, prog) for _ in range(12)]

    def purchase(i: int) -> int:
        return campaign_points(buy(db, prog, people[i]), found)

    given = in_parallel(12, purchase)
    assert all(isinstance(g, int) for g in given), given
    assert sum(g for g in given if isinstance(g, int)) == 100
    with db.unit_of_work(write=False) as session:
        stats = campaign_stats(session, campaigns.get(session, found.id), now=utc_now())
    assert (stats.budget.used, stats.budget.left, stats.points_issued) == (100, 0, 100)
    assert f.verify(db, prog) == []


def cart(prog: Programme, who: Member | None, lang: str = "en") -> CartIn:
    return CartIn.model_validate(
        {
            "programme": prog.slug,
            "member": f.member_ref(who) if who is not None else None,
            "channel": "pos",
            "currency": "EUR",
            "lines": lines(),
            "lang": lang,
        }
    )


def test_checkout_shows_the_campaign_and_explains_it(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=50)
    (treated,), (held,) = f.members_in_arms(db, prog, found, treated=1, held_out=1)
    with db.unit_of_work(write=False) as session:
        preview = checkout.evaluate(session, cart(prog, treated)).public()
        german = checkout.evaluate(session, cart(prog, treated, "de")).public()
        other = checkout.evaluate(session, cart(prog, held)).public()
    assert preview["points"]["total"] == BASE + BOOST
    award = next(r for r in preview["rules"] if r["rule_id"] == str(found.rule_id))
    assert (award["name"], award["effect"], award["points"]) == ("Bio-Woche", "multiplier", 24)
    assert award["explanation"] == "Bio-Woche \u00d73: +24"
    assert (
        next(r for r in german["rules"] if r["rule_id"] == str(found.rule_id))["explanation"]
        == "Bio-Woche \u00d73: +24"
    )
    assert preview["lines"][0]["points"] == 12 + 24
    assert other["points"]["total"] == BASE
    assert all(r["rule_id"] != str(found.rule_id) for r in other["rules"])
    # The purchase credits what the checkout promised.
    assert buy(db, prog, treated)["points"]["earned"] == BASE + BOOST


def test_a_member_list_audience(db: Database) -> None:
    prog = f.programme(db)
    listed, other = f.member(db, prog), f.member(db, prog)
    found = f.campaign(db, prog, holdout_percent=0, audience={"members": [str(listed.id)]})
    assert buy(db, prog, listed)["points"]["earned"] == BASE + BOOST
    assert buy(db, prog, other)["points"]["earned"] == BASE
    assert set(exposures(db, found)) == {listed.id}


def test_a_tier_audience(db: Database) -> None:
    prog = f.tiered(db)
    gold, bronze = f.member(db, prog), f.member(db, prog)
    at = utc_now() - timedelta(hours=2)
    bought = {
        "id": f.unique("gold"),
        "type": "membership_purchased",
        "programme": prog.slug,
        "member": f.member_ref(gold),
        "occurred_at": at.isoformat(),
        "attributes": {"tier": "gold", "months": 12, "amount_minor": 4900, "currency": "EUR"},
    }
    f.ingest_one(db, bought)
    found = f.campaign(db, prog, holdout_percent=0, audience={"tiers": ["gold"]})
    gold_body = buy(db, prog, gold)
    assert campaign_points(gold_body, found) == BOOST
    assert campaign_points(buy(db, prog, bronze), found) == 0
    assert set(exposures(db, found)) == {gold.id}
    with db.unit_of_work(write=False) as session:
        stats = campaign_stats(session, campaigns.get(session, found.id), now=utc_now())
    assert stats.audience == 1


def test_stats_compare_the_treated_with_the_held_out(db: Database) -> None:
    prog = f.programme(db)
    found = f.campaign(db, prog, holdout_percent=50, budget_points=1_000)
    treated, held = f.members_in_arms(db, prog, found, treated=2, held_out=2)
    at = utc_now() - timedelta(hours=5)
    buy(db, prog, treated[0], at=at, event_id=f"t0-{found.id}")
    buy(db, prog, treated[0], at=at + timedelta(hours=1))
    buy(db, prog, treated[1], at=at)
    buy(db, prog, held[0], at=at)
    buy(db, prog, held[1], at=at)
    f.ingest_one(db, f.return_payload(prog, f"t0-{found.id}", [{"sku": "kaffee", "quantity": 1}]))
    # Purchases before the window count for nothing.
    starts = datetime.fromisoformat(found.spec["window"]["starts_at"])
    buy(db, prog, held[0], at=starts - timedelta(hours=1))

    with db.unit_of_work(write=False) as session:
        stats = campaign_stats(session, campaigns.get(session, found.id), now=utc_now())
        enrolled = len(
            session.scalars(select(Member.id).where(Member.programme_id == prog.id)).all()
        )
    assert (stats.exposed, stats.treated, stats.held_out) == (4, 2, 2)
    assert stats.audience == enrolled
    assert stats.points_issued == 3 * BOOST
    assert (stats.budget.used, stats.budget.left) == (3 * BOOST, 1_000 - 3 * BOOST)
    assert stats.messages.model_dump() == {
        "tracked": True,
        "sent": 0,
        "delivered": 0,
        "failed": 0,
        "pending": 0,
        "by_channel": {},
    }  # a bonus campaign sends no message
    assert stats.offer is None
    assert stats.redemptions == 0
    t, h = stats.arms["treated"], stats.arms["held_out"]
    assert (t.members, t.points, t.purchases) == (2, 72, 3)
    assert t.revenue_minor == 3 * 2099 - 899
    assert str(t.purchases_per_member) == "1.50"
    assert t.revenue_per_member_minor == (3 * 2099 - 899) // 2
    assert (h.members, h.points, h.purchases, h.revenue_minor) == (2, 0, 2, 2 * 2099)
    assert (str(h.purchases_per_member), h.revenue_per_member_minor) == ("1.00", 2099)
