"""``treu ledger verify`` checks the e-wallets too: a wallet balance that differs from
the sum of its entries is shown (in money) and exits 3, like a ledger discrepancy, and
``--repair`` (which rewrites points balances) does not paper over it."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select, update

from tests import factories as f
from tests.support.cli import make_runner
from treu import cli
from treu.db.session import Database
from treu.ledger.models import Account
from treu.members.models import Member
from treu.rewards.wallet import Wallet, wallet


def credit(db: Database, who: Member, amount: int) -> None:
    """What a redeemed ``wallet_credit`` reward does."""
    with db.unit_of_work() as session:
        wallet.credit(
            session,
            member_id=who.id,
            programme_id=who.programme_id,
            amount_minor=amount,
            currency="EUR",
            redemption_id=uuid.uuid4(),
        )


def set_wallet(db: Database, who: Member, balance_minor: int) -> None:
    with db.unit_of_work() as session:
        session.execute(
            update(Wallet).where(Wallet.member_id == who.id).values(balance_minor=balance_minor)
        )


def wallet_balance(db: Database, who: Member) -> int:
    with db.unit_of_work(write=False) as session:
        found = session.scalar(select(Wallet.balance_minor).where(Wallet.member_id == who.id))
        assert found is not None
        return found


def test_clean_wallets_are_reported_and_exit_0(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    prog, other = f.programme(fresh_db), f.programme(fresh_db)
    anna, bert = f.member(fresh_db, prog), f.member(fresh_db, prog)
    credit(fresh_db, anna, 2500)
    credit(fresh_db, bert, 700)
    credit(fresh_db, f.member(fresh_db, other), 100)

    result = runner.invoke(cli.app, ["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "Ledger OK: 3 accounts verified" in result.stdout
    assert "Wallets OK: 3 wallets verified" in result.stdout

    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug])
    assert result.exit_code == 0, result.output
    assert "Wallets OK: 2 wallets verified" in result.stdout


def test_a_tampered_wallet_is_shown_in_money_and_exits_3(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    prog, other = f.programme(fresh_db), f.programme(fresh_db)
    anna, bert = f.member(fresh_db, prog), f.member(fresh_db, prog)
    credit(fresh_db, anna, 2500)
    credit(fresh_db, bert, 700)
    set_wallet(fresh_db, anna, 2000)

    result = runner.invoke(cli.app, ["ledger", "verify"])
    assert result.exit_code == 3, result.output
    assert "Ledger OK: 2 accounts verified" in result.stdout  # the points are fine
    assert "1 wallet discrepancies in 2 wallets" in result.stdout
    row = next(line for line in result.stdout.splitlines() if str(anna.id) in line)
    assert re.search(r"€20\.00\s*│\s*€25\.00", row)
    assert str(bert.id) not in result.stdout
    assert "not repaired automatically" in result.stdout
    assert "--repair" not in result.stdout  # nothing --repair would fix

    # Only the programme asked about: another programme's clean wallets say OK.
    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", other.slug])
    assert result.exit_code == 0, result.output
    assert "Wallets OK: 0 wallets verified" in result.stdout

    # --repair rewrites points balances only: the wallet stays as it is, still exit 3.
    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug, "--repair"])
    assert result.exit_code == 3, result.output
    assert "Repaired" not in result.stdout
    assert wallet_balance(fresh_db, anna) == 2000


def test_ledger_and_wallet_discrepancies_are_both_reported(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    prog = f.programme(fresh_db)
    anna, bert = f.member(fresh_db, prog), f.member(fresh_db, prog)
    f.ingest(fresh_db, f.purchase_payload(prog, anna))
    credit(fresh_db, bert, 500)
    with fresh_db.unit_of_work() as session:
        session.execute(
            update(Account)
            .where(Account.member_id == anna.id)
            .values(available=Account.available + 5)
        )
    set_wallet(fresh_db, bert, 600)

    result = runner.invoke(cli.app, ["ledger", "verify"])
    assert result.exit_code == 3, result.output
    assert "discrepancies in 2 accounts" in result.stdout
    assert "1 wallet discrepancies in 1 wallet\n" in result.stdout
    assert "Run with --repair" in result.stdout
    # The points part first, with its hint; then the wallets.
    assert result.stdout.index("Run with --repair") < result.stdout.index("wallet discrepancies")

    # The ledger is repaired and verified again; the wallet is left for a human.
    result = runner.invoke(cli.app, ["ledger", "verify", "--repair"])
    assert result.exit_code == 3, result.output
    assert "Repaired the cached balances of 1 account(s)" in result.stdout
    assert "Ledger OK: 2 accounts verified" in result.stdout
    assert "1 wallet discrepancies" in result.stdout
    assert f.balance(fresh_db, anna).available == 10
    assert wallet_balance(fresh_db, bert) == 600
