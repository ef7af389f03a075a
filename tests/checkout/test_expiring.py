"""The balance's next expiries, summed per instant by the database, as the checkout and
``GET /v1/members/{id}/balance`` answer them: whole numbers of points (PostgreSQL's sum of
a bigint is a numeric, which the checkout's answer once failed to serialise: a 500 for
every member with points about to expire), soonest first, however many lots there are."""

from __future__ import annotations

from datetime import timedelta

from tests import factories as f
from tests.api_helpers import Api
from treu.db.session import Database
from treu.kit.time import frozen, utc_now
from treu.ledger.adjustments import Adjustment, adjustments
from treu.ledger.service import ledger


def test_the_checkout_and_the_balance_name_the_next_expiries_in_whole_points(
    api: Api, db: Database
) -> None:
    prog = f.programme(db, expiry={"policy": "rolling", "months": 1})
    who = f.member(db, prog)
    start = utc_now().replace(microsecond=0) - timedelta(days=10)
    for days, points in ((0, 30), (0, 20), (1, 7), (2, 5), (3, 4), (4, 3), (5, 2), (6, 1)):
        with frozen(start + timedelta(days=days)), db.unit_of_work() as session:
            adjustments.adjust(
                session, member=who, adjustment=Adjustment(points, "test credit"), actor="t"
            )
    cart = {
        "programme": prog.slug,
        "member": {"member_id": str(who.id)},
        "channel": "pos",
        "currency": "EUR",
        "lines": f.contract_lines(),
        "lang": "en",
    }
    r = api.client.post("/v1/checkout/evaluate", json=cart, headers=api.headers("events:write"))
    assert r.status_code == 200, r.text
    answer = r.json()
    expiring = answer["balance"]["expiring"]
    assert [e["points"] for e in expiring] == [50, 7, 5]  # two lots of one instant summed
    assert all(type(e["points"]) is int for e in expiring)
    assert expiring == sorted(expiring, key=lambda e: e["expires_at"])
    assert any("50 points expire on" in h["text"] for h in answer["hints"]), answer["hints"]

    r = api.client.get(f"/v1/members/{who.id}/balance", headers=api.headers("members:read"))
    assert r.status_code == 200, r.text
    assert [e["points"] for e in r.json()["expiring"]] == [50, 7, 5, 4, 3]
    with db.unit_of_work(write=False) as session:
        found = ledger.balance(session, member_id=who.id, expiring_limit=10)
        none = ledger.balance(session, member_id=who.id, expiring_limit=0)
    assert [(type(e.points), e.points) for e in found.expiring] == [
        (int, p) for p in (50, 7, 5, 4, 3, 2, 1)
    ]
    assert (none.available, none.expiring) == (found.available, [])
