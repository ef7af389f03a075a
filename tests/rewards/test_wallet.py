"""The e-wallet: credits from redemptions, debits at checkout, refunds, on both backends."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, update

from tests import factories as f
from tests.api_helpers import Api
from tests.support.concurrency import in_parallel, postgres_only, retrying
from treu.db.session import Database
from treu.members.models import Member
from treu.programmes.models import Programme
from treu.rewards.errors import CurrencyMismatch
from treu.rewards.schemas import Keyed, WalletDebitOut
from treu.rewards.wallet import InsufficientWallet, Wallet, WalletEntry, wallet


def credit(
    db: Database, who: Member, amount: int, redemption: uuid.UUID | None = None
) -> WalletEntry:
    """What the rewards feature does when a ``wallet_credit`` reward is redeemed."""
    with db.unit_of_work() as session:
        return wallet.credit(
            session,
            member_id=who.id,
            programme_id=who.programme_id,
            amount_minor=amount,
            currency="EUR",
            redemption_id=redemption or uuid.uuid4(),
        )


def debit(api: Api, who: Member, key: str | None = None, **body: Any) -> Any:
    payload = {"order_id": "A-1", "amount_minor": 500, "currency": "EUR"} | body
    return api.client.post(
        f"/v1/members/{who.id}/wallet/debits",
        json=payload,
        headers=api.headers("events:write") | {"Idempotency-Key": key or f.unique("debit")},
    )


def refund(api: Api, debit_id: str, key: str | None = None, **body: Any) -> Any:
    return api.client.post(
        f"/v1/wallet/debits/{debit_id}/refund",
        json=body,
        headers=api.headers("events:write") | {"Idempotency-Key": key or f.unique("refund")},
    )


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = dict(r.json())
    assert body["code"] == code
    return body


def balance(api: Api, who: Member) -> int:
    r = api.client.get(f"/v1/members/{who.id}/wallet", headers=api.headers("members:read"))
    assert r.status_code == 200, r.text
    return int(r.json()["balance_minor"])


def verify(db: Database, prog: Programme) -> list[Any]:
    with db.unit_of_work(write=False) as session:
        return wallet.verify(session, programme_id=prog.id)


def test_a_credit_is_idempotent_per_redemption(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    assert balance(api, anna) == 0  # no wallet yet
    redemption = uuid.uuid4()
    first = credit(db, anna, 1000, redemption)
    again = credit(db, anna, 1000, redemption)
    assert again.id == first.id
    assert (first.kind, first.amount_minor, first.balance_after_minor) == ("credit", 1000, 1000)
    credit(db, anna, 250)
    r = api.client.get(f"/v1/members/{anna.id}/wallet", headers=api.headers("members:read"))
    body = r.json()
    assert (body["currency"], body["balance_minor"]) == ("EUR", 1250)
    assert [(e["kind"], e["amount_minor"]) for e in body["entries"]] == [
        ("credit", 250),
        ("credit", 1000),
    ]
    assert body["entries"][1]["redemption_id"] == str(redemption)
    with pytest.raises(CurrencyMismatch), db.unit_of_work() as session:
        wallet.credit(
            session,
            member_id=anna.id,
            programme_id=prog.id,
            amount_minor=5,
            currency="USD",
            redemption_id=uuid.uuid4(),
        )
    assert verify(db, prog) == []


def test_pay_from_the_wallet_never_below_zero(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 800)
    r = debit(api, anna, key="d-1", order_id="pos-1", amount_minor=500)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["kind"], body["amount_minor"], body["debited_minor"]) == ("debit", -500, 500)
    assert (body["remaining_to_pay_minor"], body["balance_after_minor"]) == (0, 300)
    assert body["order_id"] == "pos-1"
    again = debit(api, anna, key="d-1", order_id="pos-1", amount_minor=500)
    assert (again.status_code, again.json()) == (200, body)
    problem(debit(api, anna, key="d-1", amount_minor=1), 409, "idempotency_conflict")
    short = problem(debit(api, anna, amount_minor=301), 422, "insufficient_wallet_balance")
    assert (short["needed"], short["available"]) == (301, 300)
    r = debit(api, anna, amount_minor=1000, partial=True)
    assert (r.json()["debited_minor"], r.json()["remaining_to_pay_minor"]) == (300, 700)
    problem(debit(api, anna, partial=True), 422, "insufficient_wallet_balance")
    assert balance(api, anna) == 0
    problem(debit(api, anna, currency="CHF"), 422, "currency_mismatch")
    stranger = f.member(db, prog)  # never had a wallet
    problem(debit(api, stranger), 422, "insufficient_wallet_balance")
    assert verify(db, prog) == []


def test_refund_a_debit_whole_or_in_parts(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 1000)
    paid = debit(api, anna, amount_minor=600).json()
    first = refund(api, paid["id"], key="r-1", amount_minor=200)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["kind"], body["amount_minor"], body["refunded_minor"]) == ("refund", 200, 200)
    assert (body["debit_id"], body["order_id"], body["balance_after_minor"]) == (
        paid["id"],
        "A-1",
        600,
    )
    again = refund(api, paid["id"], key="r-1", amount_minor=200)
    assert (again.status_code, again.json()) == (200, body)
    over = problem(refund(api, paid["id"], amount_minor=401), 422, "refund_exceeds_debit")
    assert over["refundable_minor"] == 400
    assert refund(api, paid["id"]).json()["amount_minor"] == 400  # the rest
    problem(refund(api, paid["id"]), 422, "refund_exceeds_debit")
    problem(refund(api, body["id"]), 404, "wallet_debit_not_found")  # not a debit
    problem(refund(api, str(uuid.uuid4())), 404, "wallet_debit_not_found")
    assert balance(api, anna) == 1000
    assert verify(db, prog) == []


def test_a_cancelled_redemption_takes_its_credit_back_unless_spent(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    kept, spent = uuid.uuid4(), uuid.uuid4()
    credit(db, anna, 300, kept)
    credit(db, anna, 500, spent)
    with db.unit_of_work() as session:
        wallet.debit(
            session, member_id=anna.id, key="k", order_id="o", amount_minor=600, currency="EUR"
        )
    with pytest.raises(InsufficientWallet), db.unit_of_work() as session:
        wallet.cancel_credit(session, member_id=anna.id, redemption_id=spent)
    with db.unit_of_work() as session:
        reversal = wallet.cancel_credit(session, member_id=anna.id, redemption_id=uuid.uuid4())
        assert reversal is None  # never credited
    credit(db, anna, 100)
    with db.unit_of_work() as session:
        reversal = wallet.cancel_credit(session, member_id=anna.id, redemption_id=kept)
        assert reversal is not None
        assert (reversal.kind, reversal.amount_minor, reversal.balance_after_minor) == (
            "reversal",
            -300,
            0,
        )
    with db.unit_of_work() as session:  # idempotent
        again = wallet.cancel_credit(session, member_id=anna.id, redemption_id=kept)
        assert again is not None
        assert again.id == reversal.id
    assert verify(db, prog) == []


def test_entries_are_paged_newest_first(api: Api, db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    for amount in range(1, 6):
        credit(db, anna, amount)
    url = f"/v1/members/{anna.id}/wallet"
    page = api.client.get(url, params={"limit": 2}, headers=api.headers("members:read")).json()
    seen = [e["amount_minor"] for e in page["entries"]]
    while page["next_cursor"]:
        page = api.client.get(
            url,
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=api.headers("members:read"),
        ).json()
        seen += [e["amount_minor"] for e in page["entries"]]
    assert seen == [5, 4, 3, 2, 1]
    r = api.client.get(url, params={"cursor": "bogus"}, headers=api.headers("members:read"))
    problem(r, 422, "validation_error")
    problem(
        api.client.get(f"/v1/members/{uuid.uuid4()}/wallet", headers=api.headers("members:read")),
        404,
        "member_not_found",
    )


def test_verify_finds_a_tampered_balance(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 100)
    with db.unit_of_work() as session:
        session.execute(update(Wallet).where(Wallet.member_id == anna.id).values(balance_minor=90))
    found = verify(db, prog)
    assert [(d.member_id, d.cached, d.rebuilt) for d in found] == [(anna.id, 90, 100)]


def test_twenty_concurrent_debits_never_go_below_zero(db: Database, backend: str) -> None:
    postgres_only(backend)
    prog = f.programme(db)
    anna = f.member(db, prog)
    credit(db, anna, 1000)

    def spend(i: int) -> Keyed[WalletDebitOut]:
        return retrying(
            db,
            lambda session: wallet.debit(
                session,
                member_id=anna.id,
                key=f"d-{i}",
                order_id=f"o-{i}",
                amount_minor=100,
                currency="EUR",
            ),
        )

    results = in_parallel(20, spend)
    assert Counter(type(r).__name__ for r in results) == {
        "Keyed": 10,
        "InsufficientWallet": 10,
    }, results
    with db.unit_of_work(write=False) as session:
        assert wallet.balance_minor(session, member_id=anna.id) == 0
        afters = session.scalars(
            select(WalletEntry.balance_after_minor)
            .where(WalletEntry.member_id == anna.id)
            .order_by(WalletEntry.id)
        ).all()
    assert sorted(afters, reverse=True) == [1000, *range(900, -1, -100)]
    assert verify(db, prog) == []


def test_concurrent_first_credits_both_land(db: Database) -> None:
    """On both backends: the wallet row is created by whichever comes first."""
    prog = f.programme(db)
    anna = f.member(db, prog)

    def give(i: int) -> WalletEntry:
        return retrying(
            db,
            lambda session: wallet.credit(
                session,
                member_id=anna.id,
                programme_id=prog.id,
                amount_minor=100 + i,
                currency="EUR",
                redemption_id=uuid.uuid4(),
            ),
        )

    results = in_parallel(8, give)
    assert all(isinstance(r, WalletEntry) for r in results), results
    with db.unit_of_work(write=False) as session:
        assert wallet.balance_minor(session, member_id=anna.id) == sum(100 + i for i in range(8))
    assert verify(db, prog) == []
