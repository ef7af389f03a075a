"""Segments where features decide: rule conditions (ingest and checkout), reward
eligibility, campaign and journey audiences. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests import factories
from treu.campaigns.offers import offers
from treu.checkout.service import CartIn, checkout
from treu.db.session import Database
from treu.errors import Invalid
from treu.insights.segmenting import SegmentIn, segments
from treu.journeys.models import JourneyKind
from treu.journeys.service import Target, journeys
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.rewards.errors import RewardLocked


def _vip_programme(db: Database) -> tuple[Programme, Member, Member]:
    """A programme whose segment ``vip`` holds anna (she bought) and not ben."""
    prog = factories.programme(db)
    anna, ben = factories.member(db, prog), factories.member(db, prog)
    factories.ingest_one(
        db,
        factories.purchase_payload(
            prog, anna, amount_minor=2000, occurred_at=utc_now() - timedelta(days=2)
        ),
    )
    with db.unit_of_work() as session:
        programme = programmes.get(session, prog.id)
        segments.create(
            session,
            programme=programme,
            data=SegmentIn(slug="vip", name="VIP", expression="metrics.purchases >= 1"),
        )
        segments.refresh(session, programme=programme)
    return prog, anna, ben


def _earned(db: Database, prog: Programme, who: Member) -> int:
    outcome = factories.ingest_one(db, factories.purchase_payload(prog, who, amount_minor=1000))
    assert outcome.body is not None
    return outcome.body.points.earned


def test_rule_conditions_see_the_members_segments(db: Database) -> None:
    prog, anna, ben = _vip_programme(db)
    factories.rule(
        db,
        prog,
        name="VIP bonus",
        trigger="purchase",
        condition="'vip' in member.segments",
        effect={"type": "fixed", "points": 50},
    )
    assert _earned(db, prog, anna) == 10 + 50
    assert _earned(db, prog, ben) == 10

    def preview(who: Member) -> int:
        cart: dict[str, Any] = {
            "programme": prog.slug,
            "member": {"member_id": str(who.id)},
            "channel": "pos",
            "currency": "EUR",
            "lines": [{"sku": "x", "quantity": 1, "unit_price_minor": 1000}],
        }
        with db.unit_of_work(write=False) as session:
            return checkout.evaluate(session, CartIn.model_validate(cart)).points.total

    assert preview(anna) == 60
    assert preview(ben) == 10


def test_rewards_for_a_segment(db: Database) -> None:
    prog, anna, ben = _vip_programme(db)
    voucher = factories.reward(db, prog, eligibility={"segments": ["vip"]})
    for who in (anna, ben):
        factories.adjust(db, who, 1000)
    assert factories.redeem(db, anna, voucher).replayed is False
    with pytest.raises(RewardLocked) as caught:
        factories.redeem(db, ben, voucher)
    assert [r["code"] for r in caught.value.extra["reasons"]] == ["segment_required"]


def test_rewards_for_a_segment_are_recommended_to_its_members_only(db: Database) -> None:
    from treu.insights.offers import offers
    from treu.ledger.service import ledger

    prog, anna, ben = _vip_programme(db)
    voucher = factories.reward(db, prog, eligibility={"segments": ["vip"]}, points_cost=100)
    for who in (anna, ben):
        factories.adjust(db, who, 1000)

    def recommended(who: Member) -> list[str]:
        with db.unit_of_work(write=False) as session:
            member = session.get_one(Member, who.id)
            programme = programmes.get(session, prog.id)
            found = offers(
                session,
                member=member,
                programme=programme,
                available_points=ledger.balance(session, member_id=who.id).available,
                k=10,
                lang="de",
                now=utc_now(),
            )
        return [r.code for r in found.rewards]

    assert voucher.code in recommended(anna)
    assert voucher.code not in recommended(ben)


def test_offers_reach_only_the_segment(db: Database) -> None:
    prog, anna, _ben = _vip_programme(db)
    found = factories.offer(db, prog, audience={"segments": ["vip"]})
    given = offers.give(db, found.id)
    assert (given.treated, given.held_out) == (1, 0)
    assert factories.balance(db, anna).available >= 200
    with pytest.raises(Invalid, match="no segment 'nope'"):
        factories.offer(db, prog, audience={"segments": ["nope"]})


def test_bonus_campaigns_for_a_segment_become_a_rule_condition(db: Database) -> None:
    prog, anna, ben = _vip_programme(db)
    factories.campaign(
        db,
        prog,
        boost={"type": "points", "points": 30},
        audience={"segments": ["vip"]},
        holdout_percent=0,
    )
    assert _earned(db, prog, anna) == 10 + 30
    assert _earned(db, prog, ben) == 10


def test_journeys_reach_only_the_segment(db: Database) -> None:
    prog, anna, ben = _vip_programme(db)
    with db.unit_of_work() as session:
        programme = programmes.get(session, prog.id)
        journey = journeys.put(
            session, programme, JourneyKind.thank_you, enabled=True, segments=["vip"]
        )
        fired = journeys.fire(
            session, journey, programme, [Target(anna.id, "2026-12"), Target(ben.id, "2026-12")]
        )
        assert (fired.treated, fired.held_out) == (1, 0)
        with pytest.raises(Invalid, match="no segment"):
            journeys.put(session, programme, JourneyKind.birthday, enabled=True, segments=["x"])


def test_the_rule_simulation_sees_the_members_segments_now(db: Database) -> None:
    """The console's simulation replays recorded purchases with each member's segments
    as they are now: a draft for ``vip`` members adds points for anna, not for ben."""
    from treu.events.simulation import SimulationIn, simulate
    from treu.rules.service import rules
    from treu.rules.spec import RuleSpec

    prog, _anna, ben = _vip_programme(db)
    factories.ingest_one(
        db,
        factories.purchase_payload(
            prog, ben, amount_minor=2000, occurred_at=utc_now() - timedelta(days=1)
        ),
    )
    spec = {
        "name": "VIP bonus",
        "trigger": "purchase",
        "condition": "'vip' in member.segments",
        "effect": {"type": "fixed", "points": 50},
    }
    with db.unit_of_work() as session:
        rule = rules.create(
            session, programme=prog, spec=RuleSpec.model_validate(spec), actor="test"
        )
    request = SimulationIn.model_validate(
        {"programme": prog.slug, "from": utc_now() - timedelta(days=3), "until": utc_now()}
    )
    with db.unit_of_work(write=False) as session:
        result = simulate(session, request)
    assert result.events["purchases"] == 2
    assert result.difference.points == 50
    assert result.difference.members == 0  # both earned the base rate already
    (bonus,) = [r for r in result.draft.by_rule if r.rule_id == str(rule.id)]
    assert (bonus.points, bonus.members) == (50, 1)
    assert any("member.segments are each member's segments now" in n for n in result.notes)


def test_challenge_conditions_see_the_members_segments(db: Database) -> None:
    """A challenge for ``vip`` members counts anna's purchases, not ben's; a second
    challenge of the same purchase that does not read segments counts both."""
    from sqlalchemy import select

    from treu.challenges.models import ChallengeProgress

    prog, anna, ben = _vip_programme(db)
    now = utc_now()
    window = {
        "type": "fixed",
        "starts_at": (now - timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
    }
    everyone = factories.challenge(db, prog, now=now, window=window)
    vip = factories.challenge(
        db, prog, now=now, window=window, condition="'vip' in member.segments"
    )
    for who in (anna, ben):
        factories.ingest_one(db, factories.purchase_payload(prog, who, amount_minor=1000))
    with db.unit_of_work(write=False) as session:
        counted = {
            (row.challenge_id, row.member_id): row.current
            for row in session.scalars(
                select(ChallengeProgress).where(ChallengeProgress.programme_id == prog.id)
            )
        }
    assert counted == {
        (everyone.id, anna.id): 1,
        (everyone.id, ben.id): 1,
        (vip.id, anna.id): 1,
    }
