"""What the API answers about challenges (the request body is ``ChallengeSpec``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from treu.challenges.spec import Reward

EXAMPLE_CHALLENGE: dict[str, Any] = {
    "code": "mai-3-einkaeufe",
    "name": {"de": "3 Einkäufe im Mai", "en": "3 purchases in May"},
    "description": {
        "de": "Kaufe im Mai dreimal ab 10 € ein und erhalte 300 Punkte.",
        "en": "Shop three times in May (from EUR 10) and get 300 points.",
    },
    "trigger": ["purchase"],
    "condition": "event.total_minor >= 1000",
    "goal": {"type": "count", "target": 3},
    "window": {
        "type": "fixed",
        "starts_at": "2026-05-01T00:00:00+02:00",
        "ends_at": "2026-06-01T00:00:00+02:00",
    },
    "reward": {
        "points": 300,
        "badge": {"code": "mai-held", "name": {"de": "Mai-Held", "en": "May hero"}, "icon": "🌸"},
    },
}
EXAMPLE_CATEGORIES: dict[str, Any] = {
    "code": "drei-kategorien",
    "name": {"de": "Kaufe aus 3 Kategorien", "en": "Buy from 3 categories"},
    "trigger": ["purchase"],
    "line_condition": "line.category != 'pfand'",
    "goal": {"type": "distinct", "target": 3, "value": "line.category"},
    "window": {"type": "repeating", "every": "month"},
    "max_completions": None,
    "reward": {"points": 150},
}
EXAMPLE_REVIEWS: dict[str, Any] = {
    "code": "zwei-bewertungen",
    "name": {"de": "Schreibe 2 Bewertungen", "en": "Write 2 reviews"},
    "trigger": ["review_submitted"],
    "goal": {"type": "count", "target": 2},
    "window": {"type": "repeating", "every": "week"},
    "max_completions": 4,
    "reward": {"points": 100},
}


class ChallengeOut(BaseModel):
    id: uuid.UUID
    programme: str
    code: str
    status: str = Field(description="draft, active, paused or ended")
    spec: dict[str, Any] = Field(description="The challenge's specification")
    revision: int = Field(description="Goes up with every change")
    locked: bool = Field(
        description="True once activated: trigger, conditions, goal, window and "
        "max_completions cannot change any more"
    )
    completions: int = Field(description="Completions by all members so far")
    activated_at: datetime | None
    paused_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ChallengeList(BaseModel):
    items: list[ChallengeOut]


class PeriodOut(BaseModel):
    key: str = Field(
        examples=["month:2026-05"], description="window, week:YYYY-Www or month:YYYY-MM"
    )
    starts_at: datetime | None
    ends_at: datetime | None = Field(description="Exclusive")
    repeats: str | None = Field(description="week or month; null for a fixed window")


class BadgeOut(BaseModel):
    code: str
    name: str
    icon: str
    description: str | None = None


class RewardOut(BaseModel):
    points: int
    badge: BadgeOut | None = None

    @classmethod
    def of(cls, reward: Reward, lang: str) -> RewardOut:
        badge = reward.badge
        return cls(
            points=reward.points,
            badge=BadgeOut(
                code=badge.code,
                name=badge.name.get(lang),
                icon=badge.icon,
                description=badge.description.get(lang) if badge.description else None,
            )
            if badge is not None
            else None,
        )


class ChallengeProgressOut(BaseModel):
    challenge_id: uuid.UUID
    code: str
    name: str
    description: str | None
    trigger: list[str]
    goal: str = Field(description="count, distinct or sum")
    current: int = Field(description="Progress in the current period (at most the target)")
    target: int
    percent: int = Field(ge=0, le=100)
    values: list[str] | None = Field(
        default=None, description="Distinct goals: the values counted so far"
    )
    period: PeriodOut
    ends_at: datetime | None = Field(description="When the current period ends")
    completed: bool = Field(description="The current period is completed")
    completions: int = Field(description="This member's completions over all periods")
    max_completions: int | None
    can_progress: bool = Field(description="Events can still bring progress in this period")
    reward: RewardOut


class CompletionOut(BaseModel):
    challenge_id: uuid.UUID
    code: str
    name: str
    period: PeriodOut
    completed_at: datetime
    points: int
    badge: str | None = Field(description="The badge code, if the completion awarded one")


class MemberChallengesOut(BaseModel):
    member_id: uuid.UUID
    lang: str
    active: list[ChallengeProgressOut] = Field(
        description="Active challenges whose window is open now, with this member's progress"
    )
    completed: list[CompletionOut] = Field(description="Completions, newest first")
