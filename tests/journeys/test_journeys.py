"""Journeys fire once per member and occasion (a rerun, two workers), respect consent,
the marketing cap and quiet hours, hold out a sticky share of members, and say exactly
what the ledger will do."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select, update

from tests import factories as f
from tests.messaging.conftest import SECRET
from tests.support.journeys import close, consent, enable, exposures, mails, messages
from treu.config import Settings
from treu.db.session import Database
from treu.journeys.daily import run_daily
from treu.journeys.models import JourneyKind
from treu.journeys.service import bucket, journeys, quiet_until
from treu.kit.time import utc_now
from treu.ledger.models import Lot, Posting
from treu.ledger.service import ledger
from treu.messaging.channel import EmailChannel
from treu.outbox.service import outbox
from treu.rewards.models import Coupon

BERLIN = "Europe/Berlin"


# --- pure rules ----------------------------------------------------------------------------


def test_quiet_hours_span_midnight_in_the_programme_s_time_zone() -> None:
    late = datetime(2027, 3, 10, 21, 0, tzinfo=UTC)  # 22:00 in Berlin
    assert quiet_until(late, BERLIN, "21:00", "08:00") == datetime(2027, 3, 11, 7, tzinfo=UTC)
    early = datetime(2027, 3, 11, 5, 0, tzinfo=UTC)  # 06:00 in Berlin
    assert quiet_until(early, BERLIN, "21:00", "08:00") == datetime(2027, 3, 11, 7, tzinfo=UTC)
    noon = datetime(2027, 3, 11, 11, 0, tzinfo=UTC)
    assert quiet_until(noon, BERLIN, "21:00", "08:00") is None


def test_the_holdout_bucket_is_sticky_and_spread() -> None:
    import uuid

    journey_id = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(2000)]
    first = [bucket(m, journey_id) for m in members]
    assert first == [bucket(m, journey_id) for m in members]
    share = sum(b < 20 for b in first) / len(first)
    assert 0.15 < share < 0.25


# --- birthday ------------------------------------------------------------------------------


@pytest.mark.now("2027-03-10T21:00:00Z")
def test_a_birthday_at_22_berlin_fires_once_and_is_delivered_at_8(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    reward = f.reward(db, prog)
    enable(db, prog, JourneyKind.birthday, reward_id=reward.id)
    anna = f.member(db, prog, language="de", first_name="Anna", birthday=date(1990, 3, 10))
    other = f.member(db, prog, birthday=date(1990, 3, 12))
    consent(db, anna)
    assert run_daily(db) >= 1
    assert run_daily(db) == 0  # a rerun reaches nobody again
    [message] = messages(db, anna)
    assert message.key == f"journey:{prog.id}:birthday:2027:{anna.id}"
    assert messages(db, other) == []
    [mail] = mails(db, anna)
    assert mail.payload["kind"] == "marketing"
    assert mail.payload["subject"] == "Alles Gute zum Geburtstag, Anna!"
    assert mail.not_before == datetime(2027, 3, 11, 7, 0, tzinfo=UTC)  # 08:00 Berlin
    with db.unit_of_work(write=False) as session:
        [coupon] = session.scalars(select(Coupon).where(Coupon.member_id == anna.id)).all()
    assert coupon.code in mail.payload["text"]
    [exposure] = exposures(db, anna)
    assert (exposure.arm, exposure.occasion, exposure.coupon_id) == ("treated", "2027", coupon.id)


@pytest.mark.now("2027-03-10T10:00:00Z")
def test_marketing_without_granted_consent_sends_nothing(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.birthday)
    never_asked = f.member(db, prog, birthday=date(1990, 3, 10))
    withdrew = f.member(db, prog, birthday=date(1985, 3, 10))
    consent(db, withdrew, granted=False)
    run_daily(db)
    for who in (never_asked, withdrew):
        assert len(messages(db, who)) == 1
        assert mails(db, who) == []


@pytest.mark.now("2027-03-10T10:00:00Z")
def test_the_marketing_cap_counts_the_last_seven_days(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.birthday)
    who = f.member(db, prog, birthday=date(1990, 3, 10))
    consent(db, who)
    run_daily(db)
    capped = EmailChannel(Settings(secret_key=SECRET, marketing_cap_per_7_days=0))
    with db.unit_of_work(write=False) as session:
        rows = outbox.messages(session, member_id=who.id, types=["campaign.message"])
        assert capped.plan(session, rows, now=utc_now()) == []
    assert len(mails(db, who)) == 1  # the default cap (3) lets it go


@pytest.mark.now("2028-02-28T10:00:00Z")
def test_a_29_february_birthday_is_on_28_february_in_other_years(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.birthday)
    leap = f.member(db, prog, birthday=date(2000, 2, 29))
    run_daily(db)
    assert messages(db, leap) == []  # 2028 is a leap year: tomorrow is the day
    with time_machine.travel(datetime(2028, 2, 29, 10, tzinfo=UTC)):
        run_daily(db)
    [message] = messages(db, leap)
    assert message.payload["occasion"] == "2028"


@pytest.mark.now("2027-03-10T10:00:00Z")
def test_two_workers_racing_reach_each_member_once(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.birthday)
    people = [f.member(db, prog, birthday=date(1980 + i % 20, 3, 10)) for i in range(30)]
    counts: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            counts.append(run_daily(db, page=7))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    if db.is_sqlite:
        run()
        run()
    else:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert sum(counts) == 30
    for who in people:
        assert len(messages(db, who)) == 1
        assert len(exposures(db, who)) == 1


@pytest.mark.now("2027-03-10T10:00:00Z")
def test_two_dispatchers_at_once_keep_a_members_marketing_cap(
    fresh_db: Database, backend: str
) -> None:
    """Two dispatchers each take one of a member's two marketing messages and count the
    member's deliveries at the same moment: the second counts the first's, so the cap
    of one lets exactly one through."""
    import time

    from tests.support.concurrency import in_parallel, postgres_only
    from treu.delivery.models import Delivery
    from treu.delivery.service import deliveries
    from treu.kit.ids import new_id
    from treu.outbox.models import OutboxMessage

    postgres_only(backend)
    db = fresh_db
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.birthday)
    who = f.member(db, prog, birthday=date(1990, 3, 10))
    consent(db, who)
    run_daily(db)
    with db.unit_of_work() as session:
        [first] = outbox.messages(session, member_id=who.id, types=["campaign.message"])
        session.add(
            OutboxMessage(
                id=new_id(),
                type=first.type,
                programme_id=first.programme_id,
                member_id=first.member_id,
                payload=dict(first.payload),
                occurred_at=first.occurred_at,
                created_at=first.created_at,
            )
        )
        # the rest of the outbox (the enrolment, …) dispatched already
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.type != "campaign.message")
            .values(dispatched_at=utc_now())
        )
    channel = EmailChannel(Settings(secret_key=SECRET, marketing_cap_per_7_days=1))
    meet = threading.Barrier(2, timeout=10)
    counted = channel._marketing_sent

    def slow(*args: object, **kwargs: object) -> dict[object, int]:
        meet.wait()  # both have taken their message and are about to count
        sent = counted(*args, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.5)  # the first to count has not committed yet
        return sent

    channel._marketing_sent = slow  # type: ignore[method-assign]

    def dispatch(_: int) -> int:
        with db.unit_of_work() as session:
            return deliveries.dispatch(session, [channel], now=utc_now(), limit=1)

    dispatched = in_parallel(2, dispatch)
    assert dispatched == [1, 1]  # each took one of the two messages
    with db.unit_of_work(write=False) as session:
        sent = session.scalars(
            select(Delivery).where(Delivery.member_id == who.id, Delivery.channel == "email")
        ).all()
    assert len(sent) == 1


# --- holdout -------------------------------------------------------------------------------


@pytest.mark.now("2027-03-10T10:00:00Z")
def test_held_out_members_get_an_exposure_and_nothing_else(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    reward = f.reward(db, prog)
    enable(db, prog, JourneyKind.birthday, holdout_pct=50, reward_id=reward.id)
    people = [f.member(db, prog, birthday=date(1990, 3, 10)) for _ in range(40)]
    run_daily(db)
    with db.unit_of_work(write=False) as session:
        journey = journeys.get(session, prog.id, JourneyKind.birthday)
        assert journey is not None
        stats = journeys.stats(session, journey.id)
    held = [p for p in people if bucket(p.id, journey.id) < 50]
    assert 0 < len(held) < 40
    assert stats == {1: {"treated": 40 - len(held), "held_out": len(held)}}
    for who in people:
        [exposure] = exposures(db, who)
        if who in held:
            assert exposure.arm == "held_out"
            assert exposure.coupon_id is None
            assert messages(db, who) == []
        else:
            assert exposure.arm == "treated"
            assert len(messages(db, who)) == 1


# --- points expiring -------------------------------------------------------------------------


@pytest.mark.now("2027-06-20T10:00:00Z")
def test_the_expiry_warning_names_what_expire_due_then_takes(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN, expiry={"policy": "rolling", "months": 12})
    enable(db, prog, JourneyKind.points_expiring, params={"days_before": 30})
    who = f.member(db, prog, language="en")
    f.earn(db, prog, who, 120, at=utc_now() - timedelta(days=355))
    f.earn(db, prog, who, 80, at=utc_now() - timedelta(days=100))
    with db.unit_of_work(write=False) as session:
        lots = session.scalars(select(Lot).where(Lot.member_id == who.id)).all()
        expires_at = min(lot.expires_at for lot in lots if lot.expires_at is not None)
    run_daily(db)
    run_daily(db)
    [message] = messages(db, who)
    assert message.payload["points"] == 120
    [mail] = mails(db, who)
    assert mail.payload["kind"] == "transactional"
    assert mail.not_before is None
    assert mail.payload["subject"].startswith("120 points expire on ")
    # the built-in points.expiring mail is the journey's now: no second mail
    with db.unit_of_work() as session:
        ledger.warn_expiring(session, now=utc_now())
    planned = mails(db, who, every=True)
    assert [p.event_type for p in planned if p.payload["template"] == "points_expiring"] == [
        "campaign.message"
    ]
    with db.unit_of_work() as session:
        ledger.expire_due(session, now=expires_at + timedelta(seconds=1))
    with db.unit_of_work(write=False) as session:
        [posting] = session.scalars(
            select(Posting).where(Posting.member_id == who.id, Posting.kind == "expire")
        ).all()
    assert posting.points == -120
    assert message.payload["expires_at"] is not None
    assert datetime.fromisoformat(message.payload["expires_at"].replace("Z", "+00:00")) == (
        expires_at
    )


# --- inactivity ------------------------------------------------------------------------------


@pytest.mark.now("2027-01-05T10:00:00Z")
def test_inactivity_sends_a_second_step_m_days_after_the_first(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.inactivity, params={"inactive_days": 60, "second_step_days": 14})
    gone = f.member(db, prog, language="en")
    back = f.member(db, prog, language="en")
    left = f.member(db, prog, language="en")
    for who in (gone, back, left):
        consent(db, who)
        f.ingest_one(db, f.purchase_payload(prog, who, occurred_at=utc_now() - timedelta(days=61)))
    run_daily(db)
    assert [m.payload["step"] for m in messages(db, gone)] == [1]
    assert [m.payload["step"] for m in messages(db, back)] == [1]
    with time_machine.travel(utc_now() + timedelta(days=7)):
        f.ingest_one(db, f.purchase_payload(prog, back))
        close(db, left)  # closed the account: no second step, no exposure for it
        run_daily(db)
    assert len(messages(db, gone)) == 1  # not yet: 14 days
    with time_machine.travel(utc_now() + timedelta(days=15)):
        run_daily(db)
        run_daily(db)
    assert [m.payload["step"] for m in messages(db, gone)] == [1, 2]
    assert [m.payload["step"] for m in messages(db, back)] == [1]  # bought: no second step
    assert [e.step for e in exposures(db, left)] == [1]
    planned = mails(db, gone, now=utc_now() + timedelta(days=15, hours=2))
    assert [p.payload["template"] for p in planned] == ["inactivity", "inactivity_2"]


# --- welcome ---------------------------------------------------------------------------------


def test_an_enabled_welcome_journey_replaces_the_built_in_welcome(db: Database) -> None:
    prog = f.programme(db)
    enable(db, prog, JourneyKind.welcome)
    who = f.member(db, prog, language="en")
    first = mails(db, who, every=True)
    again = mails(db, who, every=True)
    assert [p.payload["template"] for p in first] == ["welcome"]
    assert {p.dedupe_key for p in first + again} == {first[0].dedupe_key}  # one delivery
    [planned] = first
    assert planned.event_type == "campaign.message"
    plain = f.programme(db)
    other = f.member(db, plain)
    [builtin] = mails(db, other, every=True)
    assert builtin.event_type == "member.enrolled"


def test_a_welcome_journey_for_a_segment_leaves_the_others_their_built_in_welcome(
    db: Database,
) -> None:
    from treu.insights.segmenting import SegmentIn, segments

    prog = f.programme(db)
    with db.unit_of_work() as session:
        segments.create(
            session,
            programme=prog,
            data=SegmentIn(slug="vip", name="VIP", expression="metrics.purchases > 10"),
        )
    enable(db, prog, JourneyKind.welcome, segments=["vip"])
    newcomer = f.member(db, prog, language="en")  # in no segment yet
    [builtin] = mails(db, newcomer, every=True)
    assert builtin.event_type == "member.enrolled"


@pytest.mark.now("2027-03-10T21:00:00Z")
def test_the_inbox_waits_out_quiet_hours_and_has_its_own_cap(db: Database) -> None:
    """A birthday message at 22:00 Berlin lands in the inbox at 08:00, as the e-mail
    does; the inbox's marketing cap counts the inbox messages of earlier batches."""
    from treu.delivery.service import deliveries
    from treu.messaging.consents import consents
    from treu.messaging.inbox import InboxChannel

    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.birthday)
    anna = f.member(db, prog, birthday=date(1990, 3, 10))
    with db.unit_of_work() as session:
        consents.record(session, member=anna, channel="inbox", granted=True, source="test")
    run_daily(db)
    inbox = InboxChannel(Settings(secret_key=SECRET, marketing_cap_per_7_days=1))
    with db.unit_of_work() as session:
        rows = outbox.messages(session, member_id=anna.id, types=["campaign.message"])
        [planned] = inbox.plan(session, rows, now=utc_now())
        assert planned.not_before == datetime(2027, 3, 11, 7, 0, tzinfo=UTC)  # 08:00 Berlin
        deliveries.add(session, [planned], now=utc_now())
    with db.unit_of_work(write=False) as session:  # another batch: the cap of 1 is used
        assert inbox.plan(session, rows, now=utc_now()) == []
