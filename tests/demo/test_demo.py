"""``treu demo``: realistic, deterministic data that loads into a clean ledger."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from tests.support.cli import make_runner
from treu import cli
from treu.auth.models import ApiKey
from treu.campaigns.models import Campaign, CampaignExposure
from treu.challenges.models import Challenge, ChallengeCompletion
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.worker import Deliverer
from treu.demo import CATALOGUE, STORES, generate
from treu.demo.generate import SHOWCASE
from treu.demo.segments import SEGMENTS as DEMO_SEGMENTS
from treu.events.models import Event, PurchaseLine
from treu.kit.time import utc_now
from treu.ledger.models import Account, Posting
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.messaging.models import DevMail
from treu.programmes.models import Programme
from treu.rewards.donations import Donation
from treu.rewards.models import Coupon, Redemption
from treu.rules.models import Rule
from treu.segments.models import Segment
from treu.staff.service import staff
from treu.tiers.models import MemberTier
from treu.worker.channels import build_channels

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_same_seed_same_data() -> None:
    one = generate(members=40, purchases=300, seed=7, now=NOW)
    two = generate(members=40, purchases=300, seed=7, now=NOW)
    other = generate(members=40, purchases=300, seed=8, now=NOW)
    later = generate(members=40, purchases=300, seed=7, now=NOW + timedelta(hours=9))
    assert [m.data for m in one.members] == [m.data for m in two.members]
    assert one.events == two.events == later.events
    assert one.events != other.events

    tomorrow = generate(members=40, purchases=300, seed=7, now=NOW + timedelta(days=1))
    assert [e.get("lines") for e in tomorrow.events] == [e.get("lines") for e in one.events]
    shifted = [datetime.fromisoformat(e["occurred_at"]) for e in tomorrow.events]
    assert shifted == [
        datetime.fromisoformat(e["occurred_at"]) + timedelta(days=1) for e in one.events
    ]


def test_no_generated_member_takes_a_showcase_address() -> None:
    """The two members who join at the end of ``make run``'s load keep their addresses
    free whatever the seed (a generated Lena Becker at example.com made the load fail)."""
    showcase = {joining["email"] for joining in SHOWCASE}
    for seed in range(1, 41):
        data = generate(members=1000, purchases=10, seed=seed, now=NOW)
        emails = [m.data.get("email") for m in data.members]
        assert showcase.isdisjoint(emails), seed
        assert len(set(emails) - {None}) == len([e for e in emails if e])


def test_generated_data_looks_like_a_year_of_retail() -> None:
    data = generate(members=1000, purchases=6000, seed=1, now=NOW)
    people = [m.data for m in data.members]
    assert len(people) == 1000
    for field in ("email", "phone", "card_number"):
        values = [p[field] for p in people if p.get(field)]
        assert len(values) == len(set(values)), f"{field} repeats"
    assert all(re.fullmatch(r"\+49\d{10,11}", p["phone"]) for p in people if p.get("phone"))
    assert 0.25 < sum(1 for p in people if p.get("phone")) / 1000 < 0.45
    assert 0.6 < sum(1 for p in people if p.get("birthday")) / 1000 < 0.8
    assert {p["channel"] for p in people} == {"pos", "web", "app"}
    assert all(p["enrolled_at"] <= NOW for p in people)

    purchases = [e for e in data.events if e["type"] == "purchase"]
    returns = [e for e in data.events if e["type"] == "return"]
    assert len(purchases) == 6000
    assert 0.02 < len(returns) / len(purchases) < 0.04
    times = [datetime.fromisoformat(e["occurred_at"]) for e in data.events]
    assert times == sorted(times)
    assert NOW - timedelta(days=366) < min(times)
    assert max(times) <= NOW
    channels = Counter(e["channel"] for e in purchases)
    assert set(channels) == {"pos", "web", "app", "phone"}
    assert channels["pos"] > channels["web"] > channels["phone"]
    assert {e["store"] for e in purchases} == set(STORES)
    assert len(STORES) >= 8

    categories = {p.category for p in CATALOGUE}
    assert {"dairy", "bakery", "produce", "coffee", "drinks", "household", "cosmetics"} <= (
        categories
    )
    assert "apparel" in categories
    assert 0.25 < sum(p.organic for p in CATALOGUE) / len(CATALOGUE) < 0.6
    catalogue = {p.sku: p for p in CATALOGUE}
    for event in purchases[:500]:
        for line in event["lines"]:
            product = catalogue[line["sku"]]
            assert (line["name"], line["unit_price_minor"]) == (product.name, product.price_minor)

    # Frequency varies: heavy buyers, occasional ones, lapsed ones.
    by_member = Counter(next(iter(e["member"].values())) for e in purchases)
    per_member = Counter()
    for person in data.members:
        per_member[person.data["card_number"]] = sum(
            by_member[person.data[k]] for k in ("card_number", "email", "phone") if k in person.data
        )
    counts = sorted(per_member.values(), reverse=True)
    assert sum(counts[:100]) > 0.3 * len(purchases)  # top 10 % buy a third or more
    assert sum(1 for c in counts if c <= 2) > 100  # many occasional (or no) purchases
    lapsed = [m for m in data.members if m.segment == "lapsed"]
    assert lapsed
    assert all(m.active_until < NOW - timedelta(days=90) for m in lapsed)

    # Returns: after their purchase, never more than bought, some full, some partial.
    bought = {e["id"]: e for e in purchases}
    full = 0
    for ret in returns:
        original = bought[ret["original_event_id"]]
        assert ret["occurred_at"] > original["occurred_at"]
        assert ret["member"] == original["member"]
        quantities = {line["sku"]: line["quantity"] for line in original["lines"]}
        assert all(line["quantity"] <= quantities[line["sku"]] for line in ret["lines"])
        full += {x["sku"]: x["quantity"] for x in ret["lines"]} == quantities
    assert 0 < full < len(returns)

    # Engagement: reviews of bought products, store check-ins, app installs, profiles.
    engagement = Counter(e["type"] for e in data.events if e["type"] not in {"purchase", "return"})
    assert set(engagement) == {
        "review_submitted",
        "store_visit",
        "app_installed",
        "profile_completed",
    }
    assert 0.03 < engagement["review_submitted"] / len(purchases) < 0.11
    reviewed = {line["sku"] for e in purchases for line in e["lines"]}
    for event in data.events:
        if event["type"] == "review_submitted":
            assert event["attributes"]["product_sku"] in reviewed
            assert 1 <= event["attributes"]["rating"] <= 5
        if event["type"] == "store_visit":
            assert event["store"] in STORES
    installs = Counter(
        e["member"]["card_number"] for e in data.events if e["type"] == "app_installed"
    )
    assert max(installs.values()) == 1


def test_demo_command_loads_a_clean_ledger(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    result = runner.invoke(
        cli.app, ["demo", "--members", "30", "--purchases", "300", "--seed", "3", "--api-key"]
    )
    assert result.exit_code == 0, result.output
    assert "seed 3" in result.stdout
    assert re.search(r"treu_[A-Za-z0-9]{44}", result.stdout)
    counts = {
        m[1]: int(m[2].replace(",", ""))
        for m in re.finditer(r"│ (.+?)\s+│\s+([\d,]+) │", result.stdout)
    }
    tiers = {k: v for k, v in counts.items() if k.startswith("members in tier ")}
    assert list(tiers) == [f"members in tier {t}" for t in ("Bronze", "Silver", "Gold")]
    assert sum(tiers.values()) == counts["members"] == 30  # everybody holds a tier
    assert all(n > 0 for n in tiers.values())
    for row in (
        "rewards in the catalogue",
        "redemptions",
        "coupons used",
        "donations (points)",
        "active challenges",
        "challenge completions",
        "active campaigns",
    ):
        assert counts[row] > 0, row
    assert counts["coupons used"] <= counts["redemptions"]
    assert "shown only once" in result.stderr
    tried = re.search(r"A member to try the API with: (\S+) \(card (\d+)\)", result.stdout)
    assert tried is not None, result.stdout
    sample_email, sample_card = tried.groups()
    assert f"identifier={quote(sample_email)}" in result.stdout
    console = re.search(r"sign in as (\S+) with the one-time password (\S+) ", result.stdout)
    assert console is not None, result.stdout
    with fresh_db.unit_of_work() as session:
        admin = staff.authenticate(session, email=console[1], password=console[2]).check()
        assert (admin.role, admin.must_change_password) == ("admin", True)

    with fresh_db.unit_of_work(write=False) as session:
        programme = session.scalar(select(Programme).where(Programme.slug == "demo"))
        assert programme is not None
        assert (programme.name, programme.currency, programme.pending_days) == (
            "Treu Demo",
            "EUR",
            14,
        )
        assert (programme.expiry_policy, programme.expiry_months) == ("rolling", 24)
        assert programme.auto_enrol is False
        assert programme.points_name["de"]["other"] == "Treuepunkte"
        assert session.scalar(select(func.count()).select_from(Member)) == 30 + len(SHOWCASE)
        types = dict(session.execute(select(Event.type, func.count()).group_by(Event.type)).all())
        assert types["purchase"] == 300
        assert 1 <= types["return"] <= 20
        assert types["review_submitted"] >= 5
        published = session.scalars(
            select(Rule.name).where(Rule.programme_id == programme.id, Rule.status == "active")
        ).all()
        assert {"Bio doppelt", "App-Wochenende", "Bewertung", "Filialbesuch"} <= set(published)
        by_rule = dict(
            session.execute(
                select(Rule.name, func.sum(Posting.points))
                .join(Posting, Posting.rule_id == Rule.id)
                .where(Rule.programme_id == programme.id)
                .group_by(Rule.name)
            ).all()
        )
        assert by_rule["Bio doppelt"] > 0
        assert by_rule["Bewertung"] == 50 * session.scalar(
            select(func.count())
            .select_from(Posting)
            .join(Rule, Posting.rule_id == Rule.id)
            .where(Rule.name == "Bewertung", Rule.programme_id == programme.id)
        )
        organic = session.scalar(
            select(func.count())
            .select_from(PurchaseLine)
            .where(PurchaseLine.sku.in_([p.sku for p in CATALOGUE if p.organic]))
        )
        assert (organic or 0) > 0
        assert ledger.verify(session, programme_id=programme.id) == []
        sample = session.scalar(select(Member).where(Member.email == sample_email))
        assert sample is not None
        assert sample.card_number == sample_card
        richest = session.scalar(
            select(func.max(Account.available))
            .join(Member, Member.id == Account.member_id)
            .where(Member.programme_id == programme.id, Member.email.is_not(None))
        )
        account = session.get(Account, sample.id)
        assert account is not None
        assert account.available == richest > 0
        # The summary's feature rows are what the database holds.
        assert counts["redemptions"] == session.scalar(select(func.count()).select_from(Redemption))
        assert counts["coupons used"] == session.scalar(
            select(func.count()).select_from(Coupon).where(Coupon.status == "used")
        )
        assert counts["donations (points)"] == session.scalar(select(func.sum(Donation.points)))
        assert counts["active challenges"] == session.scalar(
            select(func.count()).select_from(Challenge).where(Challenge.status == "active")
        )
        assert counts["challenge completions"] == session.scalar(
            select(func.count()).select_from(ChallengeCompletion)
        )
        assert counts["active campaigns"] == 1
        bio_woche = session.scalar(select(Campaign).where(Campaign.code == "bio-woche"))
        assert bio_woche is not None
        assert bio_woche.status == "active"
        assert counts["members in campaigns (treated or held out)"] == session.scalar(
            select(func.count()).select_from(CampaignExposure)
        )
        in_gold = session.scalar(
            select(func.count()).select_from(MemberTier).where(MemberTier.tier == "gold")
        )
        assert counts["members in tier Gold"] == in_gold
        key = session.scalar(select(ApiKey).where(ApiKey.name == "demo"))
        assert key is not None
        assert set(key.scopes) == {"events:write", "members:read", "members:write", "admin"}
    with fresh_db.unit_of_work() as session:
        assert ledger.activate_due(session) == 0
        assert ledger.expire_due(session) == 0

    # The demo's segments exist at once; a refresh fills them from the history it loaded.
    refreshed = runner.invoke(cli.app, ["segments", "refresh", "--programme", "demo"])
    assert refreshed.exit_code == 0, refreshed.output
    with fresh_db.unit_of_work(write=False) as session:
        found = dict(session.execute(select(Segment.slug, Segment.member_count)).all())
        assert set(found) == {slug for slug, *_ in DEMO_SEGMENTS}
        assert found["app-nutzer"] > 0
        assert found["bio-fans"] > 0
        assert found["stammkunden"] > 0

    again = runner.invoke(cli.app, ["demo", "--if-empty"])
    assert again.exit_code == 0, again.output
    assert "exists already; nothing to do" in again.stdout
    refused = runner.invoke(cli.app, ["demo", "--members", "5", "--purchases", "5"])
    assert refused.exit_code == 1
    assert "exists already" in refused.stderr
    with fresh_db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 30 + len(SHOWCASE)


def test_the_demo_history_is_not_delivered_but_the_members_joining_now_are(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    result = runner.invoke(
        cli.app, ["demo", "--members", "30", "--purchases", "300", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    settings = Settings(_env_file=None, database_url=fresh_db.url, env="development")
    worker = Deliverer(fresh_db, build_channels(settings))
    try:
        done = worker.run_once()
    finally:
        worker.close()
    assert done.sent == 2 * len(SHOWCASE)  # an e-mail and an inbox message each
    with fresh_db.unit_of_work(write=False) as session:
        mails = session.execute(select(DevMail.recipient, DevMail.subject)).all()
    assert sorted(mails) == [
        ("lena.becker@example.com", "Willkommen bei Treu Demo!"),
        ("sam.taylor@example.com", "Welcome to Treu Demo!"),
    ]


LEAP_EVENING = datetime(2028, 2, 29, 23, 30, tzinfo=ZoneInfo("Europe/Berlin"))


def test_the_demo_makes_sense_on_any_day(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded late on a leap day in Berlin (already 22:30 UTC; the UTC and local dates
    agree, but the next hour they would not): pending points, the month's challenge,
    nothing in the future, nothing left for the jobs to do."""
    runner = make_runner(monkeypatch, fresh_db)
    with time_machine.travel(LEAP_EVENING, tick=True):
        result = runner.invoke(
            cli.app, ["demo", "--members", "40", "--purchases", "400", "--seed", "5"]
        )
        assert result.exit_code == 0, result.output
        now = utc_now()
        with fresh_db.unit_of_work(write=False) as session:
            programme = session.scalar(select(Programme).where(Programme.slug == "demo"))
            assert programme is not None
            pending = session.scalar(
                select(func.count()).select_from(Account).where(Account.pending > 0)
            )
            assert pending is not None
            assert pending > 0, "no member with points still pending"
            latest = session.scalar(select(func.max(Event.occurred_at)))
            assert latest is not None
            assert now - timedelta(days=2) < latest <= now
            enrolled = session.scalar(select(func.max(Member.enrolled_at)))
            assert enrolled is not None
            assert enrolled <= now
            monthly = session.scalar(select(Challenge).where(Challenge.code == "drei-einkaeufe"))
            assert monthly is not None
            window = monthly.spec["window"]
            starts = datetime.fromisoformat(window["starts_at"])
            ends = datetime.fromisoformat(window["ends_at"])
            assert (starts, ends) == (
                datetime(2028, 2, 1, tzinfo=ZoneInfo("Europe/Berlin")),
                datetime(2028, 3, 1, tzinfo=ZoneInfo("Europe/Berlin")),
            )
            assert starts <= now < ends
            assert monthly.spec["name"]["de"] == "3 Einkäufe im Februar"
            assert monthly.status == "active"
            assert ledger.verify(session, programme_id=programme.id) == []
        with fresh_db.unit_of_work() as session:
            assert ledger.activate_due(session) == 0
            assert ledger.expire_due(session) == 0
