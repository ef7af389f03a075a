"""The dashboard's figures add up with the ledger: points issued, redeemed and expired
per ISO week, members enrolled and active, what is outstanding, the top rewards; and the
console shows them as charts (SVG) with their tables."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import update

from tests import factories as f
from tests.support.admin import signed_in
from treu.db.session import Database
from treu.insights.dashboard import dashboard
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.web.charts import Series, bar_chart

MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday: weeks start on it


def _programme(db: Database) -> tuple[Programme, list[Member]]:
    prog = f.programme(db, pending_days=0, point_value_minor="0.5")
    people = [f.member(db, prog) for _ in range(3)]
    with db.unit_of_work() as session:  # enrolled in the first and second week
        for i, who in enumerate(people):
            session.execute(
                update(Member)
                .where(Member.id == who.id)
                .values(enrolled_at=MONDAY + timedelta(days=7 * (i // 2)))
            )
    return prog, people


def test_the_figures_add_up_with_the_ledger(db: Database) -> None:
    prog, (a, b, c) = _programme(db)
    week1, week2 = MONDAY + timedelta(days=1), MONDAY + timedelta(days=8)
    f.ingest(db, f.purchase_payload(prog, a, amount_minor=4000, occurred_at=week1), now=week1)
    f.ingest(db, f.purchase_payload(prog, b, amount_minor=2500, occurred_at=week1), now=week1)
    f.ingest(db, f.purchase_payload(prog, a, amount_minor=1000, occurred_at=week2), now=week2)
    reward = f.reward(db, prog, points_cost=30)
    f.redeem(db, a, reward, now=week2 + timedelta(hours=1))
    issued = 40 + 25 + 10  # 1 point per euro

    with db.unit_of_work(write=False) as session:
        figures = dashboard(session, prog, start=MONDAY.date(), end=MONDAY.date() + timedelta(13))
    assert [w.start for w in figures.weeks] == [date(2026, 3, 2), date(2026, 3, 9)]
    assert [w.issued for w in figures.weeks] == [65, 10]
    assert [w.redeemed for w in figures.weeks] == [0, 30]
    assert [w.enrolled for w in figures.weeks] == [2, 1]
    assert [w.active for w in figures.weeks] == [2, 1]
    assert (figures.issued, figures.redeemed, figures.expired) == (issued, 30, 0)
    assert (figures.members, figures.enrolled, figures.active) == (3, 3, 2)
    assert (
        figures.outstanding
        == issued - 30
        == sum(f.balance(db, who).available + f.balance(db, who).pending for who in (a, b, c))
    )
    assert figures.outstanding == 45
    assert figures.liability_minor == 23  # 22.5 minor units, rounded half-up
    [top] = figures.top_rewards
    assert (top.redemptions, top.points) == (1, 30)

    # a range that leaves out the second week leaves out what happened in it
    with db.unit_of_work(write=False) as session:
        first = dashboard(session, prog, start=MONDAY.date(), end=MONDAY.date() + timedelta(6))
    assert (first.issued, first.redeemed, first.active, len(first.weeks)) == (65, 0, 2, 1)


def test_bars_are_as_tall_as_their_values_say() -> None:
    svg = str(bar_chart("Points", ["a", "b"], [Series("issued", [50, 100])]))
    heights = [float(h) for h in re.findall(r'<rect class="s0" [^>]*height="([\d.]+)"', svg)]
    assert heights[1] == 2 * heights[0] > 0
    assert "<title>Points</title>" in svg
    assert "<title>b · issued: 100</title>" in svg
    assert "style=" not in svg  # the pages' CSP allows no inline styles
    hostile = str(bar_chart("<x>", ["<y>"], [Series("<s>", [0])]))
    assert "<x>" not in hostile
    assert "<y>" not in hostile
    assert "<s>" not in hostile
    assert "&lt;x&gt;" in hostile


def test_the_console_shows_the_dashboard_as_charts(db: Database) -> None:
    prog, (a, _b, _c) = _programme(db)
    week1 = MONDAY + timedelta(days=1)
    f.ingest(db, f.purchase_payload(prog, a, amount_minor=4000, occurred_at=week1), now=week1)
    web, _ = signed_in(db, "analyst")
    page = web.get(
        "/admin/dashboard",
        params={"programme": prog.slug, "from": "2026-03-02", "to": "2026-03-15"},
    )
    assert page.status_code == 200
    assert page.text.count('data-testid="chart"') == 2
    assert re.search(r'data-testid="tile-issued">40<', page.text)
    assert "Punkte pro Woche" in page.text
    assert "unsafe-inline" not in page.headers["content-security-policy"]
