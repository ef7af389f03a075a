"""Member metrics for a whole programme, computed set-based: a handful of aggregate
queries (members, purchases and returns, channels, categories, tags, engagement,
consents, scores), then vectorised pandas. No statement and no Python loop per member,
so that a programme of 1M members and 20M purchases is read in seconds on PostgreSQL.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    Uuid,
    and_,
    case,
    cast,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from treu.events.models import Event, PurchaseLine
from treu.kit.time import utc_now
from treu.members.models import Channel, Member, MemberStatus
from treu.messaging.models import Consent
from treu.programmes.models import Programme
from treu.segments.models import MemberScore
from treu.segments.scores import psycopg_of
from treu.tiers.models import MemberTier

DAY_SECONDS = 86_400
WORK_MEM = "256MB"
"""PostgreSQL's ``work_mem`` for the metrics' unit of work (``SET LOCAL``)."""


@dataclass
class MemberTable:
    """The active members of one programme with their attributes, metrics and scores."""

    member_ids: list[uuid.UUID]
    columns: pd.DataFrame
    """Scalar fields by qualified name (``member.tier``, ``metrics.spend_365``, …):
    numbers as float64 with NaN for None (or int64 / bool when never None), text as
    object with None."""
    sets: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = field(default_factory=dict)
    """Set-valued fields by qualified name: (row positions, values), one pair per
    element, no duplicates."""
    now: datetime = field(default_factory=utc_now)

    def __len__(self) -> int:
        return len(self.member_ids)


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


def member_table(
    session: Session, *, programme: Programme, now: datetime | None = None
) -> MemberTable:
    """Every active member of ``programme`` with attributes, metrics and scores as of
    ``now``."""
    now = now or utc_now()
    connection = session.connection()
    pid = programme.id
    if connection.dialect.name == "postgresql":
        # Grouping millions of events by member sorts on disk with the default 4 MB;
        # with room for a hash table it is one pass (for this transaction only).
        connection.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    fill_positions(connection, pid)
    members = read_frame(
        connection,
        select(
            POSITIONS.c.pos,
            Member.id,
            Member.enrolled_at,
            Member.birthday,
            Member.language,
            Member.channel,
            MemberTier.tier,
        )
        .select_from(POSITIONS)
        .join(Member, Member.id == POSITIONS.c.id)
        .outerjoin(MemberTier, MemberTier.member_id == Member.id)
        .order_by(POSITIONS.c.pos),
        ["pos", "member_id", "enrolled_at", "birthday", "language", "channel", "tier"],
    )
    ids: list[uuid.UUID] = _uuids(members["member_id"])
    n = len(ids)
    cols: dict[str, Any] = {}

    zone = programme.timezone
    # Naive local wall time before normalising: where a DST change falls at midnight
    # (America/Santiago, Havana, Cairo, Beirut) an aware midnight does not exist.
    local_today = pd.Timestamp(now).tz_convert(zone).tz_localize(None).normalize()
    enrolled = _local_days(members["enrolled_at"], zone)
    cols["member.days_enrolled"] = (
        ((local_today - enrolled).dt.days.clip(lower=0)).fillna(0).astype("int64")
    )
    birthday = pd.to_datetime(members["birthday"], errors="coerce")
    cols["member.birth_month"] = birthday.dt.month.astype("float64").to_numpy()
    cols["member.birthday_month"] = (birthday.dt.month == local_today.month).to_numpy()
    for name in ("language", "channel", "tier"):
        cols[f"member.{name}"] = _text(members[name])

    since_90, since_365 = now - timedelta(days=90), now - timedelta(days=365)
    in_90 = Event.occurred_at > since_90
    in_365 = Event.occurred_at > since_365
    amount = func.coalesce(Event.total_minor, 0)
    # One scan of the programme's events, grouped by member and type: purchases,
    # returns and engagement all come out of it (a member has few types), and the
    # channels of the year's purchases as one flag column per channel.
    channel_flags = [
        func.max(case((and_(in_365, Event.channel == channel.value), 1), else_=0))
        for channel in Channel
    ]
    by_type = read_frame(
        connection,
        _by_position(
            select(
                Event.member_id,
                Event.type,
                _instant(connection, func.max(Event.occurred_at)),
                _instant(connection, func.min(Event.occurred_at)),
                func.count(),
                func.count(case((in_90, 1))),
                func.count(case((in_365, 1))),
                # bigint, not numeric: psycopg would make a Decimal of every sum
                cast(func.coalesce(func.sum(case((in_90, amount), else_=0)), 0), BigInteger),
                cast(func.coalesce(func.sum(case((in_365, amount), else_=0)), 0), BigInteger),
                *channel_flags,
            )
            .where(
                Event.programme_id == pid,
                Event.member_id.is_not(None),
                Event.occurred_at <= now,
            )
            .group_by(Event.member_id, Event.type)
        ),
        [
            "pos",
            "type",
            "last",
            "first",
            "count",
            "in_90",
            "in_365",
            "spend_90",
            "spend_365",
            *(f"channel_{channel.value}" for channel in Channel),
        ],
    )
    kind = by_type["type"].to_numpy(dtype=object)
    purchases = by_type[kind == "purchase"]
    commerce_rows = by_type[(kind == "purchase") | (kind == "return")]
    returns = by_type[kind == "return"]
    engagement = by_type[(kind != "purchase") & (kind != "return")]
    now_ts = pd.Timestamp(now)

    def spread(frame: pd.DataFrame, column: str, fill: float) -> np.ndarray[Any, Any]:
        out = np.full(n, fill, dtype="float64")
        out[_at(frame)] = np.asarray(frame[column], dtype="float64")
        return out

    def total(frame: pd.DataFrame, column: str) -> np.ndarray[Any, Any]:
        weights = np.asarray(frame[column], dtype="float64")
        return np.bincount(_at(frame), weights=weights, minlength=n).astype("int64")

    recency = purchases.assign(
        recency=np.floor(_seconds_since(now_ts, purchases["last"]) / DAY_SECONDS),
        tenure=np.floor(_seconds_since(now_ts, purchases["first"]) / DAY_SECONDS),
    )
    cols["metrics.recency_days"] = spread(recency, "recency", np.nan)
    cols["metrics.first_purchase_days"] = spread(recency, "tenure", np.nan)
    cols["metrics.purchases"] = total(purchases, "count")
    cols["metrics.purchases_90"] = total(purchases, "in_90")
    cols["metrics.purchases_365"] = total(purchases, "in_365")
    cols["metrics.spend_90"] = total(commerce_rows, "spend_90")
    cols["metrics.spend_365"] = total(commerce_rows, "spend_365")
    cols["metrics.returns_365"] = total(returns, "in_365")
    purchases_365 = cols["metrics.purchases_365"]
    cols["metrics.average_basket_365"] = np.where(
        purchases_365 > 0,
        np.floor_divide(cols["metrics.spend_365"], np.maximum(purchases_365, 1)),
        0,
    ).astype("int64")
    cols["metrics.engagements_90"] = total(engagement, "in_90")
    cols["metrics.engagements_365"] = total(engagement, "in_365")

    sets: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    recent = engagement[np.asarray(engagement["in_365"], dtype="int64") > 0]
    sets["metrics.engagement_types"] = _long(recent.rename(columns={"type": "value"}))
    channel_at, channel_values = [], []
    for channel in Channel:
        flagged = purchases[np.asarray(purchases[f"channel_{channel.value}"], dtype="int64") > 0]
        channel_at.append(_at(flagged))
        channel_values.append(np.full(len(flagged), channel.value, dtype=object))
    sets["metrics.channels"] = (np.concatenate(channel_at), np.concatenate(channel_values))
    line_window = and_(
        PurchaseLine.programme_id == pid,
        PurchaseLine.member_id.is_not(None),
        PurchaseLine.occurred_at > since_365,
        PurchaseLine.occurred_at <= now,
    )
    if connection.dialect.name == "postgresql":
        categories, tags = _categories_and_tags(connection, pid, since_365, now)
    else:
        categories = read_frame(
            connection,
            _by_position(
                select(PurchaseLine.member_id, PurchaseLine.category)
                .where(line_window, PurchaseLine.category.is_not(None))
                .group_by(PurchaseLine.member_id, PurchaseLine.category)
            ),
            ["pos", "value"],
        )
        tags = _tags(connection, pid, since_365, now)
    sets["metrics.categories"] = _long(categories)
    sets["metrics.tags"] = _long(tags)

    consents = read_frame(
        connection,
        select(POSITIONS.c.pos, Consent.channel, Consent.granted, Consent.at, Consent.id)
        .join(POSITIONS, POSITIONS.c.id == Consent.member_id)
        .where(Consent.programme_id == pid)
        .order_by(POSITIONS.c.pos, Consent.channel, Consent.at, Consent.id),
        ["pos", "value", "granted", "at", "id"],
    )
    latest = consents.drop_duplicates(["pos", "value"], keep="last")
    sets["member.consents"] = _long(latest[latest["granted"].astype(bool)])

    scores = read_frame(
        connection,
        select(
            POSITIONS.c.pos,
            MemberScore.rfm_r,
            MemberScore.rfm_f,
            MemberScore.rfm_m,
            MemberScore.rfm_segment,
            MemberScore.clv_365_minor,
            MemberScore.p_alive,
            MemberScore.churn_risk,
            MemberScore.persona,
        )
        .join(POSITIONS, POSITIONS.c.id == MemberScore.member_id)
        .where(MemberScore.programme_id == pid),
        [
            "pos",
            "rfm_r",
            "rfm_f",
            "rfm_m",
            "rfm_segment",
            "clv_365",
            "p_alive",
            "churn_risk",
            "persona",
        ],
    )
    s_at = _at(scores)
    for name in ("rfm_r", "rfm_f", "rfm_m", "clv_365", "p_alive", "churn_risk"):
        values = np.full(n, np.nan)
        values[s_at] = pd.to_numeric(scores[name]).to_numpy(dtype="float64", na_value=np.nan)
        cols[f"scores.{name}"] = values
    for name in ("rfm_segment", "persona"):
        texts = np.full(n, None, dtype=object)
        texts[s_at] = _text(scores[name])
        cols[f"scores.{name}"] = texts

    return MemberTable(ids, pd.DataFrame(cols), sets, now)


def _categories_and_tags(
    connection: Connection, programme_id: uuid.UUID, since: datetime, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(position, category) and (position, tag) pairs from *one* scan of the window's
    purchase lines (PostgreSQL: the tags unnested with ``jsonb_array_elements_text``)."""
    sql = text(
        "SELECT p.pos, x.category, x.tag FROM (SELECT DISTINCT l.member_id, l.category, "
        "t.value AS tag FROM purchase_lines l "
        "LEFT JOIN LATERAL jsonb_array_elements_text(CASE WHEN jsonb_typeof(l.tags) = "
        "'array' THEN l.tags ELSE '[]'::jsonb END) AS t(value) ON true "
        "WHERE l.programme_id = :p AND l.member_id IS NOT NULL "
        "AND l.occurred_at > :since AND l.occurred_at <= :now) x "
        f"JOIN {POSITIONS.name} p ON p.id = x.member_id"
    )
    params: dict[str, Any] = {"p": programme_id, "since": since, "now": now}
    with psycopg_of(connection).cursor() as cursor:
        compiled = sql.compile(dialect=connection.dialect)
        cursor.execute(str(compiled), compiled.construct_params(params))
        rows = cursor.fetchall()
    both = pd.DataFrame.from_records(rows, columns=["pos", "category", "tag"])
    categories = (
        both[both["category"].notna()][["pos", "category"]]
        .drop_duplicates()
        .rename(columns={"category": "value"})
    )
    tags = both[both["tag"].notna()][["pos", "tag"]].drop_duplicates()
    return categories, tags.rename(columns={"tag": "value"})


def _tags(
    connection: Connection, programme_id: uuid.UUID, since: datetime, now: datetime
) -> pd.DataFrame:
    """(position, tag) pairs of purchase lines in the window on SQLite: the JSON array
    unnested in SQL (``json_each``), never in Python per line."""
    table = PurchaseLine.__table__
    each = func.json_each(table.c.tags).table_valued("value", name="t")
    statement = (
        select(PurchaseLine.member_id, each.c.value)
        .select_from(table.join(each, text("1 = 1")))
        .where(
            PurchaseLine.programme_id == programme_id,
            PurchaseLine.member_id.is_not(None),
            PurchaseLine.occurred_at > since,
            PurchaseLine.occurred_at <= now,
        )
        .distinct()
    )
    return read_frame(connection, _by_position(statement), ["pos", "value"])


def _uuids(values: pd.Series[Any]) -> list[uuid.UUID]:
    """Both drivers hand back ``uuid.UUID`` (SQLAlchemy's ``Uuid`` type on SQLite,
    psycopg's loader on PostgreSQL)."""
    return list(values.tolist())


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
    POSITIONS.create(connection)
    ranked = select(Member.id, (func.row_number().over(order_by=Member.id) - 1).label("pos")).where(
        Member.programme_id == programme_id, Member.status == MemberStatus.active.value
    )
    connection.execute(insert(POSITIONS).from_select(["id", "pos"], ranked))
    if connection.dialect.name == "postgresql":
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


def _by_position(inner: Any) -> Any:
    """``inner`` (its first column the member id) with the member's position in its
    place, and only the rows of members in ``POSITIONS``."""
    sub = inner.subquery()
    first, *rest = list(sub.c)
    return select(POSITIONS.c.pos, *rest).join(POSITIONS, POSITIONS.c.id == first)


def _at(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    return np.asarray(frame["pos"], dtype="int64")


def _long(pairs: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return _at(pairs), np.asarray(pairs["value"], dtype=object)


def _text(series: pd.Series[Any]) -> np.ndarray[Any, Any]:
    values = series.astype(object)
    return np.asarray(values.where(values.notna(), None), dtype=object)


def _local_days(values: pd.Series[Any], zone: str) -> pd.Series[Any]:
    stamps = pd.to_datetime(values, utc=True)
    # Naive first: an aware local midnight may not exist on a DST day (see above).
    return stamps.dt.tz_convert(zone).dt.tz_localize(None).dt.normalize()
