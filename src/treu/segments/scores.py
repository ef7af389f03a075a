"""Writing and reading ``member_scores``.

Several computations own columns of the same row (RFM, lifetime value, churn risk,
personas), and run at different times: each writes only its own columns, for a whole
programme at once, with ``save_scores``. The write is set-based on both backends: the
values go into a temporary table (``COPY`` on PostgreSQL, one ``executemany`` on
SQLite), then one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` moves them, joined to
``members`` so that a member of another programme (or none) is never written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import Column, MetaData, Select, Table, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.kit.time import utc_now
from treu.members.models import Member
from treu.segments.models import SCORE_COLUMNS, MemberMetrics, MemberMetricsState, MemberScore

if TYPE_CHECKING:
    import pandas as pd

_STAGING = "_treu_scores_in"
_INTEGER_COLUMNS = frozenset({"rfm_r", "rfm_f", "rfm_m", "clv_365_minor"})
_FLOAT_COLUMNS = frozenset({"p_alive", "churn_risk"})


def save_scores(
    session: Session,
    *,
    programme_id: uuid.UUID,
    frame_or_rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    now: datetime | None = None,
    clear_others: bool = False,
) -> int:
    """Write ``columns`` of the members in ``frame_or_rows`` (a pandas DataFrame or
    mappings, each with ``member_id`` and the columns); other columns keep their values
    (a new row gets None).
    ``clear_others``: the programme's other members get NULL in ``columns`` (a model
    that no longer scores them: their old value would mean something else now).

    ``columns`` defaults to every score column present. Missing values (None, NaN) are
    written as NULL; integer columns are rounded. Members not in the programme are
    skipped. Returns the number of rows written. Raises ``ValueError`` for an unknown
    column or a member given twice."""
    ids, values, names = _columns_of(frame_or_rows, columns)
    if len(set(ids)) != len(ids):
        raise ValueError("a member appears more than once")
    if not ids:
        return 0
    at = now or utc_now()
    scores = table_of(MemberScore)
    staging = Table(
        _STAGING,
        MetaData(),
        Column("member_id", scores.c.member_id.type, primary_key=True),
        *(Column(name, scores.c[name].type) for name in names),
        prefixes=["TEMPORARY"],
    )
    connection = session.connection()
    staging.drop(connection, checkfirst=True)
    staging.create(connection)
    try:
        rows = zip(ids, *values, strict=True)
        if connection.dialect.name == "postgresql":
            with psycopg_of(connection).cursor() as cursor:
                sql = f"COPY {_STAGING} (member_id, {', '.join(names)}) FROM STDIN (FORMAT csv)"
                with cursor.copy(sql) as copy:
                    copy.write(_csv(ids, values, names))
            upsert: Any = postgresql.insert(scores)
        else:
            keys = ("member_id", *names)
            connection.execute(insert(staging), [dict(zip(keys, row, strict=True)) for row in rows])
            upsert = sqlite.insert(scores)
        members = table_of(Member)
        source = (
            select(
                staging.c.member_id,
                members.c.programme_id,
                *(staging.c[name] for name in names),
            )
            .add_columns(_literal_time(at))
            .join(members, members.c.id == staging.c.member_id)
            .where(members.c.programme_id == programme_id)
        )
        statement = upsert.from_select(["member_id", "programme_id", *names, "computed_at"], source)
        statement = statement.on_conflict_do_update(
            index_elements=[scores.c.member_id],
            set_={name: statement.excluded[name] for name in (*names, "computed_at")},
        )
        # The count first: SQLAlchemy reports no row count for an INSERT … SELECT on
        # psycopg (-1), and the join already decides what is written.
        written = connection.execute(
            select(func.count()).select_from(
                source.with_only_columns(staging.c.member_id).subquery()
            )
        ).scalar_one()
        connection.execute(statement)
        if clear_others:
            clear_scores(
                session,
                programme_id=programme_id,
                columns=names,
                keep=select(staging.c.member_id),
            )
    finally:
        staging.drop(connection)
    return int(written)


def clear_scores(
    session: Session,
    *,
    programme_id: uuid.UUID,
    columns: Sequence[str],
    keep: Select[Any] | None = None,
) -> None:
    """NULL in ``columns`` for every member of the programme but those ``keep`` selects
    (a model that was not trained this time, or no longer scores them: no score is
    better than a stale one)."""
    scores = table_of(MemberScore)
    unknown = [c for c in columns if c not in scores.c or not scores.c[c].nullable]
    if unknown:
        raise ValueError(f"not a nullable score column: {', '.join(unknown)}")
    which = [
        scores.c.programme_id == programme_id,
        or_(*(scores.c[name].is_not(None) for name in columns)),
    ]
    if keep is not None:
        # NOT EXISTS, an anti-join. As NOT IN, PostgreSQL hashes the kept ids only when
        # they fit in work_mem; beyond that it scans them once per score row: at a
        # million members an UPDATE that had not finished after eight minutes.
        which.append(~keep.where(keep.selected_columns[0] == scores.c.member_id).exists())
    session.execute(update(scores).where(*which).values(dict.fromkeys(columns)))


def _csv(ids: list[uuid.UUID], values: list[list[Any]], names: tuple[str, ...]) -> str:
    """The rows as CSV for ``COPY … (FORMAT csv)``, written by pandas' CSV writer (a
    Python ``write_row`` per row cost 25 µs: half a minute at a million members). An
    empty field is NULL; integer columns stay integers."""
    import pandas as pd

    columns: dict[str, Any] = {"member_id": ids}
    for name, column in zip(names, values, strict=True):
        if name in _INTEGER_COLUMNS:
            columns[name] = pd.array(column, dtype="Int64")
        else:
            columns[name] = pd.Series(column, dtype=object)
    return str(pd.DataFrame(columns).to_csv(header=False, index=False, lineterminator="\n"))


def psycopg_of(connection: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a PostgreSQL ``connection`` (for ``COPY``)."""
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _literal_time(at: datetime) -> Any:
    from sqlalchemy import bindparam

    return bindparam("computed_at", at, type_=table_of(MemberScore).c.computed_at.type)


def _columns_of(
    data: pd.DataFrame | Iterable[Mapping[str, Any]], columns: Sequence[str] | None
) -> tuple[list[uuid.UUID], list[list[Any]], tuple[str, ...]]:
    """Member ids and, per column, plain Python values (psycopg and SQLite take no numpy
    scalars; NaN becomes None)."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):
        frame: Any = data
        present = [c for c in frame.columns if c in SCORE_COLUMNS]
        names = _names(columns, present)
        ids = _uuids(frame["member_id"].tolist())
        values = [_plain(frame[name], name) for name in names]
        return ids, values, names
    rows = list(data)
    present = sorted({key for row in rows for key in row if key in SCORE_COLUMNS})
    names = _names(columns, present)
    import pandas as pd

    table = pd.DataFrame.from_records(rows, columns=["member_id", *names])
    return _uuids(table["member_id"].tolist()), [_plain(table[n], n) for n in names], names


def _names(columns: Sequence[str] | None, present: Sequence[str]) -> tuple[str, ...]:
    names = tuple(columns) if columns is not None else tuple(present)
    unknown = [name for name in names if name not in SCORE_COLUMNS]
    if unknown:
        raise ValueError(f"not a score column: {', '.join(unknown)}")
    if not names:
        raise ValueError("no score column to write")
    return names


def _uuids(values: list[Any]) -> list[uuid.UUID]:
    return [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in values]


def _plain(series: Any, name: str) -> list[Any]:
    import pandas as pd

    if name in _INTEGER_COLUMNS:
        numbers = pd.to_numeric(series).round().astype("Int64")
        return [None if v is pd.NA else int(v) for v in numbers.tolist()]
    if name in _FLOAT_COLUMNS:
        floats = pd.to_numeric(series).astype("float64")
        return floats.astype(object).where(floats.notna(), None).tolist()  # type: ignore[no-any-return]
    text = series.astype(object)
    return text.where(text.notna(), None).tolist()  # type: ignore[no-any-return]


def scores_of(session: Session, *, member_id: uuid.UUID) -> MemberScore | None:
    return session.get(MemberScore, member_id)


@dataclass(frozen=True)
class RfmMetrics:
    """The metrics a member's RFM scores come from, as the last segment refresh kept
    them (``member_metrics``, as of ``as_of``)."""

    as_of: datetime
    last_purchase_at: datetime | None
    frequency_365: int
    spend_365_minor: int

    def recency_days(self, now: datetime) -> int | None:
        """Whole days from the latest purchase (as of ``as_of``) to ``now``."""
        if self.last_purchase_at is None:
            return None
        return max((now - self.last_purchase_at) // timedelta(days=1), 0)


def rfm_metrics_of(
    session: Session, *, member_id: uuid.UUID, programme_id: uuid.UUID
) -> RfmMetrics | None:
    """None before the programme's first segment refresh; a member without events then
    has no purchase, 0 and 0."""
    state = session.get(MemberMetricsState, programme_id)
    if state is None:
        return None
    row = session.get(MemberMetrics, member_id)
    if row is None or row.programme_id != programme_id:
        return RfmMetrics(state.computed_for, None, 0, 0)
    return RfmMetrics(state.computed_for, row.last_purchase_at, row.purchases_365, row.spend_365)
