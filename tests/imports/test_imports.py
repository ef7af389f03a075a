"""Member (CSV) and event (JSON Lines) imports: good rows go in, every bad row is
reported with its line number, re-running imports nothing new."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from tests import factories as f
from treu import cli
from treu.db.session import Database
from treu.errors import TreuError
from treu.imports import (
    ImportFileInvalid,
    ImportReport,
    events_jsonl,
    import_events,
    import_members,
    members_csv,
)
from treu.members.models import Member
from treu.programmes.errors import ProgrammeNotFound
from treu.programmes.models import Programme

HEADER = (
    "email,phone,card_number,external_id,first_name,last_name,birthday,language,channel,enrolled_at"
)


def members_file(prog: Programme, existing_email: str) -> tuple[str, dict[str, str]]:
    tag = prog.slug
    good = {
        "anna": f"anna.{tag}@example.com",
        "emil": f"emil.{tag}@example.com",
        "ida": f"ida.{tag}@example.com",
    }
    lines = [
        HEADER,  # 1
        f"{good['anna']},+49 151 12345678,,,Anna,Schmidt,1990-05-17,de,pos,2024-03-01",  # 2
        "not-an-email,,,,Bernd,,,,,",  # 3 bad email
        f"clara.{tag}@example.com,,,,Clara,,1990-13-01,,,",  # 4 bad birthday
        ",,,,Dora,,,,,",  # 5 no identifier
        f"{good['emil']},,,ext-{tag},Emil,,,EN,Web,2024-03-01T09:30:00Z",  # 6
        f"fritz.{tag}@example.com,,,,Fritz,,,fr,,",  # 7 unknown language
        f"{good['anna']},,,,Anna again,,,,,",  # 8 duplicate of line 2
        f"gerd.{tag}@example.com,,4111111111111112,,,,,,,",  # 9 Luhn check fails
        f"hans.{tag}@example.com,,,,Hans,,,,shop,",  # 10 unknown channel
        f"ina.{tag}@example.com,,,,Ina,,,,,2024-03-01T09:30:00",  # 11 no time zone
        "",  # 12 blank: ignored
        f"{good['ida']},,,,Ida,,,,,",  # 13
        "too,many",  # 14 wrong number of fields
        f"{existing_email},,,,Known,,,,,",  # 15 already a member
    ]
    return "\n".join(lines) + "\n", good


FIRST_RUN_REJECTED = [3, 4, 5, 7, 8, 9, 10, 11, 14]


def run_members(db: Database, text: str, prog: Programme, batch_size: int = 2) -> ImportReport:
    reports = list(
        import_members(
            db, members_csv(io.StringIO(text)), programme=prog.slug, batch_size=batch_size
        )
    )
    assert reports, "the importer yields at least once"
    return reports[-1]


def test_member_import_reports_bad_rows_and_imports_the_good(db: Database) -> None:
    prog = f.programme(db)
    known = f.member(db, prog)
    text, good = members_file(prog, existing_email=str(known.email))

    report = run_members(db, text, prog)
    assert report.read == 13
    assert report.imported == 3
    assert [n.line for n in report.skipped] == [15]
    assert [n.line for n in report.rejected] == FIRST_RUN_REJECTED
    reasons = {n.line: n.reason for n in report.rejected}
    assert "email" in reasons[3]
    assert "birthday" in reasons[4]
    assert "at least one identifier is required" in reasons[5]
    assert "language" in reasons[7]
    assert reasons[8] == f"email {good['anna']!r} is used on line 2 already"
    assert "Luhn" in reasons[9]
    assert "channel" in reasons[10]
    assert "time zone" in reasons[11]
    assert reasons[14] == "expected 10 fields as in the header, found 2"

    with db.unit_of_work(write=False) as session:
        rows = {
            m.email: m
            for m in session.scalars(select(Member).where(Member.programme_id == prog.id))
        }
    assert set(rows) == {*good.values(), known.email}
    anna = rows[good["anna"]]
    assert anna.phone == "+4915112345678"
    assert (anna.first_name, anna.language, anna.channel) == ("Anna", "de", "pos")
    assert anna.enrolled_at.isoformat().startswith("2024-02-29T23:00:00")  # Berlin midnight
    emil = rows[good["emil"]]
    assert (emil.external_id, emil.language, emil.channel) == (f"ext-{prog.slug}", "en", "web")
    assert f.verify(db, prog) == []

    again = run_members(db, text, prog, batch_size=500)
    assert again.imported == 0
    assert [n.line for n in again.skipped] == [2, 6, 8, 13, 15]
    assert [n.line for n in again.rejected] == [3, 4, 5, 7, 9, 10, 11, 14]


def test_member_csv_header_is_checked_before_anything_happens(db: Database) -> None:
    with pytest.raises(ImportFileInvalid, match=r"unknown column\(s\) 'shoe_size'.*allowed"):
        members_csv(io.StringIO("email,shoe_size\na@example.com,42\n"))
    with pytest.raises(ImportFileInvalid, match="empty"):
        members_csv(io.StringIO(""))
    with pytest.raises(ImportFileInvalid, match="no identifier column"):
        members_csv(io.StringIO("first_name,last_name\nA,B\n"))
    with pytest.raises(ProgrammeNotFound):
        import_members(db, [], programme="no-such-programme")


def events_file(prog: Programme, member_id: str) -> str:
    def purchase(event_id: str, **extra: object) -> dict[str, object]:
        payload: dict[str, object] = {
            "id": event_id,
            "type": "purchase",
            "programme": prog.slug,
            "member": {"member_id": member_id},
            "occurred_at": "2026-01-10T10:00:00Z",
            "channel": "pos",
            "store": "berlin-01",
            "currency": "EUR",
            "lines": [
                {"sku": "4001", "quantity": 2, "unit_price_minor": 129, "tags": ["organic"]},
                {"sku": "7002", "quantity": 1, "unit_price_minor": 899},
            ],
        }
        payload.update(extra)
        return payload

    def ret(event_id: str, quantity: int) -> dict[str, object]:
        return {
            "id": event_id,
            "type": "return",
            "programme": prog.slug,
            "occurred_at": "2026-01-11T10:00:00Z",
            "original_event_id": f"{prog.slug}-p1",
            "lines": [{"sku": "4001", "quantity": quantity}],
        }

    no_programme = purchase(f"{prog.slug}-p3")
    del no_programme["programme"]
    lines = [
        json.dumps(purchase(f"{prog.slug}-p1")),  # 1
        "",  # 2 blank
        "{not json",  # 3
        "[1, 2]",  # 4
        json.dumps({k: v for k, v in purchase(f"{prog.slug}-x").items() if k != "lines"}),  # 5
        json.dumps(purchase(f"{prog.slug}-u", member={"email": "nobody@example.com"})),  # 6
        json.dumps(purchase(f"{prog.slug}-p2")),  # 7
        json.dumps(ret(f"{prog.slug}-r1", 3)),  # 8 more than bought
        json.dumps(ret(f"{prog.slug}-r2", 1)),  # 9
        json.dumps(no_programme),  # 10
    ]
    return "\n".join(lines) + "\n"


def test_event_import_reports_bad_lines_and_is_idempotent(db: Database) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    text = events_file(prog, str(anna.id))

    def run(default: str | None) -> ImportReport:
        rows = events_jsonl(io.StringIO(text))
        reports = list(import_events(db, rows, batch_size=2, default_programme=default))
        return reports[-1]

    report = run(None)
    assert (report.read, report.imported) == (9, 3)
    reasons = {n.line: (n.code, n.reason) for n in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 8, 10]
    assert reasons[3][1].startswith("not valid JSON")
    assert reasons[4][1] == "expected a JSON object (one event per line)"
    assert reasons[5][1] == "lines: Field required"
    assert reasons[6][0] == "member_not_found"
    assert reasons[8][0] == "return_exceeds_purchase"
    assert reasons[10][1] == "programme: Field required"
    bal = f.balance(db, anna)
    assert bal.available + bal.pending == 11 + 11 - 1  # one milk back: 11.57 -> 10.28

    again = run(prog.slug)  # now the line without a programme gets one
    assert again.imported == 1
    assert [n.line for n in again.skipped] == [1, 7, 9]
    assert sorted(n.line for n in again.rejected) == [3, 4, 5, 6, 8]
    assert f.verify(db, prog) == []

    with pytest.raises(ProgrammeNotFound):
        import_events(db, [], default_programme="no-such-programme")


# --- the CLI ------------------------------------------------------------------------------


def test_cli_member_import_exit_codes_and_rejects_file(
    db: Database, runner: CliRunner, tmp_path: Path
) -> None:
    prog = f.programme(db)
    known = f.member(db, prog)
    text, good = members_file(prog, existing_email=str(known.email))
    source = tmp_path / "members.csv"
    source.write_text(text, encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    args = ["import", "members", str(source), "--programme", prog.slug, "--batch-size", "3"]

    result = runner.invoke(cli.app, [*args, "--rejects", str(rejects)])
    assert result.exit_code == 2, result.output
    assert "line 3: " in result.stderr
    assert "line 14: expected 10 fields" in result.stderr
    assert "Imported 3 of 13 rows; 1 already present; 9 rejected." in result.stdout
    assert "Traceback" not in result.output
    with rejects.open(encoding="utf-8", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in written] == FIRST_RUN_REJECTED
    assert written[0]["email"] == "not-an-email"
    assert written[0]["reason"]

    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2
    assert "Imported 0 of 13 rows; 5 already present; 8 rejected." in result.stdout

    clean = tmp_path / "clean.csv"
    clean.write_text(f"email,first_name\n{good['anna']},Anna\nnew.{prog.slug}@example.com,New\n")
    result = runner.invoke(cli.app, ["import", "members", str(clean), "--programme", prog.slug])
    assert result.exit_code == 0, result.output
    assert "Imported 1 of 2 rows; 1 already present; 0 rejected." in result.stdout


def test_cli_import_fatal_errors_exit_1(db: Database, runner: CliRunner, tmp_path: Path) -> None:
    prog = f.programme(db)
    missing = tmp_path / "nope.csv"
    result = runner.invoke(cli.app, ["import", "members", str(missing), "--programme", prog.slug])
    assert result.exit_code == 1
    assert "no such file" in result.stderr

    source = tmp_path / "m.csv"
    source.write_text("email,favourite_colour\na@example.com,blue\n")
    result = runner.invoke(cli.app, ["import", "members", str(source), "--programme", prog.slug])
    assert result.exit_code == 1
    assert "unknown column(s) 'favourite_colour'" in result.stderr
    assert "allowed columns: email, phone, card_number" in result.stderr

    source.write_text("email\na@example.com\n")
    result = runner.invoke(cli.app, ["import", "members", str(source), "--programme", "nope-x"])
    assert result.exit_code == 1
    assert "no programme 'nope-x'" in result.stderr
    source.write_bytes(b"email\n\xff\xfe@example.com\n")
    result = runner.invoke(cli.app, ["import", "members", str(source), "--programme", prog.slug])
    assert result.exit_code == 1
    assert "not UTF-8" in result.stderr
    result = runner.invoke(cli.app, ["import", "events", str(missing)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_cli_event_import(db: Database, runner: CliRunner, tmp_path: Path) -> None:
    prog = f.programme(db)
    anna = f.member(db, prog)
    source = tmp_path / "events.jsonl"
    source.write_text(events_file(prog, str(anna.id)), encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    args = ["import", "events", str(source), "--programme", prog.slug]

    result = runner.invoke(cli.app, [*args, "--rejects", str(rejects)])
    assert result.exit_code == 2, result.output
    assert "line 6: no member with email 'nobody@example.com'" in result.stderr
    assert "Imported 4 of 9 rows; 0 already present; 5 rejected." in result.stdout
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in written] == [3, 4, 5, 6, 8]
    assert written[0]["event"] == "{not json"
    assert written[3]["event"]["id"] == f"{prog.slug}-u"
    assert written[3]["code"] == "member_not_found"

    good = tmp_path / "good.jsonl"
    good.write_text(source.read_text().splitlines()[0] + "\n")
    result = runner.invoke(cli.app, ["import", "events", str(good)])
    assert result.exit_code == 0, result.output
    assert "Imported 0 of 1 rows; 1 already present; 0 rejected." in result.stdout
    assert f.verify(db, prog) == []


def test_import_errors_are_treu_errors() -> None:
    assert issubclass(ImportFileInvalid, TreuError)


def _has_statistics(db: Database, table: str) -> bool:
    with db.unit_of_work(write=False) as session:
        if db.is_sqlite:
            found = session.execute(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            ).scalar_one()
            return bool(found) and bool(
                session.execute(
                    text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = :t"), {"t": table}
                ).scalar_one()
            )
        return bool(
            session.execute(
                text("SELECT reltuples >= 0 FROM pg_class WHERE relname = :t"), {"t": table}
            ).scalar_one()
        )


def test_an_import_refreshes_the_planner_statistics(fresh_db: Database) -> None:
    """A freshly loaded table has no statistics until autovacuum (PostgreSQL) or an
    ANALYZE (SQLite) gathers them: the import does it, so that the first batches after
    it look members up through the right index."""
    prog = f.programme(fresh_db)
    assert not _has_statistics(fresh_db, "members")
    text_, _ = members_file(prog, "nobody@example.com")
    run_members(fresh_db, text_, prog)
    assert _has_statistics(fresh_db, "members")
    assert _has_statistics(fresh_db, "accounts")
    assert not _has_statistics(fresh_db, "postings")
    buyer = f.member(fresh_db, prog)
    lines = [json.dumps(f.purchase_payload(prog, buyer))]
    list(import_events(fresh_db, events_jsonl(io.StringIO("\n".join(lines) + "\n"))))
    assert _has_statistics(fresh_db, "postings")
