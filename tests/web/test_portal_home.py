"""The portal's home page: the API's balance, pending points, the next expiry as a
sentence, the tier with its progress bar and what is missing, how to earn more, and a
fixed number of queries whatever the member's history."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests import factories as f
from tests.support.portal import signed_in
from tests.support.queries import statements
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.web.render import LANG_COOKIE


def _client(db: Database, lang: str = "de") -> TestClient:
    web = TestClient(create_app(Settings(database_url=db.url), database=db))
    web.cookies.set(LANG_COOKIE, lang)
    return web


def _shown(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]+)<', html)
    assert found is not None, f"no {testid} on the page"
    return found.group(1).strip()


def _api_balance(db: Database, who: Member) -> dict[str, object]:
    _, key = f.api_key(db, scopes=["members:read"])
    web = TestClient(create_app(Settings(database_url=db.url), database=db))
    answer = web.get(f"/v1/members/{who.id}/balance", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    data: dict[str, object] = answer.json()
    return data


@pytest.mark.now("2026-11-24T12:00:00Z")
def test_one_expiring_point_is_said_in_the_singular(db: Database) -> None:
    prog = f.programme(db, expiry={"policy": "fixed", "years": 0})
    who = f.member(db, prog)
    f.ingest(db, f.purchase_payload(prog, who, amount_minor=150))  # 1 point
    html = signed_in(_client(db), db, who).get("/portal").text
    assert _shown(html, "expiry") == "1 Punkt verfällt am 31.12.2026"


@pytest.mark.now("2026-11-24T12:00:00Z")
def test_home_shows_points_expiry_tier_and_how_to_earn(db: Database) -> None:
    prog = f.tiered(db)
    with db.unit_of_work() as session:
        from treu.programmes.models import Programme

        row = session.get_one(Programme, prog.id)
        row.expiry_policy, row.expiry_years = "fixed", 0
    who = f.member(db, prog, first_name="Lea")
    f.ingest(db, f.purchase_payload(prog, who, amount_minor=12_000))
    api = _api_balance(db, who)

    web = signed_in(_client(db), db, who)
    page = web.get("/portal")
    assert page.status_code == 200
    html = page.text
    assert "Hallo Lea" in html
    assert int(_shown(html, "balance").replace(".", "")) == api["available"]
    assert api["available"] == 120
    assert _shown(html, "expiry") == "120 Punkte verfallen am 31.12.2026"
    assert _shown(html, "tier").startswith("Sie sind Silber-Mitglied.")
    progress = re.search(r'<progress id="tier-progress" max="(\d+)" value="(\d+)">', html)
    assert progress is not None
    assert (int(progress.group(1)), int(progress.group(2))) == (20_000, 12_000)
    assert '<label for="tier-progress">' in html  # the bar has a name, and text inside
    assert (
        _shown(html, "tier-missing") == "Es fehlen noch: 80,00\xa0€ Umsatz bis 23.11.2027 für Gold"
    )
    earn = _shown(html, "earn")
    assert earn.startswith("Sie sammeln 1 Punkt je 1,00\xa0€ Einkauf.")
    assert "Silber" in earn
    assert "1,25" in earn
    assert "{% block recommendations %}" not in html  # the block renders nothing yet

    english = signed_in(_client(db, "en"), db, who).get("/portal").text
    assert _shown(english, "expiry") == "120 points expire on 31 Dec 2026"
    assert _shown(english, "earn").startswith("You earn 1 point per €1.00 you spend.")


def test_pending_points_are_shown_apart(db: Database) -> None:
    prog = f.programme(db, pending_days=14)
    who = f.member(db, prog)
    f.ingest(db, f.purchase_payload(prog, who, amount_minor=4_200))
    html = signed_in(_client(db), db, who).get("/portal").text
    assert _shown(html, "balance") == "0"
    assert _shown(html, "pending").startswith("42 Punkte ausstehend")
    assert _shown(html, "expiry") == "Keine Ihrer Punkte verfallen demnächst."
    assert "tier-progress" not in html  # no ladder, no tier box


def test_the_home_page_costs_the_same_queries_for_3_and_300_postings(db: Database) -> None:
    prog = f.tiered(db, metric="points")
    with db.unit_of_work() as session:
        from treu.programmes.models import Programme

        row = session.get_one(Programme, prog.id)
        row.expiry_policy, row.expiry_months = "rolling", 24
    counts = []
    for purchases in (3, 300):
        who = f.member(db, prog)
        start = utc_now() - timedelta(days=purchases)
        f.ingest(
            db,
            *(
                f.purchase_payload(
                    prog, who, amount_minor=1000 + i, occurred_at=start + timedelta(days=i)
                )
                for i in range(purchases)
            ),
        )
        web = signed_in(_client(db), db, who)
        assert web.get("/portal").status_code == 200  # warm the caches
        with statements(db) as seen:
            assert web.get("/portal").status_code == 200
        counts.append(len([s for s in seen if not s.startswith("BEGIN")]))
    assert counts[0] == counts[1]
    # the session with the member, the member with programme and tier, the balance (2),
    # activity, the member's recent purchase lines (recommendations)
    assert counts[0] <= 6


def test_home_recommends_rewards_and_products_with_reasons(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    milk = {"sku": "4001", "name": "Bio Vollmilch 1 l", "category": "dairy", "tags": ["organic"]}
    for day in (1, 8, 15):
        at = utc_now() - timedelta(days=day)
        line = {**milk, "quantity": 1, "unit_price_minor": 10_000}
        f.ingest(db, f.purchase_payload(prog, who, lines=[line], occurred_at=at))
    f.reward(db, prog, points_cost=250, name={"de": "Kaffee gratis", "en": "Free coffee"})
    f.reward(db, prog, points_cost=5_000, name={"de": "Zu teuer", "en": "Too dear"})
    html = signed_in(_client(db), db, who).get("/portal").text
    assert 'data-testid="recommendations"' in html
    assert "Kaffee gratis" in html
    assert "Zu teuer" not in html  # 300 points do not reach it
    assert "Dafür reichen Ihre Punkte" in html
    assert re.search(r"Bio Vollmilch 1 l <span[^>]*>Sie kaufen oft Bio-Milchprodukte<", html)
