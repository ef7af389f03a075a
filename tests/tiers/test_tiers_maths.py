"""Tier maths without a database: thresholds, windows and their boundaries, what is
missing and until when a tier holds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from treu.tiers import maths
from treu.tiers.maths import DayActivity, Ladder, TierDef
from treu.tiers.texts import history_text, missing_text, quantity

BRONZE = TierDef("bronze", 0, {"en": "Bronze", "de": "Bronze"}, 0)
SILBER = TierDef("silber", 1, {"en": "Silver", "de": "Silber"}, 10_000, Decimal("1.25"))
GOLD = TierDef("gold", 2, {"en": "Gold", "de": "Gold"}, 20_000, Decimal("1.5"), ("free_shipping",))
LADDER = Ladder((GOLD, BRONZE, SILBER))  # any order in, rank order out
ROLLING, CALENDAR = "rolling_12_months", "calendar_year"


def spend(**days: int) -> dict[date, DayActivity]:
    """``spend(d2026_06_01=5000)`` -> {date(2026, 6, 1): 5000 spend}."""
    return {
        date(*map(int, key.removeprefix("d").split("_"))): DayActivity(0, value, 1)
        for key, value in days.items()
    }


def test_the_ladder_orders_by_rank_and_finds_the_highest_tier_reached() -> None:
    assert [t.code for t in LADDER.tiers] == ["bronze", "silber", "gold"]
    assert LADDER.reached(0) is BRONZE
    assert LADDER.reached(9_999) is BRONZE
    assert LADDER.reached(10_000) is SILBER
    assert LADDER.reached(10**9) is GOLD
    assert LADDER.base is BRONZE
    assert LADDER.above(None) is BRONZE
    assert LADDER.above("silber") is GOLD
    assert LADDER.above("gold") is None
    assert LADDER.down("gold", 1) == "silber"
    assert LADDER.down("gold", 2) == "bronze"
    assert LADDER.down("gold", 3) is None
    assert LADDER.higher("silber", None) == "silber"
    assert LADDER.higher("silber", "gold") == "gold"
    no_base = Ladder((SILBER, GOLD))
    assert no_base.base is None
    assert no_base.reached(500) is None


def test_rolling_window_boundaries() -> None:
    assert maths.window_start(date(2026, 11, 24), ROLLING) == date(2025, 11, 25)
    assert maths.window_start(date(2026, 3, 31), ROLLING) == date(2025, 4, 1)
    assert maths.leaves_window(date(2025, 11, 25)) == date(2026, 11, 25)
    # 29 February counts through 28 February of the next year and leaves on 1 March
    assert maths.leaves_window(date(2024, 2, 29)) == date(2025, 3, 1)
    activity = spend(d2025_11_25=6_000, d2026_11_24=4_000)
    assert maths.value_on(activity, "spend", ROLLING, date(2026, 11, 24)) == 10_000
    assert maths.value_on(activity, "spend", ROLLING, date(2026, 11, 25)) == 4_000
    assert maths.qualified(LADDER, activity, "spend", ROLLING, date(2026, 11, 24)) is SILBER
    assert maths.qualified(LADDER, activity, "spend", ROLLING, date(2026, 11, 25)) is BRONZE


def test_calendar_year_keeps_a_tier_through_the_next_year() -> None:
    activity = spend(d2025_12_31=20_000)
    assert maths.qualified(LADDER, activity, "spend", CALENDAR, date(2025, 12, 31)) is GOLD
    assert maths.qualified(LADDER, activity, "spend", CALENDAR, date(2026, 1, 1)) is GOLD
    assert maths.qualified(LADDER, activity, "spend", CALENDAR, date(2026, 12, 31)) is GOLD
    assert maths.qualified(LADDER, activity, "spend", CALENDAR, date(2027, 1, 1)) is BRONZE
    assert maths.valid_until(GOLD, activity, "spend", CALENDAR, date(2025, 12, 31)) == date(
        2026, 12, 31
    )
    assert maths.valid_until(GOLD, activity, "spend", CALENDAR, date(2026, 3, 1)) == date(
        2026, 12, 31
    )
    # the year so far counts from 1 January
    assert maths.value_on(activity, "spend", CALENDAR, date(2026, 1, 1)) == 0


def test_valid_until_on_a_rolling_window_is_the_day_before_activity_drops_it() -> None:
    activity = spend(d2026_01_10=15_000, d2026_03_05=6_000)
    today = date(2026, 6, 1)
    assert maths.qualified(LADDER, activity, "spend", ROLLING, today) is GOLD
    # Gold holds until 10.01.2026 leaves the window on 10.01.2027: the last day is 09.01.
    assert maths.valid_until(GOLD, activity, "spend", ROLLING, today) == date(2027, 1, 9)
    # so does Silber: 6,000 alone are short of 10,000
    assert maths.valid_until(SILBER, activity, "spend", ROLLING, today) == date(2027, 1, 9)
    assert maths.valid_until(BRONZE, activity, "spend", ROLLING, today) == date.max
    assert maths.valid_until(GOLD, spend(d2026_01_10=100), "spend", ROLLING, today) is None


def test_what_is_missing_and_by_when() -> None:
    activity = spend(d2026_01_10=15_000)
    rolling = maths.to_reach(GOLD, activity, "spend", ROLLING, date(2026, 6, 1))
    assert (rolling.amount, rolling.deadline) == (5_000, date(2027, 1, 9))
    calendar = maths.to_reach(GOLD, activity, "spend", CALENDAR, date(2026, 6, 1))
    assert (calendar.amount, calendar.deadline) == (5_000, date(2026, 12, 31))
    nothing = maths.to_reach(SILBER, {}, "spend", ROLLING, date(2026, 6, 1))
    assert (nothing.amount, nothing.deadline) == (10_000, None)
    # keeping Silber after 09.01.2027 needs 10,000 more by then (nothing else counts)
    keep = maths.to_keep(SILBER, activity, "spend", ROLLING, date(2026, 6, 1))
    assert keep is not None
    assert (keep.amount, keep.deadline) == (10_000, date(2027, 1, 9))
    assert maths.to_keep(BRONZE, activity, "spend", ROLLING, date(2026, 6, 1)) is None
    secured = maths.to_keep(SILBER, activity, "spend", CALENDAR, date(2026, 6, 1))
    assert secured is not None
    assert secured.amount == 0  # this year's 15,000 keep Silber through 2027


@pytest.mark.parametrize(
    ("metric", "value", "lang", "text"),
    [
        ("spend", 12_000, "en", "€120.00 spend"),
        ("spend", 12_000, "de", "120,00\xa0€ Umsatz"),
        ("points", 1_500, "en", "1,500 points"),
        ("points", 1_500, "de", "1.500 Punkte"),
        ("points", 1, "en", "1 point"),
        ("purchases", 3, "de", "3 Einkäufe"),
        ("purchases", 1, "en", "1 purchase"),
    ],
)
def test_quantities_in_both_languages(metric: str, value: int, lang: str, text: str) -> None:
    assert quantity(metric, value, currency="EUR", points_name=None, lang=lang) == text


def test_the_sentences_say_what_is_missing_by_when() -> None:
    amount = quantity("spend", 12_000, currency="EUR", points_name=None, lang="en")
    assert (
        missing_text(
            amount=amount,
            tier="Gold",
            deadline=date(2026, 12, 31),
            keep=False,
            held_until=None,
            lang="en",
        )
        == "€120.00 spend by 31.12.2026 for Gold"
    )
    german = quantity("spend", 12_000, currency="EUR", points_name=None, lang="de")
    assert (
        missing_text(
            amount=german,
            tier="Gold",
            deadline=date(2026, 12, 31),
            keep=True,
            held_until=None,
            lang="de",
        )
        == "120,00\xa0€ Umsatz bis 31.12.2026, um Gold zu behalten"
    )
    params = {
        "metric": "spend",
        "value": 21_000,
        "threshold": 20_000,
        "window": ROLLING,
        "currency": "EUR",
        "to": {"en": "Gold", "de": "Gold"},
        "from": {"en": "Silver", "de": "Silber"},
    }
    assert history_text("qualified", params) == (
        "Upgrade to Gold: €210.00 spend in the last 12 months (€200.00 spend needed)"
    )
    assert history_text("qualified", params, "de").startswith("Aufstieg zu Gold: 210,00")
