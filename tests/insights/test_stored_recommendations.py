"""The nightly recommendations (``treu insights train``, step ``recommend``) stored in
``member_recommendations`` and served by GET /v1/members/{id}/recommendations: a product
the member never bought but members with the same basket buy comes back as ``similar``;
a member without stored rows is scored per request; a training replaces the rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import Api
from tests.support.queries import statements
from tests.support.recommendations import buy, get
from treu.db.session import Database
from treu.insights.train import train
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.segments.models import MemberRecommendation
from treu.segments.recommendations import save_recommendations

PASTA = {"sku": "3001", "name": "Spaghetti 500 g", "category": "pantry", "tags": []}
SAUCE = {"sku": "3002", "name": "Tomatensauce", "category": "pantry", "tags": []}
CHEESE = {"sku": "4101", "name": "Parmesan 100 g", "category": "dairy", "tags": []}
COFFEE = {"sku": "6001", "name": "Espresso 1 kg", "category": "coffee", "tags": []}
TEA = {"sku": "6101", "name": "Earl Grey", "category": "tea", "tags": []}


def _planted(db: Database) -> tuple[Programme, Member]:
    """Four members buy pasta, sauce and cheese together; three others buy coffee only;
    Bea buys pasta and sauce every week and never cheese."""
    prog = f.programme(db)
    for _ in range(4):
        cook = f.member(db, prog)
        for day in (3, 10, 17):
            buy(db, prog, cook, day, PASTA, SAUCE, CHEESE)
    for _ in range(3):
        drinker = f.member(db, prog)
        for day in (4, 11):
            buy(db, prog, drinker, day, COFFEE)
    bea = f.member(db, prog)
    for day in (2, 9, 16, 23, 30):
        buy(db, prog, bea, day, PASTA, SAUCE)
    return prog, bea


def _stored(db: Database, who: Member) -> list[tuple[int, str, str]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(MemberRecommendation.rank, MemberRecommendation.sku, MemberRecommendation.source)
            .where(MemberRecommendation.member_id == who.id)
            .order_by(MemberRecommendation.rank)
        ).all()
    return [(r.rank, r.sku, r.source) for r in rows]


def test_after_training_a_product_bought_with_the_same_basket_is_offered(
    api: Api, db: Database
) -> None:
    prog, bea = _planted(db)
    report = train(db, programme=prog.slug, now=utc_now())
    step = report.step("recommend")
    assert step.status == "done", step.note
    assert step.version == 1
    assert step.metrics["members_scored"] == 8
    assert step.metrics["items"] == 4

    stored = _stored(db, bea)
    assert [rank for rank, _, _ in stored] == [1, 2, 3, 4]  # every product, capped at 4
    source = {sku: src for _, sku, src in stored}
    assert source == {"3001": "again", "3002": "again", "4101": "similar", "6001": "popular"}
    with db.unit_of_work(write=False) as session:
        row = session.scalars(
            select(MemberRecommendation).where(
                MemberRecommendation.member_id == bea.id, MemberRecommendation.sku == "4101"
            )
        ).one()
        assert (row.name, row.category, row.programme_id) == ("Parmesan 100 g", "dairy", prog.id)
        total = len(
            session.scalars(
                select(MemberRecommendation.rank).where(
                    MemberRecommendation.programme_id == prog.id
                )
            ).all()
        )
    assert total == step.metrics["rows"] == 8 * 4

    products = get(api, bea, "?k=4&lang=en")["products"]
    by_sku = {p["sku"]: p for p in products}
    assert {p["sku"] for p in products[:2]} == {"3001", "3002"}  # what she buys comes first
    assert by_sku["4101"]["reason"] == {"code": "similar", "text": "Goes with what you buy"}
    assert by_sku["4101"]["name"] == "Parmesan 100 g"
    assert by_sku["3001"]["reason"]["code"] == "often_bought"
    assert by_sku["6001"]["reason"]["code"] == "popular"
    # the cheese she never bought ranks above the coffee nobody in her basket buys
    skus = [p["sku"] for p in products]
    assert skus.index("4101") < skus.index("6001")
    german = {p["sku"]: p for p in get(api, bea, "?k=4&lang=de")["products"]}
    assert german["4101"]["reason"]["text"] == "Passt zu Ihren Einkäufen"

    again = train(db, programme=prog.slug, now=utc_now())
    assert again.step("recommend").version == 2
    assert len(_stored(db, bea)) == 4  # replaced, not added


def test_a_member_without_stored_rows_is_scored_per_request(api: Api, db: Database) -> None:
    prog, bea = _planted(db)
    train(db, programme=prog.slug, now=utc_now())
    newcomer = f.member(db, prog)  # joined after the training
    for day in (1, 5):
        buy(db, prog, newcomer, day, TEA)
    assert _stored(db, newcomer) == []
    found = get(api, newcomer, "?k=3&lang=en")["products"]
    assert found[0]["sku"] == "6101"
    assert found[0]["reason"] == {"code": "often_bought", "text": "You often buy tea"}
    assert {p["reason"]["code"] for p in found} <= {"often_bought", "popular"}

    get(api, bea)  # caches warm
    with statements(db) as trained:
        get(api, bea)
    with statements(db) as untrained:
        get(api, newcomer)

    def sql(seen: list[str]) -> list[str]:
        return [s for s in seen if not s.startswith("BEGIN")]

    # the stored rows replace the lines query; they do not add a statement
    assert len(sql(trained)) == len(sql(untrained))


def _frame(who: Member, skus: list[str], source: str = "again") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_id": [str(who.id)] * len(skus),
            "rank": list(range(1, len(skus) + 1)),
            "sku": skus,
            "score": [1.0 / (i + 1) for i in range(len(skus))],
            "source": [source] * len(skus),
            "category": ["pantry"] * len(skus),
            "name": [None] * len(skus),
        }
    )


def test_saving_replaces_the_programmes_rows_only(db: Database) -> None:
    prog, other = f.programme(db), f.programme(db)
    anna, ben, carl = f.member(db, prog), f.member(db, prog), f.member(db, other)
    now = utc_now()
    with db.unit_of_work() as session:
        written = save_recommendations(
            session,
            programme_id=prog.id,
            frame=pd.concat([_frame(anna, ["a", "b", "c"]), _frame(ben, ["d"])]),
            now=now - timedelta(days=1),
        )
        save_recommendations(
            session, programme_id=other.id, frame=_frame(carl, ["x", "y"]), now=now
        )
    assert written == 4
    with db.unit_of_work() as session:
        assert (
            save_recommendations(
                session, programme_id=prog.id, frame=_frame(anna, ["e", "f"], "similar"), now=now
            )
            == 2
        )
    assert _stored(db, anna) == [(1, "e", "similar"), (2, "f", "similar")]
    assert _stored(db, ben) == []  # gone: not in the new training
    assert [sku for _, sku, _ in _stored(db, carl)] == ["x", "y"]  # another programme's stay
    with db.unit_of_work(write=False) as session:
        row = session.get_one(MemberRecommendation, (anna.id, 1))
        assert row.computed_at == now
        assert row.name is None
        assert row.category == "pantry"
        assert row.score == pytest.approx(1.0)


def test_rows_written_in_pieces_arrive_whole(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from treu.segments import recommendations

    monkeypatch.setattr(recommendations, "_COPY_ROWS", 2)  # PostgreSQL's COPY in pieces
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    with db.unit_of_work() as session:
        written = save_recommendations(
            session,
            programme_id=prog.id,
            frame=pd.concat(
                [_frame(anna, ["a", "b", "c"], "popular"), _frame(ben, ["d", "e"], "similar")]
            ),
        )
    assert written == 5
    assert _stored(db, anna) == [(1, "a", "popular"), (2, "b", "popular"), (3, "c", "popular")]
    assert _stored(db, ben) == [(1, "d", "similar"), (2, "e", "similar")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": ["often"]}, "unknown source"),
        ({"rank": [1, 1]}, "more than once"),
    ],
)
def test_saving_refuses_bad_rows(db: Database, change: dict[str, Any], message: str) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    frame = _frame(anna, ["a", "b"])
    for column, values in change.items():
        frame[column] = values * (2 // len(values))
    with db.unit_of_work() as session, pytest.raises(ValueError, match=message):
        save_recommendations(session, programme_id=prog.id, frame=frame)
