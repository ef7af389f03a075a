"""The control group without a database: deterministic, sticky, close to its share, its
own per campaign, and the same in the campaign's rule as in the recorded arms."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from treu.campaigns.models import Arm
from treu.campaigns.schemas import CampaignSpec
from treu.campaigns.service import arm_of
from treu.kit.money import Rounding
from treu.rules.engine import CompiledRuleInput, EventView, LineView, MemberView, compile_rule_set
from treu.rules.spec import RuleSpec

RNG = random.Random(2026)
MEMBERS = [uuid.UUID(int=RNG.getrandbits(128)) for _ in range(2_000)]
CAMPAIGN = uuid.UUID("0190a4c2-0000-7000-8000-0000000000aa")
OTHER = uuid.UUID("0190a4c2-0000-7000-8000-0000000000bb")
AT = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)


def held_out(campaign: uuid.UUID, percent: int) -> set[uuid.UUID]:
    return {m for m in MEMBERS if arm_of(campaign, m, percent) is Arm.held_out}


@pytest.mark.parametrize("percent", [5, 10, 25, 50, 90])
def test_the_holdout_is_close_to_its_share(percent: int) -> None:
    share = len(held_out(CAMPAIGN, percent)) / len(MEMBERS)
    # Binomial over 2,000 members: within 4 standard deviations (at most 4.5 points).
    spread = 4 * (percent / 100 * (1 - percent / 100) / len(MEMBERS)) ** 0.5
    assert abs(share - percent / 100) <= spread, share


def test_the_holdout_is_deterministic_and_sticky() -> None:
    first = [arm_of(CAMPAIGN, m, 10) for m in MEMBERS]
    assert [arm_of(CAMPAIGN, m, 10) for m in MEMBERS] == first  # the same every time
    assert arm_of(CAMPAIGN, MEMBERS[0], 0) is Arm.treated  # no holdout, nobody held out
    # A larger holdout only adds members to it: nobody held out at 10 % is treated at 20 %.
    assert held_out(CAMPAIGN, 10) <= held_out(CAMPAIGN, 20)


def test_each_campaign_draws_its_own_control_group() -> None:
    mine, theirs = held_out(CAMPAIGN, 10), held_out(OTHER, 10)
    # Independent draws overlap in about 1 % of the members (20), not in all 10 %.
    assert len(mine & theirs) < 60


def test_the_rule_holds_back_exactly_the_held_out_arm() -> None:
    spec = CampaignSpec.model_validate(
        {
            "code": "bio-woche",
            "name": "Bio-Woche",
            "window": {
                "starts_at": (AT - timedelta(days=2)).isoformat(),
                "ends_at": (AT + timedelta(days=5)).isoformat(),
            },
            "boost": {
                "type": "multiplier",
                "factor": "3",
                "line_condition": "'organic' in line.tags",
            },
            "holdout_percent": 10,
        }
    )
    base = {
        "name": "Base",
        "trigger": "purchase",
        "effect": {"type": "points_per_unit", "rate": "1"},
    }
    ruleset = compile_rule_set(
        [
            CompiledRuleInput("base", 1, RuleSpec.model_validate(base)),
            CompiledRuleInput(str(CAMPAIGN), 1, spec.rule_spec(CAMPAIGN)),
        ],
        currency="EUR",
        rounding=Rounding.floor,
        timezone="Europe/Berlin",
    )
    event = EventView.purchase(
        occurred_at=AT,
        timezone="Europe/Berlin",
        currency="EUR",
        lines=[LineView.of("bio", unit_price_minor=1200, tags=["organic"])],
    )
    for member_id in MEMBERS[:500]:
        member = MemberView.of(at=AT, timezone="Europe/Berlin", id=member_id)
        boosted = ruleset.evaluate(event, member).award_for(str(CAMPAIGN)) is not None
        assert boosted == (arm_of(CAMPAIGN, member_id, 10) is Arm.treated)
