"""What the tiers book and service share: names, constants, the multiplier's explanation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from treu.tiers.maths import Ladder

EMPTY = Ladder(())
RULE_PREFIX = "tier."
"""Earning rules ``tier.<code>`` are the tiers' multipliers (``treu.rules.service``)."""
MEMBERSHIP_EVENT = "membership_purchased"


@dataclass(frozen=True)
class TierInfo:
    """A member's tier as other features see it (rewards: exclusive access by rank)."""

    code: str
    rank: int
    name: Mapping[str, str]
    flags: tuple[str, ...]
    multiplier: Decimal
    paid: bool

    def label(self, lang: str = "en") -> str:
        return str(self.name.get(lang) or self.name.get("en") or self.code)


def tier_award_details(
    rule_id: str, version: int, factor: Decimal, points: int, ladder: Ladder
) -> dict[str, Any]:
    """What a tier multiplier's posting stores (names, not the member)."""
    code = rule_id.removeprefix(RULE_PREFIX)
    tier = ladder.get(code)
    return {
        "template": "tiers.multiplier",
        "params": {
            "tier": dict(tier.name) if tier else {"en": code},
            "code": code,
            "factor": str(factor),
            "points": points,
        },
        "rule_id": rule_id,
        "rule_version": version,
    }
