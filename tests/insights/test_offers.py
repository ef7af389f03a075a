"""GET /v1/members/{id}/recommendations: rewards the member can redeem now and products they
are likely to buy, with reasons in their language; popularity for members with little
history; a fixed number of statements however long the history."""

from __future__ import annotations

from tests import factories as f
from tests.api_helpers import Api, assert_problem
from tests.support.queries import statements
from tests.support.recommendations import buy, get
from tests.support.rewards_api import create, redeem, rich
from treu.db.session import Database
from treu.members.models import Member

MILK = {"sku": "4001", "name": "Bio Vollmilch 1 l", "category": "dairy", "tags": ["organic"]}
BREAD = {"sku": "2001", "name": "Roggenmischbrot 750 g", "category": "bakery", "tags": []}
COFFEE = {"sku": "6001", "name": "Espresso 1 kg", "category": "coffee", "tags": []}
TEA = {"sku": "6101", "name": "Earl Grey", "category": "tea", "tags": []}
GREEN_TEA = {"sku": "6102", "name": "Sencha", "category": "tea", "tags": []}


def test_rewards_and_products_with_reasons_in_the_members_language(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = rich(db, prog, 600)
    for n in range(3):  # others make coffee the programme's favourite
        other = f.member(db, prog)
        buy(db, prog, other, 3 + n, COFFEE)
    for day in (2, 9, 16, 23, 30):
        buy(db, prog, anna, day, MILK)
    buy(db, prog, anna, 40, BREAD)
    with db.unit_of_work() as session:
        session.get(Member, anna.id).language = "de"  # type: ignore[union-attr]
    free_milk = create(
        api, prog, type="free_product", sku="4001", value_minor=None, points_cost=150
    )
    voucher = create(api, prog, points_cost=500)
    create(api, prog, points_cost=1000)  # more than her 600 points
    sold_out = create(api, prog, points_cost=100, stock=1)
    taker = rich(db, prog, 500)
    assert redeem(api, taker, sold_out, "k1").status_code == 201

    found = get(api, anna)
    assert found["lang"] == "de"
    assert found["available_points"] == f.balance(db, anna).available >= 600
    assert [r["id"] for r in found["rewards"]] == [free_milk["id"], voucher["id"]]
    assert found["rewards"][0]["reason"] == {
        "code": "often_bought",
        "text": "Sie kaufen oft Bio-Milchprodukte",
    }
    assert found["rewards"][1]["reason"]["text"] == "Dafür reichen Ihre Punkte"
    products = found["products"]
    # her milk, then what everyone buys, then the bread she bought once, long ago
    assert [p["sku"] for p in products] == ["4001", "6001", "2001"]
    assert products[0]["reason"]["text"] == "Sie kaufen oft Bio-Milchprodukte"
    assert products[1]["reason"] == {"code": "popular", "text": "Beliebt bei anderen Mitgliedern"}
    assert products[0]["score"] > products[1]["score"] > products[2]["score"] > 0

    english = get(api, anna, "?lang=en&k=1")
    assert [p["sku"] for p in english["products"]] == ["4001"]
    assert english["products"][0]["reason"]["text"] == "You often buy organic dairy"
    assert len(english["rewards"]) == 1


def test_little_history_leans_on_what_the_programme_buys(api: Api, db: Database) -> None:
    prog = f.programme(db)
    for n in range(4):
        buy(db, prog, f.member(db, prog), 1 + n, COFFEE, BREAD if n < 2 else TEA)
    fresh = f.member(db, prog)
    found = get(api, fresh, "?k=3")
    assert [p["sku"] for p in found["products"]] == ["6001", "2001", "6101"]
    assert {p["reason"]["code"] for p in found["products"]} == {"popular"}
    assert found["rewards"] == []  # no points, nothing to redeem

    buy(db, prog, fresh, 1, GREEN_TEA)  # one purchase: popularity still leads
    assert get(api, fresh, "?k=3")["products"][0]["sku"] == "6001"
    for day in (5, 12, 19, 26):
        buy(db, prog, fresh, day, GREEN_TEA)
    regular = get(api, fresh, "?k=3")["products"]  # a history of their own takes over
    assert regular[0]["sku"] == "6102"
    assert regular[0]["reason"] == {"code": "often_bought", "text": "You often buy tea"}


def test_a_product_without_a_category_bought_often_says_so(api: Api, db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    candles = {"sku": "9001", "name": "Kerzen", "category": None, "tags": []}
    for day in (2, 9, 16, 23):
        buy(db, prog, who, day, candles)
    (first, *_) = get(api, who, "?k=1")["products"]
    assert first["sku"] == "9001"
    assert first["reason"] == {"code": "often_bought", "text": "You buy this often"}


def test_the_statements_do_not_grow_with_the_history(api: Api, db: Database) -> None:
    prog = f.programme(db)
    short, long = f.member(db, prog), f.member(db, prog)
    create(api, prog, points_cost=1)
    buy(db, prog, short, 1, MILK)
    for day in range(1, 40, 3):
        buy(db, prog, long, day, MILK, BREAD, COFFEE, TEA)
    get(api, short)  # the rewards catalogue is cached from here on
    with statements(db) as few:
        get(api, short)
    with statements(db) as many:
        assert len(get(api, long)["products"]) == 4
    few_sql = [s for s in few if not s.startswith("BEGIN")]
    many_sql = [s for s in many if not s.startswith("BEGIN")]
    assert len(many_sql) == len(few_sql)
    # the member, the programme, the balance (2), the member's lines; popularity and the
    # rewards catalogue come from per-process caches
    assert len(few_sql) <= 5


def test_unknown_members_and_missing_scopes_are_refused(api: Api, db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    url = f"/v1/members/{who.id}/recommendations"
    assert_problem(api.client.get(url, headers=api.headers("events:write")), 403, "missing_scope")
    assert_problem(
        api.client.get(
            f"/v1/members/{'0' * 8}-0000-7000-8000-{'0' * 12}/recommendations",
            headers=api.headers("members:read"),
        ),
        404,
        "member_not_found",
    )
    assert api.client.get(f"{url}?k=0", headers=api.headers("members:read")).status_code == 422
