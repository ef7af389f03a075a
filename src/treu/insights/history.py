"""One programme's purchase history from the database, as the analyst frame.

``read_history`` returns the frame the analyst commands read from a file
(``treu.insights.purchases``), with two more columns, one row per purchase line:

* ``customer_id`` — the member's id as text;
* ``date`` — the day of the purchase in the programme's time zone (``datetime64``, no
  time zone), as a calendar day is what a customer's "one purchase a day" means;
* ``amount`` — the line's value net of returns, in the currency's major unit (float:
  analytics only): ``(quantity - returned_quantity) * unit_price_minor``. A line that
  came back in full is left out (the purchase did not stand);
* ``item`` — the SKU; ``category`` — the line's category (``""`` when it has none);
  ``channel`` — the purchase's channel (pos, web, app, phone, other);
* ``organic`` — whether the line is tagged ``organic`` (or its category is), bool.

Anonymous purchases (no member) are left out: nothing can be said about whose they are.

The text columns are pandas ``category`` columns: at 20M lines a million member ids as
Python strings would take gigabytes, as categories they are one string each plus a 4-byte
code per line. ``groupby`` on them should pass ``observed=True``.

Speed: on PostgreSQL the query runs as ``COPY (SELECT …) TO STDOUT`` through psycopg and
its CSV text goes straight into ``pandas.read_csv`` (the C parser): no Python object per
row. The day is computed by the database (``AT TIME ZONE``) and travels as an integer.
``copy_floor`` runs the same COPY and throws the bytes away: what reading cannot beat
(benchmarks/insights_scale.py reports both). On SQLite it is one plain query.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.events.models import Event, PurchaseLine
from treu.kit.money import currency_exponent
from treu.programmes.models import Programme

COLUMNS = ("customer_id", "date", "amount", "item", "category", "channel", "organic")

_EPOCH = pd.Timestamp("1970-01-01")

# The PostgreSQL query: one row per line still (partly) kept, day as days since 1970 in
# the programme's time zone. %(...)s are psycopg parameters.
_PG_SELECT = """
SELECT l.member_id,
       ((l.occurred_at AT TIME ZONE %(tz)s)::date - DATE '1970-01-01') AS day,
       (l.quantity - l.returned_quantity)::bigint * l.unit_price_minor AS net_minor,
       l.sku,
       coalesce(l.category, '') AS category,
       coalesce(e.channel, ''),
       (l.tags::text LIKE '%%"organic"%%' OR coalesce(l.category, '') = 'organic')::int
FROM purchase_lines l
JOIN events e ON e.id = l.event_id
WHERE l.programme_id = %(programme)s
  AND l.member_id IS NOT NULL
  AND l.quantity > l.returned_quantity
"""


def _pg_query(until: datetime | None) -> str:
    where = "  AND l.occurred_at < %(until)s\n" if until is not None else ""
    return f"COPY ({_PG_SELECT}{where}) TO STDOUT (FORMAT csv)"


def _params(programme: Programme, until: datetime | None) -> dict[str, Any]:
    params: dict[str, Any] = {"tz": programme.timezone, "programme": programme.id}
    if until is not None:
        params["until"] = until
    return params


def read_history(
    session: Session, *, programme: Programme, until: datetime | None = None
) -> pd.DataFrame:
    """The programme's purchase lines as the analyst frame (see the module docstring);
    with ``until``, only lines bought before that moment."""
    scale = 10.0 ** currency_exponent(programme.currency)
    if session.get_bind().dialect.name == "postgresql":
        return _read_postgresql(session, programme, until, scale)
    return _read_plain(session, programme, until, scale)


def _raw_connection(session: Session) -> psycopg.Connection[Any]:
    raw = session.connection().connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


WORK_MEM = "256MB"
"""For the join of lines and events (a hash of the programme's events): with the server's
default (4MB) it spills to disk in batches at millions of events."""


def _copy_chunks(session: Session, programme: Programme, until: datetime | None) -> Iterator[Any]:
    with _raw_connection(session).cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        with cursor.copy(_pg_query(until), _params(programme, until)) as copy:
            yield from copy


def copy_floor(session: Session, *, programme: Programme, until: datetime | None = None) -> int:
    """Run ``read_history``'s COPY through psycopg alone and discard what comes back:
    the time this takes is the floor of reading (the database's work and the transfer).
    Returns the bytes received."""
    return sum(len(chunk) for chunk in _copy_chunks(session, programme, until))


def _read_postgresql(
    session: Session, programme: Programme, until: datetime | None, scale: float
) -> pd.DataFrame:
    buffer = io.BytesIO()
    for chunk in _copy_chunks(session, programme, until):
        buffer.write(chunk)
    size = buffer.tell()
    buffer.seek(0)
    if size == 0:
        return _empty()
    raw = pd.read_csv(
        buffer,
        header=None,
        names=["customer_id", "day", "net_minor", "item", "category", "channel", "organic"],
        dtype={
            "customer_id": "category",
            "day": np.int32,
            "net_minor": np.int64,
            "item": "category",
            "category": "category",
            "channel": "category",
            "organic": np.int8,
        },
        keep_default_na=False,
        na_filter=False,
        engine="c",
    )
    del buffer
    return _frame(
        raw["customer_id"],
        raw["day"].to_numpy(),
        raw["net_minor"].to_numpy(),
        raw["item"],
        raw["category"],
        raw["channel"],
        raw["organic"].to_numpy().astype(bool),
        scale,
    )


def _read_plain(
    session: Session, programme: Programme, until: datetime | None, scale: float
) -> pd.DataFrame:
    line, event = PurchaseLine, Event
    query = (
        select(
            line.member_id,
            line.occurred_at,
            line.quantity - line.returned_quantity,
            line.unit_price_minor,
            line.sku,
            line.category,
            event.channel,
            line.tags,
        )
        .join(event, event.id == line.event_id)
        .where(
            line.programme_id == programme.id,
            line.member_id.is_not(None),
            line.quantity > line.returned_quantity,
        )
    )
    if until is not None:
        query = query.where(line.occurred_at < until)
    rows = session.execute(query).all()
    if not rows:
        return _empty()
    members, moments, kept, prices, skus, categories, channels, tags = zip(*rows, strict=True)
    local = (
        pd.to_datetime(pd.Series(moments), utc=True)
        .dt.tz_convert(programme.timezone)
        .dt.tz_localize(None)
        .dt.normalize()
    )
    days = ((local - _EPOCH) // pd.Timedelta(days=1)).to_numpy()
    net = np.asarray(kept, dtype=np.int64) * np.asarray(prices, dtype=np.int64)
    return _frame(
        pd.Series([str(m) for m in members], dtype="category"),
        days,
        net,
        pd.Series(skus, dtype="category"),
        pd.Series([c or "" for c in categories], dtype="category"),
        pd.Series([c or "" for c in channels], dtype="category"),
        np.array(
            [
                "organic" in (t or ()) or c == "organic"
                for t, c in zip(tags, categories, strict=True)
            ],
            dtype=bool,
        ),
        scale,
    )


def _frame(
    customers: pd.Series,
    days: np.ndarray[Any, Any],
    net_minor: np.ndarray[Any, Any],
    items: pd.Series,
    categories: pd.Series,
    channels: pd.Series,
    organic: np.ndarray[Any, Any],
    scale: float,
) -> pd.DataFrame:
    dates = _EPOCH + pd.to_timedelta(days.astype(np.int64), unit="D")
    return pd.DataFrame(
        {
            "customer_id": customers.array,
            "date": np.asarray(dates, dtype="datetime64[ns]"),
            "amount": net_minor.astype(np.float64) / scale,
            "item": items.array,
            "category": categories.array,
            "channel": channels.array,
            "organic": organic,
        }
    )


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype="category"),
            "date": pd.Series([], dtype="datetime64[ns]"),
            "amount": pd.Series([], dtype=np.float64),
            "item": pd.Series([], dtype="category"),
            "category": pd.Series([], dtype="category"),
            "channel": pd.Series([], dtype="category"),
            "organic": pd.Series([], dtype=bool),
        }
    )


def member_uuid(customer_id: str) -> uuid.UUID:
    """A frame's ``customer_id`` back as the member's id."""
    return uuid.UUID(customer_id)
