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
