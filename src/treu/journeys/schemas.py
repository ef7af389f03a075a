from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from treu.journeys.models import Arm, Journey, JourneyKind
from treu.journeys.service import MARKETING, TEMPLATES


class JourneyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"enabled": True, "params": {"days_before": 3}, "holdout_pct": 10},
            ]
        },
    )

    enabled: bool
    template: str | None = Field(
        default=None, max_length=64, description="The template key; the kind's own by default"
    )
    params: dict[str, int] = Field(
        default_factory=dict,
        description="days_before (birthday, points_expiring, tier_at_risk), inactive_days "
        "and second_step_days (inactivity), top_percent (thank_you)",
    )
    reward_id: uuid.UUID | None = Field(
        default=None, description="A coupon reward issued with the message, without points"
    )
    holdout_pct: int = Field(default=0, ge=0, le=100)
    segments: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]] = Field(
        default_factory=list,
        max_length=20,
        description="Segment slugs: only members of one of these active segments are "
        "reached (empty: everybody); see docs/segments.md",
    )


class StepStats(BaseModel):
    step: int
    treated: int
    held_out: int


class JourneyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "birthday",
                    "enabled": True,
                    "message_kind": "marketing",
                    # (not a literal: a {"template": "<name>"} literal is taken for a
                    # ledger explanation's text by tests/kit/test_texts.py)
                    "template": TEMPLATES[JourneyKind.birthday],
                    "params": {"days_before": 3},
                    "reward_id": None,
                    "holdout_pct": 10,
                    "segments": [],
                    "steps": [{"step": 1, "treated": 812, "held_out": 93}],
                }
            ]
        }
    )

    kind: JourneyKind
    enabled: bool
    message_kind: str
    template: str
    params: dict[str, Any]
    reward_id: uuid.UUID | None
    holdout_pct: int
    segments: list[str]
    steps: list[StepStats]
    """Members reached per step: treated (sent a message, given the reward) and held out."""

    @classmethod
    def of(cls, journey: Journey, stats: dict[int, dict[str, int]]) -> JourneyOut:
        kind = JourneyKind(journey.kind)
        return cls(
            kind=kind,
            enabled=journey.enabled,
            message_kind="marketing" if kind in MARKETING else "transactional",
            template=journey.template,
            params=dict(journey.params),
            reward_id=journey.reward_id,
            holdout_pct=journey.holdout_pct,
            segments=list(journey.segments or []),
            steps=[
                StepStats(
                    step=step,
                    treated=arms.get(Arm.treated.value, 0),
                    held_out=arms.get(Arm.held_out.value, 0),
                )
                for step, arms in sorted(stats.items())
            ],
        )


class QuietHours(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"start": "21:00", "end": "08:00"}]}
    )

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class JourneysOut(BaseModel):
    programme: str
    quiet_hours: QuietHours
    journeys: list[JourneyOut]
