"""The factories make real rows through the real services, one per aggregate, on both
backends: what a test gets from ``tests/factories.py`` is what production would store."""

from __future__ import annotations

from sqlalchemy import func, select

from tests import factories as f
from treu.auth.service import api_keys
from treu.campaigns.models import CampaignStatus
from treu.challenges.models import ChallengeStatus
from treu.db.session import Database
from treu.rules.models import Rule
from treu.tiers.models import Tier


def test_every_aggregate_has_a_factory_that_stores_it(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    assert anna.programme_id == prog.id

    rule = f.rule(db, prog, **f.ORGANIC_X2)
    challenge = f.challenge(db, prog)
    campaign = f.campaign(db, prog)
    reward = f.reward(db, prog)
    holder, coupon = f.coupon(db, prog, anna)
    key, plaintext = f.api_key(db, scopes=["members:read"])
    tiered = f.tiered(db)

    assert holder.id == anna.id
    assert (coupon.member_id, coupon.status, coupon.kind) == (anna.id, "active", "amount_discount")
    assert f.balance(db, anna).available == 0  # the points went into the coupon
    assert reward.programme_id == prog.id
    assert challenge.status == ChallengeStatus.active.value
    assert campaign.status == CampaignStatus.active.value
    with db.unit_of_work(write=False) as session:
        assert session.get_one(Rule, rule.id).version == 1
        assert session.get_one(Rule, campaign.rule_id).status == "active"
        tiers = session.scalar(
            select(func.count()).select_from(Tier).where(Tier.programme_id == tiered.id)
        )
        assert tiers == len(f.LADDER)
        principal = api_keys.authenticate(session, plaintext)
    assert (principal.key_id, principal.scopes) == (key.lookup, frozenset({"members:read"}))
