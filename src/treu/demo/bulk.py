"""A large synthetic programme for insights at scale (``treu demo --bulk``).

What it writes, straight into the tables (not through the ingest service: at 20M
purchase lines that would take hours):

* a programme (slug ``synthetic`` unless told otherwise) that earns **no points**
  (``points_per_currency_unit`` 0): its purchases are history for the models, nothing
  the ledger owes anybody;
* ``members`` members, each with an empty points account (``accounts``; no postings, no
  lots: ``treu ledger verify`` finds every balance at 0 and rebuilt as 0);
* their purchases as ``events`` (type ``purchase``, stored result ``earned: 0`` and no
  postings, so none of them looks credited) and about ``purchases`` ``purchase_lines``
  (one row per line; a purchase is a member's lines of one day and channel).

Nothing goes to the outbox (no welcome e-mails or webhooks for invented history), no
returns, no tiers, rules, rewards or campaigns: it is data for ``treu insights train``
and the scale benchmark, not a demo to click through (that is plain ``treu demo``).

The purchases come from ``treu.insights.synthetic.generate`` (BG/NBD and Gamma-Gamma's
story: gamma-distributed purchase rates and dropout), its purchase rate scaled on a
sample so that the whole comes out at about ``purchases`` lines.

Loading: on PostgreSQL every table is written by ``COPY … FROM STDIN`` in chunks of CSV
made by pandas (no Python object per row for the lines); on SQLite by ``executemany`` in
chunks. Everything derives from ``seed`` and ``now``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg
from sqlalchemy import Table
from sqlalchemy.engine import Connection

from treu.db.base import table_of
from treu.db.session import Database
from treu.errors import Invalid
from treu.events.models import Event, PurchaseLine
from treu.imports import EVENT_TABLES, MEMBER_TABLES
from treu.insights import member_metrics, synthetic
from treu.kit.time import utc_now
from treu.ledger.models import Account
from treu.members.models import Member
from treu.programmes.schemas import ProgrammeCreate
from treu.programmes.service import programmes

BULK_SLUG = "synthetic"
CHUNK_ROWS = 500_000
"""Rows per COPY / executemany chunk: bounds the memory of the CSV text."""
CHUNK_MEMBERS = 100_000
"""Members generated and written together (one transaction): bounds the load's memory
whatever the size (a whole 20M-line frame with its ids as text took several GB)."""
HISTORY_DAYS = 730
PILOT_CUSTOMERS = 20_000
NO_HASH = "0" * 64
"""``payload_hash`` of a synthetic event: no payload was ever sent, so a replay of its
key is a conflict (409), never a silent match."""

Progress = Callable[[str, int, int], None]


@dataclass
class BulkSummary:
    programme: str
    members: int = 0
    purchases: int = 0
    """Purchase events."""
    lines: int = 0
    seconds: float = 0.0
    generate_seconds: float = 0.0


def purchase_rate(customers: int, purchases: int, *, seed: int, end: date) -> float:
    """The ``alpha`` (whose inverse scales the purchase rate) at which
    ``synthetic.generate`` gives about ``purchases / customers`` lines per customer over
    the two years before ``end``, tuned on a pilot sample of customers."""
    start = end - timedelta(days=HISTORY_DAYS - 1)
    alpha = 4.0
    pilot = min(customers, PILOT_CUSTOMERS)
    wanted = purchases / customers
    for round_ in range(3):
        sample = synthetic.generate(
            pilot, start=start, end=end, seed=seed + 1 + round_, alpha=alpha
        )
        ratio = max(len(sample) / pilot, 1e-9) / wanted
        if 0.9 < ratio < 1.1:
            break
        alpha = float(np.clip(alpha * ratio, 0.05, 1e4))
    return alpha


def generate_lines(
    customers: int, purchases: int, *, seed: int, end: date, alpha: float
) -> pd.DataFrame:
    """``customers`` customers' purchase lines (``synthetic.generate``'s frame) at
    purchase rate ``alpha``, lines dropped at random if there are more than
    ``purchases``."""
    start = end - timedelta(days=HISTORY_DAYS - 1)
    frame = synthetic.generate(customers, start=start, end=end, seed=seed, alpha=alpha)
    if len(frame) > purchases:
        keep = np.random.default_rng(seed).permutation(len(frame))[:purchases]
        keep.sort()
        frame = frame.iloc[keep].reset_index(drop=True)
    return frame


def _uuid7_hex(
    count: int, moments_ms: npt.NDArray[np.int64], rng: np.random.Generator
) -> list[str]:
    """``count`` UUIDv7 ids (text) for the
    given creation moments: time-ordered like ``kit.ids.new_id`` (see GUIDE.md on why),
    made in whole arrays."""
    raw = np.empty((count, 16), dtype=np.uint8)
    ms = moments_ms.astype(">u8").view(np.uint8).reshape(count, 8)[:, 2:]
    raw[:, :6] = ms
    raw[:, 6:] = rng.integers(0, 256, size=(count, 10), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-"
        f"{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, count * 32, 32)
    ]


def _card_numbers(count: int, first: int = 0) -> list[str]:
    """16-digit card numbers with a valid Luhn digit: prefix 9299 (synthetic) and a
    running number from ``first``."""
    body = np.arange(first, first + count, dtype=np.int64) + 10**10
    digits = np.stack([(body // 10**k) % 10 for k in range(11)], axis=1)  # k=0: last digit
    prefix = np.array([9, 2, 9, 9][::-1], dtype=np.int64)  # 9299 from the right
    all_digits = np.concatenate([digits, np.tile(prefix, (count, 1))], axis=1)
    doubled = all_digits.copy()
    doubled[:, 0::2] *= 2  # from the right, every other digit starting with the last
    doubled[doubled > 9] -= 9
    check = (10 - doubled.sum(axis=1) % 10) % 10
    return [f"9299{b:011d}{c}" for b, c in zip(body.tolist(), check.tolist(), strict=True)]


def load_bulk(
    db: Database,
    *,
    members: int,
    purchases: int,
    seed: int = 1,
    now: datetime | None = None,
    slug: str = BULK_SLUG,
    on_progress: Progress | None = None,
) -> BulkSummary:
    """Create the programme ``slug`` and load ``members`` members with about
    ``purchases`` purchase lines (see the module docstring). Raises ``ProgrammeExists``
    when the programme is there already (nothing is written)."""
    started = time.perf_counter()
    now = now or utc_now()
    report = on_progress or (lambda stage, done, total: None)
    summary = BulkSummary(programme=slug)

    if members < 1 or purchases < 1:
        raise Invalid(
            f"a bulk load needs at least one member and one purchase line "
            f"(--members {members}, --purchases {purchases})"
        )
    data = ProgrammeCreate.model_validate(
        {
            "slug": slug,
            "name": "Synthetic history",
            "currency": "EUR",
            "points_per_currency_unit": 0,
            "pending_days": 0,
            "expiry": {"policy": "never"},
        }
    )
    # The purchase rate before the programme exists: nothing is left behind if it fails.
    end = (pd.Timestamp(now).tz_convert(data.timezone) - pd.Timedelta(days=1)).date()
    alpha = purchase_rate(members, purchases, seed=seed, end=end)
    with db.unit_of_work() as session:
        programme = programmes.create(session, data=data)
        programme_id, tz = programme.id, programme.timezone
    ids = np.random.default_rng()  # ids unique on every load: never from the seed
    report("members", 0, members)
    report("lines", 0, purchases)
    for first_member in range(0, members, CHUNK_MEMBERS):
        count = min(CHUNK_MEMBERS, members - first_member)
        chunk_seed = seed + 1000 * (first_member // CHUNK_MEMBERS + 1)
        begun = time.perf_counter()
        lines = generate_lines(
            count,
            round(purchases * (first_member + count) / members) - summary.lines,
            seed=chunk_seed,
            end=end,
            alpha=alpha,
        )
        summary.generate_seconds += time.perf_counter() - begun
        frames = _frames(
            lines,
            count,
            programme_id=programme_id,
            tz=tz,
            end=end,
            now=now,
            rng=np.random.default_rng(chunk_seed + 7919),
            ids=ids,
            first_member=first_member,
            first_event=summary.purchases,
        )
        del lines
        members_frame, accounts, events, lines_frame = frames
        with db.write_engine.begin() as connection:
            _write(connection, table_of(Member), members_frame)
            _write(connection, table_of(Account), accounts)
            _write(connection, table_of(Event), events)
            _write(connection, table_of(PurchaseLine), lines_frame)
        summary.members += len(members_frame)
        summary.purchases += len(events)
        summary.lines += len(lines_frame)
        report("members", summary.members, members)
        report("lines", summary.lines, max(purchases, summary.lines))
        del frames, members_frame, accounts, events, lines_frame
    with db.write_engine.begin() as connection:
        # The events' ids were made from their dates: a refresh that ran during the load
        # set its mark above most of them; the next one must read them all.
        member_metrics.forget(connection, programme_id)
    db.analyze(MEMBER_TABLES)
    db.analyze(EVENT_TABLES)
    summary.seconds = time.perf_counter() - started
    return summary


def _frames(
    lines: pd.DataFrame,
    members: int,
    *,
    programme_id: uuid.UUID,
    tz: str,
    end: date,
    now: datetime,
    rng: np.random.Generator,
    ids: np.random.Generator,
    first_member: int,
    first_event: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rows of ``members`` members and their lines for the four tables, each sorted by
    time (ids are time-ordered, so the primary keys and time indexes take them in order)."""
    # Members: customer i of the generator is member i; enrolled on their first day.
    codes = pd.Categorical(lines["customer_id"])
    index = np.asarray(codes.codes, dtype=np.int64)
    # Customers whose every line fell to the trimming are members who never bought:
    # enrolled on a random day of the window.
    count = max(members, len(codes.categories))
    first_day = pd.Series(lines["date"].to_numpy()).groupby(index).min().reindex(range(count))
    never = first_day.isna().to_numpy()
    window = pd.Timestamp(end) - pd.to_timedelta(rng.integers(0, HISTORY_DAYS, count), unit="D")
    first_day = first_day.where(~never, pd.Series(window))
    usual_channel = _usual(index, lines["channel"], count)
    # Enrolled in the hour before the shop opens on their first day: before any purchase
    # of that day (made between 08:00 and 20:00), as the service enrols at the first event.
    enrolled = _local_to_utc(first_day.to_numpy(), rng.integers(7 * 60, 8 * 60, len(first_day)), tz)
    member_ids = _uuid7_hex(count, _ms(enrolled), ids)
    members_frame = pd.DataFrame(
        {
            "id": member_ids,
            "programme_id": programme_id.hex,
            "status": "active",
            "card_number": _card_numbers(count, first_member),
            "language": np.where(rng.random(count) < 0.8, "de", "en"),
            "attributes": "{}",
            "channel": usual_channel,
            "enrolled_at": enrolled,
            "created_at": now,
            "updated_at": now,
        }
    )
    accounts = pd.DataFrame(
        {
            "member_id": member_ids,
            "programme_id": programme_id.hex,
            "available": 0,
            "pending": 0,
            "lifetime_earned": 0,
            "updated_at": now,
        }
    )
    by_time = np.argsort(_ms(enrolled), kind="stable")
    members_frame = members_frame.iloc[by_time]
    accounts = accounts.iloc[by_time]

    # Purchases: a member's lines of one day and channel are one purchase event,
    # numbered in time order.
    day = lines["date"].to_numpy()
    channel = lines["channel"].astype(str).to_numpy()
    keys = pd.DataFrame({"c": index, "d": day, "ch": channel})
    event_of_line = keys.groupby(["c", "d", "ch"], sort=False).ngroup().to_numpy()
    first = np.unique(event_of_line, return_index=True)[1]
    events_count = len(first)
    minutes = rng.integers(8 * 60, 20 * 60, events_count)
    occurred = _local_to_utc(day[first], minutes, tz)
    rank = np.empty(events_count, dtype=np.int64)
    rank[np.argsort(_ms(occurred), kind="stable")] = np.arange(events_count)
    event_of_line = rank[event_of_line]  # events renumbered by time
    first = first[np.argsort(rank, kind="stable")]
    occurred = occurred.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
    line_minor = np.maximum(np.round(lines["amount"].to_numpy() * 100).astype(np.int64), 1)
    total_minor = np.bincount(event_of_line, weights=line_minor, minlength=events_count).astype(
        np.int64
    )
    event_member = index[first]
    event_ids = _uuid7_hex(events_count, _ms(occurred), ids)
    event_keys = [f"syn-{first_event + i:09d}" for i in range(events_count)]
    member_of_event = [member_ids[m] for m in event_member.tolist()]
    head = '{"event_id": "'
    middle = '", "type": "purchase", "member_id": "'
    tail = (
        '", "points": {"earned": 0, "available": 0, "pending": 0, "reversed": 0}, '
        '"balance": {"available": 0, "pending": 0}, "postings": [], "synthetic": true}'
    )
    result = [
        head + k + middle + m + tail for k, m in zip(event_keys, member_of_event, strict=True)
    ]
    events = pd.DataFrame(
        {
            "id": event_ids,
            "programme_id": programme_id.hex,
            "key": event_keys,
            "type": "purchase",
            "member_id": member_of_event,
            "payload_hash": NO_HASH,
            "occurred_at": occurred,
            "received_at": now,
            "channel": channel[first],
            "currency": "EUR",
            "total_minor": total_minor,
            "data": '{"earned": 0, "awards": {}, "reversed": 0, "blocked": false, '
            '"synthetic": true}',
            "result": result,
        }
    )
    # Lines in event (= time) order, numbered within their event.
    order = np.argsort(event_of_line, kind="stable")
    sorted_events = event_of_line[order]
    starts = np.searchsorted(sorted_events, sorted_events, side="left")
    line_no = np.arange(len(order)) - starts + 1
    category = lines["category"].astype(str).to_numpy()[order]
    lines_frame = pd.DataFrame(
        {
            "event_id": np.asarray(event_ids, dtype=object)[sorted_events],
            "programme_id": programme_id.hex,
            "member_id": np.asarray(member_ids, dtype=object)[index[order]],
            "occurred_at": occurred.array[sorted_events],
            "line_no": line_no,
            "sku": lines["item"].astype(str).to_numpy()[order],
            "category": category,
            "quantity": 1,
            "unit_price_minor": line_minor[order],
            "tags": np.where(category == "organic", '["organic"]', "[]"),
            "returned_quantity": 0,
        }
    )
    return members_frame, accounts, events, lines_frame


def _usual(index: npt.NDArray[np.int64], channel: pd.Series, count: int) -> npt.NDArray[Any]:
    """Each customer's most frequent channel (``members.channel``)."""
    codes = pd.Categorical(channel)
    table = np.zeros((count, len(codes.categories)), dtype=np.int64)
    np.add.at(table, (index, np.asarray(codes.codes, dtype=np.int64)), 1)
    usual: npt.NDArray[Any] = np.asarray(codes.categories, dtype=object)[table.argmax(axis=1)]
    return usual


def _local_to_utc(days: npt.NDArray[Any], minutes: npt.NDArray[np.int64], tz: str) -> pd.Series:
    """Days (no time zone) plus minutes after midnight, local in ``tz``, as UTC moments.
    Between 08:00 and 20:00 no daylight-saving change makes a moment ambiguous."""
    local = pd.to_datetime(days) + pd.to_timedelta(minutes, unit="min")
    return pd.Series(local).dt.tz_localize(tz).dt.tz_convert("UTC")


def _ms(moments: pd.Series) -> npt.NDArray[np.int64]:
    return np.asarray(moments.dt.as_unit("ms").astype("int64").to_numpy(), dtype=np.int64)


def _write(connection: Connection, table: Table, frame: pd.DataFrame) -> None:
    """Write ``frame`` (columns named as the table's) in chunks."""
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        sql = f'COPY "{table.name}" ({columns}) FROM STDIN (FORMAT csv)'
        with raw.cursor() as cursor:
            # Moments go out as UTC text without an offset (numpy formats them in C;
            # pandas' own formatting of aware datetimes was half the CPU of a load).
            cursor.execute("SET LOCAL TimeZone = 'UTC'")
            for _done, chunk in _chunks(frame):
                text = _as_text(chunk).to_csv(index=False, header=False)
                with cursor.copy(sql) as copy:
                    copy.write(text)
        return
    for _done, chunk in _chunks(frame):
        connection.execute(table.insert(), _sqlite_rows(table, chunk))


def _as_text(chunk: pd.DataFrame) -> pd.DataFrame:
    """Aware datetime columns as naive UTC ISO text (``np.datetime_as_string``)."""
    out = {}
    for name in chunk.columns:
        column = chunk[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            values = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
            out[name] = np.datetime_as_string(values, unit="us")
        else:
            out[name] = column.to_numpy()
    return pd.DataFrame(out)


def _chunks(frame: pd.DataFrame) -> Iterator[tuple[int, pd.DataFrame]]:
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        yield start + len(chunk), chunk


def _sqlite_rows(table: Table, chunk: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as SQLAlchemy wants them (UUID objects, aware datetimes, parsed JSON)."""
    import orjson

    out: dict[str, list[Any]] = {}
    for name in chunk.columns:
        column = chunk[name]
        kind = str(table.c[name].type).upper()
        if kind in ("UUID", "CHAR(32)"):
            out[name] = [uuid.UUID(v) for v in column.tolist()]
        elif kind == "JSON":
            out[name] = [orjson.loads(v) for v in column.tolist()]
        elif isinstance(column.dtype, pd.DatetimeTZDtype):
            out[name] = list(column.dt.to_pydatetime())
        else:
            out[name] = [v.item() if isinstance(v, np.generic) else v for v in column.tolist()]
    names = list(out)
    return [dict(zip(names, values, strict=True)) for values in zip(*out.values(), strict=True)]
