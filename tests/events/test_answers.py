"""An event's answer in memory (``EventAnswer`` and the parts the tiers and challenges
books give) and its JSON: what ``EventResult`` documents, stored with the event and
turned back into the same answer on a replay."""

from __future__ import annotations

import uuid

from treu.challenges.book import ChallengeReward, ChallengeStep
from treu.events.schemas import Balance, EventAnswer, EventResult, Limited, Points
from treu.rules.spec import Badge
from treu.tiers.book import TierChange

POSTING = {
    "id": "01a23ca7-295f-70b8-a4a8-f5aa9a840595",
    "kind": "earn",
    "points": 20,
    "explanation": "Challenge Shop once completed: +20",
    "correlation_id": "01a23ca7-295f-70b8-a4a8-f5ab1e7f55af",
    "created_at": "2026-11-24T10:20:00Z",
}
BADGE = Badge.model_validate(
    {"code": "starter", "name": {"en": "Starter", "de": "Anfänger"}, "icon": "🚀"}
)


def full() -> EventAnswer:
    return EventAnswer(
        "pos-1",
        "purchase",
        uuid.UUID("01a23ca7-2950-73cc-b57d-fae8edcc5f05"),
        Points(30, 0, 30, 0),
        Balance(20, 30),
        ({**POSTING, "rule": {"id": "base", "version": 1}},),
        badges=(BADGE,),
        limited=(Limited("r1", "Welcome bonus", "capped: daily limit reached"),),
        coupons_restored=(uuid.UUID("01a23ca7-29ce-7067-9b36-ecc3727ac632"),),
        tier=TierChange(
            "bronze",
            "silber",
            1,
            {"en": "Silver", "de": "Silber"},
            ("free_shipping",),
            "membership_purchased",
            "Bought Silver for 12 months",
            "2026-11-24T10:15:00Z",
            "2027-11-24T10:15:00Z",
        ),
        challenges=(
            ChallengeStep(
                uuid.UUID("01a23ca7-2950-73cc-b57d-fae8edcc0001"),
                "shop-once",
                "month:2026-11",
                1,
                1,
                1,
                ChallengeReward(20, POSTING, BADGE),
            ),
            ChallengeStep(
                uuid.UUID("01a23ca7-2950-73cc-b57d-fae8edcc0002"), "shop-often", "total", 3, 5, 1
            ),
        ),
    )


def test_the_json_is_what_the_api_model_describes() -> None:
    body = full().public()
    assert list(body) == [
        "event_id",
        "type",
        "member_id",
        "points",
        "balance",
        "postings",
        "badges",
        "limited",
        "coupons_restored",
        "tier",
        "challenges",
    ]
    assert body["tier"]["from"] == "bronze"
    assert body["challenges"][0]["completed"] is True
    assert body["challenges"][1]["completed"] is False
    assert "reward" not in body["challenges"][1]
    parsed = EventResult.model_validate(body)
    assert parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == body


def test_empty_parts_are_left_out_but_member_and_balance_are_always_there() -> None:
    anonymous = EventAnswer("pos-2", "purchase", None, Points(0, 0, 0, 0), None, ())
    assert anonymous.public() == {
        "event_id": "pos-2",
        "type": "purchase",
        "member_id": None,
        "points": {"earned": 0, "available": 0, "pending": 0, "reversed": 0},
        "balance": None,
        "postings": [],
    }
    held = TierChange(None, None, None, None, (), "membership_expired", "Ended", None)
    assert held.public() == {
        "from": None,
        "to": None,
        "rank": None,
        "name": None,
        "flags": [],
        "reason": "membership_expired",
        "text": "Ended",
        "since": None,
    }


def test_a_replay_reads_back_the_same_answer() -> None:
    for answer in (full(), EventAnswer("r-1", "return", None, Points(0, 0, 0, 9), None, ())):
        assert EventAnswer.from_public(answer.public()) == answer
