"""Pay with points: the point-value maths, the service and the API, on both backends."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.events.service import Adjustment, adjustments
from treu.ledger.explain import render
from treu.ledger.models import Posting
from treu.ledger.service import ledger
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rewards.payments import PointsHaveNoValue, cover, refund_points, worth

# --- the maths, no database -----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "value", "available", "points", "covered"),
    [
        (1157, "1", None, 1157, 1157),  # one cent per point
        (1157, "1", 500, 500, 500),  # partial: what the balance covers
        (1000, "0.5", None, 2000, 1000),  # two points per cent
        (1000, "0.5", 301, 300, 150),  # an odd point cannot pay half a cent: not spent
        (10, "3", None, 3, 9),  # 3 cents per point: 1 cent remains to pay
        (10, "0.3", None, 30, 9),  # 33 points would be worth 9.9 cents: 30 are enough
        (1000, "2.5", None, 400, 1000),
        (999, "2.5", None, 399, 997),  # 399.6 points: 399 pay 997 cents (997.5)
        (5, "10", None, 0, 0),  # worth less than one point
        (500, "1", 0, 0, 0),
        (500, "1", -20, 0, 0),  # a negative balance pays nothing
    ],
)
def test_cover_pays_the_most_with_the_fewest_points(
    amount: int, value: str, available: int | None, points: int, covered: int
) -> None:
    assert cover(amount, Decimal(value), available) == (points, covered)


def test_points_without_cash_value_cannot_pay() -> None:
    with pytest.raises(PointsHaveNoValue):
        cover(100, Decimal(0))
    assert worth(100, Decimal(0)) == 0


values = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4)


@given(
    amount=st.integers(min_value=1, max_value=10**9),
    value=values,
    available=st.none() | st.integers(min_value=-100, max_value=10**9),
)
def test_cover_never_favours_the_shop_nor_overpays(
    amount: int, value: Decimal, available: int | None
) -> None:
    points, covered = cover(amount, value, available)
    assert 0 <= covered <= amount
    if available is not None:
        assert points <= max(available, 0)
    assert worth(points, value) == covered  # the covered amount is what the points are worth
    if points:
        assert worth(points - 1, value) < covered  # and no point is spent without need
    # No more could be covered with the points the member may spend.
    usable = amount * 10**4 // int(value * 10**4)
    if available is not None:
        usable = min(usable, max(available, 0))
    assert worth(usable, value) == covered


@given(
    paid=st.integers(min_value=1, max_value=10**6),
    covered=st.integers(min_value=1, max_value=10**6),
    cuts=st.lists(st.integers(min_value=1, max_value=10**6), max_size=8),
)
def test_partial_refunds_add_up_to_the_points_paid(
    paid: int, covered: int, cuts: list[int]
) -> None:
    refunded_minor = refunded_points = 0
    for cut in [*cuts, covered]:
        amount = min(cut, covered - refunded_minor)
        if amount <= 0:
            break
        points = refund_points(
            paid_points=paid,
            covered_minor=covered,
            refunded_minor=refunded_minor,
            refunded_points=refunded_points,
            amount=amount,
        )
        assert points >= 0
        refunded_minor += amount
        refunded_points += points
        # Never less than the member's proportional share (rounded up for them).
        assert refunded_points * covered >= refunded_minor * paid
    assert (refunded_minor, refunded_points) == (covered, paid)


# --- the API --------------------------------------------------------------------------


def give(db: Database, who: Member, points: int) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(
            session, member=who, adjustment=Adjustment(points, "test credit"), actor="test"
        )


def pay(
    api: Api, who: Member, key: str | None = None, scope: str = "events:write", **body: Any
) -> Any:
    payload = {"order_id": "A-1", "amount_minor": 1157, "currency": "EUR"} | body
    return api.client.post(
        f"/v1/members/{who.id}/point-payments",
        json=payload,
        headers=api.headers(scope) | {"Idempotency-Key": key or f.unique("pay")},
    )


def refund(api: Api, payment_id: str, key: str | None = None, **body: Any) -> Any:
    return api.client.post(
        f"/v1/point-payments/{payment_id}/refund",
        json=body,
        headers=api.headers("events:write") | {"Idempotency-Key": key or f.unique("refund")},
    )


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["code"] == code
    return body


def setup(db: Database, points: int = 2000, **programme: Any) -> tuple[Programme, Member]:
    prog = f.programme(db, **programme)
    who = f.member(db, prog)
    if points:
        give(db, who, points)
    return prog, who


def test_pay_an_order_with_points(api: Api, db: Database) -> None:
    prog, who = setup(db)
    r = pay(api, who, order_id="pos-4711")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["points_used"] == 1157
    assert body["amount_covered_minor"] == 1157
    assert body["remaining_to_pay_minor"] == 0
    assert body["point_value_minor"] == "1"
    assert body["balance"] == {"available": 843, "pending": 0}
    assert body["posting"]["kind"] == "redeem"
    assert body["posting"]["points"] == -1157
    assert body["posting"]["explanation"] == "Paid €11.57 of order pos-4711 with points: -1157"
    assert f.balance(db, who).available == 843
    with db.unit_of_work(write=False) as session:
        posting = session.get_one(Posting, uuid.UUID(body["posting"]["id"]))
        assert render(posting.details, "de") == (
            "11,57\xa0€ der Bestellung pos-4711 mit Punkten bezahlt: -1157"
        )
        assert str(posting.correlation_id) == body["id"]
        assert posting.actor == "apikey:test-events:write"
    ledger_page = api.client.get(
        f"/v1/members/{who.id}/ledger", headers=api.headers("members:read")
    ).json()
    assert ledger_page["items"][0]["kind"] == "redeem"
    assert f.verify(db, prog) == []


def test_a_retry_answers_the_first_result_and_another_body_conflicts(
    api: Api, db: Database
) -> None:
    _, who = setup(db)
    first = pay(api, who, key="k-1")
    again = pay(api, who, key="k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert f.balance(db, who).available == 2000 - 1157
    problem(pay(api, who, key="k-1", amount_minor=100), 409, "idempotency_conflict")
    r = api.client.post(
        f"/v1/members/{who.id}/point-payments",
        json={"order_id": "A-1", "amount_minor": 100, "currency": "EUR"},
        headers=api.headers("events:write"),
    )
    body = problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "header.idempotency-key"


def test_not_enough_points_unless_partial(api: Api, db: Database) -> None:
    prog, who = setup(db, points=500)
    body = problem(pay(api, who), 422, "insufficient_points")
    assert (body["needed"], body["available"]) == (1157, 500)
    assert f.balance(db, who).available == 500
    r = pay(api, who, partial=True)
    assert r.status_code == 201, r.text
    assert r.json()["points_used"] == 500
    assert r.json()["amount_covered_minor"] == 500
    assert r.json()["remaining_to_pay_minor"] == 657
    assert f.balance(db, who).available == 0
    problem(pay(api, who, partial=True), 422, "insufficient_points")
    assert f.verify(db, prog) == []


def test_point_value_rounding_never_takes_a_point_too_many(api: Api, db: Database) -> None:
    _, who = setup(db, points=1000, point_value_minor="2.5")
    r = pay(api, who, amount_minor=999)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["points_used"], body["amount_covered_minor"]) == (399, 997)
    assert body["remaining_to_pay_minor"] == 2  # less than one point's worth
    assert body["point_value_minor"] == "2.5"
    _, cheap = setup(db, points=1000, point_value_minor="0.3")
    r = pay(api, cheap, amount_minor=10)
    assert (r.json()["points_used"], r.json()["amount_covered_minor"]) == (30, 9)


def test_refused_payments(api: Api, db: Database) -> None:
    _, who = setup(db)
    problem(pay(api, who, currency="USD"), 422, "currency_mismatch")
    problem(pay(api, who, amount_minor=0), 422, "validation_error")
    problem(pay(api, who, scope="members:read"), 403, "missing_scope")
    _, free = setup(db, point_value_minor="0")
    problem(pay(api, free), 422, "points_have_no_value")
    _, dear = setup(db, point_value_minor="100")
    problem(pay(api, dear, amount_minor=99), 422, "points_have_no_value")
    earlier = pay(api, who, key="before-the-block", amount_minor=100)
    blocked = api.client.patch(
        f"/v1/members/{who.id}", json={"status": "blocked"}, headers=api.headers("members:write")
    )
    assert blocked.status_code == 200
    problem(pay(api, who), 422, "member_blocked")
    # A retry of a payment made before the block still answers its result.
    retry = pay(api, who, key="before-the-block", amount_minor=100)
    assert (retry.status_code, retry.json()) == (200, earlier.json())
    api.client.patch(
        f"/v1/members/{who.id}", json={"status": "closed"}, headers=api.headers("members:write")
    )
    problem(pay(api, who), 422, "member_closed")
    r = api.client.post(
        "/v1/members/01a208e9-2fdb-76dd-973a-afae417770f8/point-payments",
        json={"order_id": "A-1", "amount_minor": 100, "currency": "EUR"},
        headers=api.headers("events:write") | {"Idempotency-Key": "x"},
    )
    problem(r, 404, "member_not_found")
    assert f.balance(db, who).available == 1900


def test_refund_a_payment_in_parts(api: Api, db: Database) -> None:
    prog, who = setup(db, points=1000, point_value_minor="0.5")
    paid = pay(api, who, amount_minor=401).json()  # 802 points
    assert paid["points_used"] == 802
    first = refund(api, paid["id"], key="r-1", amount_minor=101)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["amount_minor"], body["points"], body["points_expired"]) == (101, 202, 0)
    assert body["posting"]["kind"] == "refund"
    assert body["posting"]["explanation"] == ("Points payment for order A-1 refunded (€1.01): +202")
    assert body["payment"] == {
        "points_used": 802,
        "amount_covered_minor": 401,
        "refunded_minor": 101,
        "refunded_points": 202,
    }
    assert body["balance"]["available"] == 1000 - 802 + 202
    again = refund(api, paid["id"], key="r-1", amount_minor=101)
    assert (again.status_code, again.json()) == (200, body)
    problem(refund(api, paid["id"], key="r-1", amount_minor=5), 409, "idempotency_conflict")
    over = problem(refund(api, paid["id"], amount_minor=301), 422, "refund_exceeds_payment")
    assert over["refundable_minor"] == 300
    rest = refund(api, paid["id"]).json()  # the rest
    assert (rest["amount_minor"], rest["points"]) == (300, 600)
    problem(refund(api, paid["id"]), 422, "refund_exceeds_payment")
    assert f.balance(db, who).available == 1000
    detail = api.client.get(
        f"/v1/point-payments/{paid['id']}", headers=api.headers("members:read")
    ).json()
    assert (detail["refunded_minor"], detail["refunded_points"]) == (401, 802)
    assert [(x["amount_minor"], x["points"]) for x in detail["refunds"]] == [
        (101, 202),
        (300, 600),
    ]
    problem(
        api.client.get(
            "/v1/point-payments/01a208e9-2fdb-76dd-973a-afae417770f8",
            headers=api.headers("members:read"),
        ),
        404,
        "point_payment_not_found",
    )
    assert f.verify(db, prog) == []


def test_a_refund_smaller_than_a_point_gives_back_what_rounding_allows(
    api: Api, db: Database
) -> None:
    prog, who = setup(db, points=100, point_value_minor="3")
    paid = pay(api, who, amount_minor=9).json()
    assert (paid["points_used"], paid["amount_covered_minor"]) == (3, 9)
    one = refund(api, paid["id"], amount_minor=1).json()
    assert one["points"] == 1  # rounded up for the member
    two = refund(api, paid["id"], amount_minor=1).json()
    assert (two["points"], two["posting"]) == (0, None)  # already given back above
    rest = refund(api, paid["id"]).json()
    assert rest["points"] == 2
    assert f.balance(db, who).available == 100
    assert f.verify(db, prog) == []


def test_refunded_points_whose_lot_expired_meanwhile_expire_at_once(api: Api, db: Database) -> None:
    from datetime import timedelta

    from treu.kit.time import frozen, utc_now

    prog, who = setup(db, points=0, expiry={"policy": "rolling", "months": 1})
    start = utc_now()
    with frozen(start):
        give(db, who, 300)
        paid = pay(api, who, amount_minor=200).json()
    with frozen(start + timedelta(days=40)):
        body = refund(api, paid["id"]).json()
    assert (body["points"], body["points_expired"]) == (200, 200)
    # The 100 points never spent are past their expiry too: the expiry job takes them,
    # as it would have without the refund.
    assert body["balance"]["available"] == 100
    assert f.verify(db, prog) == []
    while True:  # the shared database holds other tests' lots too
        with db.unit_of_work() as session:
            if ledger.expire_due(session, now=start + timedelta(days=40)) == 0:
                break
    assert f.balance(db, who).available == 0
    assert f.verify(db, prog) == []
    with db.unit_of_work(write=False) as session:
        postings = session.execute(
            select(Posting.kind, Posting.points)
            .where(Posting.member_id == who.id)
            .order_by(Posting.id)
        ).all()
    assert [tuple(p) for p in postings] == [
        ("adjust", 300),
        ("redeem", -200),
        ("refund", 200),
        ("expire", -200),
        ("expire", -100),
    ]


def test_the_checkout_shows_what_points_and_the_wallet_could_pay(api: Api, db: Database) -> None:
    from treu.rewards.wallet import wallet

    prog, who = setup(db, points=800, point_value_minor="0.5")
    # Wallet credit comes from a wallet_credit reward; the checkout reads the wallet only
    # in programmes that have one.
    f.reward(db, prog, type="wallet_credit", value_minor=1500, points_cost=100)
    with db.unit_of_work() as session:
        wallet.credit(
            session,
            member_id=who.id,
            programme_id=prog.id,
            amount_minor=1500,
            currency="EUR",
            redemption_id=uuid.uuid4(),
        )
    cart = {
        "programme": prog.slug,
        "member": {"member_id": str(who.id)},
        "channel": "pos",
        "currency": "EUR",
        "lines": f.contract_lines(),  # 11.57 EUR
    }
    r = api.client.post("/v1/checkout/evaluate", json=cart, headers=api.headers("events:write"))
    assert r.status_code == 200, r.text
    balance = r.json()["balance"]
    assert balance["available"] == 800
    assert balance["pay_with_points"] == {"points": 800, "amount_minor": 400}
    assert balance["wallet_minor"] == 1500
    give(db, who, 2000)
    r = api.client.post("/v1/checkout/evaluate", json=cart, headers=api.headers("events:write"))
    assert r.json()["balance"]["pay_with_points"] == {"points": 2314, "amount_minor": 1157}
    paid = pay(api, who, amount_minor=1157).json()
    assert paid["points_used"] == 2314  # what the checkout promised
