"""Bulk imports of members (CSV) and events (JSON Lines), shared by the CLI and tests.

Both importers take a ``Database`` and an iterable of ``SourceRow`` (line number plus the
raw row), commit in batches, and yield the running ``ImportReport`` after each batch so
a caller can draw progress. Re-running an import is safe:

* events are idempotent by id: a replay changes nothing and counts as *skipped*;
* a member whose email, phone, card number or external id already belongs to a member
  of the programme is *skipped*, never duplicated.

A bad row never spoils its batch. Member rows are validated before anything is written
and each enrolment runs inside a SAVEPOINT, so a failure (say, a concurrent enrolment
took the same email) rolls back that row only. The events service already gives every
event of a batch its own outcome.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from treu.db.session import Database
from treu.errors import Invalid, TreuError
from treu.events.schemas import AnyEvent, event_adapter
from treu.events.service import ingest_with_retry
from treu.kit.time import CLOCK_SKEW, utc_now
from treu.ledger.service import ledger
from treu.members.models import IDENTIFIER_FIELDS, Member
from treu.members.schemas import MemberCreate
from treu.members.service import members
from treu.programmes.models import Programme
from treu.programmes.service import programmes

MEMBER_COLUMNS = (
    "email",
    "phone",
    "card_number",
    "external_id",
    "first_name",
    "last_name",
    "birthday",
    "language",
    "channel",
    "enrolled_at",
)
MEMBER_BATCH_SIZE = 500
EVENT_BATCH_SIZE = 1000


class ImportFileInvalid(Invalid):
    """The file as a whole cannot be imported (no header, unknown columns, ...)."""

    code = "import_file_invalid"
    title = "Import file invalid"


@dataclass(frozen=True)
class SourceRow:
    line: int
    """Line number in the file (1-based; for CSV the line the row starts on)."""
    data: Any
    """CSV: ``dict`` column → text (or the list of fields of a malformed row).
    JSON Lines: the line's text."""
    problem: str | None = None
    """Why the row could not even be read (e.g. the wrong number of fields)."""


@dataclass(frozen=True)
class RowNote:
    line: int
    reason: str
    data: Any
    code: str | None = None


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    skipped: list[RowNote] = field(default_factory=list)
    """Rows already present: replayed events, members already enrolled."""
    rejected: list[RowNote] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def in_line_order(self) -> ImportReport:
        """Rows are judged in two steps (reading, then writing), so notes arrive out of
        order; sorting keeps the report in file order."""
        self.rejected.sort(key=lambda note: note.line)
        self.skipped.sort(key=lambda note: note.line)
        return self


MEMBER_TABLES = ("members", "accounts")
EVENT_TABLES = ("events", "purchase_lines", "postings", "lots", "accounts")
"""The tables an import fills: their planner statistics are refreshed at its end
(``Database.analyze``)."""


def describe(exc: ValidationError, *, drop_tags: Iterable[str] = ()) -> str:
    """A validation error as one readable sentence: ``field: message; field: message``."""
    tags = set(drop_tags)
    parts = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        if loc and loc[0] in tags:  # the discriminator tag of a tagged union
            loc = loc[1:]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(parts)


# --- reading files -----------------------------------------------------------------------


def members_csv(stream: TextIO) -> Iterator[SourceRow]:
    """Rows of a members CSV. The header is read (and checked) at once, so a file with
    unknown columns fails before anything is imported."""
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileInvalid(
            "the file is empty; expected a header line with columns such as "
            + ", ".join(MEMBER_COLUMNS)
        ) from None
    except csv.Error as exc:
        raise ImportFileInvalid(f"line 1: the header is not valid CSV ({exc})") from None
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name not in MEMBER_COLUMNS]
    if unknown:
        raise ImportFileInvalid(
            f"unknown column(s) {', '.join(repr(c) for c in unknown)} in the header; "
            f"allowed columns: {', '.join(MEMBER_COLUMNS)}"
        )
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ImportFileInvalid(f"column(s) {', '.join(duplicates)} appear more than once")
    if not set(columns) & set(IDENTIFIER_FIELDS):
        raise ImportFileInvalid(
            "the header names no identifier column; at least one of "
            f"{', '.join(IDENTIFIER_FIELDS)} is required"
        )
    return _csv_rows(reader, columns)


def _csv_rows(reader: Any, columns: list[str]) -> Iterator[SourceRow]:
    previous_end = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = previous_end + 1
            previous_end = reader.line_num
            yield SourceRow(line, [], problem=f"not valid CSV ({exc})")
            continue
        line = previous_end + 1
        previous_end = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(columns):
            problem = f"expected {len(columns)} fields as in the header, found {len(values)}"
            yield SourceRow(line, values, problem=problem)
            continue
        yield SourceRow(line, dict(zip(columns, values, strict=True)))


def events_jsonl(stream: TextIO) -> Iterator[SourceRow]:
    """Non-blank lines of a JSON Lines file, with their line numbers."""
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield SourceRow(number, text.rstrip("\r\n"))


# --- members -----------------------------------------------------------------------------


class _RowInvalid(Exception):
    def __init__(self, reason: str, code: str = "validation_error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _enrolled_at(value: str, programme: Programme, now: datetime) -> datetime:
    """An ISO datetime with a zone, or a plain date (midnight in the programme's zone).
    A datetime without a zone is ambiguous and rejected rather than guessed."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            parsed = datetime.combine(day, time(0), tzinfo=ZoneInfo(programme.timezone))
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _RowInvalid(
            f"enrolled_at: {value!r} is not a date (2024-03-01) or a date and time with a "
            "zone (2024-03-01T09:30:00Z)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _RowInvalid(
            f"enrolled_at: {value!r} has no time zone; write e.g. 2024-03-01T09:30:00Z"
        )
    if parsed > now + CLOCK_SKEW:
        raise _RowInvalid(f"enrolled_at: {value!r} lies in the future")
    return parsed


def member_data(programme: Programme, data: dict[str, Any], *, now: datetime) -> MemberCreate:
    """Validate one CSV row into ``MemberCreate`` (empty cells are absent values)."""
    values: dict[str, Any] = {
        key: value.strip() for key, value in data.items() if value and value.strip()
    }
    if "enrolled_at" in values:
        values["enrolled_at"] = _enrolled_at(values["enrolled_at"], programme, now)
    if "language" in values:
        values["language"] = values["language"].lower()
    if "channel" in values:
        values["channel"] = values["channel"].lower()
    try:
        return MemberCreate.model_validate({"programme": programme.slug, **values})
    except ValidationError as exc:
        raise _RowInvalid(describe(exc)) from None


def _identifiers(data: MemberCreate) -> list[tuple[str, str]]:
    return [(f, str(getattr(data, f))) for f in IDENTIFIER_FIELDS if getattr(data, f)]


def _existing(
    session: Session, programme_id: Any, wanted: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of the (identifier kind, value) pairs already belong to a member."""
    by_kind: dict[str, set[str]] = {}
    for kind, value in wanted:
        by_kind.setdefault(kind, set()).add(value)
    if not by_kind:
        return set()
    rows = session.execute(
        select(Member.email, Member.phone, Member.card_number, Member.external_id).where(
            Member.programme_id == programme_id,
            or_(*(getattr(Member, kind).in_(values) for kind, values in by_kind.items())),
        )
    ).all()
    found: set[tuple[str, str]] = set()
    for row in rows:
        for kind in IDENTIFIER_FIELDS:
            value = getattr(row, kind)
            if value is not None and value in by_kind.get(kind, ()):
                found.add((kind, value))
    return found


def import_members(
    db: Database,
    rows: Iterable[SourceRow],
    *,
    programme: str,
    batch_size: int = MEMBER_BATCH_SIZE,
    now: datetime | None = None,
) -> Iterator[ImportReport]:
    """Enrol the members of ``rows`` into ``programme``; yields the report after each
    batch. The programme is looked up at once (``ProgrammeNotFound`` before any work)."""
    if batch_size < 1:
        raise Invalid("the batch size must be at least 1")
    with db.unit_of_work(write=False) as session:
        prog = programmes.get(session, programme)
    return _import_members(db, rows, prog, batch_size, now or utc_now())


def _import_members(
    db: Database, rows: Iterable[SourceRow], prog: Programme, batch_size: int, now: datetime
) -> Iterator[ImportReport]:
    report = ImportReport()
    seen: dict[tuple[str, str], int] = {}
    batch: list[tuple[SourceRow, MemberCreate]] = []
    for row in rows:
        report.read += 1
        try:
            if row.problem is not None:
                raise _RowInvalid(row.problem, code="malformed_row")
            batch.append((row, member_data(prog, row.data, now=now)))
        except _RowInvalid as exc:
            report.rejected.append(RowNote(row.line, exc.reason, row.data, exc.code))
        if len(batch) >= batch_size:
            _enrol_batch(db, prog, batch, report, seen)
            batch = []
            yield report.in_line_order()
    if batch:
        _enrol_batch(db, prog, batch, report, seen)
    if report.read:
        db.analyze(MEMBER_TABLES)
    yield report.in_line_order()


def _enrol_batch(
    db: Database,
    prog: Programme,
    batch: list[tuple[SourceRow, MemberCreate]],
    report: ImportReport,
    seen: dict[tuple[str, str], int],
) -> None:
    with db.unit_of_work() as session:
        programme = programmes.get(session, prog.id)
        writer = ledger.writer(session)
        present = _existing(
            session, programme.id, [ident for _, data in batch for ident in _identifiers(data)]
        )
        for row, data in batch:
            idents = _identifiers(data)
            # A twin of a row imported earlier in this run is a mistake in the file,
            # whichever batch it falls into; a member from before the run is no mistake.
            twin = next((i for i in idents if i in seen), None)
            if twin is not None:
                report.rejected.append(
                    RowNote(
                        row.line,
                        f"{twin[0]} {twin[1]!r} is used on line {seen[twin]} already",
                        row.data,
                        "duplicate_row",
                    )
                )
                continue
            taken = next((i for i in idents if i in present), None)
            if taken is not None:
                report.skipped.append(
                    RowNote(row.line, f"already a member ({taken[0]} {taken[1]!r})", row.data)
                )
                continue
            try:
                with session.begin_nested():
                    members.enrol(session, programme=programme, data=data, writer=writer)
            except TreuError as exc:
                report.rejected.append(RowNote(row.line, exc.detail, row.data, exc.code))
                continue
            for ident in idents:
                seen[ident] = row.line
            report.imported += 1


# --- events ------------------------------------------------------------------------------


def _parse_event(row: SourceRow, default_programme: str | None) -> AnyEvent:
    try:
        payload = json.loads(row.data)
    except json.JSONDecodeError as exc:
        raise _RowInvalid(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(payload, dict):
        raise _RowInvalid("expected a JSON object (one event per line)")
    if default_programme is not None and "programme" not in payload:
        payload["programme"] = default_programme
    try:
        return event_adapter.validate_python(payload)
    except ValidationError as exc:
        raise _RowInvalid(describe(exc, drop_tags=("purchase", "return"))) from None


def import_events(
    db: Database,
    rows: Iterable[SourceRow],
    *,
    batch_size: int = EVENT_BATCH_SIZE,
    default_programme: str | None = None,
    now: datetime | None = None,
) -> Iterator[ImportReport]:
    """Ingest the events of ``rows`` in batches (each its own unit of work, with the
    service's retry on a unique-constraint race); yields the report after each batch.

    ``default_programme`` fills in ``programme`` for events that leave it out; it is
    checked at once (``ProgrammeNotFound`` before any work)."""
    if batch_size < 1:
        raise Invalid("the batch size must be at least 1")
    if default_programme is not None:
        with db.unit_of_work(write=False) as session:
            default_programme = programmes.get(session, default_programme).slug
    return _import_events(db, rows, batch_size, default_programme, now)


def _import_events(
    db: Database,
    rows: Iterable[SourceRow],
    batch_size: int,
    default_programme: str | None,
    now: datetime | None,
) -> Iterator[ImportReport]:
    report = ImportReport()
    batch: list[tuple[SourceRow, AnyEvent]] = []
    for row in rows:
        report.read += 1
        try:
            if row.problem is not None:
                raise _RowInvalid(row.problem, code="malformed_row")
            batch.append((row, _parse_event(row, default_programme)))
        except _RowInvalid as exc:
            report.rejected.append(RowNote(row.line, exc.reason, row.data, exc.code))
        if len(batch) >= batch_size:
            _ingest_batch(db, batch, report, now)
            batch = []
            yield report.in_line_order()
    if batch:
        _ingest_batch(db, batch, report, now)
    if report.read:
        db.analyze(EVENT_TABLES)
    yield report.in_line_order()


def _ingest_batch(
    db: Database,
    batch: list[tuple[SourceRow, AnyEvent]],
    report: ImportReport,
    now: datetime | None,
) -> None:
    outcomes = ingest_with_retry(db, [event for _, event in batch], now=now)
    for (row, _), outcome in zip(batch, outcomes, strict=True):
        if outcome.error is not None:
            report.rejected.append(
                RowNote(row.line, outcome.error.detail, row.data, outcome.error.code)
            )
        elif outcome.status == 200:
            report.skipped.append(RowNote(row.line, "already received (replay)", row.data))
        else:
            report.imported += 1
