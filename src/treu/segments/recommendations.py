"""Writing and reading ``member_recommendations``: each member's products, best first,
from the nightly training (``treu.insights.train``, step ``recommend``).

A training replaces the programme's rows as a whole (a recommendation of last night that
the model no longer makes must go): one ``DELETE`` of the programme's rows, then the new
rows in one set-based write, ``COPY`` on PostgreSQL (its CSV made by pandas' writer, as
in ``save_scores``) and one ``executemany`` on SQLite — never a statement per member.
The caller gives the programme's own members (the training reads them from the
programme's purchase lines); the table has no foreign keys (see its model), so nothing
else checks that.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from treu.db.base import table_of
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
    unknown = set(rows["source"].astype(str)) - {s.value for s in RecommendationSource}
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
    for text in ("category", "name"):
        rows[text] = rows[text].astype(object).where(rows[text].notna(), None)
    if connection.dialect.name == "postgresql":
        rows["computed_at"] = at.isoformat()
        names = ", ".join(rows.columns)
        data = rows.to_csv(header=False, index=False, lineterminator="\n")
        with psycopg_of(connection).cursor() as cursor:
            with cursor.copy(
                f"COPY member_recommendations ({names}) FROM STDIN (FORMAT csv)"
            ) as copy:
                copy.write(data)
    else:
        records: list[dict[str, Any]] = rows.to_dict("records")
        for record in records:
            record["member_id"] = uuid.UUID(record["member_id"])
            record["programme_id"] = programme_id
            record["computed_at"] = at
        connection.execute(insert(table), records)
    return len(rows)


def stored_recommendations(session: Session, *, member_id: uuid.UUID) -> list[MemberRecommendation]:
    """The member's stored recommendations, by rank (empty until a training saw them)."""
    return list(
        session.scalars(
            select(MemberRecommendation)
            .where(MemberRecommendation.member_id == member_id)
            .order_by(MemberRecommendation.rank)
        )
    )
