"""The journeys that read a member's history: the first purchase (from the outbox, and
from the daily job for a purchase that earned nothing), the tier at risk, the monthly
thanks to the most active, and the tier upgrade. Each fires once per occasion, holds out
its share, skips closed members, and (marketing) mails only with consent."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from tests import factories as f
from tests.support.journeys import (
    close,
    consent,
    enable,
    exposures,
    mails,
    messages,
    react,
)
from tests.support.tiers import reevaluate
from treu.db.session import Database
from treu.delivery.service import deliveries
from treu.events.service import Outcome
from treu.journeys.daily import run_daily
from treu.journeys.models import JourneyKind
from treu.journeys.reactor import JourneyReactor
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.messaging.templates import format_day
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.tiers.models import MemberTier

BERLIN = "Europe/Berlin"


def buy(
    db: Database,
    prog: Programme,
    who: Member,
    amount: int = 2_500,
    *,
    at: datetime | None = None,
    now: datetime | None = None,
) -> Outcome:
    return f.ingest_one(
        db, f.purchase_payload(prog, who, amount_minor=amount, occurred_at=at), now=now
    )


def reach(db: Database, *people: Member) -> None:
    """What the worker does: the reactor reads their outbox rows, the daily job runs."""
    for who in people:
        react(db, who)
    run_daily(db)


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)


def gold_until(db: Database, prog: Programme, who: Member, days_ago: int = 350) -> date:
    """Gold by one purchase ``days_ago`` days back (a rolling 12-month window): the last
    day it counts, ``member_tiers.valid_until``."""
    at = utc_now() - timedelta(days=days_ago)
    buy(db, prog, who, 20_000, at=at, now=at)
    with db.unit_of_work(write=False) as session:
        state = session.get(MemberTier, who.id)
    assert state is not None
    assert state.tier == "gold"
    assert state.valid_until is not None
    return state.valid_until


# --- first purchase --------------------------------------------------------------------------


def test_the_first_purchase_is_thanked_once_from_its_points(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.first_purchase)
    who = f.member(db, prog, language="en", first_name="Ada")
    consent(db, who)
    buy(db, prog, who)
    [mail] = mails(db, who)
    assert mail.payload["template"] == "first_purchase"
    assert mail.payload["kind"] == "marketing"
    assert mail.payload["subject"] == "Thank you for your first purchase!"
    buy(db, prog, who)  # the second purchase is no occasion
    reach(db, who)
    reach(db, who)
    [message] = messages(db, who)
    assert message.key == f"journey:{prog.id}:first_purchase:first:{who.id}"
    [exposure] = exposures(db, who)
    assert (exposure.arm, exposure.occasion) == ("treated", "first")


def test_a_first_purchase_that_earned_nothing_is_thanked_by_the_daily_job(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.first_purchase)
    who = f.member(db, prog)
    outcome = buy(db, prog, who, 50)  # 0.50 EUR: no point
    assert outcome.body is not None
    assert outcome.body.points.earned == 0
    with db.unit_of_work(write=False) as session:
        rows = outbox.messages(session, member_id=who.id)
    assert [m.type for m in rows] == ["member.enrolled"]  # nothing for the reactor
    react(db, who)
    assert messages(db, who) == []
    run_daily(db)
    run_daily(db)
    [message] = messages(db, who)
    assert message.payload["occasion"] == "first"


def test_older_purchases_are_history_not_a_first_purchase(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.first_purchase)
    imported = f.member(db, prog)
    # an import of last month's purchase: its points row is new, the purchase is not
    buy(db, prog, imported, at=utc_now() - timedelta(days=30))
    reach(db, imported)
    buy(db, prog, imported)  # today's purchase has one before it
    reach(db, imported)
    assert messages(db, imported) == []
    assert exposures(db, imported) == []
    yesterday = f.member(db, prog)
    buy(db, prog, yesterday, at=utc_now() - timedelta(days=1))  # a till that sends late
    reach(db, yesterday)
    assert [m.payload["occasion"] for m in messages(db, yesterday)] == ["first"]


def test_a_loaded_history_marked_dispatched_thanks_nobody(fresh_db: Database) -> None:
    db = fresh_db
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.first_purchase)
    loaded = f.member(db, prog)
    buy(db, prog, loaded)
    with db.unit_of_work() as session:  # as the demo does after loading its history
        deliveries.skip_history(session, before=utc_now(), now=utc_now())
    news = f.member(db, prog)
    buy(db, prog, news)
    while True:  # the worker's planning, the reactor as its only channel
        with db.unit_of_work() as session:
            if deliveries.dispatch(session, [JourneyReactor()], now=utc_now()) == 0:
                break
    run_daily(db)
    assert messages(db, loaded) == []
    assert exposures(db, loaded) == []
    assert [m.payload["occasion"] for m in messages(db, news)] == ["first"]


# --- tier at risk -----------------------------------------------------------------------------


def test_a_tier_at_risk_hears_what_keeps_it_once_per_risk_period(db: Database) -> None:
    prog = f.tiered(db, window="rolling_12_months", grace_days=10)
    enable(db, prog, JourneyKind.tier_at_risk, params={"days_before": 7})
    who = f.member(db, prog, language="en")
    consent(db, who)
    until = gold_until(db, prog, who)
    run_daily(db)
    assert messages(db, who) == []  # more than 7 days to go
    with time_machine.travel(noon(until - timedelta(days=7))):
        run_daily(db)
        run_daily(db)
        [mail] = mails(db, who)
    [message] = messages(db, who)
    ends = until + timedelta(days=10)  # the grace period's last day
    assert message.payload["occasion"] == ends.isoformat()
    assert (message.payload["tier"], message.payload["missing"]) == ("gold", 20_000)
    assert mail.payload["subject"] == "Keep your Gold status"
    assert f"you still need €200.00 spend by {format_day(until, 'en')}." in mail.payload["text"]
    # the grace period starts: the same risk period, no second message
    with time_machine.travel(noon(until + timedelta(days=1))):
        assert reevaluate(db, prog, now=utc_now()) == 1
        run_daily(db)
    with db.unit_of_work(write=False) as session:
        state = session.get(MemberTier, who.id)
    assert state is not None
    assert state.grace_started_on == until + timedelta(days=1)
    assert len(messages(db, who)) == 1


def test_in_the_grace_period_the_warning_names_its_end(db: Database) -> None:
    prog = f.tiered(db, window="rolling_12_months", grace_days=10)
    who = f.member(db, prog, language="en")
    until = gold_until(db, prog, who)
    with time_machine.travel(noon(until + timedelta(days=2))):
        assert reevaluate(db, prog, now=utc_now()) == 1  # grace started
        enable(db, prog, JourneyKind.tier_at_risk)  # switched on only now
        run_daily(db)
    [message] = messages(db, who)
    ends = until + timedelta(days=2 + 9)
    assert message.payload["occasion"] == ends.isoformat()
    assert message.payload["missing"] == 20_000
    sent_until = datetime.fromisoformat(message.payload["until"].replace("Z", "+00:00"))
    assert sent_until.astimezone(ZoneInfo(BERLIN)).date() == ends


def test_a_bought_tier_is_not_at_risk(db: Database) -> None:
    prog = f.tiered(db, window="rolling_12_months")
    enable(db, prog, JourneyKind.tier_at_risk)
    paid, earned = f.member(db, prog), f.member(db, prog)
    for who in (paid, earned):
        gold_until(db, prog, who)
    f.ingest_one(db, f.membership_payload(prog, paid, utc_now(), "gold", 12))
    run_daily(db)
    assert messages(db, paid) == []
    assert len(messages(db, earned)) == 1


# --- thank you --------------------------------------------------------------------------------


@pytest.mark.now("2027-03-10T10:00:00Z")
def test_the_most_active_are_thanked_once_a_month(db: Database) -> None:
    prog = f.programme(db, timezone=BERLIN)
    enable(db, prog, JourneyKind.thank_you, params={"top_percent": 10})
    first, tied, less, gone = (f.member(db, prog) for _ in range(4))
    idle = [f.member(db, prog) for _ in range(6)]  # 10 open members: the top 10 % is one
    for who, count in ((first, 3), (tied, 3), (less, 1)):
        for i in range(count):
            buy(db, prog, who, at=utc_now() - timedelta(days=10 + i))
    for i in range(5):  # busy, but more than 90 days ago
        buy(db, prog, gone, at=utc_now() - timedelta(days=91 + i))
    run_daily(db)
    run_daily(db)
    thanked = {p.id for p in (first, tied, less, gone, *idle) if messages(db, p)}
    assert thanked == {first.id, tied.id}  # the top one and its tie
    [message] = messages(db, first)
    assert (message.payload["occasion"], message.payload["template"]) == ("2027-03", "thank_you")
    with time_machine.travel(datetime(2027, 3, 20, 10, tzinfo=UTC)):
        for i in range(5):
            buy(db, prog, less, at=utc_now() - timedelta(hours=i + 1))
        run_daily(db)
    assert messages(db, less) == []  # the top now, but this month's thanks went out
    with time_machine.travel(datetime(2027, 4, 1, 10, tzinfo=UTC)):
        run_daily(db)
    assert [m.payload["occasion"] for m in messages(db, less)] == ["2027-04"]
    assert [m.payload["occasion"] for m in messages(db, first)] == ["2027-03"]


# --- tier upgrade -----------------------------------------------------------------------------


def test_the_tier_upgrade_journey_fires_on_an_upgrade_not_a_downgrade(db: Database) -> None:
    prog = f.tiered(db, window="rolling_12_months")
    enable(db, prog, JourneyKind.tier_upgrade)
    who = f.member(db, prog, language="en")
    at = utc_now() - timedelta(days=360)
    buy(db, prog, who, 12_000, at=at, now=at)  # Bronze to Silver
    later = utc_now() + timedelta(days=10)  # the purchase has left the window
    assert reevaluate(db, prog, now=later) == 1  # Silver to Bronze
    with db.unit_of_work(write=False) as session:
        changes = outbox.messages(session, member_id=who.id, types=["tier.changed"])
    assert [(m.payload["from_tier"], m.payload["to_tier"]) for m in changes] == [
        ("bronze", "silber"),
        ("silber", "bronze"),
    ]
    planned = mails(db, who, every=True)
    upgraded = [p for p in planned if p.payload["template"] == "tier_upgraded"]
    assert [p.event_type for p in upgraded] == ["campaign.message"]  # the journey's, once
    [message] = messages(db, who)
    assert (message.payload["tier"], message.payload["previous_tier"]) == ("silber", "bronze")
    assert message.payload["occasion"] == f"silber:{changes[0].id}"


# --- holdout, closed members, consent ---------------------------------------------------------


def _programme(db: Database, kind: JourneyKind) -> Programme:
    if kind == JourneyKind.tier_at_risk:
        return f.tiered(db, window="rolling_12_months")
    return f.programme(db, timezone=BERLIN)


def _make_due(db: Database, kind: JourneyKind, prog: Programme, who: Member) -> None:
    if kind == JourneyKind.tier_at_risk:
        gold_until(db, prog, who)
    elif kind == JourneyKind.first_purchase:
        buy(db, prog, who)
    else:  # two events each: everybody equally active, all in the top
        for days in (1, 2):
            buy(db, prog, who, at=utc_now() - timedelta(days=days))


@pytest.mark.parametrize(
    "kind", [JourneyKind.first_purchase, JourneyKind.tier_at_risk, JourneyKind.thank_you]
)
def test_held_out_closed_and_unconsenting_members(db: Database, kind: JourneyKind) -> None:
    held = _programme(db, kind)
    enable(db, held, kind, holdout_pct=100)
    out = f.member(db, held)
    prog = _programme(db, kind)
    enable(db, prog, kind)
    agreed, silent, gone = (f.member(db, prog, language="en") for _ in range(3))
    for who in (out, agreed, gone):
        consent(db, who)
    for who, where in ((out, held), (agreed, prog), (silent, prog), (gone, prog)):
        _make_due(db, kind, where, who)
    close(db, gone)
    reach(db, out, agreed, silent, gone)
    [exposure] = exposures(db, out)
    assert exposure.arm == "held_out"
    assert messages(db, out) == []
    assert [p.payload["template"] for p in mails(db, agreed)] == [kind.value]
    assert len(messages(db, silent)) == 1
    assert mails(db, silent) == []  # marketing: no consent, no mail
    assert exposures(db, gone) == []
    assert messages(db, gone) == []
