"""Writing and reading ``member_recommendations``: each member's products, best first,
from the nightly training (``treu.insights.train``, step ``recommend``).

A training replaces the programme's rows as a whole (a recommendation of last night that
the model no longer makes must go): one ``DELETE`` of the programme's rows, then the new
rows in one set-based write, ``COPY`` into a temporary table and one ``INSERT … SELECT``
on PostgreSQL (the CSV made by pandas' writer, as in ``save_scores``) and one
``executemany`` on SQLite — never a statement per member.
The caller gives the programme's own members (the training reads them from the
programme's purchase lines); the table has no foreign keys (see its model), so nothing
else checks that.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Uuid, bindparam, delete, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from treu.db.base import UTCDateTime, table_of
from treu.kit.time import utc_now
from treu.segments.models import MemberRecommendation, RecommendationSource
from treu.segments.scores import psycopg_of

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("member_id", "rank", "sku", "score", "source", "category", "name")
"""What ``save_recommendations`` reads from its frame (the programme and time it adds)."""


def save_recommendations(
    session: Session,
    *,
    programme_id: uuid.UUID,
    frame: pd.DataFrame,
    now: datetime | None = None,
) -> int:
    """Replace the programme's stored recommendations by ``frame`` (``COLUMNS``; one row
    per member and rank, ranks from 1). Returns the number of rows written. Raises
    ``ValueError`` for a missing column, an unknown source or a member and rank given
    twice."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s): {', '.join(missing)}")
    rows = frame.loc[:, list(COLUMNS)].copy()
    rows["member_id"] = rows["member_id"].astype(str)
    unknown = {str(s) for s in rows["source"].unique()} - {s.value for s in RecommendationSource}
    if unknown:
        raise ValueError(f"unknown source(s): {', '.join(sorted(unknown))}")
    if rows.duplicated(["member_id", "rank"]).any():
        raise ValueError("a member and rank appear more than once")
    at = now or utc_now()
    table = table_of(MemberRecommendation)
    connection = session.connection()
    connection.execute(delete(table).where(table.c.programme_id == programme_id))
    if rows.empty:
        return 0
    rows.insert(1, "programme_id", str(programme_id))
    rows["rank"] = rows["rank"].astype("int64")
    rows["score"] = rows["score"].astype("float64")
    for column in ("category", "name"):
        rows[column] = rows[column].astype(object).where(rows[column].notna(), None)
    if connection.dialect.name == "postgresql":
        _copy(connection, rows, programme_id=programme_id, at=at)
    else:
        records: list[dict[str, Any]] = rows.to_dict("records")
        for record in records:
            record["member_id"] = uuid.UUID(record["member_id"])
            record["programme_id"] = programme_id
            record["computed_at"] = at
        connection.execute(insert(table), records)
    return len(rows)


_STAGING = "_treu_recommendations_in"
_COPY_ROWS = 500_000
"""Rows per piece of the ``COPY`` (``_copy``)."""
_PRODUCTS = "_treu_recommended_products_in"


def _copy(
    connection: Connection, rows: pd.DataFrame, *, programme_id: uuid.UUID, at: datetime
) -> None:
    """PostgreSQL: ``COPY`` only what varies per row (member, rank, SKU, score, source)
    into a temporary table, the products' name and category once per SKU into another,
    then one ``INSERT … SELECT`` adds the programme and the time. The score travels as
    an integer of millionths (it is rounded to 6 places anyway): pandas formats floats
    one Python call per value, integers in bulk. Measured on 300,000 rows, the CSV writer
    took 3.0 s for every column as floats and strings, over a second for the varying ones
    with the score as a float."""
    products = rows.drop_duplicates("sku")[["sku", "name", "category"]]
    varying = rows[["member_id", "rank", "sku", "source"]].copy()
    varying.insert(3, "score_micro", np.round(rows["score"].to_numpy() * 1e6).astype(np.int64))
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {_STAGING}, {_PRODUCTS}")
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_STAGING} (member_id uuid, rank smallint, "
        "sku varchar(64), score_micro bigint, source varchar(8))"
    )
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_PRODUCTS} (sku varchar(64), name varchar(200), "
        "category varchar(100))"
    )
    try:
        with psycopg_of(connection).cursor() as cursor:
            for name, frame in (
                (_STAGING, varying),
                (_PRODUCTS, products),
            ):
                with cursor.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy:
                    # In pieces: the CSV of 13M recommendations (1M members) is about
                    # a gigabyte of text, held once as str and once as bytes.
                    for start in range(0, len(frame), _COPY_ROWS):
                        piece = frame.iloc[start : start + _COPY_ROWS]
                        copy.write(piece.to_csv(header=False, index=False, lineterminator="\n"))
        connection.execute(
            text(
                "INSERT INTO member_recommendations (member_id, programme_id, rank, sku, "
                "score, source, category, name, computed_at) "
                "SELECT s.member_id, :programme_id, s.rank, s.sku, s.score_micro / 1e6, s.source, "
                f"p.category, p.name, :at FROM {_STAGING} s "
                f"LEFT JOIN {_PRODUCTS} p ON p.sku = s.sku"
            ).bindparams(
                bindparam("programme_id", programme_id, type_=Uuid()),
                bindparam("at", at, type_=UTCDateTime()),
            )
        )
    finally:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {_STAGING}, {_PRODUCTS}")


def stored_recommendations(session: Session, *, member_id: uuid.UUID) -> list[MemberRecommendation]:
    """The member's stored recommendations, by rank (empty until a training saw them)."""
    return list(
        session.scalars(
            select(MemberRecommendation)
            .where(MemberRecommendation.member_id == member_id)
            .order_by(MemberRecommendation.rank)
        )
    )
