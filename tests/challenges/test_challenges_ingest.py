"""Challenges end to end: progress from purchases and engagement events inside the
ingestion's transaction, completions with points and badges, windows in the programme's
time zone, caps, returns, batches, replays and concurrency."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from tests import factories as f
from tests.support.concurrency import in_parallel, postgres_only
from treu.challenges.models import Challenge, ChallengeCompletion, ChallengeProgress
from treu.challenges.service import challenges
from treu.db.session import Database
from treu.events.models import Event
from treu.events.service import Outcome
from treu.ledger.explain import render
from treu.ledger.models import Posting
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rules.models import MemberBadge
from treu.rules.service import rules
from treu.rules.spec import RuleSpec

MAY = f.MAY  # 1 May, 00:00 in Berlin, to 1 June: the challenge factory's window
T0 = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)  # a Wednesday in May
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def buy(
    db: Database,
    prog: Programme,
    who: Member,
    at: datetime,
    lines: list[dict[str, Any]] | None = None,
    *,
    amount: int = 1500,
    event_id: str | None = None,
    now: datetime = NOW,
) -> dict[str, Any]:
    out = f.ingest_one(
        db,
        f.purchase_payload(
            prog, who, lines=lines, amount_minor=amount, occurred_at=at, event_id=event_id
        ),
        now=now,
    )
    assert out.body is not None
    return out.body.public()


def line(
    sku: str, category: str, price: int = 500, quantity: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "sku": sku,
        "category": category,
        "quantity": quantity,
        "unit_price_minor": price,
        **extra,
    }


def review(prog: Programme, who: Member, at: datetime, rating: int = 5) -> dict[str, Any]:
    return {
        "id": f.unique("review"),
        "type": "review_submitted",
        "programme": prog.slug,
        "member": {"member_id": str(who.id)},
        "occurred_at": at.isoformat(),
        "attributes": {"product_sku": "4001", "rating": rating},
    }


def progress(db: Database, challenge: Challenge, who: Member) -> dict[str, tuple[int, int]]:
    """period -> (current, completions)"""
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(
            select(ChallengeProgress).where(
                ChallengeProgress.challenge_id == challenge.id,
                ChallengeProgress.member_id == who.id,
            )
        ).all()
        return {r.period: (r.current, r.completions) for r in rows}


def completions(db: Database, challenge: Challenge, who: Member | None = None) -> list[Any]:
    with db.unit_of_work(write=False) as session:
        query = select(ChallengeCompletion).where(ChallengeCompletion.challenge_id == challenge.id)
        if who is not None:
            query = query.where(ChallengeCompletion.member_id == who.id)
        return list(session.scalars(query.order_by(ChallengeCompletion.completed_at)))


def challenge_postings(db: Database, who: Member) -> list[Posting]:
    with db.unit_of_work(write=False) as session:
        return [
            p
            for p in session.scalars(
                select(Posting).where(Posting.member_id == who.id).order_by(Posting.id)
            )
            if p.details.get("template") == "challenges.completed"
        ]


def badges(db: Database, who: Member) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return sorted(
            session.scalars(select(MemberBadge.code).where(MemberBadge.member_id == who.id))
        )


# --------------------------------------------------------------------------- count


def test_three_purchases_in_may_complete_once_with_points(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog)
    anna = f.member(db, prog)
    first = buy(db, prog, anna, T0)
    assert first["challenges"] == [
        {
            "challenge_id": str(challenge.id),
            "code": challenge.code,
            "period": "window",
            "progress": {"current": 1, "target": 3},
            "change": 1,
            "completed": False,
        }
    ]
    buy(db, prog, anna, T0 + timedelta(days=1))
    third = buy(db, prog, anna, T0 + timedelta(days=2))
    entry = third["challenges"][0]
    assert entry["completed"] is True
    assert entry["progress"] == {"current": 3, "target": 3}
    assert entry["reward"]["points"] == 300
    assert (
        entry["reward"]["posting"]["explanation"]
        == "Challenge “3 purchases in May” completed: +300"
    )
    # The answer's balance includes the reward: 3 x 15 points + 300.
    assert third["balance"]["available"] == 45 + 300
    fourth = buy(db, prog, anna, T0 + timedelta(days=3))
    assert "challenges" not in fourth  # completed: nothing changes any more
    assert progress(db, challenge, anna) == {"window": (3, 1)}
    [done] = completions(db, challenge, anna)
    assert done.points == 300
    assert done.completed_at == T0 + timedelta(days=2)
    [posting] = challenge_postings(db, anna)
    assert posting.points == 300
    assert posting.kind == "earn"
    assert posting.rule_id is None
    assert done.posting_id == posting.id
    assert render(posting.details, "de") == "Challenge „3 Einkäufe im Mai“ geschafft: +300"
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (60 + 300, 0)  # available at once
    assert f.verify(db, prog) == []


def test_events_outside_the_window_or_with_a_false_condition_do_not_count(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db, prog, condition="event.total_minor >= 1000 and event.channel == 'pos'"
    )
    anna = f.member(db, prog)
    # 30 April 23:30 in Berlin: still April
    assert "challenges" not in buy(db, prog, anna, MAY[0] - timedelta(minutes=30))
    assert "challenges" not in buy(db, prog, anna, T0, amount=999)
    out = f.ingest_one(
        db,
        f.purchase_payload(prog, anna, amount_minor=5000, occurred_at=T0, channel="web"),
        now=NOW,
    )
    assert out.body is not None
    assert out.body.challenges == ()
    # 1 May 00:00 in Berlin: the first instant of the window
    assert buy(db, prog, anna, MAY[0])["challenges"][0]["progress"]["current"] == 1
    assert "challenges" not in buy(db, prog, anna, MAY[1])  # the end is exclusive
    assert progress(db, challenge, anna) == {"window": (1, 0)}


def test_line_condition_needs_a_matching_line(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        line_condition="'organic' in line.tags",
        goal={"type": "count", "target": 2},
    )
    anna = f.member(db, prog)
    assert "challenges" not in buy(db, prog, anna, T0, [line("a", "dairy")])
    out = buy(db, prog, anna, T0, [line("a", "dairy"), line("b", "dairy", tags=["organic"])])
    assert out["challenges"][0]["progress"]["current"] == 1
    assert progress(db, challenge, anna) == {"window": (1, 0)}


def test_reviews_count_engagement_events(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        trigger=["review_submitted"],
        condition="event.attrs['rating'] >= 3",
        goal={"type": "count", "target": 2},
        reward={"points": 100},
    )
    anna = f.member(db, prog)
    low = f.ingest_one(db, review(prog, anna, T0, rating=1), now=NOW)
    assert low.body is not None
    assert low.body.challenges == ()
    f.ingest_one(db, review(prog, anna, T0 + timedelta(hours=1)), now=NOW)
    done = f.ingest_one(db, review(prog, anna, T0 + timedelta(hours=2)), now=NOW)
    assert done.body is not None
    assert done.body.challenges[0].completed is True
    assert done.body.balance is not None
    assert done.body.balance.available == 100
    # Purchases do not count for a review challenge.
    assert "challenges" not in buy(db, prog, anna, T0)
    assert progress(db, challenge, anna) == {"window": (2, 1)}
    assert f.balance(db, anna).available == 115


# --------------------------------------------------------------------------- distinct, sum


def test_distinct_categories_over_matching_lines(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        line_condition="line.category != 'deposit'",
        goal={"type": "distinct", "target": 3, "value": "line.category"},
        reward={"points": 150},
    )
    anna = f.member(db, prog)
    one = buy(db, prog, anna, T0, [line("a", "dairy"), line("b", "dairy"), line("p", "deposit")])
    assert one["challenges"][0]["progress"]["current"] == 1
    same = buy(db, prog, anna, T0, [line("c", "dairy"), line("n", None)])  # type: ignore[arg-type]
    assert same["challenges"][0]["change"] == 0  # counted, but no new category
    two = buy(db, prog, anna, T0, [line("d", "coffee"), line("e", "bakery")])
    entry = two["challenges"][0]
    assert (entry["change"], entry["completed"]) == (2, True)
    assert entry["progress"] == {"current": 3, "target": 3}
    with db.unit_of_work(write=False) as session:
        row = session.get_one(ChallengeProgress, (challenge.id, anna.id, "window"))
        assert row.items == {"dairy": 2, "coffee": 1, "bakery": 1}


def test_distinct_stores_per_event(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        goal={"type": "distinct", "target": 2, "value": "event.store"},
    )
    anna = f.member(db, prog)
    for store in ("berlin-01", "berlin-01", None):
        payload = f.purchase_payload(prog, anna, occurred_at=T0)
        if store:
            payload["store"] = store
        f.ingest_one(db, payload, now=NOW)
    assert progress(db, challenge, anna) == {"window": (1, 0)}
    payload = f.purchase_payload(prog, anna, occurred_at=T0)
    payload["store"] = "hamburg-01"
    f.ingest_one(db, payload, now=NOW)
    assert progress(db, challenge, anna) == {"window": (2, 1)}


def test_sum_of_spend_in_minor_units(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        goal={"type": "sum", "target": 5000},
        line_condition="line.category == 'coffee'",
        reward={"points": 250},
    )
    anna = f.member(db, prog)
    out = buy(db, prog, anna, T0, [line("k", "coffee", 899, 2), line("m", "dairy", 10_000)])
    assert out["challenges"][0]["progress"] == {"current": 1798, "target": 5000}
    done = buy(db, prog, anna, T0, [line("k", "coffee", 899, 4)])
    assert done["challenges"][0]["progress"]["current"] == 1798 + 3596
    assert done["challenges"][0]["completed"] is True
    assert progress(db, challenge, anna) == {"window": (5394, 1)}


def test_sum_of_an_event_value(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        goal={"type": "sum", "target": 10, "value": "event.item_count"},
    )
    anna = f.member(db, prog)
    buy(db, prog, anna, T0, [line("a", "x", quantity=4), line("b", "y", quantity=3)])
    assert progress(db, challenge, anna) == {"window": (7, 0)}


# --------------------------------------------------------------------------- windows, caps


def test_monthly_repeat_at_the_period_boundary_in_the_programme_time_zone(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        window={"type": "repeating", "every": "month"},
        goal={"type": "count", "target": 2},
        max_completions=None,
        reward={"points": 50},
    )
    anna = f.member(db, prog)
    # 31 May 23:30 in Berlin is 21:30Z; 1 June 00:30 in Berlin is 22:30Z on 31 May.
    may_evening = datetime(2026, 5, 31, 21, 30, tzinfo=UTC)
    june_night = datetime(2026, 5, 31, 22, 30, tzinfo=UTC)
    now = datetime(2026, 6, 20, tzinfo=UTC)
    assert buy(db, prog, anna, may_evening, now=now)["challenges"][0]["period"] == "month:2026-05"
    assert buy(db, prog, anna, june_night, now=now)["challenges"][0]["period"] == "month:2026-06"
    buy(db, prog, anna, june_night + timedelta(days=1), now=now)
    buy(db, prog, anna, T0, now=now)  # May again
    assert progress(db, challenge, anna) == {"month:2026-05": (2, 1), "month:2026-06": (2, 1)}
    assert [c.period for c in completions(db, challenge, anna)] == [
        "month:2026-05",
        "month:2026-06",
    ]
    assert len(challenge_postings(db, anna)) == 2


def test_weekly_repeat_with_max_completions(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        trigger="review_submitted",
        window={"type": "repeating", "every": "week"},
        goal={"type": "count", "target": 1},
        max_completions=2,
        reward={"points": 10},
    )
    anna = f.member(db, prog)
    # Sunday 10 May 23:30 Berlin = 21:30Z; Monday 11 May 00:30 Berlin = 22:30Z on Sunday.
    sunday = datetime(2026, 5, 10, 21, 30, tzinfo=UTC)
    monday = datetime(2026, 5, 10, 22, 30, tzinfo=UTC)
    first = f.ingest_one(db, review(prog, anna, sunday), now=NOW)
    second = f.ingest_one(db, review(prog, anna, monday), now=NOW)
    third = f.ingest_one(db, review(prog, anna, monday + timedelta(days=7)), now=NOW)
    assert first.body is not None
    assert second.body is not None
    assert third.body is not None
    assert first.body.challenges[0].period == "week:2026-W19"
    assert second.body.challenges[0].period == "week:2026-W20"
    assert third.body.challenges == ()  # two completions are the cap
    assert progress(db, challenge, anna) == {
        "week:2026-W19": (1, 1),
        "week:2026-W20": (1, 1),
        "all": (0, 2),
    }
    assert f.balance(db, anna).available == 20


def test_repeating_window_bounds(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db,
        prog,
        window={
            "type": "repeating",
            "every": "week",
            "starts_at": "2026-05-06T00:00:00+02:00",
            "ends_at": "2026-05-13T00:00:00+02:00",
        },
        goal={"type": "count", "target": 5},
    )
    anna = f.member(db, prog)
    before = datetime(2026, 5, 5, 21, 59, tzinfo=UTC)  # 5 May 23:59 in Berlin
    assert "challenges" not in buy(db, prog, anna, before)
    assert buy(db, prog, anna, before + timedelta(minutes=1))["challenges"]
    assert buy(db, prog, anna, datetime(2026, 5, 12, 21, 59, tzinfo=UTC))["challenges"]
    assert "challenges" not in buy(db, prog, anna, datetime(2026, 5, 12, 22, 0, tzinfo=UTC))
    assert progress(db, challenge, anna) == {"week:2026-W19": (1, 0), "week:2026-W20": (1, 0)}


def test_paused_and_ended_challenges_count_nothing(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog)
    anna = f.member(db, prog)
    buy(db, prog, anna, T0)
    with db.unit_of_work() as session:
        challenges.pause(session, challenges.get(session, challenge.id), actor="test")
    assert "challenges" not in buy(db, prog, anna, T0)
    with db.unit_of_work() as session:
        challenges.activate(session, challenges.get(session, challenge.id), actor="test", now=T0)
    buy(db, prog, anna, T0)
    with db.unit_of_work() as session:
        challenges.end(session, challenges.get(session, challenge.id), actor="test")
    assert "challenges" not in buy(db, prog, anna, T0)
    assert progress(db, challenge, anna) == {"window": (2, 0)}


def test_drafts_count_nothing(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog, activate=False)
    anna = f.member(db, prog)
    assert "challenges" not in buy(db, prog, anna, T0)
    assert progress(db, challenge, anna) == {}


def test_conditions_see_the_members_tier(db: Database) -> None:
    from treu.programmes.service import programmes
    from treu.tiers.schemas import TierCreate
    from treu.tiers.service import tiers

    prog = f.programme(db, tier_settings={"metric": "spend", "grace_days": 0})
    with db.unit_of_work() as session:
        attached = programmes.get(session, prog.id)
        for spec in (
            {"code": "bronze", "rank": 0, "name": {"en": "Bronze"}, "threshold": 0},
            {"code": "gold", "rank": 1, "name": {"en": "Gold"}, "threshold": 10_000},
        ):
            tiers.create(
                session, programme=attached, data=TierCreate.model_validate(spec), actor="test"
            )
    challenge = f.challenge(
        db, prog, condition="member.tier == 'gold'", goal={"type": "count", "target": 10}
    )
    anna = f.member(db, prog)
    assert "challenges" not in buy(db, prog, anna, T0, amount=5_000)
    # This purchase lifts Anna to Gold: it counts, as do the later ones.
    assert buy(db, prog, anna, T0, amount=6_000)["challenges"][0]["change"] == 1
    assert buy(db, prog, anna, T0, amount=100)["challenges"][0]["change"] == 1
    assert progress(db, challenge, anna) == {"window": (2, 0)}
    # A return on its own (no earning event in its unit of work) sees the tier too: the
    # purchase counted for a Gold member, so taking it back takes its progress back.
    order = f.unique("order")
    assert buy(db, prog, anna, T0, amount=300, event_id=order)["challenges"][0]["change"] == 1
    back = f.ingest_one(
        db,
        f.return_payload(prog, order, [{"sku": "sku-1", "quantity": 1}], occurred_at=T0),
        now=NOW,
    )
    assert back.body is not None
    assert [(s.change, s.current) for s in back.body.challenges] == [(-1, 2)]
    assert progress(db, challenge, anna) == {"window": (2, 0)}


# --------------------------------------------------------------------------- badges


def test_badge_reward_is_held_once(db: Database) -> None:
    prog = f.programme(db)
    badge = {"code": "stammkunde", "name": {"en": "Regular", "de": "Stammkunde"}, "icon": "⭐"}
    weekly = f.challenge(
        db,
        prog,
        window={"type": "repeating", "every": "week"},
        goal={"type": "count", "target": 1},
        max_completions=None,
        reward={"points": 5, "badge": badge},
    )
    badge_only = f.challenge(db, prog, goal={"type": "count", "target": 1}, reward={"badge": badge})
    anna = f.member(db, prog)
    first = buy(db, prog, anna, T0)
    rewards = {e["code"]: e["reward"] for e in first["challenges"]}
    # Both challenges complete with the same event: the badge is awarded once, by the
    # first of them (challenges are processed in id order).
    assert rewards[weekly.code]["badge"]["code"] == "stammkunde"
    assert rewards[badge_only.code] == {"points": 0}
    second = buy(db, prog, anna, T0 + timedelta(days=7))
    assert second["challenges"][0]["reward"] == {
        "points": 5,
        "posting": second["challenges"][0]["reward"]["posting"],
    }
    assert badges(db, anna) == ["stammkunde"]
    assert [c.badge_code for c in completions(db, weekly, anna)] == ["stammkunde", None]
    assert [c.badge_code for c in completions(db, badge_only, anna)] == [None]
    [posting_a, posting_b] = challenge_postings(db, anna)
    assert posting_a.points == posting_b.points == 5


def test_badge_shared_with_an_earning_rule_is_awarded_once(db: Database) -> None:
    prog = f.programme(db)
    badge = {"code": "first-buy", "name": {"en": "First buy"}, "icon": "🛒"}
    with db.unit_of_work() as session:
        rule = rules.create(
            session,
            programme=prog,
            spec=RuleSpec.model_validate(
                {
                    "name": "First buy badge",
                    "trigger": "purchase",
                    "effect": {"type": "badge_only"},
                    "badge": badge,
                }
            ),
            actor="test",
        )
        rules.publish(session, rule, actor="test")
    f.challenge(db, prog, goal={"type": "count", "target": 1}, reward={"points": 1, "badge": badge})
    anna = f.member(db, prog)
    out = buy(db, prog, anna, T0)
    assert out["badges"][0]["code"] == "first-buy"
    assert "badge" not in out["challenges"][0]["reward"]
    assert badges(db, anna) == ["first-buy"]


# --------------------------------------------------------------------------- batches, replays


def test_several_events_of_one_member_in_one_batch(db: Database) -> None:
    prog = f.programme(db)
    count = f.challenge(db, prog, goal={"type": "count", "target": 2}, reward={"points": 20})
    kinds = f.challenge(
        db,
        prog,
        goal={"type": "distinct", "target": 2, "value": "line.category"},
        reward={"points": 30},
    )
    anna, ben = f.member(db, prog), f.member(db, prog)
    payloads = [
        f.purchase_payload(prog, anna, lines=[line("a", "dairy")], occurred_at=T0),
        f.purchase_payload(prog, ben, lines=[line("a", "dairy")], occurred_at=T0),
        f.purchase_payload(prog, anna, lines=[line("b", "dairy")], occurred_at=T0),
        f.purchase_payload(prog, anna, lines=[line("c", "coffee")], occurred_at=T0),
    ]
    outcomes = f.ingest(db, *payloads, now=NOW)
    assert all(o.ok for o in outcomes)
    bodies = [o.body.public() if o.body else {} for o in outcomes]
    by_code = [{e["code"]: e for e in body["challenges"]} for body in bodies]
    assert by_code[2][count.code]["completed"] is True
    assert by_code[2][kinds.code]["progress"]["current"] == 1
    assert count.code not in by_code[3]
    assert by_code[3][kinds.code]["completed"] is True
    # Each answer shows the balance after its own event, rewards included.
    assert [b["balance"]["available"] for b in (bodies[0], bodies[2], bodies[3])] == [
        5,
        10 + 20,
        15 + 20 + 30,
    ]
    assert bodies[1]["balance"]["available"] == 5
    assert progress(db, count, anna) == {"window": (2, 1)}
    assert progress(db, count, ben) == {"window": (1, 0)}
    assert f.balance(db, anna).available == 65
    assert f.verify(db, prog) == []


def test_a_replay_never_counts_twice(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog, goal={"type": "count", "target": 2})
    anna = f.member(db, prog)
    payload = f.purchase_payload(prog, anna, occurred_at=T0)
    first = f.ingest_one(db, payload, now=NOW)
    again = f.ingest_one(db, payload, now=NOW)
    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    # The same event twice in one batch: the second copy is a replay too.
    other = f.purchase_payload(prog, anna, occurred_at=T0)
    outcomes = f.ingest(db, other, other, now=NOW)
    assert [o.status for o in outcomes] == [201, 200]
    assert progress(db, challenge, anna) == {"window": (2, 1)}
    assert len(challenge_postings(db, anna)) == 1


def test_failed_events_count_nothing(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog)
    anna = f.member(db, prog)
    good = f.purchase_payload(prog, anna, occurred_at=T0)
    bad = f.purchase_payload(prog, anna, occurred_at=T0)
    bad["currency"] = "USD"
    outcomes = f.ingest(db, good, bad, now=NOW)
    assert [o.ok for o in outcomes] == [True, False]
    assert progress(db, challenge, anna) == {"window": (1, 0)}


def test_blocked_members_make_no_progress(db: Database) -> None:
    from treu.members.schemas import MemberUpdate
    from treu.members.service import members

    prog = f.programme(db)
    challenge = f.challenge(db, prog)
    anna = f.member(db, prog)
    with db.unit_of_work() as session:
        members.update(
            session,
            member=members.get(session, anna.id),
            data=MemberUpdate.model_validate({"status": "blocked"}),
        )
    assert "challenges" not in buy(db, prog, anna, T0)
    assert progress(db, challenge, anna) == {}


# --------------------------------------------------------------------------- returns


def test_a_return_reduces_the_progress_of_an_open_period(db: Database) -> None:
    prog = f.programme(db)
    count = f.challenge(db, prog, goal={"type": "count", "target": 3})
    spend = f.challenge(db, prog, goal={"type": "sum", "target": 100_000})
    kinds = f.challenge(db, prog, goal={"type": "distinct", "target": 5, "value": "line.category"})
    anna = f.member(db, prog)
    order = f.unique("order")
    buy(
        db,
        prog,
        anna,
        T0,
        [line("a", "dairy", 300, 2), line("b", "coffee", 900)],
        event_id=order,
    )
    buy(db, prog, anna, T0, [line("c", "dairy", 100)])
    # Return one of the two dairy items: still a purchase, still dairy, 300 less spend.
    out = f.ingest_one(
        db,
        f.return_payload(
            prog, order, [{"sku": "a", "quantity": 1}], occurred_at=T0 + timedelta(days=1)
        ),
        now=NOW,
    )
    assert out.body is not None
    changes = {e.code: e.change for e in out.body.challenges}
    assert changes == {spend.code: -300}
    # Return the rest: the purchase no longer counts; coffee is gone, dairy stays (other order).
    out = f.ingest_one(
        db,
        f.return_payload(
            prog,
            order,
            [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 1}],
            occurred_at=T0 + timedelta(days=2),
        ),
        now=NOW,
    )
    assert out.body is not None
    changes = {e.code: e.change for e in out.body.challenges}
    assert changes == {count.code: -1, spend.code: -1200, kinds.code: -1}
    assert progress(db, count, anna) == {"window": (1, 0)}
    assert progress(db, spend, anna) == {"window": (100, 0)}
    assert progress(db, kinds, anna) == {"window": (1, 0)}
    # Buying again counts again.
    buy(db, prog, anna, T0 + timedelta(days=3), [line("b", "coffee", 900)])
    assert progress(db, count, anna) == {"window": (2, 0)}
    assert progress(db, kinds, anna) == {"window": (2, 0)}


def test_a_return_never_undoes_a_completed_challenge(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog, goal={"type": "count", "target": 2})
    anna = f.member(db, prog)
    order = f.unique("order")
    buy(db, prog, anna, T0, event_id=order, amount=1000)
    buy(db, prog, anna, T0, amount=1000)
    out = f.ingest_one(
        db,
        f.return_payload(
            prog, order, [{"sku": "sku-1", "quantity": 1}], occurred_at=T0 + timedelta(days=1)
        ),
        now=NOW,
    )
    assert out.body is not None
    assert out.body.challenges == ()
    assert progress(db, challenge, anna) == {"window": (2, 1)}
    # The purchase's points are reversed; the challenge's 300 are kept.
    assert f.balance(db, anna).available == 10 + 300
    assert len(completions(db, challenge, anna)) == 1
    assert f.verify(db, prog) == []


def test_a_return_in_the_same_batch_as_its_purchase(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(db, prog, goal={"type": "count", "target": 2})
    anna = f.member(db, prog)
    order = f.unique("order")
    outcomes = f.ingest(
        db,
        f.purchase_payload(
            prog, anna, lines=[line("a", "x", quantity=2)], occurred_at=T0, event_id=order
        ),
        f.return_payload(prog, order, [{"sku": "a", "quantity": 1}], occurred_at=T0),
        f.return_payload(prog, order, [{"sku": "a", "quantity": 1}], occurred_at=T0),
        now=NOW,
    )
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert outcomes[1].body is not None
    assert not outcomes[1].body.challenges
    assert outcomes[2].body is not None
    assert outcomes[2].body.challenges[0].change == -1
    assert progress(db, challenge, anna) == {"window": (0, 0)}
    with db.unit_of_work(write=False) as session:
        data = session.scalar(select(Event.data).where(Event.key == order))
        assert data is not None
        assert data["challenges"] == {str(challenge.id): {"p": "window", "n": 1}}


def test_a_partial_return_rechecks_the_conditions(db: Database) -> None:
    prog = f.programme(db)
    challenge = f.challenge(
        db, prog, condition="member.days_enrolled >= 0 and event.total_minor >= 1000"
    )
    anna = f.member(db, prog)
    order = f.unique("order")
    buy(db, prog, anna, T0, [line("a", "x", 750, quantity=2)], event_id=order)
    assert progress(db, challenge, anna) == {"window": (1, 0)}
    # EUR 7.50 kept: below the condition's EUR 10, so the purchase no longer counts.
    out = f.ingest_one(
        db,
        f.return_payload(prog, order, [{"sku": "a", "quantity": 1}], occurred_at=T0),
        now=NOW,
    )
    assert out.body is not None
    assert out.body.challenges[0].change == -1
    assert progress(db, challenge, anna) == {"window": (0, 0)}


def test_returns_of_purchases_before_the_challenge_change_nothing(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    order = f.unique("order")
    buy(db, prog, anna, T0, event_id=order)
    challenge = f.challenge(db, prog)
    buy(db, prog, anna, T0)
    out = f.ingest_one(
        db,
        f.return_payload(
            prog, order, [{"sku": "sku-1", "quantity": 1}], occurred_at=T0 + timedelta(days=1)
        ),
        now=NOW,
    )
    assert out.body is not None
    assert not out.body.challenges
    assert progress(db, challenge, anna) == {"window": (1, 0)}


# --------------------------------------------------------------------------- queries


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = db.write_engine

    def record(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_no_query_at_all_without_active_challenges(db: Database, backend: str) -> None:
    prog = f.programme(db)
    f.challenge(db, prog, activate=False)
    anna = f.member(db, prog)
    buy(db, prog, anna, T0)  # warms the caches
    with statements(db) as seen:
        buy(db, prog, anna, T0)
    assert seen
    assert not [s for s in seen if "challenge" in s.lower()]


def test_one_progress_query_per_unit_of_work(db: Database) -> None:
    prog = f.programme(db)
    f.challenge(db, prog, window={"type": "repeating", "every": "week"}, max_completions=None)
    f.challenge(db, prog, goal={"type": "distinct", "target": 3, "value": "line.category"})
    people = [f.member(db, prog) for _ in range(3)]
    buy(db, prog, people[0], T0)  # warms the cache of active challenges
    payloads = [
        f.purchase_payload(prog, who, occurred_at=T0 + timedelta(days=d))
        for d in range(3)
        for who in people
    ]
    with statements(db) as seen:
        outcomes = f.ingest(db, *payloads, now=NOW)
    assert all(o.ok for o in outcomes)
    assert len([s for s in seen if "FROM challenge_progress" in s]) == 1
    assert not [s for s in seen if "FROM challenges" in s]


def _session_counts(session: Session, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return int(session.scalar(query) or 0)


# --------------------------------------------------------------------------- concurrency


def test_many_concurrent_events_of_one_member_complete_once(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    challenge = f.challenge(db, prog, goal={"type": "count", "target": 3}, reward={"points": 300})
    anna = f.member(db, prog)

    def shop(i: int) -> Outcome:
        return f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=1000, occurred_at=T0))

    results = in_parallel(20, shop)
    assert [r for r in results if isinstance(r, BaseException)] == []
    outcomes = [r for r in results if isinstance(r, Outcome)]
    completed = [o for o in outcomes if o.body and any(e.completed for e in o.body.challenges)]
    assert len(completed) == 1
    counted = [o for o in outcomes if o.body and o.body.challenges]
    assert len(counted) == 3
    assert progress(db, challenge, anna) == {"window": (3, 1)}
    assert len(completions(db, challenge, anna)) == 1
    assert len(challenge_postings(db, anna)) == 1
    assert f.balance(db, anna).available == 20 * 10 + 300
    assert f.verify(db, prog) == []
    with db.unit_of_work(write=False) as session:
        assert _session_counts(session, ChallengeCompletion, member_id=anna.id) == 1


def test_concurrent_batches_of_many_members(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    challenge = f.challenge(db, prog, goal={"type": "count", "target": 4}, reward={"points": 40})
    people = [f.member(db, prog) for _ in range(5)]

    def shop(i: int) -> list[Outcome]:
        return f.ingest(
            db,
            *[f.purchase_payload(prog, who, occurred_at=T0) for who in people],
        )

    results = in_parallel(6, shop)
    assert [r for r in results if isinstance(r, BaseException)] == []
    for who in people:
        assert progress(db, challenge, who) == {"window": (4, 1)}
        assert len(challenge_postings(db, who)) == 1
    assert f.verify(db, prog) == []


def test_the_demo_has_three_challenges_with_progress(fresh_db: Database) -> None:
    from treu.demo import load_demo

    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    summary = load_demo(fresh_db, members=40, purchases=600, seed=3, now=now)
    assert summary.rejected == []
    with fresh_db.unit_of_work(write=False) as session:
        found = {c.code: c for c in session.scalars(select(Challenge))}
        assert set(found) == {"drei-einkaeufe", "drei-kategorien", "zwei-bewertungen"}
        assert {c.status for c in found.values()} == {"active"}
        assert found["drei-einkaeufe"].spec["name"]["de"] == "3 Einkäufe im November"
        rows = session.execute(
            select(ChallengeProgress.challenge_id, func.count()).group_by(
                ChallengeProgress.challenge_id
            )
        ).all()
        assert {challenge_id for challenge_id, _ in rows} == {c.id for c in found.values()}
        done = session.scalar(select(func.count()).select_from(ChallengeCompletion))
        assert done
        open_ = session.scalar(
            select(func.count())
            .select_from(ChallengeProgress)
            .where(ChallengeProgress.completions == 0, ChallengeProgress.current > 0)
        )
        assert open_
        assert ledger.verify(session) == []


def test_participants_and_completions_per_challenge(db: Database) -> None:
    """What the console's list shows: members with progress (in any period) and
    completions, one grouped query each."""
    prog = f.programme(db)
    monthly = f.challenge(
        db, prog, window={"type": "repeating", "every": "month"}, max_completions=None,
        goal={"type": "count", "target": 1},
    )  # fmt: skip
    untouched = f.challenge(db, prog)
    anna, ben = f.member(db, prog), f.member(db, prog)
    buy(db, prog, anna, T0)
    buy(db, prog, anna, T0 + timedelta(days=31))  # June: a second period
    buy(db, prog, ben, T0)
    with db.unit_of_work(write=False) as session:
        ids = [monthly.id, untouched.id]
        people = challenges.participant_counts(session, ids)
        done = challenges.completion_counts(session, ids)
        assert challenges.participant_counts(session, []) == {}
    # every purchase also counted for the 3-in-May challenge: 2 participants, no completion
    assert people == {monthly.id: 2, untouched.id: 2}
    assert done == {monthly.id: 3}
