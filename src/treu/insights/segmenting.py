"""Dynamic segments: defining them, and materialising who is in them.

A segment is a condition in the rules expression language over ``member``, ``metrics``
and ``scores`` (``treu.insights.vector``). ``refresh`` reads the programme's members
once (``treu.insights.metrics``), recomputes RFM (so ``scores.rfm_*`` are current), then
evaluates every active segment over all members at once and writes only the
difference: rows into / out of ``segment_members``, one ``segment_changes`` row per
member who entered or left, and the new ``member_count``. Running it twice changes
nothing the second time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from treu.db.base import table_of
from treu.insights.metrics import (
    POSITIONS,
    MemberTable,
    drop_positions,
    member_table,
    read_groups,
)
from treu.insights.rfm import save_rfm
from treu.insights.vector import compile_segment
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.rules.expr import ExpressionError
from treu.segments.errors import InvalidSegment, SegmentExists, SegmentNotFound
from treu.segments.models import Segment, SegmentChange, SegmentMember, SegmentStatus
from treu.segments.scores import psycopg_of

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=SLUG_PATTERN, examples=["valuable-at-risk"])
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    expression: str = Field(
        min_length=1,
        max_length=2000,
        examples=["metrics.spend_365 > 50000 and scores.churn_risk > 0.6"],
    )
    status: SegmentStatus = SegmentStatus.active


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    expression: str | None = Field(default=None, min_length=1, max_length=2000)
    status: SegmentStatus | None = None


@dataclass(frozen=True, slots=True)
class Refreshed:
    segment_id: uuid.UUID
    slug: str
    member_count: int
    entered: int
    left: int


def check_expression(source: str) -> None:
    """``InvalidSegment`` (422) with the position, like a rule condition, when
    ``source`` is not a segment condition."""
    try:
        compile_segment(source)
    except ExpressionError as exc:
        raise InvalidSegment(
            f"the expression is not valid: {exc}",
            errors=[{"field": "expression", **exc.to_dict()}],
        ) from None


class SegmentService:
    def create(self, session: Session, *, programme: Programme, data: SegmentIn) -> Segment:
        check_expression(data.expression)
        taken = session.scalar(
            select(Segment.id).where(
                Segment.programme_id == programme.id, Segment.slug == data.slug
            )
        )
        if taken is not None:
            raise SegmentExists(f"the programme has a segment {data.slug!r}")
        segment = Segment(
            programme_id=programme.id,
            slug=data.slug,
            name=data.name,
            description=data.description,
            expression=data.expression,
            status=data.status.value,
            member_count=0,
        )
        session.add(segment)
        session.flush()
        return segment

    def get(self, session: Session, segment_id: uuid.UUID | str) -> Segment:
        """By id, or ``programme-slug/segment-slug`` is not supported: ids only."""
        try:
            key = segment_id if isinstance(segment_id, uuid.UUID) else uuid.UUID(segment_id)
        except ValueError:
            raise SegmentNotFound(f"no segment {segment_id!r}") from None
        segment = session.get(Segment, key)
        if segment is None:
            raise SegmentNotFound(f"no segment {segment_id!r}")
        return segment

    def by_slug(self, session: Session, *, programme_id: uuid.UUID, slug: str) -> Segment:
        segment = session.scalar(
            select(Segment).where(Segment.programme_id == programme_id, Segment.slug == slug)
        )
        if segment is None:
            raise SegmentNotFound(f"no segment {slug!r}")
        return segment

    def all(self, session: Session, *, programme_id: uuid.UUID) -> list[Segment]:
        return list(
            session.scalars(
                select(Segment).where(Segment.programme_id == programme_id).order_by(Segment.slug)
            )
        )

    def update(self, session: Session, *, segment: Segment, data: SegmentPatch) -> Segment:
        """A changed expression takes effect at the next refresh (members stay until
        then, so what uses the segment never sees it empty in between)."""
        if data.expression is not None:
            check_expression(data.expression)
            segment.expression = data.expression
        if data.name is not None:
            segment.name = data.name
        if data.description is not None:
            segment.description = data.description
        if data.status is not None:
            segment.status = data.status.value
        segment.updated_at = utc_now()
        session.flush()
        return segment

    def delete(self, session: Session, *, segment: Segment) -> None:
        """The segment, its members and its history. The segment's row is locked first,
        as a refresh locks it: a refresh under way finishes before its rows are deleted,
        and none is left behind to block the delete (PostgreSQL)."""
        session.execute(select(Segment.id).where(Segment.id == segment.id).with_for_update()).all()
        for model in (SegmentMember, SegmentChange):
            session.execute(delete(model).where(model.segment_id == segment.id))
        session.delete(segment)
        session.flush()

    def refresh(
        self,
        session: Session,
        *,
        programme: Programme,
        segment_ids: list[uuid.UUID] | None = None,
        now: datetime | None = None,
        rfm: bool = True,
        rebuild: bool = False,
    ) -> list[Refreshed]:
        """Recompute RFM (unless ``rfm=False``) and the members of the programme's
        active segments (or of ``segment_ids``, paused ones included) as of ``now``.
        The member metrics are brought up to date incrementally, or rebuilt from every
        event with ``rebuild`` (``treu.insights.member_metrics``)."""
        now = now or utc_now()
        query = select(Segment).where(Segment.programme_id == programme.id)
        if segment_ids is not None:
            query = query.where(Segment.id.in_(segment_ids))
        else:
            query = query.where(Segment.status == SegmentStatus.active.value)
        # Locked in id order: two refreshes of one segment run one after the other.
        # populate_existing: a segment already loaded in this session (the on-demand
        # refresh reads it first) takes what a change committed while we waited.
        chosen = list(
            session.scalars(
                query.order_by(Segment.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        table = member_table(session, programme=programme, now=now, rebuild=rebuild)
        try:
            if rfm:
                save_rfm(session, table=table, programme_id=programme.id)
            return self._materialise(session, chosen, table, now)
        finally:
            drop_positions(session.connection())

    def _materialise(
        self, session: Session, chosen: list[Segment], table: MemberTable, now: datetime
    ) -> list[Refreshed]:
        """Evaluate every chosen segment over ``table`` and write the differences from
        their stored members for all of them at once, by row position
        (``treu.insights.metrics.POSITIONS``): the ids never come to Python, and each
        statement runs once per refresh, not once per segment."""
        connection = session.connection()
        held = table_of(SegmentMember)
        ids = [segment.id for segment in chosen]
        # Every chosen segment's stored members, by position, in one read.
        stored = read_groups(
            connection,
            select(POSITIONS.c.pos, held.c.segment_id)
            .join(POSITIONS, POSITIONS.c.id == held.c.member_id)
            .where(held.c.segment_id.in_(ids))
            .subquery(),
        )
        # Members no longer active (closed, blocked) have no position: they leave too.
        gone: dict[uuid.UUID, list[Any]] = {}
        for segment_id, member_id in connection.execute(
            select(held.c.segment_id, held.c.member_id)
            .outerjoin(POSITIONS, POSITIONS.c.id == held.c.member_id)
            .where(held.c.segment_id.in_(ids), POSITIONS.c.pos.is_(None))
        ):
            gone.setdefault(segment_id, []).append(member_id)
        changes: list[tuple[Segment, np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        done = []
        for segment in chosen:
            inside = compile_segment(segment.expression).evaluate(table)
            current = np.zeros(len(table), dtype=bool)
            current[stored.get(segment.id, np.zeros(0, "int64"))] = True
            entered = np.flatnonzero(inside & ~current)
            left = np.flatnonzero(current & ~inside)
            changes.append((segment, entered, left))
            segment.member_count = int(inside.sum())
            segment.computed_at = now
            left_count = len(left) + len(gone.get(segment.id, ()))
            done.append(
                Refreshed(segment.id, segment.slug, segment.member_count, len(entered), left_count)
            )
        if gone:
            _remove_gone(connection, gone, now)
        if any(len(entered) or len(left) for _, entered, left in changes):
            _write_changes(connection, changes, now)
        session.flush()
        return done

    def member_page(
        self, session: Session, *, segment: Segment, after: uuid.UUID | None, limit: int
    ) -> list[SegmentMember]:
        query = select(SegmentMember).where(SegmentMember.segment_id == segment.id)
        if after is not None:
            query = query.where(SegmentMember.member_id > after)
        return list(session.scalars(query.order_by(SegmentMember.member_id).limit(limit)))

    def change_page(
        self, session: Session, *, segment: Segment, before: int | None, limit: int
    ) -> list[SegmentChange]:
        """Newest first."""
        query = select(SegmentChange).where(SegmentChange.segment_id == segment.id)
        if before is not None:
            query = query.where(SegmentChange.id < before)
        return list(session.scalars(query.order_by(SegmentChange.id.desc()).limit(limit)))

    def count_changes(self, session: Session, *, segment: Segment) -> int:
        return int(
            session.scalar(select(func.count()).where(SegmentChange.segment_id == segment.id)) or 0
        )


segments = SegmentService()

_SQLITE_CHUNK = 500


def _remove_gone(connection: Connection, gone: dict[uuid.UUID, list[Any]], now: datetime) -> None:
    """Members who are no longer active (by segment) out of ``segment_members``, each
    with a ``left`` row in the history."""
    table = table_of(SegmentMember)
    for segment_id, member_ids in gone.items():
        if connection.dialect.name == "postgresql":
            with psycopg_of(connection).cursor() as cursor:
                cursor.execute(
                    "DELETE FROM segment_members WHERE segment_id = %s AND member_id = ANY(%s)",
                    (segment_id, member_ids),
                )
        else:
            for start in range(0, len(member_ids), _SQLITE_CHUNK):
                chunk = member_ids[start : start + _SQLITE_CHUNK]
                connection.execute(
                    delete(table).where(
                        table.c.segment_id == segment_id, table.c.member_id.in_(chunk)
                    )
                )
    pairs = [(segment_id, member_id) for segment_id, ids in gone.items() for member_id in ids]
    _insert(
        connection,
        table_of(SegmentChange),
        {
            "segment_id": [segment_id for segment_id, _ in pairs],
            "member_id": [member_id for _, member_id in pairs],
            "change": ["left"] * len(pairs),
            "at": [now] * len(pairs),
        },
    )


_CHANGED = Table(
    "_treu_changed",
    MetaData(),
    Column("segment_id", Uuid(), nullable=False),
    Column("pos", Integer(), nullable=False),
    Column("change", String(8), nullable=False),
    prefixes=["TEMPORARY"],
)


def _write_changes(
    connection: Connection,
    changes: list[tuple[Segment, np.ndarray[Any, Any], np.ndarray[Any, Any]]],
    now: datetime,
) -> None:
    """The positions that entered or left each segment into one temporary table
    (``COPY`` of plain text on PostgreSQL), then three set-based statements for every
    segment at once: out of ``segment_members``, into it, and the history."""
    _CHANGED.drop(connection, checkfirst=True)
    _CHANGED.create(connection)
    if connection.dialect.name == "postgresql":
        pieces = [
            np.char.add(f"{segment.id}\t", np.char.add(at.astype(str), f"\t{change}"))
            for segment, entered, left in changes
            for at, change in ((entered, "entered"), (left, "left"))
            if len(at)
        ]
        with psycopg_of(connection).cursor() as cursor:
            with cursor.copy(f"COPY {_CHANGED.name} (segment_id, pos, change) FROM STDIN") as copy:
                copy.write("\n".join(np.concatenate(pieces).tolist()) + "\n")
            cursor.execute(f"ANALYZE {_CHANGED.name}")
    else:
        rows = [
            {"segment_id": segment.id, "pos": int(p), "change": change}
            for segment, entered, left in changes
            for at, change in ((entered, "entered"), (left, "left"))
            for p in at
        ]
        connection.execute(insert(_CHANGED), rows)
    held, history, positions = table_of(SegmentMember), table_of(SegmentChange), POSITIONS
    changed = select(_CHANGED.c.segment_id, positions.c.id, _CHANGED.c.change).join(
        positions, positions.c.pos == _CHANGED.c.pos
    )
    programme_id = changes[0][0].programme_id
    if any(len(left) for _, _, left in changes):
        leaving = changed.where(_CHANGED.c.change == "left").with_only_columns(
            _CHANGED.c.segment_id, positions.c.id
        )
        connection.execute(
            delete(held).where(tuple_(held.c.segment_id, held.c.member_id).in_(leaving))
        )
    if any(len(entered) for _, entered, _ in changes):
        connection.execute(
            insert(held).from_select(
                ["segment_id", "member_id", "programme_id", "entered_at"],
                changed.where(_CHANGED.c.change == "entered").with_only_columns(
                    _CHANGED.c.segment_id,
                    positions.c.id,
                    literal(programme_id, held.c.programme_id.type),
                    literal(now, held.c.entered_at.type),
                ),
            )
        )
    connection.execute(
        insert(history).from_select(
            ["segment_id", "member_id", "change", "at"],
            changed.with_only_columns(
                _CHANGED.c.segment_id,
                positions.c.id,
                _CHANGED.c.change,
                literal(now, history.c.at.type),
            ),
        )
    )
    _CHANGED.drop(connection)


def _insert(connection: Connection, table: Table, columns: dict[str, list[Any]]) -> None:
    """Many rows given column-wise: ``COPY`` on PostgreSQL, one ``executemany`` on
    SQLite."""
    names = list(columns)
    if not columns[names[0]]:
        return
    rows = zip(*columns.values(), strict=True)
    if connection.dialect.name == "postgresql":
        with psycopg_of(connection).cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    connection.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
