"""The model base: naming convention, time-ordered ids, UTC timestamps.

Every model inherits ``Base``; most also ``IdMixin`` + ``TimestampMixin``. Relationships
default to ``lazy="raise"`` so that an accidental N+1 query fails loudly in tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, Table, TypeDecorator, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

# The hot-path reads and writes live in db.fastpath (PostgreSQL past SQLAlchemy's
# per-statement machinery, with its contract and fallback); imported from here as before.
from treu.db.fastpath import COPY_THRESHOLD as COPY_THRESHOLD
from treu.db.fastpath import Lookup as Lookup
from treu.db.fastpath import Named as Named
from treu.db.fastpath import Query as Query
from treu.db.fastpath import WriteBatch as WriteBatch
from treu.db.fastpath import fetch as fetch
from treu.db.fastpath import lookup as lookup
from treu.kit.ids import new_id
from treu.kit.time import utc_now

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that is aware on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC and handed back with ``tzinfo=UTC``. Naive input is refused, never guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        int: BigInteger(),
    }


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


ModelT = TypeVar("ModelT", bound=Base)


def by_id(session: Session, model: type[ModelT], key: uuid.UUID | str) -> ModelT | None:
    """The row of ``model`` whose primary key is ``key`` (a UUID or its text, as a path
    parameter gives it); None when there is none or ``key`` is not a UUID."""
    if not isinstance(key, uuid.UUID):
        try:
            key = uuid.UUID(key)
        except ValueError:
            return None
    return session.get(model, key)


def one_by_id(
    session: Session,
    model: type[ModelT],
    key: uuid.UUID | str,
    *,
    missing: Callable[[str], Exception],
    what: str,
) -> ModelT:
    """``by_id``, or ``missing("no <what> '<key>'")`` raised (the feature's NotFound)."""
    found = by_id(session, model, key)
    if found is None:
        raise missing(f"no {what} {str(key)!r}")
    return found


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a model, for bulk statements on the hot path.

    ``session.execute(insert(Model), rows)`` goes through the ORM's bulk machinery, which
    costs several times more per row than a Core ``executemany`` on the connection."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
