"""``simulate_in_full``: every draft rule's awards with its points per day (the console's
chart), beside the API's answer, which it leaves as it was."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tests import factories as f
from treu.db.session import Database
from treu.events.simulation import SimulationIn, simulate, simulate_in_full

T0 = datetime(2026, 6, 10, 21, 30, tzinfo=UTC)  # 23:30 in Berlin: the local day counts
NOW = T0 + timedelta(days=5)


def test_points_per_day_in_the_programme_time_zone(db: Database) -> None:
    prog = f.programme(db, timezone="Europe/Berlin")
    anna, ben = f.member(db, prog), f.member(db, prog)
    for who, at, amount in (
        (anna, T0, 6000),  # 10 June 23:30 Berlin -> 10 June
        (anna, T0 + timedelta(hours=1), 7000),  # 11 June 00:30 Berlin -> 11 June
        (ben, T0 + timedelta(days=1), 2000),  # under 50: no bonus
        (ben, T0 + timedelta(days=1, hours=1), 9000),  # 12 June 00:30 Berlin
    ):
        f.ingest_one(
            db, f.purchase_payload(prog, who, amount_minor=amount, occurred_at=at), now=NOW
        )
    request = SimulationIn.model_validate(
        {
            "programme": prog.slug,
            "from": T0 - timedelta(days=1),
            "until": T0 + timedelta(days=3),
            "rules": [
                {
                    "name": "Big basket",
                    "trigger": "purchase",
                    "condition": "event.total_minor >= 5000",
                    "effect": {"type": "fixed", "points": 100},
                }
            ],
        }
    )
    with db.unit_of_work(write=False) as session:
        full = simulate_in_full(session, request)
        plain = simulate(session, request)
    bonus = full.draft_rules["new-1"]
    assert (bonus.name, bonus.points, bonus.awards, bonus.members) == ("Big basket", 300, 3, 2)
    assert bonus.days == {date(2026, 6, 10): 100, date(2026, 6, 11): 100, date(2026, 6, 12): 100}
    base = full.draft_rules["base"]
    assert base.points == 60 + 70 + 20 + 90
    assert sum(base.days.values()) == base.points
    # the API's answer is the same with or without the days
    assert full.out.model_dump(exclude={"seconds"}) == plain.model_dump(exclude={"seconds"})
