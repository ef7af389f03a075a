"""The ``treu`` command line: API keys, jobs, ``ledger verify``, readable errors."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from typer.testing import CliRunner

from tests import factories as f
from tests.support.cli import make_runner
from treu import __version__, cli
from treu.auth.errors import InvalidApiKey
from treu.auth.service import api_keys
from treu.db.session import Database
from treu.events.models import Event, PurchaseLine
from treu.kit.time import utc_now
from treu.ledger.models import Account, Lot, Posting


def test_version() -> None:
    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"treu {__version__}"


def test_help_lists_the_commands() -> None:
    result = CliRunner(env={"COLUMNS": "220"}).invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("migrate", "serve", "demo", "apikey", "import", "ledger", "jobs", "worker"):
        assert command in result.stdout


def test_unmigrated_database_is_a_sentence_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    runner = make_runner(monkeypatch, empty)
    for command in (["apikey", "list"], ["worker"], ["jobs", "run", "ledger.expire_points"]):
        result = runner.invoke(cli.app, command)
        assert result.exit_code == 1, command
        assert "treu migrate" in result.stderr
        assert "Traceback" not in result.output
    empty.dispose()


def test_apikey_create_list_revoke(db: Database, runner: CliRunner) -> None:
    name = f.unique("shop")
    result = runner.invoke(
        cli.app,
        ["apikey", "create", "--name", name, "--scope", "events:write", "--scope", "members:read"],
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"treu_[A-Za-z0-9]{44}", result.stdout)
    assert match is not None
    key = match.group(0)
    assert "shown only once" in result.stderr
    with db.unit_of_work(write=False) as session:
        principal = api_keys.authenticate(session, key)
    assert principal.scopes == {"events:write", "members:read"}

    listed = runner.invoke(cli.app, ["apikey", "list"])
    assert listed.exit_code == 0
    row = next(line for line in listed.stdout.splitlines() if name in line)
    lookup = key[: len("treu_") + 12]
    assert lookup in row
    assert "events:write, members:read" in row
    assert key not in listed.stdout  # never the key itself
    assert row.rstrip(" │").endswith("no")

    revoked = runner.invoke(cli.app, ["apikey", "revoke", lookup])
    assert revoked.exit_code == 0, revoked.output
    with db.unit_of_work(write=False) as session, pytest.raises(InvalidApiKey):
        api_keys.authenticate(session, key)
    listed = runner.invoke(cli.app, ["apikey", "list"])
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d\s*│?\s*$", row)

    again = runner.invoke(cli.app, ["apikey", "revoke", lookup])
    assert again.exit_code == 1
    assert "no active API key" in again.stderr


def test_apikey_unknown_scope_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["apikey", "create", "--name", "x", "--scope", "bogus"])
    assert result.exit_code == 1
    assert "unknown scope(s) bogus; choose from events:write" in result.stderr
    assert "Traceback" not in result.output


def test_jobs_list(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["jobs", "list"])
    assert result.exit_code == 0
    assert "ledger.activate_pending" in result.stdout
    assert "ledger.expire_points" in result.stdout


def test_jobs_run(fresh_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    prog = f.programme(fresh_db, pending_days=14)
    then = utc_now() - timedelta(days=20)
    people = [f.member(fresh_db, prog) for _ in range(2)]
    f.ingest(
        fresh_db,
        *(f.purchase_payload(prog, m, amount_minor=500, occurred_at=then) for m in people),
        now=then,
    )
    result = runner.invoke(cli.app, ["jobs", "run", "ledger.activate_pending"])
    assert result.exit_code == 0, result.output
    assert "ledger.activate_pending: 2 lots activated" in result.stdout
    assert f.balance(fresh_db, people[0]).available == 5

    result = runner.invoke(cli.app, ["jobs", "run", "ledger.activate_pending"])
    assert "ledger.activate_pending: 0 lots activated" in result.stdout
    result = runner.invoke(cli.app, ["jobs", "run", "ledger.expire_points"])
    assert result.exit_code == 0
    assert "ledger.expire_points: 0 lots expired" in result.stdout

    result = runner.invoke(cli.app, ["jobs", "run", "ledger.nothing"])
    assert result.exit_code == 1
    assert "no job 'ledger.nothing'" in result.stderr


def test_ledger_verify_exit_codes_and_repair(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(monkeypatch, fresh_db)
    prog = f.programme(fresh_db)
    anna, bert = f.member(fresh_db, prog), f.member(fresh_db, prog)
    f.ingest(fresh_db, f.purchase_payload(prog, anna), f.purchase_payload(prog, bert))

    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug])
    assert result.exit_code == 0, result.output
    assert "Ledger OK: 2 accounts verified" in result.stdout

    with fresh_db.unit_of_work() as session:
        session.execute(
            update(Account)
            .where(Account.member_id == anna.id)
            .values(available=Account.available + 5)
        )
    result = runner.invoke(cli.app, ["ledger", "verify"])
    assert result.exit_code == 3, result.output
    assert str(anna.id) in result.stdout
    row = next(line for line in result.stdout.splitlines() if "total" in line)
    assert re.search(r"total\s*│\s*15\s*│\s*10", row)
    assert "--repair" in result.stdout

    result = runner.invoke(cli.app, ["ledger", "verify", "--repair"])
    assert result.exit_code == 0, result.output
    assert "Repaired the cached balances of 1 account(s)" in result.stdout
    assert "Ledger OK: 2 accounts verified" in result.stdout
    assert f.balance(fresh_db, anna).available == 10

    # A lot that lost points cannot be rebuilt from the cached balance: still exit 3.
    with fresh_db.unit_of_work() as session:
        session.execute(text("UPDATE lots SET remaining = remaining - 1"))
    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug, "--repair"])
    assert result.exit_code == 3
    assert "lot remaining" in result.stdout

    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", "nope"])
    assert result.exit_code == 1
    assert "no programme 'nope'" in result.stderr


def test_ledger_verify_reports_copies_that_disagree_with_their_parent(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines and lots copy their parent's ids without a foreign key of their own
    (migration 0007): verify is what notices a wrong copy."""
    runner = make_runner(monkeypatch, fresh_db)
    prog = f.programme(fresh_db)
    anna, bert = f.member(fresh_db, prog), f.member(fresh_db, prog)
    two_lines = [
        {"sku": sku, "category": "misc", "quantity": 1, "unit_price_minor": 500}
        for sku in ("a", "b")
    ]
    f.ingest(
        fresh_db, f.purchase_payload(prog, anna), f.purchase_payload(prog, bert, lines=two_lines)
    )
    assert f.verify(fresh_db, prog) == []

    with fresh_db.unit_of_work() as session:
        session.execute(update(Lot).where(Lot.member_id == anna.id).values(member_id=bert.id))
        session.execute(
            update(PurchaseLine).where(PurchaseLine.member_id == bert.id).values(member_id=anna.id)
        )
    found = {(d.member_id, d.what, d.cached) for d in f.verify(fresh_db, prog)}
    assert (anna.id, "lot's member, programme or event", 1) in found
    assert (bert.id, "purchase line's programme or member", 2) in found
    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug])
    assert result.exit_code == 3, result.output
    assert "lot's member, programme or event" in result.stdout
    assert "purchase line's programme or member" in result.stdout


def test_ledger_verify_reports_rows_whose_parent_is_missing(
    fresh_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events, lines, postings and lots carry no foreign keys (migration 0010): verify
    is what notices a row whose parent was deleted by hand."""
    runner = make_runner(monkeypatch, fresh_db)
    prog = f.programme(fresh_db)
    anna, bert, cleo = (f.member(fresh_db, prog) for _ in range(3))
    bought = f.purchase_payload(prog, anna)
    f.ingest(
        fresh_db,
        bought,
        f.purchase_payload(prog, bert),
        f.purchase_payload(prog, cleo),
        f.return_payload(prog, bought["id"], [{"sku": "sku-1", "quantity": 1}]),
    )
    assert f.verify(fresh_db, prog) == []

    with fresh_db.unit_of_work() as session:
        # anna's purchase goes: its lines, posting and return now name a missing event
        session.execute(delete(Event).where(Event.key == bought["id"]))
        # bert's lot loses its posting; deleting cleo's lot leaves no row without its
        # parent (only the balance checks notice that one)
        session.execute(delete(Posting).where(Posting.member_id == bert.id))
        session.execute(delete(Lot).where(Lot.member_id == cleo.id))
    found = {(d.member_id, d.what) for d in f.verify(fresh_db, prog)}
    assert (anna.id, "purchase line's event missing") in found
    assert (anna.id, "posting's member or event missing") in found
    assert (anna.id, "event's programme, member or original purchase missing") in found
    assert (bert.id, "lot's posting missing") in found
    assert cleo.id not in {member_id for member_id, what in found if "missing" in what}
    result = runner.invoke(cli.app, ["ledger", "verify", "--programme", prog.slug])
    assert result.exit_code == 3, result.output
    assert "lot's posting missing" in result.stdout
