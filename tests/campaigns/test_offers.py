"""Targeted offers on both databases: each member of the audience gets the offer once
(a rerun, a page given twice), held-out members get an exposure and nothing else, the
budget stops the offer exactly, a coupon offer's message names the coupon, quiet hours
delay the message, and the worker delivers it to the development mailbox and the inbox,
which the statistics count."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests import factories as f
from tests.messaging.conftest import SECRET, dev_settings
from tests.support.concurrency import in_parallel, postgres_only
from treu.campaigns.models import Campaign, CampaignExposure
from treu.campaigns.offers import message_key, offers
from treu.campaigns.schemas import Audience, CampaignStats
from treu.campaigns.service import campaigns
from treu.campaigns.stats import campaign_stats
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.models import Delivery
from treu.delivery.worker import Deliverer
from treu.journeys.service import journeys
from treu.kit.time import utc_now
from treu.ledger.models import Posting
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.messaging.channel import EmailChannel
from treu.messaging.consents import consents
from treu.messaging.models import DevMail, InboxMessage
from treu.outbox.models import OutboxMessage
from treu.outbox.service import outbox
from treu.programmes.models import Programme
from treu.rewards.models import Coupon
from treu.worker.channels import build_channels
from treu.worker.jobs import run_job

CHANNEL = EmailChannel(Settings(secret_key=SECRET, public_url="https://treu.example"))


def available(db: Database, who: Member) -> int:
    with db.unit_of_work(write=False) as session:
        return ledger.balance(session, member_id=who.id).available


def exposures(db: Database, found: Campaign) -> dict[uuid.UUID, CampaignExposure]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(CampaignExposure).where(CampaignExposure.campaign_id == found.id)
        ).all()
        for row in rows:
            session.expunge(row)
        return {row.member_id: row for row in rows}


def postings(db: Database, found: Campaign, who: Member) -> list[Posting]:
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(Posting).where(Posting.member_id == who.id, Posting.rule_id == found.rule_id)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def messages(db: Database, who: Member) -> list[OutboxMessage]:
    with db.unit_of_work(write=False) as session:
        return outbox.messages(session, member_id=who.id, types=["campaign.message"])


def coupons_of(db: Database, who: Member) -> list[Coupon]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(Coupon).where(Coupon.member_id == who.id)).all())


def consent(db: Database, who: Member, *channels: str) -> None:
    with db.unit_of_work() as session:
        for channel in channels or ("email",):
            consents.record(session, member=who, channel=channel, granted=True, source="test")


def no_quiet_hours(db: Database, prog: Programme) -> None:
    with db.unit_of_work() as session:
        journeys.set_quiet_hours(session, prog.id, start="00:00", end="00:00")


def campaign_stats_now(db: Database, found: Campaign) -> CampaignStats:
    with db.unit_of_work(write=False) as session:
        return campaign_stats(session, campaigns.get(session, found.id), now=utc_now())


def test_an_offer_with_points_reaches_each_member_once(db: Database) -> None:
    prog = f.programme(db)
    people = [f.member(db, prog) for _ in range(3)]
    stranger = f.member(db, f.programme(db))
    found = f.offer(db, prog)

    given = offers.give(db, found.id)
    assert (given.treated, given.held_out, given.points, given.finished) == (3, 0, 600, True)
    for who in people:
        assert available(db, who) == 200
        [posting] = postings(db, found, who)
        assert (posting.kind, posting.points) == ("earn", 200)
        assert posting.explanation == "Herbst-Geschenk: +200"
        assert posting.reason == f"Offer {found.code}: Herbst-Geschenk"
        [message] = messages(db, who)
        assert message.key == message_key(found.id, who.id)
        payload = message.payload
        assert (payload["source"], payload["source_id"]) == ("campaign", str(found.id))
        assert (payload["template"], payload["message_kind"], payload["points"]) == (
            "offer",
            "marketing",
            200,
        )
    assert available(db, stranger) == 0
    assert {m: e.arm for m, e in exposures(db, found).items()} == {
        who.id: "treated" for who in people
    }

    # Once given, neither the activation's run again nor the worker's job gives more.
    assert offers.give(db, found.id).treated == 0
    run_job(db, "campaigns.offers")
    # And a page given twice (a crash before the offer was marked given, a second
    # worker) reaches nobody again: the exposure's key is the guard.
    with db.unit_of_work() as session:
        again = offers.give_page(
            session, campaigns.get(session, found.id), after=None, now=utc_now()
        )
    assert (again.treated, again.held_out, again.points) == (0, 0, 0)
    for who in people:
        assert available(db, who) == 200
        assert len(postings(db, found, who)) == 1
        assert len(messages(db, who)) == 1
    with db.unit_of_work(write=False) as session:
        assert session.get_one(Campaign, found.id).given_at is not None
        assert ledger.verify(session, programme_id=prog.id) == []


def test_held_out_members_get_an_exposure_and_nothing_else(db: Database) -> None:
    prog = f.programme(db)
    reward = f.reward(db, prog)
    found = f.offer(
        db, prog, activate=False, holdout_percent=50, offer={"points": 50, "reward_id": reward.id}
    )
    treated, held = f.members_in_arms(db, prog, found, treated=2, held_out=2)
    with db.unit_of_work() as session:  # a member list: these four, not the others enrolled
        campaign = campaigns.get(session, found.id)
        listed = Audience(members=[who.id for who in (*treated, *held)])
        spec = campaigns.spec_of(campaign).model_copy(update={"audience": listed})
        campaigns.update(session, campaign, spec=spec, actor="test")
        campaigns.activate(session, campaign, actor="test")
    # Page by page, two members at a time.
    given = offers.give(db, found.id, page=2)
    assert (given.treated, given.held_out, given.coupons) == (2, 2, 2)
    seen = exposures(db, found)
    for who in held:
        assert seen[who.id].arm == "held_out"
        assert seen[who.id].coupon_id is None
        assert (available(db, who), messages(db, who), coupons_of(db, who)) == (0, [], [])
    for who in treated:
        assert seen[who.id].arm == "treated"
        [coupon] = coupons_of(db, who)
        assert seen[who.id].coupon_id == coupon.id
        assert available(db, who) == 50
        assert len(messages(db, who)) == 1
    stats = campaign_stats_now(db, found)
    assert (stats.treated, stats.held_out, stats.points_issued) == (2, 2, 100)
    assert stats.offer is not None
    assert (stats.offer.points, stats.offer.members_with_points, stats.offer.coupons) == (
        100,
        2,
        2,
    )


def test_the_budget_stops_the_offer_exactly(db: Database) -> None:
    prog = f.programme(db)
    people = sorted((f.member(db, prog) for _ in range(5)), key=lambda m: m.id.int)
    found = f.offer(db, prog, offer={"points": 100}, budget_points=250)
    given = offers.give(db, found.id, page=2)
    assert (given.treated, given.points, given.finished) == (3, 250, True)
    # In member id order: two get the offer, the third the rest of the budget, the
    # others nothing, and they are not recorded (the offer stopped before them).
    assert [available(db, who) for who in people] == [100, 100, 50, 0, 0]
    assert set(exposures(db, found)) == {who.id for who in people[:3]}
    assert [m.payload["points"] for m in messages(db, people[2])] == [50]
    assert offers.give(db, found.id).treated == 0
    stats = campaign_stats_now(db, found)
    assert (stats.budget.points, stats.budget.used, stats.budget.left) == (250, 250, 0)
    assert stats.points_issued == 250

    # A larger budget lets a stopped offer go on: it is given again where it stopped.
    with db.unit_of_work() as session:
        campaign = campaigns.get(session, found.id)
        spec = campaigns.spec_of(campaign).model_copy(update={"budget_points": 400})
        campaigns.update(session, campaign, spec=spec, actor="test")
    more = offers.give(db, found.id)
    assert (more.treated, more.points) == (2, 150)
    assert [available(db, who) for who in people] == [100, 100, 50, 100, 50]


@pytest.mark.parametrize("budget", [None, 1_000])
def test_two_workers_giving_one_offer_give_each_member_once(
    db: Database, backend: str, budget: int | None
) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    people = sorted((f.member(db, prog) for _ in range(12)), key=lambda m: m.id.int)
    found = f.offer(db, prog, offer={"points": 100}, budget_points=budget)

    results = in_parallel(2, lambda _: offers.give(db, found.id, page=5))
    assert all(not isinstance(r, BaseException) for r in results), results
    given = [r for r in results if not isinstance(r, BaseException)]
    assert sum(g.treated for g in given) == (12 if budget is None else 10)
    if budget is None:
        assert [available(db, who) for who in people] == [100] * 12
    else:  # ten members, then the budget is spent
        assert [available(db, who) for who in people] == [100] * 10 + [0, 0]
    for who in people:
        assert len(messages(db, who)) == (1 if available(db, who) else 0)
    assert sum(g.points for g in given) == (budget or 1_200)


def test_a_coupon_offer_s_message_names_the_coupon(db: Database) -> None:
    prog = f.programme(db)
    reward = f.reward(db, prog)
    anna = f.member(db, prog, language="de", first_name="Anna")
    consent(db, anna)
    found = f.offer(db, prog, name="Herbst-Gutschein", offer={"reward_id": reward.id})
    offers.give(db, found.id)
    [coupon] = coupons_of(db, anna)
    assert coupon.reward_id == reward.id
    [message] = messages(db, anna)
    assert message.payload["coupon_id"] == str(coupon.id)
    assert message.payload["points"] is None
    assert available(db, anna) == 0
    with db.unit_of_work() as session:
        [mail] = CHANNEL.plan(session, [message], now=utc_now())
    assert mail.payload["kind"] == "marketing"
    assert mail.payload["subject"] == "Herbst-Gutschein: ein Geschenk für dich"
    text = mail.payload["text"]
    assert coupon.code in text.replace("-", "")  # the code as it is shown, in groups
    assert "„Herbst-Gutschein“" in text
    assert "Punkte" not in text  # no points in this offer


@pytest.mark.now("2027-03-10T21:00:00Z")
def test_quiet_hours_delay_an_offer_s_message(db: Database) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    who = f.member(db, prog)
    found = f.offer(db, prog)
    offers.give(db, found.id)  # 22:00 in Berlin
    [message] = messages(db, who)
    assert message.payload["not_before"] == "2027-03-11T07:00:00Z"  # 08:00 in Berlin
    assert datetime(2027, 3, 11, 7, tzinfo=UTC) > utc_now()


def test_an_offer_that_starts_later_is_given_by_the_worker(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    found = f.offer(db, prog, window=f.campaign_window(days_before=-1, days_after=6))
    assert offers.give(db, found.id).treated == 0  # not yet: the window starts tomorrow
    assert available(db, who) == 0
    with db.unit_of_work(write=False) as session:
        assert found.id not in offers.due(session, now=utc_now())
        tomorrow = datetime.fromisoformat(found.spec["window"]["starts_at"])
        assert found.id in offers.due(session, now=tomorrow)
    assert offers.give_due(db, now=tomorrow) >= 1
    assert available(db, who) == 200


def test_the_worker_delivers_the_offer_and_the_stats_count_it(fresh_db: Database) -> None:
    db = fresh_db
    settings = dev_settings(db)
    prog = f.programme(db)
    no_quiet_hours(db, prog)
    reward = f.reward(db, prog)
    anna = f.member(db, prog, language="de", first_name="Anna")
    bob = f.member(db, prog, language="en", first_name="Bob")
    silent = f.member(db, prog)  # no consent: the offer, but no marketing message
    consent(db, anna, "email", "inbox")
    consent(db, bob, "email")
    found = f.offer(db, prog, offer={"points": 200, "reward_id": reward.id})
    offers.give(db, found.id)

    before = campaign_stats_now(db, found).messages
    assert (before.sent, before.delivered, before.failed) == (0, 0, 0)
    deliverer = Deliverer(db, build_channels(settings), threads=2)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()

    with db.unit_of_work(write=False) as session:
        sent = session.scalars(select(DevMail).where(DevMail.subject.startswith("Herbst"))).all()
        offer_mails = {str(m.recipient): m for m in sent}
        inbox = session.scalars(
            select(InboxMessage).where(
                InboxMessage.member_id == anna.id, InboxMessage.event_type == "campaign.message"
            )
        )
        [in_app] = inbox.all()
        [anna_coupon] = session.scalars(select(Coupon).where(Coupon.member_id == anna.id))
    assert len(sent) == 2  # the member without consent gets no marketing mail
    assert set(offer_mails) == {anna.email, bob.email}
    assert anna.email is not None
    assert bob.email is not None
    assert offer_mails[anna.email].subject == "Herbst-Geschenk: ein Geschenk für dich"
    assert "200 Punkte" in offer_mails[anna.email].text
    assert anna_coupon.code in offer_mails[anna.email].text.replace("-", "")
    assert offer_mails[bob.email].subject == "Herbst-Geschenk: a gift for you"
    assert in_app.title == "Herbst-Geschenk: ein Geschenk für dich"
    assert available(db, silent) == 200

    stats = campaign_stats_now(db, found)
    assert (stats.messages.sent, stats.messages.delivered, stats.messages.failed) == (3, 3, 0)
    assert stats.messages.by_channel["email"]["delivered"] == 2
    assert stats.messages.by_channel["inbox"]["delivered"] == 1

    # A delivery that failed for good counts as failed.
    with db.unit_of_work() as session:
        row = session.scalars(
            select(Delivery).where(Delivery.member_id == bob.id, Delivery.outbox_id.is_not(None))
        ).all()
        [mine] = [d for d in row if d.event_type == "campaign.message"]
        mine.status = "dead"
    stats = campaign_stats_now(db, found)
    assert (stats.messages.sent, stats.messages.delivered, stats.messages.failed) == (3, 2, 1)
