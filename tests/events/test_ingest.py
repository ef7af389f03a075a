"""Purchase and return ingestion: idempotency, returns, rejections, batches, rounding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests import factories as f
from treu.db.session import Database
from treu.events.models import Event, PurchaseLine
from treu.events.schemas import Balance
from treu.events.service import Adjustment, Outcome, adjustments
from treu.ledger.errors import InsufficientPoints
from treu.ledger.models import Lot, Posting
from treu.members.models import Member, MemberStatus
from treu.members.schemas import MemberUpdate
from treu.members.service import members
from treu.programmes.models import Programme

MILK, COFFEE = f.contract_lines()


def line(sku: str, quantity: int, unit_price_minor: int) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price_minor": unit_price_minor}


def error_code(outcome: Outcome) -> str | None:
    return outcome.error.code if outcome.error is not None else None


def rows(db: Database, prog: Programme) -> dict[str, int]:
    """How many rows the programme has in each table (to prove nothing was written)."""
    with db.unit_of_work(write=False) as session:

        def count(model: Any) -> int:
            return int(
                session.scalar(
                    select(func.count()).select_from(model).where(model.programme_id == prog.id)
                )
                or 0
            )

        return {
            "events": count(Event),
            "lines": count(PurchaseLine),
            "postings": count(Posting),
            "lots": count(Lot),
            "members": count(Member),
        }


def spend(db: Database, who: Member, points: int, *, allow_negative: bool = False) -> None:
    with db.unit_of_work() as session:
        adjustments.adjust(
            session,
            member=who,
            adjustment=Adjustment(-points, "redeemed in test", allow_negative=allow_negative),
            actor="test",
        )


def set_status(db: Database, who: Member, status: MemberStatus) -> None:
    with db.unit_of_work() as session:
        members.update(
            session, member=members.get(session, who.id), data=MemberUpdate(status=status)
        )


def available_pending(db: Database, who: Member) -> tuple[int, int]:
    bal = f.balance(db, who)
    return bal.available, bal.pending


# --- idempotency ------------------------------------------------------------------------


def test_same_purchase_ten_times_is_credited_once(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    payload = f.purchase_payload(prog, anna, amount_minor=4290)
    outcomes = [f.ingest_one(db, payload) for _ in range(10)]
    assert [o.status for o in outcomes] == [201] + [200] * 9
    first = outcomes[0].body
    assert first is not None
    assert first.points.earned == 42
    assert all(o.body == first for o in outcomes[1:])
    assert available_pending(db, anna) == (42, 0)
    assert rows(db, prog)["postings"] == 1
    assert rows(db, prog)["events"] == 1
    assert f.verify(db, prog) == []


def test_same_id_with_another_payload_is_a_conflict(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    payload = f.purchase_payload(prog, anna, amount_minor=1000)
    f.ingest_one(db, payload)
    before = rows(db, prog)
    changed = {**payload, "lines": [line("sku-1", 1, 99_900)]}
    [outcome] = f.ingest(db, changed)
    assert outcome.status == 409
    assert error_code(outcome) == "idempotency_conflict"
    assert rows(db, prog) == before
    assert available_pending(db, anna) == (10, 0)
    # The original still replays.
    assert f.ingest_one(db, payload).status == 200


def test_duplicates_inside_one_batch(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    payload = f.purchase_payload(prog, anna, amount_minor=1000)
    other = {**payload, "lines": [line("sku-1", 2, 1000)]}
    outcomes = f.ingest(db, payload, payload, other)
    assert [o.status for o in outcomes] == [201, 200, 409]
    assert outcomes[1].body == outcomes[0].body
    assert error_code(outcomes[2]) == "idempotency_conflict"
    assert available_pending(db, anna) == (10, 0)
    assert f.verify(db, prog) == []


def test_return_replay_reverses_once(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=[line("a", 3, 1000)]))
    ret = f.return_payload(prog, sale.event_id, [line_ret("a", 1)])
    first = f.ingest_one(db, ret)
    again = f.ingest_one(db, ret)
    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert available_pending(db, anna) == (20, 0)
    assert f.verify(db, prog) == []


def line_ret(sku: str, quantity: int) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity}


# --- the contract example ---------------------------------------------------------------


def test_contract_example(db: Database) -> None:
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 24})
    anna = f.member(db, prog)
    assert anna.email is not None
    bought = datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    payload = f.purchase_payload(prog, anna, lines=[MILK, COFFEE], occurred_at=bought)
    payload["member"] = {"email": anna.email}
    sale = f.ingest_one(db, payload, now=bought + timedelta(minutes=1))
    assert sale.status == 201
    assert sale.body is not None
    assert sale.body.member_id == anna.id
    assert sale.body.points.public() == {"earned": 11, "available": 0, "pending": 11, "reversed": 0}
    assert [p["kind"] for p in sale.body.postings] == ["earn"]
    assert sale.body.postings[0]["explanation"] == "1 point per €1 on €11.57: +11"
    assert available_pending(db, anna) == (0, 11)

    returned = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    ret = f.return_payload(
        prog, sale.event_id, [{"sku": "7002", "quantity": 1}], occurred_at=returned
    )
    ret["member"] = {"email": anna.email}
    back = f.ingest_one(db, ret, now=returned)
    assert back.body is not None
    assert back.body.points.reversed == 9
    assert back.body.postings[0]["points"] == -9
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (0, 2)
    assert [(e.points, e.expires_at) for e in bal.expiring] == [
        (2, datetime(2028, 11, 24, 10, 15, tzinfo=UTC))
    ]
    assert [(e.points, e.expires_at) for e in bal.next_available] == [
        (2, bought + timedelta(days=14))
    ]
    assert f.verify(db, prog) == []


# --- returns ----------------------------------------------------------------------------


def test_partial_return_after_partial_spend_goes_negative_then_settles(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.ingest_one(
        db, f.purchase_payload(prog, anna, lines=[line("tv", 1, 5000), line("cable", 1, 3000)])
    )
    assert available_pending(db, anna) == (80, 0)
    spend(db, anna, 70)
    assert available_pending(db, anna) == (10, 0)
    assert f.verify(db, prog) == []

    back = f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("tv", 1)]))
    assert back.body is not None
    assert back.body.points.reversed == 50
    assert back.body.balance == Balance(-40, 0)
    assert available_pending(db, anna) == (-40, 0)
    assert f.verify(db, prog) == []
    with pytest.raises(InsufficientPoints) as info:
        spend(db, anna, 1)
    assert info.value.code == "insufficient_points"

    f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=2500))
    assert available_pending(db, anna) == (-15, 0)
    assert f.verify(db, prog) == []
    f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=2000))
    assert available_pending(db, anna) == (5, 0)
    assert f.verify(db, prog) == []
    with pytest.raises(InsufficientPoints):
        spend(db, anna, 6)
    spend(db, anna, 5)
    assert available_pending(db, anna) == (0, 0)
    # The rest of the order can still be returned: its points were spent, so it is debt.
    f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("cable", 1)]))
    assert available_pending(db, anna) == (-30, 0)
    assert f.verify(db, prog) == []


def test_return_takes_pending_points_of_the_order_first(db: Database) -> None:
    prog = f.programme(db, pending_days=14)
    anna = f.member(db, prog)
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    goodwill = Adjustment(100, "welcome bonus")
    with db.unit_of_work() as session:
        adjustments.adjust(session, member=anna, adjustment=goodwill, actor="test", now=now)
    sale = f.ingest_one(
        db,
        f.purchase_payload(prog, anna, lines=[line("a", 2, 1500)], occurred_at=now),
        now=now,
    )
    assert available_pending(db, anna) == (100, 30)
    f.ingest_one(
        db,
        f.return_payload(prog, sale.event_id, [line_ret("a", 1)], occurred_at=now),
        now=now,
    )
    assert available_pending(db, anna) == (100, 15)
    assert f.verify(db, prog) == []


def test_several_partial_returns_add_up_to_the_whole_order(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    # 3 x 0.99 + 1 x 0.50 = 3.47 -> 3 points for the order
    sale = f.ingest_one(
        db, f.purchase_payload(prog, anna, lines=[line("gum", 3, 99), line("mint", 1, 50)])
    )
    assert sale.body is not None
    assert sale.body.points.earned == 3
    reversed_points = []
    for sku in ["gum", "gum", "mint", "gum"]:
        out = f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret(sku, 1)]))
        assert out.body is not None
        reversed_points.append(out.body.points.reversed)
    # kept 2.48 -> 2 (1 back); 1.49 -> 1 (1 back); 0.99 -> 0 (1 back); nothing -> 0
    assert reversed_points == [1, 1, 1, 0]
    assert available_pending(db, anna) == (0, 0)
    assert f.verify(db, prog) == []
    # Nothing is left to return.
    [out] = f.ingest(db, f.return_payload(prog, sale.event_id, [line_ret("gum", 1)]))
    assert error_code(out) == "return_exceeds_purchase"


def test_return_of_more_than_bought_writes_nothing(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.ingest_one(
        db, f.purchase_payload(prog, anna, lines=[line("a", 2, 1000), line("b", 1, 500)])
    )
    before = rows(db, prog)
    for bad in (
        [line_ret("a", 3)],
        [line_ret("a", 1), line_ret("a", 2)],
        [line_ret("b", 1), line_ret("a", 5)],
        [line_ret("zzz", 1)],
    ):
        [out] = f.ingest(db, f.return_payload(prog, sale.event_id, bad))
        assert out.status == 422
        assert error_code(out) == "return_exceeds_purchase"
    assert rows(db, prog) == before
    assert available_pending(db, anna) == (25, 0)
    with db.unit_of_work(write=False) as session:
        returned = session.scalars(
            select(PurchaseLine.returned_quantity).where(PurchaseLine.programme_id == prog.id)
        ).all()
    assert list(returned) == [0, 0]
    # Everything can still be returned afterwards.
    f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("a", 2), line_ret("b", 1)]))
    assert available_pending(db, anna) == (0, 0)
    assert f.verify(db, prog) == []


def test_return_against_unknown_purchase(db: Database) -> None:
    prog = f.programme(db)
    f.member(db, prog)
    before = rows(db, prog)
    [out] = f.ingest(db, f.return_payload(prog, "no-such-order", [line_ret("a", 1)]))
    assert out.status == 422
    assert error_code(out) == "original_event_not_found"
    assert rows(db, prog) == before


def test_return_naming_another_member_is_rejected(db: Database) -> None:
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, amount_minor=1000))
    ret = f.return_payload(prog, sale.event_id, [line_ret("sku-1", 1)])
    ret["member"] = {"member_id": str(ben.id)}
    [out] = f.ingest(db, ret)
    assert error_code(out) == "member_mismatch"
    assert available_pending(db, anna) == (10, 0)


def test_purchase_and_its_return_in_the_same_batch(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.purchase_payload(prog, anna, lines=[line("a", 2, 1000), line("b", 1, 555)])
    ret = f.return_payload(prog, sale["id"], [line_ret("a", 1)])
    outcomes = f.ingest(db, sale, ret)
    assert [o.error for o in outcomes] == [None, None]
    assert [o.status for o in outcomes] == [201, 201]
    assert outcomes[0].body is not None
    assert outcomes[1].body is not None
    assert outcomes[0].body.points.earned == 25
    assert outcomes[1].body.points.reversed == 10
    assert available_pending(db, anna) == (15, 0)
    assert f.verify(db, prog) == []
    # The return was recorded against the purchase: only one more "a" can come back.
    [out] = f.ingest(db, f.return_payload(prog, sale["id"], [line_ret("a", 2)]))
    assert error_code(out) == "return_exceeds_purchase"
    f.ingest_one(db, f.return_payload(prog, sale["id"], [line_ret("a", 1), line_ret("b", 1)]))
    assert available_pending(db, anna) == (0, 0)
    # Replaying the batch changes nothing.
    assert [o.status for o in f.ingest(db, sale, ret)] == [200, 200]
    assert available_pending(db, anna) == (0, 0)
    assert f.verify(db, prog) == []


def test_return_before_its_purchase_in_a_batch_is_not_found(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.purchase_payload(prog, anna, amount_minor=1000)
    ret = f.return_payload(prog, sale["id"], [line_ret("sku-1", 1)])
    outcomes = f.ingest(db, ret, sale)
    assert error_code(outcomes[0]) == "original_event_not_found"
    assert outcomes[1].status == 201
    assert available_pending(db, anna) == (10, 0)


def test_return_in_a_batch_whose_purchase_failed(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    sale = f.purchase_payload(prog, anna, amount_minor=1000)
    sale["currency"] = "USD"
    ret = f.return_payload(prog, sale["id"], [line_ret("sku-1", 1)])
    outcomes = f.ingest(db, sale, ret)
    assert error_code(outcomes[0]) == "currency_mismatch"
    assert error_code(outcomes[1]) == "original_event_not_found"
    assert rows(db, prog)["events"] == 0


# --- members ----------------------------------------------------------------------------


def test_unknown_member_without_auto_enrol_is_rejected(db: Database) -> None:
    prog = f.programme(db, auto_enrol=False)
    payload = f.purchase_payload(prog, None, amount_minor=1000)
    payload["member"] = {"email": "nobody@example.com"}
    [out] = f.ingest(db, payload)
    assert out.status == 404
    assert error_code(out) == "member_not_found"
    assert "auto-enrolment is off" in str(out.error)
    assert rows(db, prog) == {"events": 0, "lines": 0, "postings": 0, "lots": 0, "members": 0}
    payload["member"] = {"member_id": str(uuid.uuid4())}
    [out] = f.ingest(db, payload)
    assert error_code(out) == "member_not_found"


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("email", "New.Member@Example.com", "new.member@example.com"),
        ("phone", "+49 151 12345678", "+4915112345678"),
        ("external_id", "crm-42", "crm-42"),
        ("card_number", "9276 0000 0000 0008", "9276000000000008"),
    ],
)
def test_unknown_member_with_auto_enrol_is_enrolled(
    db: Database, kind: str, value: str, stored: str
) -> None:
    prog = f.programme(db, auto_enrol=True)
    payload = f.purchase_payload(prog, None, amount_minor=1234, channel="web")
    payload["member"] = {kind: value}
    first = f.ingest_one(db, payload)
    assert first.body is not None
    assert first.body.points.earned == 12
    with db.unit_of_work(write=False) as session:
        found = session.scalars(select(Member).where(Member.programme_id == prog.id)).all()
    assert len(found) == 1
    member = found[0]
    assert getattr(member, kind) == stored
    assert member.channel == "web"
    assert member.id == first.body.member_id
    assert available_pending(db, member) == (12, 0)
    # The next purchase finds the same member.
    second = f.purchase_payload(prog, None, amount_minor=1000)
    second["member"] = {kind: value}
    again = f.ingest_one(db, second)
    assert again.body is not None
    assert again.body.member_id == member.id
    assert again.body.balance == Balance(22, 0)
    assert rows(db, prog)["members"] == 1


def test_auto_enrol_of_one_new_member_twice_in_a_batch(db: Database) -> None:
    prog = f.programme(db, auto_enrol=True)
    payloads = []
    for _ in range(2):
        p = f.purchase_payload(prog, None, amount_minor=1000)
        p["member"] = {"email": "twice@example.com"}
        payloads.append(p)
    outcomes = f.ingest(db, *payloads)
    assert [o.status for o in outcomes] == [201, 201]
    assert rows(db, prog)["members"] == 1
    assert outcomes[0].body is not None
    assert outcomes[1].body is not None
    assert outcomes[0].body.member_id == outcomes[1].body.member_id
    assert outcomes[1].body.balance == Balance(20, 0)
    assert f.verify(db, prog) == []


def test_auto_enrol_with_an_invalid_card_number_is_a_clean_error(db: Database) -> None:
    prog = f.programme(db, auto_enrol=True)
    bad = f.purchase_payload(prog, None, amount_minor=1000)
    bad["member"] = {"card_number": "1234567890123456"}  # fails the Luhn check
    good = f.purchase_payload(prog, None, amount_minor=1000)
    good["member"] = {"email": "fine@example.com"}
    outcomes = f.ingest(db, bad, good)
    assert outcomes[0].error is not None
    assert outcomes[0].status == 422
    assert outcomes[1].status == 201
    assert rows(db, prog)["members"] == 1


def test_rejected_purchase_does_not_auto_enrol(db: Database) -> None:
    prog = f.programme(db, auto_enrol=True)
    payload = f.purchase_payload(prog, None, amount_minor=1000)
    payload["member"] = {"email": "half@example.com"}
    payload["currency"] = "USD"
    [out] = f.ingest(db, payload)
    assert error_code(out) == "currency_mismatch"
    assert rows(db, prog) == {"events": 0, "lines": 0, "postings": 0, "lots": 0, "members": 0}


def test_blocked_member_earns_nothing_but_the_purchase_is_recorded(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    set_status(db, anna, MemberStatus.blocked)
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=[line("a", 2, 1000)]))
    assert sale.status == 201
    assert sale.body is not None
    assert sale.body.points.earned == 0
    assert sale.body.postings == ()
    assert "blocked" in (sale.body.note or "")
    assert rows(db, prog) | {"members": 0} == {
        "events": 1,
        "lines": 1,
        "postings": 0,
        "lots": 0,
        "members": 0,
    }
    assert available_pending(db, anna) == (0, 0)
    # A return of a purchase that earned nothing reverses nothing, even once unblocked.
    set_status(db, anna, MemberStatus.active)
    back = f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("a", 1)]))
    assert back.body is not None
    assert back.body.points.reversed == 0
    assert available_pending(db, anna) == (0, 0)
    assert f.verify(db, prog) == []


def test_closed_member_is_rejected(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    set_status(db, anna, MemberStatus.closed)
    before = rows(db, prog)
    [out] = f.ingest(db, f.purchase_payload(prog, anna, amount_minor=1000))
    assert out.status == 422
    assert error_code(out) == "member_closed"
    assert rows(db, prog) == before


def test_anonymous_purchase_is_recorded_without_points(db: Database) -> None:
    prog = f.programme(db)
    sale = f.ingest_one(db, f.purchase_payload(prog, None, lines=[line("a", 3, 1000)]))
    assert sale.status == 201
    assert sale.body is not None
    assert sale.body.member_id is None
    assert sale.body.points.earned == 0
    assert sale.body.balance is None
    assert rows(db, prog) == {"events": 1, "lines": 1, "postings": 0, "lots": 0, "members": 0}
    back = f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("a", 1)]))
    assert back.body is not None
    assert back.body.points.reversed == 0


# --- validation -------------------------------------------------------------------------


def test_currency_mismatch(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    payload = f.purchase_payload(prog, anna, amount_minor=1000)
    payload["currency"] = "usd"
    [out] = f.ingest(db, payload)
    assert out.status == 422
    assert error_code(out) == "currency_mismatch"
    assert rows(db, prog)["events"] == 0
    assert available_pending(db, anna) == (0, 0)


def test_event_in_the_future(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    late = f.purchase_payload(prog, anna, amount_minor=1000, occurred_at=now + timedelta(hours=2))
    [out] = f.ingest(db, late, now=now)
    assert out.status == 422
    assert error_code(out) == "event_in_future"
    # A few minutes of clock skew between tills and server are tolerated.
    skewed = f.purchase_payload(
        prog, anna, amount_minor=1000, occurred_at=now + timedelta(minutes=5)
    )
    assert f.ingest(db, skewed, now=now)[0].status == 201
    sale = f.purchase_payload(prog, anna, amount_minor=1000, occurred_at=now)
    f.ingest_one(db, sale, now=now)
    ret = f.return_payload(
        prog, sale["id"], [line_ret("sku-1", 1)], occurred_at=now + timedelta(days=3)
    )
    [out] = f.ingest(db, ret, now=now)
    assert error_code(out) == "event_in_future"
    # The skewed purchase's points become available at its own occurred_at.
    assert available_pending(db, anna) == (10, 10)


def test_unknown_programme(db: Database) -> None:
    prog = f.programme(db)
    payload = f.purchase_payload(prog, None, amount_minor=1000)
    payload["programme"] = "no-such-programme"
    [out] = f.ingest(db, payload)
    assert error_code(out) == "programme_not_found"


def test_batch_with_good_and_bad_events(db: Database) -> None:
    prog = f.programme(db)
    anna, ben = f.member(db, prog), f.member(db, prog)
    earlier = f.ingest_one(db, f.purchase_payload(prog, anna, lines=[line("x", 1, 700)]))
    unknown = f.purchase_payload(prog, None, amount_minor=1000)
    unknown["member"] = {"email": "ghost@example.com"}
    usd = f.purchase_payload(prog, ben, amount_minor=1000)
    usd["currency"] = "USD"
    batch = [
        f.purchase_payload(prog, anna, amount_minor=1000),
        unknown,
        f.purchase_payload(prog, ben, amount_minor=2000),
        usd,
        f.return_payload(prog, earlier.event_id, [line_ret("x", 2)]),
        f.return_payload(prog, "missing", [line_ret("x", 1)]),
        f.purchase_payload(prog, anna, amount_minor=3000),
        f.return_payload(prog, earlier.event_id, [line_ret("x", 1)]),
    ]
    outcomes = f.ingest(db, *batch)
    assert [o.index for o in outcomes] == list(range(len(batch)))
    assert [o.event_id for o in outcomes] == [p["id"] for p in batch]
    assert [error_code(o) for o in outcomes] == [
        None,
        "member_not_found",
        None,
        "currency_mismatch",
        "return_exceeds_purchase",
        "original_event_not_found",
        None,
        None,
    ]
    assert [o.status for o in outcomes] == [201, 404, 201, 422, 422, 422, 201, 201]
    assert available_pending(db, anna) == (40, 0)
    assert available_pending(db, ben) == (20, 0)
    assert rows(db, prog)["events"] == 1 + 4
    assert f.verify(db, prog) == []
    # Retrying the whole batch: the good ones replay, the bad ones fail again.
    again = f.ingest(db, *batch)
    assert [o.status for o in again] == [200, 404, 200, 422, 422, 422, 200, 200]
    assert available_pending(db, anna) == (40, 0)


# --- rounding ---------------------------------------------------------------------------


def test_floor_per_order_not_per_line(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    lines = [line("a", 1, 99), line("b", 1, 99), line("c", 1, 99)]
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=lines))
    assert sale.body is not None
    assert sale.body.points.earned == 2  # floor(2.97), not 3 x ceil(0.99)
    assert sale.body.postings[0]["explanation"] == "1 point per €1 on €2.97: +2"


@pytest.mark.parametrize(
    ("rounding", "scope", "earned", "after_return"),
    [
        ("floor", "order", 2, 1),  # 2.97 -> 2; kept 1.98 -> 1
        ("ceil", "order", 3, 2),  # 2.97 -> 3; kept 1.98 -> 2
        ("half_up", "order", 3, 2),
        ("floor", "line", 0, 0),  # 0.99 -> 0 per line
        ("ceil", "line", 3, 2),  # 0.99 -> 1 per line
        ("half_up", "line", 3, 2),
    ],
)
def test_rounding_rule_and_scope(
    db: Database, rounding: str, scope: str, earned: int, after_return: int
) -> None:
    prog = f.programme(db, rounding=rounding, rounding_scope=scope)
    anna = f.member(db, prog)
    lines = [line("a", 1, 99), line("b", 1, 99), line("c", 1, 99)]
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=lines))
    assert sale.body is not None
    assert sale.body.points.earned == earned
    f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("b", 1)]))
    assert available_pending(db, anna) == (after_return, 0)
    assert f.verify(db, prog) == []


def test_line_scope_with_quantities(db: Database) -> None:
    prog = f.programme(db, rounding_scope="line", points_per_currency_unit="1.5")
    anna = f.member(db, prog)
    # line a: 3 x 3.33 = 9.99 * 1.5 = 14.985 -> 14; line b: 1 x 0.70 * 1.5 = 1.05 -> 1
    sale = f.ingest_one(
        db, f.purchase_payload(prog, anna, lines=[line("a", 3, 333), line("b", 1, 70)])
    )
    assert sale.body is not None
    assert sale.body.points.earned == 15
    # kept: 2 x 3.33 = 6.66 * 1.5 = 9.99 -> 9, plus 1 -> 10
    back = f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("a", 1)]))
    assert back.body is not None
    assert back.body.points.reversed == 5


def test_returns_use_the_rate_the_purchase_earned_at(db: Database) -> None:
    prog = f.programme(db, points_per_currency_unit=2)
    anna = f.member(db, prog)
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=[line("a", 2, 1000)]))
    with db.unit_of_work() as session:
        current = session.get(Programme, prog.id)
        assert current is not None
        current.points_per_currency_unit = 10  # type: ignore[assignment]
    back = f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret("a", 1)]))
    assert back.body is not None
    assert back.body.points.reversed == 20
    assert available_pending(db, anna) == (20, 0)


prices = st.integers(min_value=0, max_value=2500)
lines_strategy = st.lists(
    st.tuples(st.integers(min_value=1, max_value=4), prices), min_size=1, max_size=5
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bought=lines_strategy,
    rate=st.sampled_from(["1", "0.5", "1.5", "3"]),
    rounding=st.sampled_from(["floor", "half_up", "ceil"]),
    scope=st.sampled_from(["order", "line"]),
    data=st.data(),
)
def test_returns_never_give_back_more_than_the_kept_lines_earn(
    db: Database,
    bought: list[tuple[int, int]],
    rate: str,
    rounding: str,
    scope: str,
    data: st.DataObject,
) -> None:
    prog = f.programme(db, points_per_currency_unit=rate, rounding=rounding, rounding_scope=scope)
    anna = f.member(db, prog)
    lines = [line(f"sku{n}", q, p) for n, (q, p) in enumerate(bought)]
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=lines))
    assert sale.body is not None
    earned = sale.body.points.earned
    kept = {f"sku{n}": q for n, (q, _) in enumerate(bought)}
    returns = data.draw(st.integers(min_value=1, max_value=3), label="returns")
    for _ in range(returns):
        open_skus = [sku for sku, q in kept.items() if q > 0]
        if not open_skus:
            break
        sku = data.draw(st.sampled_from(open_skus), label="sku")
        quantity = data.draw(st.integers(min_value=1, max_value=kept[sku]), label="quantity")
        kept[sku] -= quantity
        f.ingest_one(db, f.return_payload(prog, sale.event_id, [line_ret(sku, quantity)]))
    after = f.balance(db, anna).available
    assert 0 <= after <= earned
    kept_lines = [
        line(f"sku{n}", kept[f"sku{n}"], p) for n, (_, p) in enumerate(bought) if kept[f"sku{n}"]
    ]
    if kept_lines:
        only_kept = f.ingest_one(db, f.purchase_payload(prog, anna, lines=kept_lines))
        assert only_kept.body is not None
        assert after == only_kept.body.points.earned
    else:
        assert after == 0
    assert f.verify(db, prog) == []
