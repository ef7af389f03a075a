"""Tiers end to end on SQLite and PostgreSQL: upgrades inside the purchase's unit of
work, multipliers as earning rules, returns, paid membership, the daily re-evaluation,
and what the checkout tells the shop."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from tests.support.tiers import reevaluate
from treu.checkout.schemas import CartTier, Hint
from treu.checkout.service import CartIn, checkout
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.ledger.explain import render
from treu.ledger.models import Posting
from treu.members.models import Member
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.schemas import TierSettingsPatch
from treu.programmes.service import programmes
from treu.tiers.models import MemberTier, TierActivity, TierHistory
from treu.tiers.schemas import TierPatch
from treu.tiers.service import tiers
from treu.worker.jobs import run_job

T0 = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)


def buy(prog: Programme, who: Member, at: datetime, amount: int) -> dict[str, Any]:
    return f.purchase_payload(prog, who, amount_minor=amount, occurred_at=at)


def state(db: Database, who: Member) -> MemberTier | None:
    with db.unit_of_work(write=False) as session:
        return session.get(MemberTier, who.id)


def history(db: Database, who: Member) -> list[TierHistory]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(TierHistory).where(TierHistory.member_id == who.id).order_by(TierHistory.id)
            )
        )


def membership(
    prog: Programme, who: Member, at: datetime, tier: str, months: int
) -> dict[str, Any]:
    return {
        "id": f.unique("gold"),
        "type": "membership_purchased",
        "programme": prog.slug,
        "member": f.member_ref(who),
        "occurred_at": at.isoformat(),
        "attributes": {"tier": tier, "months": months, "amount_minor": 4900, "currency": "EUR"},
    }


def test_a_purchase_crossing_a_threshold_upgrades_in_its_own_unit_of_work(db: Database) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    first = f.ingest_one(db, buy(prog, who, T0, 9_000), now=T0)
    assert first.body is not None
    assert first.body.tier is None  # still Bronze
    second = f.ingest_one(db, buy(prog, who, T0 + timedelta(hours=1), 1_000), now=T0)
    assert second.body is not None
    change = second.body.public()["tier"]
    assert (change["from"], change["to"], change["reason"]) == ("bronze", "silber", "qualified")
    assert change["text"] == (
        "Upgrade to Silver: €100.00 spend in the last 12 months (€100.00 spend needed)"
    )
    rows = history(db, who)
    assert [(h.from_tier, h.to_tier, h.reason) for h in rows] == [("bronze", "silber", "qualified")]
    with db.unit_of_work(write=False) as session:
        from treu.events.models import Event

        key = session.scalar(select(Event.key).where(Event.id == rows[0].event_id))
        assert key == second.event_id
    stored = state(db, who)
    assert stored is not None
    assert (stored.tier, stored.qualified_tier) == ("silber", "silber")
    assert stored.since == T0 + timedelta(hours=1)
    # the replay answers the same, and changes nothing
    again = f.ingest_one(
        db, buy(prog, who, T0 + timedelta(hours=1), 1_000) | {"id": second.event_id}, now=T0
    )
    assert again.status == 200
    assert len(history(db, who)) == 1
    with db.unit_of_work(write=False) as session:
        info = tiers.current(session, who.id, now=T0)
        assert info is not None
        assert (info.code, info.rank, info.paid) == ("silber", 1, False)
        assert tiers.rank_of(session, prog.id, "gold") == 2
        assert tiers.rank_of(session, prog.id, "platin") is None


def test_in_a_batch_the_next_purchase_earns_with_the_new_tier(db: Database) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    outcomes = f.ingest(
        db,
        buy(prog, who, T0, 10_000),  # reaches Silber
        buy(prog, who, T0 + timedelta(minutes=5), 2_000),  # earns x1.25
        buy(prog, who, T0 + timedelta(minutes=9), 8_000),  # reaches Gold, still earns x1.25
        buy(prog, who, T0 + timedelta(minutes=15), 2_000),  # earns x1.5
        now=T0 + timedelta(hours=1),
    )
    bodies = [o.body for o in outcomes]
    assert all(o.ok for o in outcomes)
    assert [b.points.earned for b in bodies if b] == [100, 25, 100, 30]
    assert [b.tier.to_tier if b.tier else None for b in bodies if b] == [
        "silber",
        None,
        "gold",
        None,
    ]
    assert bodies[1] is not None
    assert [p["explanation"] for p in bodies[1].postings] == [
        "1 point per €1 on €20.00: +20",
        "Silver tier \u00d71.25: +5",
    ]
    with db.unit_of_work(write=False) as session:
        tier_posting = session.scalars(
            select(Posting).where(Posting.member_id == who.id, Posting.points == 10)
        ).one()
        assert tier_posting.rule_id is None  # implicit rule, no rules row
        assert render(tier_posting.details, "de") == "Stufe Gold \u00d71,5: +10"
    assert f.verify(db, prog) == []
    assert [(h.to_tier, h.reason) for h in history(db, who)] == [
        ("silber", "qualified"),
        ("gold", "qualified"),
    ]


def test_returns_lower_qualifying_activity_and_recompute_with_the_recorded_tier(
    db: Database,
) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 20_000), now=T0)  # Gold
    lines = [
        {"sku": "a", "quantity": 1, "unit_price_minor": 3_000},
        {"sku": "b", "quantity": 1, "unit_price_minor": 1_000},
    ]
    order = f.purchase_payload(prog, who, lines=lines, occurred_at=T0 + timedelta(days=1))
    bought = f.ingest_one(db, order, now=T0 + timedelta(days=1))
    assert bought.body is not None
    assert bought.body.points.earned == 60  # 40 + Gold x1.5
    # the tier changes before the return: the return still uses the purchase's x1.5
    with db.unit_of_work() as session:
        tiers.update(
            session,
            programme=programmes.get(session, prog.id),
            code="gold",
            patch=TierPatch(multiplier="3"),
            actor="test",
        )
    back = f.ingest_one(
        db,
        f.return_payload(
            prog, order["id"], [{"sku": "b", "quantity": 1}], occurred_at=T0 + timedelta(days=2)
        ),
        now=T0 + timedelta(days=2),
    )
    assert back.body is not None
    assert back.body.points.reversed == 15  # 60 - (30 + 15)
    day = (T0 + timedelta(days=1)).date()
    with db.unit_of_work(write=False) as session:
        activity = session.get_one(TierActivity, (who.id, day))
        assert (activity.spend_minor, activity.purchases) == (3_000, 1)
    rest = f.ingest_one(
        db,
        f.return_payload(
            prog, order["id"], [{"sku": "a", "quantity": 1}], occurred_at=T0 + timedelta(days=3)
        ),
        now=T0 + timedelta(days=3),
    )
    assert rest.body is not None
    with db.unit_of_work(write=False) as session:
        activity = session.get_one(TierActivity, (who.id, day))
        # a fully returned purchase no longer counts
        assert (activity.spend_minor, activity.purchases) == (0, 0)
    assert f.verify(db, prog) == []


def test_points_metric_counts_earned_points_and_redeeming_never_lowers_a_tier(
    db: Database,
) -> None:
    prog = f.tiered(
        db,
        metric="points",
        ladder=[
            {"code": "basis", "rank": 0, "name": {"en": "Basic"}, "threshold": 0},
            {"code": "plus", "rank": 1, "name": {"en": "Plus"}, "threshold": 100},
        ],
    )
    who = f.member(db, prog)
    out = f.ingest_one(db, buy(prog, who, T0, 10_000), now=T0)  # 100 points
    assert out.body is not None
    assert out.body.tier.to_tier == "plus"
    with db.unit_of_work() as session:  # spend every point
        adjustments.adjust(
            session,
            member=session.get_one(Member, who.id),
            adjustment=Adjustment(-100, "redeemed"),
            actor="test",
        )
    assert f.balance(db, who).available == 0
    reevaluate(db, prog, now=T0 + timedelta(days=1))
    stored = state(db, who)
    assert stored is not None
    assert stored.tier == "plus"
    with db.unit_of_work(write=False) as session:
        assert session.get_one(TierActivity, (who.id, T0.date())).points == 100


def test_purchases_metric_on_a_calendar_year_in_the_programme_time_zone(db: Database) -> None:
    prog = f.tiered(
        db,
        metric="purchases",
        window="calendar_year",
        ladder=[
            {"code": "one", "rank": 0, "name": {"en": "One"}, "threshold": 0},
            {"code": "two", "rank": 1, "name": {"en": "Two"}, "threshold": 2},
        ],
    )
    who = f.member(db, prog)
    # 23:30 UTC on 31 December is already 1 January in Berlin: a new year
    new_year = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    f.ingest_one(db, buy(prog, who, new_year - timedelta(hours=2), 500), now=new_year)
    second = f.ingest_one(db, buy(prog, who, new_year, 500), now=new_year)
    assert second.body is not None
    assert second.body.tier is None
    third = f.ingest_one(
        db, buy(prog, who, new_year + timedelta(days=3), 500), now=new_year + timedelta(days=3)
    )
    assert third.body is not None
    assert third.body.tier.to_tier == "two"
    stored = state(db, who)
    assert stored is not None
    assert str(stored.valid_until) == "2028-12-31"  # reached in 2027, kept through 2028


def test_downgrade_waits_for_the_grace_period_and_drops_one_tier_at_a_time(db: Database) -> None:
    prog = f.tiered(db, grace_days=10)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 20_000), now=T0)  # Gold
    year_later = T0 + timedelta(days=366)
    assert reevaluate(db, prog, now=year_later) == 1  # grace starts
    stored = state(db, who)
    assert stored is not None
    assert (stored.tier, str(stored.grace_started_on)) == ("gold", str(year_later.date()))
    assert reevaluate(db, prog, now=year_later) == 0  # twice the same day: no-op
    assert reevaluate(db, prog, now=year_later + timedelta(days=9)) == 0
    assert state(db, who).tier == "gold"  # type: ignore[union-attr]
    assert reevaluate(db, prog, now=year_later + timedelta(days=10)) == 1
    assert state(db, who).tier == "silber"  # type: ignore[union-attr]
    assert reevaluate(db, prog, now=year_later + timedelta(days=10)) == 0
    assert reevaluate(db, prog, now=year_later + timedelta(days=20)) == 0  # a new grace
    assert reevaluate(db, prog, now=year_later + timedelta(days=21)) == 1
    assert state(db, who).tier == "bronze"  # type: ignore[union-attr]
    rows = history(db, who)
    assert [(h.from_tier, h.to_tier, h.reason) for h in rows] == [
        ("bronze", "gold", "qualified"),
        ("gold", "silber", "requalification_failed"),
        ("silber", "bronze", "requalification_failed"),
    ]
    assert rows[1].text == (
        "Down to Silver: €0.00 spend in the last 12 months, Gold needs €200.00 spend"
    )
    assert state(db, who).review_on is None  # type: ignore[union-attr]


def test_max_drop_and_a_lowered_threshold_upgrade_at_re_evaluation(db: Database) -> None:
    prog = f.tiered(db, max_drop=2)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 20_000), now=T0)
    assert reevaluate(db, prog, now=T0 + timedelta(days=366)) == 1
    assert state(db, who).tier == "bronze"  # type: ignore[union-attr]
    f.ingest_one(db, buy(prog, who, T0 + timedelta(days=367), 8_000), now=T0 + timedelta(days=367))
    with db.unit_of_work() as session:
        tiers.update(
            session,
            programme=programmes.get(session, prog.id),
            code="silber",
            patch=TierPatch(threshold=5_000),
            actor="test",
            now=T0 + timedelta(days=367),
        )
    assert reevaluate(db, prog, now=T0 + timedelta(days=368)) == 1
    assert state(db, who).tier == "silber"  # type: ignore[union-attr]
    assert history(db, who)[-1].reason == "qualified"


def test_paid_membership_buy_renew_and_expire(db: Database) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 12_000), now=T0)  # Silber by spend
    bought = f.ingest_one(db, membership(prog, who, T0, "gold", 1), now=T0)
    assert bought.body is not None
    assert bought.body.tier.to_tier == "gold"
    assert bought.body.tier.paid_until == "2026-07-10T09:00:00Z"
    earned = f.ingest_one(
        db, buy(prog, who, T0 + timedelta(days=1), 2_000), now=T0 + timedelta(days=1)
    )
    assert earned.body is not None
    assert earned.body.points.earned == 30  # Gold x1.5 while paid
    renewed = f.ingest_one(
        db, membership(prog, who, T0 + timedelta(days=5), "gold", 2), now=T0 + timedelta(days=5)
    )
    assert renewed.body is not None
    assert renewed.body.tier.reason == "membership_renewed"
    assert renewed.body.tier.paid_until == "2026-09-10T09:00:00Z"  # from the old end
    refused = f.ingest(
        db, membership(prog, who, T0 + timedelta(days=6), "silber", 1), now=T0 + timedelta(days=6)
    )[0]
    assert refused.error is not None
    assert refused.error.code == "tier_not_purchasable"
    unknown = f.ingest(db, membership(prog, who, T0, "platin", 1), now=T0)[0]
    assert unknown.error is not None
    assert (unknown.error.code, unknown.status) == ("unknown_tier", 422)
    # the job ends it the day it runs out, back to what the spend qualifies for
    assert reevaluate(db, prog, now=datetime(2026, 9, 10, 9, 30, tzinfo=UTC)) == 1
    assert state(db, who).tier == "silber"  # type: ignore[union-attr]
    reasons = [(h.from_tier, h.to_tier, h.reason) for h in history(db, who)]
    assert reasons == [
        ("bronze", "silber", "qualified"),
        ("silber", "gold", "membership_purchased"),
        ("gold", "gold", "membership_renewed"),
        ("gold", "silber", "membership_expired"),
    ]
    with db.unit_of_work(write=False) as session:
        info = tiers.current(session, who.id, now=datetime(2026, 9, 11, tzinfo=UTC))
        assert info is not None
        assert info.code == "silber"


def test_a_lower_paid_tier_cannot_cut_a_higher_one_short(db: Database) -> None:
    ladder = [dict(t, purchasable=True) for t in f.LADDER]
    prog = f.tiered(db, ladder=ladder)
    who = f.member(db, prog)
    f.ingest_one(db, membership(prog, who, T0, "gold", 12), now=T0)
    refused = f.ingest(
        db, membership(prog, who, T0 + timedelta(days=1), "silber", 1), now=T0 + timedelta(days=1)
    )[0]
    assert refused.error is not None
    assert refused.error.code == "membership_downgrade"
    assert state(db, who).paid_tier == "gold"  # type: ignore[union-attr]


def test_the_checkout_names_the_tier_and_promises_its_multiplier(db: Database) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 20_000), now=T0)
    cart = CartIn.model_validate(
        {
            "programme": prog.slug,
            "member": f.member_ref(who),
            "channel": "web",
            "currency": "EUR",
            "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
            "lines": [{"sku": "x", "quantity": 1, "unit_price_minor": 2_000}],
            "lang": "de",
        }
    )
    with db.unit_of_work(write=False) as session:
        answer = checkout.evaluate(session, cart, now=T0 + timedelta(hours=1))
    assert answer.tier == CartTier("gold", 2, "Gold", ("free_shipping",), paid=False)
    assert answer.public()["tier"] == {
        "code": "gold",
        "rank": 2,
        "name": "Gold",
        "flags": ["free_shipping"],
        "paid": False,
    }
    assert answer.points.total == 30
    purchase = f.ingest_one(
        db, buy(prog, who, T0 + timedelta(hours=1), 2_000), now=T0 + timedelta(hours=2)
    )
    assert purchase.body is not None
    assert purchase.body.points.earned == answer.points.total


def test_without_tiers_ingestion_reads_and_writes_no_tier_table(db: Database) -> None:
    plain = f.programme(db)
    who = f.member(db, plain)
    with_tiers = f.tiered(db)
    other = f.member(db, with_tiers)
    f.ingest_one(db, buy(with_tiers, other, T0, 100), now=T0)  # tiers cached
    f.ingest_one(db, buy(plain, who, T0, 100), now=T0)  # programme cached
    statements: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lower())

    engine = db.write_engine
    event.listen(engine, "before_cursor_execute", log)
    try:
        f.ingest_one(db, buy(plain, who, T0 + timedelta(minutes=1), 100), now=T0)
        plain_statements = list(statements)
        statements.clear()
        f.ingest_one(db, buy(with_tiers, other, T0 + timedelta(minutes=1), 100), now=T0)
        tiered_statements = list(statements)
    finally:
        event.remove(engine, "before_cursor_execute", log)
    # A programme's cache (5 s) may expire between two ingests on a busy machine: its
    # reload reads the programme row, whose tier settings are no tier table.
    plain_statements = [s for s in plain_statements if not _reads_programmes(s)]
    tiered_statements = [s for s in tiered_statements if not _reads_programmes(s)]
    assert not [s for s in plain_statements if _TIER_TABLE.search(s)]
    reads = [
        s for s in tiered_statements if s.lstrip().startswith("select") and _TIER_TABLE.search(s)
    ]
    assert len(reads) == 1, reads  # one query for the state and the activity
    assert len(tiered_statements) - len(plain_statements) <= 3, tiered_statements


_TIER_TABLE = re.compile(
    r'\b(?:from|join|into|update)\s+"?(?:member_tiers|tier_activity|tier_history|tiers)\b'
)


def _reads_programmes(statement: str) -> bool:
    return re.search(r'\bfrom\s+"?programmes\b', statement) is not None


def test_concurrent_purchases_crossing_a_threshold_upgrade_exactly_once(
    db: Database, backend: str
) -> None:
    postgres_only(backend)
    prog = f.tiered(db)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 9_000), now=T0)
    results = in_parallel(
        8, lambda i: f.ingest_one(db, buy(prog, who, T0 + timedelta(minutes=i + 1), 1_000), now=T0)
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    upgrades = [h for h in history(db, who) if h.to_tier == "silber"]
    assert len(upgrades) == 1
    with db.unit_of_work(write=False) as session:
        total = session.scalar(
            select(func.sum(TierActivity.spend_minor)).where(TierActivity.member_id == who.id)
        )
        assert total == 17_000
    assert state(db, who).tier == "silber"  # type: ignore[union-attr]


def test_settings_changes_apply_to_the_next_evaluation(db: Database) -> None:
    prog = f.tiered(db, metric="spend")
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 10_000), now=T0)  # Silber by spend, 100 points
    with db.unit_of_work() as session:
        tiers.update_settings(
            session,
            programme=programmes.get(session, prog.id),
            patch=TierSettingsPatch(metric="purchases", grace_days=0),
            actor="test",
            now=T0,
        )
    assert reevaluate(db, prog, now=T0 + timedelta(days=1)) == 1
    assert state(db, who).tier == "bronze"  # type: ignore[union-attr]  # 1 purchase < 10,000
    with db.unit_of_work(write=False) as session:
        member = members.get(session, who.id)
        status = tiers.status(session, member=member, now=T0 + timedelta(days=1))
    assert status.metric == "purchases"
    assert status.next is not None
    assert (status.next.tier.code, status.next.missing) == ("silber", 9_999)


@pytest.mark.parametrize("lang", ["en", "de"])
def test_status_says_what_is_missing_and_what_keeps_the_tier(db: Database, lang: str) -> None:
    prog = f.tiered(db, window="calendar_year")
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 8_000), now=T0)
    with db.unit_of_work(write=False) as session:
        status = tiers.status(session, member=members.get(session, who.id), lang=lang, now=T0)
    assert status.tier is not None
    assert status.tier.code == "bronze"
    assert status.next is not None
    assert (status.next.missing, str(status.next.deadline)) == (2_000, "2026-12-31")
    expected = {
        "en": "€20.00 spend by 31.12.2026 for Silver",
        "de": "20,00\xa0€ Umsatz bis 31.12.2026 für Silber",
    }
    assert status.next.text == expected[lang]
    assert status.keep is None  # Bronze is everybody's


def test_the_job_runs_every_programme_and_twice_is_harmless(fresh_db: Database) -> None:
    one, two = f.tiered(fresh_db), f.tiered(fresh_db)
    people = [f.member(fresh_db, one), f.member(fresh_db, two), f.member(fresh_db, two)]
    for who in people:
        f.ingest_one(
            fresh_db, buy(one if who.programme_id == one.id else two, who, T0, 20_000), now=T0
        )
    later = T0 + timedelta(days=400)
    assert run_job(fresh_db, "tiers.reevaluate", now=later) == 3
    assert run_job(fresh_db, "tiers.reevaluate", now=later) == 0
    assert [state(fresh_db, who).tier for who in people] == ["silber"] * 3  # type: ignore[union-attr]


def test_re_evaluation_walks_many_due_members_in_batches_once(db: Database) -> None:
    prog = f.tiered(db)
    people = [f.member(db, prog) for _ in range(5)]
    f.ingest(db, *(buy(prog, who, T0, 20_000) for who in people), now=T0)
    later = T0 + timedelta(days=400)
    assert reevaluate(db, prog, now=later) == 5  # batches of 2
    assert [state(db, who).tier for who in people] == ["silber"] * 5  # type: ignore[union-attr]
    assert reevaluate(db, prog, now=later) == 0
    assert reevaluate(db, prog, now=later + timedelta(days=1)) == 5
    assert {state(db, who).tier for who in people} == {"bronze"}  # type: ignore[union-attr]


def _cart(prog: Programme, who: Member, at: datetime, amount: int, lang: str) -> CartIn:
    return CartIn.model_validate(
        {
            "programme": prog.slug,
            "member": f.member_ref(who),
            "channel": "pos",
            "currency": "EUR",
            "occurred_at": at.isoformat(),
            "lines": [{"sku": "x", "quantity": 1, "unit_price_minor": amount}],
            "lang": lang,
        }
    )


def _tier_hints(db: Database, cart: CartIn, now: datetime) -> list[Hint]:
    with db.unit_of_work(write=False) as session:
        answer = checkout.evaluate(session, cart, now=now)
    return [h for h in answer.hints if h.code.startswith("tier_")]


def test_the_checkout_says_what_is_missing_for_the_next_tier(db: Database) -> None:
    prog = f.tiered(db)  # spend: Silver from €100, Gold from €200
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 18_200), now=T0)  # Silver, €18.00 short of Gold
    at = T0 + timedelta(hours=1)
    assert _tier_hints(db, _cart(prog, who, at, 500, "en"), at) == [
        Hint("tier_progress", "€13.00 more to reach Gold")
    ]
    assert _tier_hints(db, _cart(prog, who, at, 500, "de"), at) == [
        Hint("tier_progress", "Noch 13,00\xa0€ bis Gold")
    ]
    assert _tier_hints(db, _cart(prog, who, at, 1_800, "de"), at) == [
        Hint("tier_reached_with_cart", "Mit diesem Einkauf: Gold!")
    ]
    assert _tier_hints(db, _cart(prog, who, at, 2_500, "en"), at) == [
        Hint("tier_reached_with_cart", "With this purchase: Gold!")
    ]
    f.ingest_one(db, buy(prog, who, at, 2_000), now=at)  # Gold: the top, nothing to say
    later = at + timedelta(hours=1)
    assert _tier_hints(db, _cart(prog, who, later, 500, "en"), later) == []


def test_the_tier_hint_counts_the_carts_points_in_a_points_ladder(db: Database) -> None:
    ladder = [
        {"code": "bronze", "rank": 0, "name": {"en": "Bronze"}, "threshold": 0},
        {"code": "silber", "rank": 1, "name": {"en": "Silver", "de": "Silber"}, "threshold": 100},
        {"code": "gold", "rank": 2, "name": {"en": "Gold", "de": "Gold"}, "threshold": 500},
    ]
    prog = f.tiered(db, ladder=ladder, metric="points")  # 1 point per €1
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 11_000), now=T0)  # 110 points: Silver
    at = T0 + timedelta(hours=1)
    assert _tier_hints(db, _cart(prog, who, at, 0, "de"), at) == [
        Hint("tier_progress", "Noch 390 Punkte bis Gold")
    ]
    assert _tier_hints(db, _cart(prog, who, at, 4_000, "en"), at) == [
        Hint("tier_progress", "350 points more to reach Gold")
    ]
    assert _tier_hints(db, _cart(prog, who, at, 39_000, "en"), at) == [
        Hint("tier_reached_with_cart", "With this purchase: Gold!")
    ]


def test_a_membership_that_arrives_after_its_period_records_what_was_bought_then_its_end(
    db: Database,
) -> None:
    prog = f.tiered(db)
    who = f.member(db, prog)
    f.ingest_one(db, buy(prog, who, T0, 12_000), now=T0)  # Silber by spend
    late = T0 + timedelta(days=45)  # the till sends a one-month purchase of 10 June now
    bought = f.ingest_one(db, membership(prog, who, T0, "gold", 1), now=late)
    assert bought.body is not None
    tier = bought.body.public()["tier"]
    assert (tier["from"], tier["to"], tier["reason"]) == ("gold", "silber", "membership_expired")
    assert tier["text"] == "Paid membership Gold ended on 10.07.2026; now Silver"
    entries = history(db, who)
    assert [(h.from_tier, h.to_tier, h.reason) for h in entries] == [
        ("bronze", "silber", "qualified"),
        ("silber", "gold", "membership_purchased"),
        ("gold", "silber", "membership_expired"),
    ]
    assert entries[1].text == "Gold bought for 1 month, until 10.07.2026"
    assert entries[1].at < entries[2].at
    assert entries[2].at == datetime(2026, 7, 10, 9, 0, tzinfo=UTC)
    stored = state(db, who)
    assert stored is not None
    assert (stored.tier, stored.paid_tier, stored.paid_until) == ("silber", None, None)
    earned = f.ingest_one(db, buy(prog, who, late, 2_000), now=late)
    assert earned.body is not None
    assert earned.body.points.earned == 25  # Silber x1.25: Gold is over
