"""Answers meant for a member are in the member's language unless the caller asks for
another (``lang`` first, then ``Accept-Language``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.kit.lang import from_accept_language, member_language
from treu.kit.time import utc_now


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("de", "de"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en-GB,en;q=0.9,de;q=0.8", "en"),
        ("fr-FR, de;q=0.5, en;q=0.7", "en"),  # French is not spoken: the next best
        ("fr, *;q=0.5", None),  # nothing Treu speaks named: the member's language
        ("de;q=0, en;q=0.1", "en"),  # q=0 means "not this one"
        ("de;q=0.5, en;q=0.5", "de"),  # a tie: the one named first
        ("EN-us", "en"),
        ("de;q=abc, en", "en"),  # a malformed weight is passed over
    ],
)
def test_accept_language(header: str | None, expected: str | None) -> None:
    assert from_accept_language(header) == expected


def test_the_asked_language_wins_then_the_members_then_english() -> None:
    assert member_language("en", "de") == "en"
    assert member_language(None, "de") == "de"
    assert member_language(None, None) == "en"
    assert member_language(None, "fr") == "en"


def _challenge(api: Api, slug: str) -> None:
    body = {
        "code": f.unique("c"),
        "name": {"de": "Kaufe aus 3 Kategorien", "en": "Buy from 3 categories"},
        "trigger": ["purchase"],
        "goal": {"type": "distinct", "target": 3, "value": "line.category"},
        "window": {"type": "repeating", "every": "month"},
        "reward": {"points": 150},
    }
    admin = api.headers("admin")
    created = api.client.post(f"/v1/programmes/{slug}/challenges", json=body, headers=admin)
    assert created.status_code == 201, created.text
    activated = api.client.post(f"/v1/challenges/{created.json()['id']}/activate", headers=admin)
    assert activated.status_code == 200, activated.text


def _reward(api: Api, slug: str) -> dict[str, Any]:
    body = {
        "code": f.unique("r"),
        "type": "amount_discount",
        "name": {"de": "5-€-Gutschein", "en": "€5 voucher"},
        "points_cost": 500,
        "value_minor": 500,
    }
    created = api.client.post(
        f"/v1/programmes/{slug}/rewards", json=body, headers=api.headers("admin")
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_member_answers_default_to_the_members_language(api: Api, db: Database) -> None:
    prog = f.programme(db)
    _challenge(api, prog.slug)
    reward = _reward(api, prog.slug)
    anna = f.member(db, prog, language="de")
    ben = f.member(db, prog)  # no language of his own
    f.earn(db, prog, anna, 800, at=utc_now())
    redeemed = api.client.post(
        f"/v1/members/{anna.id}/redemptions",
        json={"reward_id": reward["id"]},
        headers=api.headers("members:write") | {"Idempotency-Key": f.unique("k")},
    )
    assert redeemed.status_code == 201, redeemed.text
    read = api.headers("members:read")

    def get(path: str, **headers: str) -> Any:
        answer = api.client.get(path, headers=read | headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    challenges = get(f"/v1/members/{anna.id}/challenges")
    assert challenges["lang"] == "de"
    assert [c["name"] for c in challenges["active"]] == ["Kaufe aus 3 Kategorien"]
    assert get(f"/v1/members/{ben.id}/challenges")["lang"] == "en"
    english = get(f"/v1/members/{anna.id}/challenges", **{"Accept-Language": "en-GB,en;q=0.8"})
    assert english["lang"] == "en"
    asked = get(f"/v1/members/{anna.id}/challenges?lang=de", **{"Accept-Language": "en"})
    assert asked["lang"] == "de"  # the parameter wins over the header

    rewards = get(f"/v1/members/{anna.id}/rewards")
    assert [r["name"] for r in rewards["redeemable"] + rewards["locked"]] == ["5-€-Gutschein"]
    assert get(f"/v1/members/{anna.id}/rewards?lang=en")["locked"][0]["name"] == "€5 voucher"

    ledger = get(f"/v1/members/{anna.id}/ledger")
    in_english = get(f"/v1/members/{anna.id}/ledger?lang=en")
    assert [p["kind"] for p in ledger["items"]] == [p["kind"] for p in in_english["items"]]
    assert [p["explanation"] for p in ledger["items"]] != [
        p["explanation"] for p in in_english["items"]
    ]
    [coupon] = get(f"/v1/members/{anna.id}/coupons")["items"]
    [coupon_en] = get(f"/v1/members/{anna.id}/coupons", **{"Accept-Language": "en"})["items"]
    assert coupon["name"] == "5-€-Gutschein"
    assert coupon_en["name"] == "€5 voucher"
    assert get(f"/v1/coupons/{coupon['code']}")["name"] == "5-€-Gutschein"
    [redemption] = get(f"/v1/members/{anna.id}/redemptions")["items"]
    assert redemption["reward"]["name"] == "5-€-Gutschein"
    by_id = get(f"/v1/redemptions/{redemption['id']}")
    assert by_id["reward"]["name"] == "5-€-Gutschein"
