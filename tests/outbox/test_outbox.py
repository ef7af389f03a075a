"""Domain events into the transactional outbox: every change records its event in the
same transaction — one row per domain event, none for a rolled-back unit of work or a
replayed event — with ids and amounts, never personal data."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import factories as f
from treu.db.session import Database
from treu.events.models import Event
from treu.events.service import Adjustment, adjustments
from treu.kit.time import utc_now
from treu.ledger.service import EXPIRING_NOTICE_DAYS, ledger
from treu.members.models import Member
from treu.members.schemas import MemberCreate, MemberUpdate
from treu.members.service import members
from treu.outbox.events import TYPES, MemberEnrolled
from treu.outbox.models import OutboxMessage
from treu.outbox.service import outbox
from treu.programmes.service import programmes
from treu.rewards.coupons import Cart, CartLine, coupons
from treu.rewards.models import Coupon
from treu.rewards.service import redemptions
from treu.worker.jobs import activate_pending, expire_points, warn_expiring


def messages(db: Database, who: Member, *types: str) -> list[OutboxMessage]:
    with db.unit_of_work(write=False) as session:
        return outbox.messages(session, member_id=who.id, types=types or None)


def kinds(db: Database, who: Member) -> list[str]:
    return [m.type for m in messages(db, who)]


def event_ids(db: Database, *keys: str) -> list[str]:
    """Treu's ids (what the outbox names) of the events with these ids of yours."""
    with db.unit_of_work(write=False) as session:
        found = dict(session.execute(select(Event.key, Event.id).where(Event.key.in_(keys))).all())
    return [str(found[key]) for key in keys]


def test_enrolment_and_profile_changes_are_recorded_without_personal_data(
    db: Database,
) -> None:
    prog = f.programme(db)
    who = f.member(db, prog, first_name="Anna", phone="+4915112345678")
    [enrolled] = messages(db, who)
    assert (enrolled.type, enrolled.programme_id, enrolled.member_id) == (
        "member.enrolled",
        prog.id,
        who.id,
    )
    assert enrolled.payload == {
        "channel": "other",
        "enrolled_at": who.enrolled_at.isoformat().replace("+00:00", "Z"),
    }
    assert enrolled.key is None
    with db.unit_of_work() as session:
        members.update(
            session,
            member=members.get(session, who.id),
            data=MemberUpdate.model_validate({"birthday": "1990-05-17", "last_name": "Muster"}),
        )
    updated = messages(db, who, "member.updated")
    assert [m.payload for m in updated] == [{"fields": ["birthday", "last_name"]}]
    text = str([m.payload for m in messages(db, who)])
    for personal in (who.email, "Anna", "Muster", "+4915112345678", "1990-05-17"):
        assert personal not in text


def test_a_rolled_back_unit_of_work_leaves_no_row(db: Database) -> None:
    prog = f.programme(db)
    enrolled: list[uuid.UUID] = []

    def enrol_then_fail() -> None:
        with db.unit_of_work() as session:
            member = members.enrol(
                session,
                programme=programmes.get(session, prog.id),
                data=MemberCreate.model_validate(
                    {"programme": prog.slug, "email": "x@example.com"}
                ),
                writer=ledger.writer(session),
            )
            enrolled.append(member.id)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        enrol_then_fail()
    [member_id] = enrolled
    with db.unit_of_work(write=False) as session:
        assert session.get(Member, member_id) is None
        assert outbox.messages(session, member_id=member_id) == []


def test_a_read_only_unit_of_work_refuses_to_record(db: Database) -> None:
    prog = f.programme(db)
    event = MemberEnrolled(
        programme_id=prog.id,
        member_id=None,
        occurred_at=utc_now(),
        channel="pos",
        enrolled_at=utc_now(),
    )
    with pytest.raises(RuntimeError, match="read-only"), db.unit_of_work(write=False) as session:
        outbox.record(session, event)


def test_a_purchase_records_one_event_per_kind_and_a_replay_none(db: Database) -> None:
    prog = f.programme(db, pending_days=14)
    f.rule(db, prog, **f.ORGANIC_X2)
    who = f.member(db, prog)
    at = utc_now() - timedelta(hours=1)
    payload = f.purchase_payload(prog, who, lines=f.contract_lines(), occurred_at=at)
    out = f.ingest_one(db, payload)
    assert out.body is not None
    [pending] = messages(db, who, "points.pending")
    assert pending.payload["points"] == out.body.points.pending == 13
    assert [pending.payload["event_id"]] == event_ids(db, out.event_id)
    assert len(out.body.postings) == 2  # the base rate and the rule: one event of the sum
    assert set(pending.payload) == {"points", "event_id", "available_at"}
    assert pending.payload["available_at"] is not None
    before = kinds(db, who)
    assert before == ["member.enrolled", "points.pending"]

    replay = f.ingest_one(db, payload)
    assert replay.status == 200
    assert kinds(db, who) == before

    refused = f.ingest(db, f.purchase_payload(prog, who, occurred_at=utc_now() + timedelta(days=2)))
    assert refused[0].status == 422
    assert kinds(db, who) == before


def test_a_batch_writes_one_row_per_member_event_in_bulk(db: Database) -> None:
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(5)]
    at = utc_now() - timedelta(hours=1)
    payloads = [
        f.purchase_payload(prog, people[n % 5], amount_minor=1000 + n, occurred_at=at)
        for n in range(40)
    ]
    outcomes = f.ingest(db, *payloads)
    assert [o.status for o in outcomes] == [201] * 40
    with db.unit_of_work(write=False) as session:
        earned = outbox.messages(session, programme_id=prog.id, types=["points.earned"])
    assert len(earned) == 40
    expected = event_ids(db, *(o.event_id for o in outcomes))
    assert sorted(m.payload["event_id"] for m in earned) == sorted(expected)
    assert [m.id for m in earned] == sorted(m.id for m in earned)


def test_return_activation_expiry_and_the_expiring_notice(db: Database) -> None:
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 1})
    who = f.member(db, prog)
    start = utc_now() - timedelta(days=40)
    later = start + timedelta(days=1)
    bought = f.purchase_payload(prog, who, amount_minor=5000, occurred_at=start)
    f.ingest_one(db, bought, now=start)
    back = f.return_payload(prog, bought["id"], [{"sku": "sku-1", "quantity": 1}])
    f.ingest_one(db, back | {"occurred_at": later.isoformat()}, now=later)
    f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=2000, occurred_at=start), now=later)
    [reversed_] = messages(db, who, "points.reversed")
    assert reversed_.payload["points"] == -50
    assert activate_pending(db, now=start + timedelta(days=15)) >= 1
    [activated] = messages(db, who, "points.activated")
    assert activated.payload["points"] == 20
    notice_time = start + timedelta(days=15)
    assert warn_expiring(db, now=notice_time) >= 1
    assert warn_expiring(db, now=notice_time + timedelta(hours=1)) >= 1  # again: no new row
    [expiring] = messages(db, who, "points.expiring")
    assert expiring.payload["points"] == 20
    expires_at = datetime.fromisoformat(expiring.payload["expires_at"])
    assert expires_at - notice_time <= timedelta(days=EXPIRING_NOTICE_DAYS)
    assert expiring.key == f"points.expiring:{who.id}:{expiring.payload['expires_at']}"
    assert expire_points(db, now=expires_at + timedelta(seconds=1)) >= 1
    [expired] = messages(db, who, "points.expired")
    assert expired.payload["points"] == -20


def test_redemption_coupon_use_and_adjustment(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    now = utc_now()
    f.earn(db, prog, who, 1300, at=now)
    assert kinds(db, who) == ["member.enrolled", "points.earned"]
    reward = f.reward(db, prog)
    with db.unit_of_work() as session:
        redeemed = redemptions.redeem(
            session, member_id=who.id, key=f.unique("k"), reward_id=reward.id, now=now
        )
    assert not redeemed.replayed
    body = redeemed.result.model_dump(mode="json")
    redeemed = messages(db, who, "points.redeemed", "reward.redeemed", "coupon.issued")
    assert [m.type for m in redeemed] == ["points.redeemed", "reward.redeemed", "coupon.issued"]
    assert redeemed[0].payload["points"] == -500
    assert redeemed[0].payload["correlation_id"] == body["id"]
    assert redeemed[1].payload == {
        "redemption_id": body["id"],
        "reward_id": str(reward.id),
        "reward_code": reward.code,
        "reward_type": "amount_discount",
        "points": 500,
    }
    assert redeemed[2].payload["coupon_id"] == body["coupon"]["id"]
    assert "code" not in redeemed[2].payload  # the code is the member's to show
    with db.unit_of_work() as session:
        coupon = session.get_one(Coupon, uuid.UUID(body["coupon"]["id"]))
        used = coupons.redeem(
            session,
            code=coupon.code,
            order_id="order-1",
            programme=programmes.get(session, prog.id),
            cart=Cart("EUR", (CartLine("4001", 2, 1500),)),
            actor="test",
            now=now,
        )
    assert not used.replayed
    [message] = messages(db, who, "coupon.used")
    assert message.payload["order_id"] == "order-1"
    with db.unit_of_work() as session:
        adjustments.adjust(
            session,
            member=members.get(session, who.id),
            adjustment=Adjustment(points=-100, reason="correction", key=f.unique("adj")),
            actor="test",
            now=now,
        )
    [adjusted] = messages(db, who, "points.adjusted")
    assert adjusted.payload["points"] == -100
    with db.unit_of_work() as session:
        again = redemptions.redeem(
            session, member_id=who.id, key=f.unique("k"), reward_id=reward.id, now=now
        ).result
    f.cancel(db, again.id, now=now)
    [refunded] = messages(db, who, "points.refunded")
    assert (refunded.payload["points"], refunded.payload["correlation_id"]) == (500, str(again.id))


def test_tier_change_challenge_completion_and_badges(db: Database) -> None:
    prog = f.tiered(db)  # spend: Silver from €100
    challenge = f.challenge(
        db,
        prog,
        window={"type": "repeating", "every": "month"},
        goal={"type": "count", "target": 1},
        reward={"points": 10, "badge": {"code": "starter", "name": {"en": "Go"}, "icon": "🏅"}},
        now=utc_now() - timedelta(days=400),
    )
    f.rule(
        db,
        prog,
        name="First",
        trigger="purchase",
        effect={"type": "badge_only"},
        badge={"code": "first-buy", "name": {"en": "First buy"}, "icon": "🏅"},
    )
    who = f.member(db, prog)
    at = utc_now() - timedelta(minutes=5)
    out = f.ingest_one(db, f.purchase_payload(prog, who, amount_minor=12_000, occurred_at=at))
    assert out.body is not None
    [tier] = messages(db, who, "tier.changed")
    assert (tier.payload["from_tier"], tier.payload["to_tier"], tier.payload["reason"]) == (
        "bronze",
        "silber",
        "qualified",
    )
    assert [tier.payload["event_id"]] == event_ids(db, out.event_id)
    [completed] = messages(db, who, "challenge.completed")
    assert completed.payload["challenge_id"] == str(challenge.id)
    assert completed.payload["points"] == 10
    badges = {m.payload["badge"]: m.payload for m in messages(db, who, "badge.awarded")}
    assert set(badges) == {"starter", "first-buy"}
    assert badges["starter"]["challenge_id"] == str(challenge.id)
    assert badges["first-buy"]["rule_id"] is not None


def test_every_row_has_a_known_type(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        seen = set(session.scalars(select(OutboxMessage.type).group_by(OutboxMessage.type)))
        rows = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert seen <= set(TYPES)
    assert rows is not None


def _payload_types(value: Any) -> bool:
    """JSON only: what the column stores must come back the same."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _payload_types(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_payload_types(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_payloads_are_plain_json(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        payloads = session.scalars(select(OutboxMessage.payload).limit(500)).all()
    assert all(_payload_types(p) for p in payloads)
