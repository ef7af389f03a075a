"""Member metrics for a whole programme, read set-based: the purchase aggregates as kept
per member by the refresh (``treu.insights.member_metrics``: only members whose rows
changed since the last refresh are aggregated again from their events), the members,
consents and scores as they are, then vectorised pandas. No statement and no Python loop
per member.

The result, ``MemberTable``, is what segment expressions are evaluated over
(``treu.insights.vector``) and what RFM scores are computed from (``treu.insights.rfm``):
one row per active member (position ``0..n-1``), scalar columns in ``columns`` and
set-valued fields ("which channels did they buy through") as long pairs of
(row position, value) in ``sets``.

Definitions (docs/segments.md lists them for staff):

* A *purchase* is an event of type ``purchase``; a *return* (type ``return``) carries a
  negative ``total_minor``. Spend is purchases plus returns in the window (net of what
  came back, dated when it came back); frequency counts purchases only.
* Windows are the last 90 / 365 days before ``now`` (``now - 90 days < occurred_at <=
  now``); events after ``now`` are ignored.
* ``recency_days`` is whole days since the latest purchase ever (None without one).
* Channels are those of purchases in 365 days; categories and tags those of purchase
  lines in 365 days; engagement counts events of any other type (reviews, check-ins, …).
* Consents: the channels whose latest consent row is a grant (what marketing needs).
* ``days_enrolled`` and ``birthday_month`` are counted in the programme's time zone, as
  rule conditions count them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    cast,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.insights import member_metrics
from treu.insights.member_metrics import COUNTS as _COUNTS
from treu.kit.time import utc_now
from treu.members.models import Member, MemberStatus
from treu.messaging.models import Consent
from treu.programmes.models import Programme
from treu.segments.models import MemberMetrics, MemberMetricValue, MemberScore
from treu.segments.scores import psycopg_of
from treu.tiers.models import MemberTier

DAY_SECONDS = 86_400
WORK_MEM = "256MB"
"""PostgreSQL's ``work_mem`` for the metrics' unit of work (``SET LOCAL``)."""


@dataclass
class MemberTable:
    """The active members of one programme with their attributes, metrics and scores."""

    member_ids: Sequence[Any]
    """Member ids by position: ``uuid.UUID``, or on PostgreSQL their text (made into
    ids only where needed: ``ids_of``)."""
    columns: pd.DataFrame
    """Scalar fields by qualified name (``member.tier``, ``metrics.spend_365``, …):
    numbers as float64 with NaN for None (or int64 / bool when never None), text as
    strings (pandas' string dtype: a missing one reads as NaN)."""
    sets: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = field(default_factory=dict)
    """Set-valued fields by qualified name: (row positions, values), one pair per
    element, no duplicates."""
    now: datetime = field(default_factory=utc_now)

    def __len__(self) -> int:
        return len(self.member_ids)

    def ids_of(self, at: Sequence[int] | np.ndarray[Any, Any] | None) -> list[uuid.UUID]:
        """The member ids at positions ``at`` (None: every member)."""
        chosen = self.member_ids if at is None else [self.member_ids[int(i)] for i in at]
        return [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in chosen]


def read_frame(connection: Connection, statement: Any, names: list[str]) -> pd.DataFrame:
    """The rows of ``statement`` as a DataFrame. On PostgreSQL through psycopg's cursor
    (SQLAlchemy's row processing costs about as much as the query at a million rows);
    timestamps come back aware either way."""
    if connection.dialect.name == "postgresql":
        compiled = statement.compile(
            dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
        )
        with psycopg_of(connection).cursor() as cursor:
            cursor.execute(str(compiled), compiled.params)
            rows = cursor.fetchall()
    else:
        rows = [tuple(row) for row in connection.execute(statement)]
    return pd.DataFrame.from_records(rows, columns=names, coerce_float=False)


def read_columns(
    connection: Connection, statement: Any, names: list[str], texts: Sequence[str] = ()
) -> pd.DataFrame:
    """Like ``read_frame`` for a statement of numbers and of the short texts named in
    ``texts`` (codes, labels). On PostgreSQL float64 columns (NULL: NaN) and text
    columns (NULL: None, as object arrays) read as one row of one ``string_agg`` per
    column (every aggregate of a query sees the rows in the same order), split by numpy
    and ``str.split``: a row per member through the driver costs microseconds each,
    seconds at a million members, and one pass over a joined table is cheaper than one
    per column."""
    if connection.dialect.name != "postgresql":  # small: rows as they come
        return read_frame(connection, statement, names)
    inner = statement.subquery()
    row = connection.execute(
        select(
            *(
                func.string_agg(func.coalesce(column, _NONE), _UNIT)
                if name in texts
                else func.string_agg(func.coalesce(cast(column, Text), "NaN"), literal(","))
                for name, column in zip(names, inner.c, strict=True)
            )
        )
    ).one()
    if row[0] is None:
        return pd.DataFrame(
            {name: np.zeros(0, object if name in texts else "float64") for name in names}
        )
    out = {
        name: _texts(joined) if name in texts else _numbers(joined)
        for name, joined in zip(names, row, strict=True)
    }
    rows = {len(values) for values in out.values()}
    if len(rows) != 1:  # a text held the unit separator: refuse rather than misplace
        raise ValueError(f"a text column of {names} holds the character U+001F")
    return pd.DataFrame(out)


_UNIT = "\x1f"
"""Between the texts of ``read_columns``: the ASCII unit separator, which no code,
language, channel or label holds."""
_NONE = "\x1e"
"""A NULL text in ``read_columns`` (the ASCII record separator)."""


def _texts(joined: str) -> np.ndarray[Any, Any]:
    out = np.array(joined.split(_UNIT), dtype=object)
    out[out == _NONE] = None
    return out


def _numbers(joined: str) -> np.ndarray[Any, Any]:
    """Comma-separated numbers (``NaN`` for none) parsed by numpy in C: twice as fast as
    splitting into a million Python strings first."""
    return np.fromstring(joined, dtype="float64", sep=",")


def _positions(joined: str) -> np.ndarray[Any, Any]:
    return _numbers(joined).astype("int64")


def read_values(
    connection: Connection, source: Any, positions: Any, kind: Any, value: Any
) -> pd.DataFrame:
    """(position, kind, value) triples of the kept set-valued metrics. On PostgreSQL
    grouped by (kind, value) with the positions joined into one string each: few
    distinct categories, tags and types, each held by many members."""
    if connection.dialect.name != "postgresql":
        return read_frame(
            connection,
            select(positions, kind, value).select_from(source),
            ["pos", "kind", "value"],
        )
    rows = connection.execute(
        select(kind, value, func.string_agg(cast(positions, Text), literal(",")))
        .select_from(source)
        .group_by(kind, value)
    ).all()
    at = [_positions(joined) for _, _, joined in rows]
    return pd.DataFrame(
        {
            "pos": np.concatenate(at) if at else np.zeros(0, dtype="int64"),
            "kind": np.concatenate(
                [np.full(len(p), k, dtype=object) for p, (k, _, _) in zip(at, rows, strict=True)]
            )
            if at
            else np.zeros(0, dtype=object),
            "value": np.concatenate(
                [np.full(len(p), v, dtype=object) for p, (_, v, _) in zip(at, rows, strict=True)]
            )
            if at
            else np.zeros(0, dtype=object),
        }
    )


def member_table(
    session: Session,
    *,
    programme: Programme,
    now: datetime | None = None,
    rebuild: bool = False,
    settle: timedelta = member_metrics.SETTLE,
) -> MemberTable:
    """Every active member of ``programme`` with attributes, metrics and scores as of
    ``now``. The purchase aggregates are first brought to ``now`` in
    ``member_metrics`` (``treu.insights.member_metrics.update``: only the members
    whose rows changed, or all of them with ``rebuild``), so this is a write unit of
    work."""
    now = now or utc_now()
    connection = session.connection()
    pid = programme.id
    if connection.dialect.name == "postgresql":
        # Grouping millions of events by member sorts on disk with the default 4 MB;
        # with room for a hash table it is one pass (for this transaction only).
        connection.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        # No JIT compilation: the refresh runs a hundred statements over large tables,
        # for each of which PostgreSQL would spend 0.1-0.4 s compiling expressions that
        # run over a few hundred thousand rows at most (measured at 1M members).
        connection.execute(text("SET LOCAL jit = off"))
    fill_positions(connection, pid)
    ids = read_ids(connection)
    n = len(ids)
    members = read_columns(
        connection,
        select(
            POSITIONS.c.pos,
            _instant(connection, Member.enrolled_at),
            func.extract("month", Member.birthday),  # only the month is used
            Member.language,
            Member.channel,
        ).join(Member, Member.id == POSITIONS.c.id),
        ["pos", "enrolled_at", "birth_month", "language", "channel"],
        texts=("language", "channel"),
    )
    cols: dict[str, Any] = {}

    zone = programme.timezone
    # Naive local wall time before normalising: where a DST change falls at midnight
    # (America/Santiago, Havana, Cairo, Beirut) an aware midnight does not exist.
    local_today = pd.Timestamp(now).tz_convert(zone).tz_localize(None).normalize()
    m_at = _at(members)
    enrolled_at = members["enrolled_at"]
    if pd.api.types.is_numeric_dtype(enrolled_at):  # seconds since the epoch
        enrolled = _local_days(pd.Series(_spread(n, m_at, enrolled_at)), zone)
    else:
        enrolled = _local_days(pd.Series(_spread(n, m_at, enrolled_at, fill=None)), zone)
    cols["member.days_enrolled"] = (
        ((local_today - enrolled).dt.days.clip(lower=0)).fillna(0).astype("int64")
    )
    month = _spread(
        n, m_at, pd.to_numeric(members["birth_month"]).to_numpy(dtype="float64", na_value=np.nan)
    )
    cols["member.birth_month"] = month
    cols["member.birthday_month"] = month == local_today.month
    for name in ("language", "channel"):
        cols[f"member.{name}"] = _labels(n, m_at, members[name])
    cols["member.tier"] = read_labels(
        connection,
        n,
        POSITIONS.join(MemberTier, MemberTier.member_id == POSITIONS.c.id),
        MemberTier.tier,
    )

    # The purchase aggregates as kept by the refresh (treu.insights.member_metrics):
    # brought to ``now`` (only the members whose rows changed), then one row per member.
    member_metrics.update(session, programme_id=pid, now=now, rebuild=rebuild, settle=settle)
    kept = table_of(MemberMetrics)
    summary = read_columns(
        connection,
        select(
            POSITIONS.c.pos,
            _instant(connection, kept.c.last_purchase_at),
            _instant(connection, kept.c.first_purchase_at),
            *(kept.c[name] for name in _COUNTS),
        ).join(POSITIONS, POSITIONS.c.id == kept.c.member_id),
        ["pos", "last", "first", *_COUNTS],
    )
    at = _at(summary)
    now_ts = pd.Timestamp(now)

    def spread(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        out = np.full(n, np.nan, dtype="float64")
        out[at] = values
        return out

    def counts(column: str) -> np.ndarray[Any, Any]:
        out = np.zeros(n, dtype="int64")
        out[at] = np.asarray(summary[column], dtype="int64")
        return out

    bought = summary["last"].notna().to_numpy()
    last = np.full(len(summary), np.nan)
    first = np.full(len(summary), np.nan)
    last[bought] = np.floor(_seconds_since(now_ts, summary["last"][bought]) / DAY_SECONDS)
    first[bought] = np.floor(_seconds_since(now_ts, summary["first"][bought]) / DAY_SECONDS)
    cols["metrics.recency_days"] = spread(last)
    cols["metrics.first_purchase_days"] = spread(first)
    for name in _COUNTS:
        cols[f"metrics.{name}"] = counts(name)
    purchases_365 = cols["metrics.purchases_365"]
    cols["metrics.average_basket_365"] = np.where(
        purchases_365 > 0,
        np.floor_divide(cols["metrics.spend_365"], np.maximum(purchases_365, 1)),
        0,
    ).astype("int64")

    sets: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    kept_values = table_of(MemberMetricValue)
    values = read_values(
        connection,
        kept_values.join(POSITIONS, POSITIONS.c.id == kept_values.c.member_id),
        POSITIONS.c.pos,
        kept_values.c.kind,
        kept_values.c.value,
    )
    kinds = values["kind"].to_numpy(dtype=object)
    for kind, name in (
        ("channel", "metrics.channels"),
        ("engagement_type", "metrics.engagement_types"),
        ("category", "metrics.categories"),
        ("tag", "metrics.tags"),
    ):
        sets[name] = _long(values[kinds == kind])

    # Each member's latest consent row per channel, kept only when it grants: picked by
    # the database, so only (position, channel) pairs travel (every row with its instant
    # and id, sorted and deduplicated in pandas, was a sixth of a refresh).
    ranked = (
        select(
            POSITIONS.c.pos,
            Consent.channel,
            Consent.granted,
            func.row_number()
            .over(
                partition_by=(Consent.member_id, Consent.channel),
                order_by=(Consent.at.desc(), Consent.id.desc()),
            )
            .label("newest"),
        )
        .join(POSITIONS, POSITIONS.c.id == Consent.member_id)
        .where(Consent.programme_id == pid)
        .subquery()
    )
    granted = ranked.c.newest == 1, ranked.c.granted
    sets["member.consents"] = read_sets(
        connection, select(ranked.c.pos, ranked.c.channel).where(*granted).subquery()
    )

    labels = ("rfm_segment", "persona")
    scores = read_columns(
        connection,
        select(
            POSITIONS.c.pos,
            MemberScore.rfm_r,
            MemberScore.rfm_f,
            MemberScore.rfm_m,
            MemberScore.clv_365_minor,
            MemberScore.p_alive,
            MemberScore.churn_risk,
            MemberScore.rfm_segment,
            MemberScore.persona,
        )
        .join(POSITIONS, POSITIONS.c.id == MemberScore.member_id)
        .where(MemberScore.programme_id == pid),
        ["pos", "rfm_r", "rfm_f", "rfm_m", "clv_365", "p_alive", "churn_risk", *labels],
        texts=labels,
    )
    s_at = _at(scores)
    for name in ("rfm_r", "rfm_f", "rfm_m", "clv_365", "p_alive", "churn_risk"):
        numbers = pd.to_numeric(scores[name]).to_numpy(dtype="float64", na_value=np.nan)
        cols[f"scores.{name}"] = _spread(n, s_at, numbers)
    for name in labels:
        cols[f"scores.{name}"] = _labels(n, s_at, scores[name])

    return MemberTable(ids, pd.DataFrame(cols), sets, now)


def _spread(
    n: int, at: np.ndarray[Any, Any], values: Any, *, fill: Any = np.nan
) -> np.ndarray[Any, Any]:
    """``values`` placed at positions ``at`` of an array of ``n`` (``fill`` elsewhere):
    float64 for numbers, object otherwise."""
    if fill is None:
        out = np.full(n, None, dtype=object)
        out[at] = np.asarray(values, dtype=object)
    else:
        out = np.full(n, fill, dtype="float64")
        out[at] = np.asarray(values, dtype="float64")
    return out


def _labels(n: int, at: np.ndarray[Any, Any], values: Any) -> np.ndarray[Any, Any]:
    """Texts placed at positions ``at`` of an object array of ``n``, None elsewhere and
    where a text is missing (as ``read_labels`` gives them)."""
    out = np.full(n, None, dtype=object)
    texts = np.asarray(values, dtype=object)
    present = np.asarray(pd.notna(texts), dtype=bool)
    out[at[present]] = texts[present]
    return out


def read_ids(connection: Connection) -> Sequence[Any]:
    """The member ids of ``POSITIONS`` by position: on PostgreSQL their text, joined
    into one string (a ``uuid.UUID`` per row through the driver was a tenth of a
    refresh), elsewhere the ids."""
    if connection.dialect.name != "postgresql":
        return [
            row[0] for row in connection.execute(select(POSITIONS.c.id).order_by(POSITIONS.c.pos))
        ]
    joined = connection.execute(
        text(f"SELECT string_agg(id::text, ',' ORDER BY pos) FROM {POSITIONS.name}")
    ).scalar_one()
    return joined.split(",") if joined else []


def read_groups(connection: Connection, pairs: Any) -> dict[Any, np.ndarray[Any, Any]]:
    """The positions of each value, from a subquery of (position, value) pairs; on
    PostgreSQL grouped by value, the positions joined into one string each."""
    pos, value = pairs.c
    if connection.dialect.name != "postgresql":
        grouped: dict[Any, list[int]] = {}
        for at, label in connection.execute(select(pos, value)):
            grouped.setdefault(label, []).append(at)
        return {label: np.array(at, dtype="int64") for label, at in grouped.items()}
    rows = connection.execute(
        select(value, func.string_agg(cast(pos, Text), literal(","))).group_by(value)
    )
    return {label: _positions(joined) for label, joined in rows}


def read_sets(
    connection: Connection, pairs: Any
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A set-valued field as (positions, values) from a subquery of (position, value)
    pairs (``read_groups``)."""
    groups = read_groups(connection, pairs)
    if not groups:
        return np.zeros(0, dtype="int64"), np.zeros(0, dtype=object)
    labels = [np.full(len(at), label, dtype=object) for label, at in groups.items()]
    return np.concatenate(list(groups.values())), np.concatenate(labels)


def read_labels(connection: Connection, n: int, source: Any, value: Any) -> np.ndarray[Any, Any]:
    """A text column of few distinct values (a tier, a language, a group) by position
    (``POSITIONS.c.pos`` in ``source``), None where absent (``read_groups``)."""
    out = np.full(n, None, dtype=object)
    pairs = select(POSITIONS.c.pos, value).select_from(source).where(value.is_not(None))
    for label, at in read_groups(connection, pairs.subquery()).items():
        out[at] = label
    return out


POSITIONS = Table(
    "_treu_positions",
    MetaData(),
    Column("id", Uuid(), primary_key=True),
    Column("pos", Integer(), nullable=False),
    prefixes=["TEMPORARY"],
)
"""The programme's active members and their row in the ``MemberTable`` (0..n-1, by id),
for the length of a unit of work. Every query returns positions instead of member ids,
so no id is ever hashed or compared in Python (at a million members that cost more
than the queries)."""


def fill_positions(connection: Connection, programme_id: uuid.UUID) -> None:
    """(Re)create ``POSITIONS`` for the programme's active members (a write unit of
    work: PostgreSQL refuses even a temporary table in a read-only one)."""
    POSITIONS.drop(connection, checkfirst=True)
    ranked = select(Member.id, (func.row_number().over(order_by=Member.id) - 1).label("pos")).where(
        Member.programme_id == programme_id, Member.status == MemberStatus.active.value
    )
    if connection.dialect.name != "postgresql":
        POSITIONS.create(connection)
        connection.execute(insert(POSITIONS).from_select(["id", "pos"], ranked))
        return
    # Filled without its key, which is built once afterwards, and from a scan of the
    # members sorted in memory: the planner walks the members' key instead to save the
    # sort, a random read of every row (at 1M members 2.9 s against 1.8 s).
    connection.execute(
        text(f"CREATE TEMPORARY TABLE {POSITIONS.name} (id uuid, pos integer NOT NULL)")
    )
    saved = connection.execute(
        text("SELECT current_setting('enable_indexscan'), current_setting('enable_bitmapscan')")
    ).one()
    connection.execute(text("SET LOCAL enable_indexscan = off"))
    connection.execute(text("SET LOCAL enable_bitmapscan = off"))
    connection.execute(insert(POSITIONS).from_select(["id", "pos"], ranked))
    # Back as they were for the rest of the transaction (a failure above ends it, and
    # SET LOCAL with it).
    connection.execute(
        text(
            "SELECT set_config('enable_indexscan', :i, true), "
            "set_config('enable_bitmapscan', :b, true)"
        ),
        {"i": saved[0], "b": saved[1]},
    )
    connection.execute(text(f"ALTER TABLE {POSITIONS.name} ADD PRIMARY KEY (id)"))
    connection.execute(text(f"ANALYZE {POSITIONS.name}"))


def drop_positions(connection: Connection) -> None:
    POSITIONS.drop(connection, checkfirst=True)


def _instant(connection: Connection, value: Any) -> Any:
    """A timestamp as seconds since the epoch on PostgreSQL (a float per row: turning
    hundreds of thousands of aware ``datetime`` objects into a pandas column took longer
    than the query), the timestamp itself elsewhere."""
    if connection.dialect.name == "postgresql":
        return cast(func.extract("epoch", value), Float)
    return value


def _seconds_since(now: pd.Timestamp, values: pd.Series[Any]) -> np.ndarray[Any, Any]:
    """Seconds from ``values`` (epoch seconds or timestamps, ``_instant``) to ``now``."""
    if pd.api.types.is_numeric_dtype(values):
        return float(now.timestamp()) - np.asarray(values, dtype="float64")
    stamps = pd.to_datetime(values, utc=True)
    return np.asarray((now - stamps).dt.total_seconds(), dtype="float64")


def _at(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    return np.asarray(frame["pos"], dtype="int64")


def _long(pairs: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return _at(pairs), np.asarray(pairs["value"], dtype=object)


def _local_days(values: pd.Series[Any], zone: str) -> pd.Series[Any]:
    """Local midnights of instants (seconds since the epoch, as ``_instant`` reads them
    on PostgreSQL, or timestamps)."""
    if pd.api.types.is_numeric_dtype(values):
        stamps = pd.to_datetime(values, unit="s", utc=True)
    else:
        stamps = pd.to_datetime(values, utc=True)
    # Naive first: an aware local midnight may not exist on a DST day (see above).
    return stamps.dt.tz_convert(zone).dt.tz_localize(None).dt.normalize()
