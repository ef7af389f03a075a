"""The model base: naming convention, time-ordered ids, UTC timestamps.

Every model inherits ``Base``; most also ``IdMixin`` + ``TimestampMixin``. Relationships
default to ``lazy="raise"`` so that an accidental N+1 query fails loudly in tests.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg.types.json import Jsonb
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    Table,
    TypeDecorator,
    Uuid,
    bindparam,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.sqltypes import NullType

from treu.kit import jsons
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


class Lookup:
    """A hot-path SELECT built once, in two forms: ``column = :key`` for one value and
    ``column IN (:keys)`` for many.

    Measured here: building a select and expanding an IN list on every call cost ~8x
    executing a prebuilt statement (≈360 µs vs ≈40 µs on SQLite).

    The statements are built on first use, not at import: a foreign-key column takes its
    type from the column it references, which is unknown (``NullType``) until the
    referenced model is imported, and an untyped ``IN`` list of UUIDs fails on SQLite."""

    def __init__(self, build: Callable[[ColumnElement[bool]], Any], column: Any) -> None:
        self._build = build
        self._column = column
        self._built: tuple[Any, Any] | None = None
        self._any: Any = None

    def _statements(self) -> tuple[Any, Any]:
        if self._built is None:
            column = self._column
            self._built = (
                self._build(column == bindparam("key", type_=column.type)),
                self._build(_in(column, "keys")),
            )
        return self._built

    def bind(self, values: list[Any], **params: Any) -> tuple[Any, dict[str, Any]]:
        one, many = self._built or self._statements()
        if len(values) == 1:
            return one, {"key": values[0], **params}
        return many, {"keys": values, **params}

    def rows(
        self, connection: Connection, values: list[Any], **params: Any
    ) -> list[tuple[Any, ...]]:
        """Run it: on PostgreSQL through ``fetch``, with the many values sent as one JSON
        array (``_any``; one statement text whatever the number of values: an expanded
        ``IN`` list of 1,000 values was parsed anew by psycopg on every call)."""
        if connection.dialect.name != "postgresql" or len(values) == 1:
            statement, bound = self.bind(values, **params)
            return fetch(connection, statement, bound)
        if self._any is None:
            self._any = self._build(_any(self._column, "keys"))
        return fetch(connection, self._any, {"keys": json_list(values), **params})


class Query:
    """A hot-path SELECT with list parameters, built once per kind of database: ``IN``
    lists in general, ``= ANY(…)`` of a JSON array on PostgreSQL (``_any``). ``build``
    gets a function ``among(column, name)`` for each list condition; every list, set or
    tuple parameter is taken for one of those."""

    def __init__(self, build: Callable[[Callable[[Any, str], ColumnElement[bool]]], Any]) -> None:
        self._build = build
        self._built: dict[bool, Any] = {}

    def rows(self, connection: Connection, **params: Any) -> list[tuple[Any, ...]]:
        postgresql = connection.dialect.name == "postgresql"
        statement = self._built.get(postgresql)
        if statement is None:
            statement = self._build(_any if postgresql else _in)
            self._built[postgresql] = statement
        if postgresql:
            params = {
                k: json_list(v) if isinstance(v, list | set | frozenset | tuple) else v
                for k, v in params.items()
            }
        return fetch(connection, statement, params)


def _in(column: Any, name: str) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column.in_(bindparam(name, expanding=True, type_=column.type))
    return result


def _any(column: Any, name: str) -> ColumnElement[bool]:
    """``column = ANY(ARRAY(SELECT json_array_elements_text(:name)::<column type>))``:
    the values travel as one JSON text (``json_list``) instead of a PostgreSQL array.
    psycopg builds an array parameter element by element in Python (3.5 ms of CPU for
    1,000 UUIDs, 0.3 ms as JSON with orjson; measured for ``74163c5`` on a 2-core machine
    that committed 1,347-2,064 raw single-row PostgreSQL transactions a second), and the
    text needs no UUID objects at all. The planner still uses the column's index (the
    array is an init plan: ``Index Cond: (id = ANY ($0))``)."""
    from sqlalchemy import Text, any_, cast, func, select

    elements = func.json_array_elements_text(cast(bindparam(name, type_=Text()), JSON))
    array = func.array(select(cast(elements, column.type)).scalar_subquery())
    result: ColumnElement[bool] = column == any_(array)
    return result


def json_list(values: Any) -> str:
    """A list parameter of ``_any`` (UUIDs, strings, numbers) as a JSON array."""
    return jsons.dumps_str(values if isinstance(values, list) else list(values))


def lookup(build: Callable[[ColumnElement[bool]], Any], column: Any) -> Lookup:
    return Lookup(build, column)


def fetch(connection: Connection, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a prebuilt hot-path SELECT (no expanding ``IN`` lists), as tuples.

    On PostgreSQL the statement is compiled once and run on the driver's cursor: for a
    single purchase, SQLAlchemy's execution context and result set around the one read
    (the member, with its account locked) cost more CPU than the read itself. The
    columns' result processing (UTC timestamps) is applied the way SQLAlchemy would."""
    if connection.dialect.name != "postgresql":
        return [tuple(row) for row in connection.execute(statement, params)]
    sql, defaults, binds, results = _pg_select(statement, connection.dialect)
    if defaults:
        params = {**defaults, **params}
    if binds:
        params = {k: (binds[k](v) if k in binds else v) for k, v in params.items()}
    import psycopg

    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with raw.cursor() as cursor:
            _observed(connection, cursor, sql, params)
            cursor.execute(sql, params)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
    except Exception as exc:
        raise _translated(exc, connection, "fetch") from exc
    if results:
        return _processed(rows, tuple(results.items()))
    return rows


def _processed(
    rows: list[tuple[Any, ...]], processors: tuple[tuple[int, Callable[[Any], Any]], ...]
) -> list[tuple[Any, ...]]:
    """Apply the result processors to their columns only (a generator over every value
    of every row was most of the CPU of looking up 1,000 members)."""
    out = []
    for row in rows:
        values = list(row)
        for index, process in processors:
            value = values[index]
            if value is not None:
                values[index] = process(value)
        out.append(tuple(values))
    return out


_SELECTS: dict[int, tuple[Any, str, dict[str, Any], dict[str, Any], dict[int, Any]]] = {}


def _pg_select(
    statement: Any, dialect: Dialect
) -> tuple[str, dict[str, Any], dict[str, Any], dict[int, Any]]:
    cached = _SELECTS.get(id(statement))
    if cached is None or cached[0] is not statement:
        compiled = statement.compile(dialect=dialect)
        binds = {
            name: processor
            for name, processor in (compiled._bind_processors or {}).items()
            if processor is not None
        }
        results = {}
        for index, column in enumerate(compiled._result_columns):
            processor = column.type._cached_result_processor(dialect, None)
            if processor is not None:
                results[index] = processor
        defaults = {k: v for k, v in compiled.params.items() if v is not None}
        cached = (statement, compiled.string, defaults, binds, results)
        if len(_SELECTS) >= 256:  # meant for prebuilt statements; never grow without end
            _SELECTS.clear()
        _SELECTS[id(statement)] = cached
    return cached[1], cached[2], cached[3], cached[4]


def _observed(connection: Connection, cursor: Any, sql: str, params: Any) -> None:
    """Tell SQLAlchemy's ``before_cursor_execute`` listeners about a statement sent past
    SQLAlchemy (tests count the statements of a unit of work that way)."""
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)


def _translated(exc: Exception, connection: Connection, where: str) -> Exception:
    """psycopg's errors as SQLAlchemy's, the way SQLAlchemy translates them: callers
    handle those (IntegrityError -> retry, lock timeouts -> Busy) whichever path ran."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, psycopg.Error):
        return exc
    return DBAPIError.instance(where, None, exc, psycopg.Error, dialect=connection.dialect)


COPY_THRESHOLD = 32


class WriteBatch:
    """The writes of one unit of work, sent together in ``flush``.

    A purchase writes five tables. On PostgreSQL a small unit of work goes out as one
    statement (``_combined``), a larger one as one psycopg pipeline — one round trip
    either way — and tables with ``COPY_THRESHOLD`` rows or more are streamed with
    binary ``COPY`` (measured on a batch of 1,000 purchases: SQLAlchemy's per-row
    parameter processing was over half of the batch's CPU time), and updates of as many
    distinct rows are one ``UPDATE … FROM json_to_recordset(…)`` (``_update_many``).
    Elsewhere each write is a Core ``executemany``. Values must already be what the
    column stores — UUIDs, aware datetimes, ints, strings, JSON-able dicts and lists —
    binary ``COPY`` takes no string for a UUID or a number."""

    def __init__(self) -> None:
        self._ops: list[tuple[str, Table, list[dict[str, Any]], tuple[str, ...]]] = []

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._ops.append(("insert", table, rows, ()))

    def update(
        self, table: Table, rows: list[dict[str, Any]], *, key: str | tuple[str, ...] = "id"
    ) -> None:
        """``UPDATE table SET <other columns> WHERE <key columns> = row[...]`` for each row
        (``key``: one column or several, for composite primary keys)."""
        if rows:
            self._ops.append(("update", table, rows, (key,) if isinstance(key, str) else key))

    def flush(self, connection: Connection) -> None:
        ops, self._ops = self._ops, []
        if connection.dialect.name != "postgresql":
            for kind, table, rows, key in ops:
                if kind == "insert":
                    connection.execute(table.insert(), rows)
                else:
                    columns = [c for c in rows[0] if c not in key]
                    connection.execute(
                        table.update()
                        .where(*(table.c[k] == bindparam(f"b_{k}") for k in key))
                        .values({c: bindparam(f"b_{c}") for c in columns}),
                        [{f"b_{k}": v for k, v in row.items()} for row in rows],
                    )
            return
        try:
            _flush_postgresql(connection, ops)
        except Exception as exc:
            raise _translated(exc, connection, "WriteBatch.flush") from exc


def _quote(name: str) -> str:
    """Quote one of *our* table or column names (never user input)."""
    return '"' + name.replace('"', '""') + '"'


@functools.lru_cache(maxsize=256)
def _pg_statement(kind: str, table: Table, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """The SQL text for one kind of write, built once: composing it per call with
    ``psycopg.sql`` was a large part of a single purchase's CPU time."""
    names = ", ".join(map(_quote, columns))
    if kind == "copy":
        return f"COPY {_quote(table.name)} ({names}) FROM STDIN (FORMAT BINARY)"
    if kind == "insert_head":
        return f"INSERT INTO {_quote(table.name)} ({names}) VALUES "
    if kind == "insert":
        marks = ", ".join(["%s"] * len(columns))
        return f"INSERT INTO {_quote(table.name)} ({names}) VALUES ({marks})"
    if kind == "update_from_json":
        # The same, with the rows as one JSON text: psycopg builds array parameters
        # element by element in Python (with a regular expression per element to decide
        # on quoting), orjson writes the rows' dicts as they are.
        fields = ", ".join(f"{_quote(c)} {_pg_type(table, c)}" for c in (*columns, *key))
        sets = ", ".join(f"{_quote(c)} = v.{_quote(c)}" for c in columns)
        where = " AND ".join(f"t.{_quote(k)} = v.{_quote(k)}" for k in key)
        return (
            f"UPDATE {_quote(table.name)} AS t SET {sets} "
            f"FROM json_to_recordset(%s::json) AS v({fields}) WHERE {where}"
        )
    if kind == "update_from_arrays":
        # One statement for many rows: a column array per parameter, zipped by unnest
        # (1,000 single-row UPDATEs of a batch's accounts, pipelined, cost the database
        # 8.4 ms and the driver 17 ms of a profiled run; this costs the database 4 ms).
        arrays = ", ".join(f"%s::{_pg_type(table, c)}[]" for c in (*columns, *key))
        names = ", ".join(map(_quote, (*columns, *key)))
        sets = ", ".join(f"{_quote(c)} = v.{_quote(c)}" for c in columns)
        where = " AND ".join(f"t.{_quote(k)} = v.{_quote(k)}" for k in key)
        return (
            f"UPDATE {_quote(table.name)} AS t SET {sets} "
            f"FROM unnest({arrays}) AS v({names}) WHERE {where}"
        )
    sets = ", ".join(f"{_quote(c)} = %s" for c in columns)
    where = " AND ".join(f"{_quote(k)} = %s" for k in key)
    return f"UPDATE {_quote(table.name)} SET {sets} WHERE {where}"


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_type(table: Table, name: str) -> str:
    """A column's PostgreSQL type, as in a cast (``BIGINT``, ``UUID``, ``VARCHAR(16)``)."""
    column = table.c[name]
    if isinstance(column.type, NullType) and column.foreign_keys:
        # A foreign key is typed by its target once the target's model is loaded.
        column = next(iter(column.foreign_keys)).column
    return str(column.type.compile(dialect=_PG_DIALECT))


_JSON_PREFIX = {"jsonb": b"\x01", "json": b""}
"""What PostgreSQL's binary format puts before a JSON text: ``jsonb`` a version byte."""


@functools.lru_cache(maxsize=256)
def _copy_types(
    table: Table, columns: tuple[str, ...]
) -> tuple[list[str], tuple[tuple[int, bytes], ...]]:
    """Binary ``COPY`` needs each column's type: formatting a batch's 6,000 rows in
    PostgreSQL's binary format took half the driver's CPU of its text format (the UUIDs
    and timestamps above all). Also the positions of the JSON columns and the prefix of
    their binary form: they go out already made (``_copy_rows``), typed ``bytea`` for
    psycopg, whose compiled bytes dumper writes them as they are."""
    types = [_pg_type(table, c).split("(")[0].lower() for c in columns]
    json_columns = tuple((i, _JSON_PREFIX[t]) for i, t in enumerate(types) if t in _JSON_PREFIX)
    return ["bytea" if t in _JSON_PREFIX else t for t in types], json_columns


@functools.lru_cache(maxsize=256)
def _json_columns(table: Table, columns: tuple[str, ...]) -> frozenset[str]:
    return frozenset(c for c in columns if isinstance(table.c[c].type, JSON))


def _columns(kind: str, rows: list[dict[str, Any]], key: tuple[str, ...]) -> tuple[str, ...]:
    """The columns an insert writes, or an update sets (its key columns go in WHERE)."""
    return tuple(rows[0]) if kind == "insert" else tuple(c for c in rows[0] if c not in key)


def _values(row: dict[str, Any], columns: tuple[str, ...], jsons: frozenset[str]) -> list[Any]:
    return [Jsonb(row[c]) if c in jsons else row[c] for c in columns]


def _copy_rows(
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    json_columns: tuple[tuple[int, bytes], ...],
) -> Iterator[Any]:
    """The rows for binary ``COPY``, their values in column order (``itemgetter``: the
    per-column loop in Python was a twentieth of a batch's CPU), JSON values in
    PostgreSQL's binary form (``_copy_types``) made by orjson instead of psycopg's dumper
    classes in Python (a batch of 1,000 purchases writes 6,000 JSON values). ``None`` is
    JSON ``null``, as ``Jsonb(None)`` writes it."""
    get = operator.itemgetter(*columns)
    if len(columns) == 1:
        yield from ((value,) for value in map(get, rows))
        return
    if not json_columns:
        yield from map(get, rows)
        return
    dumps = jsons.dumps
    for row in rows:
        values = list(get(row))
        for index, prefix in json_columns:
            values[index] = prefix + dumps(values[index])
        yield values


def _flush_postgresql(
    connection: Connection, ops: list[tuple[str, Table, list[dict[str, Any]], tuple[str, ...]]]
) -> None:
    import psycopg

    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)

    with raw.cursor() as cursor:
        combined = _combined(ops)
        if combined is not None:
            statement, params = combined
            _observed(connection, cursor, statement, params)
            cursor.execute(statement, params)
            return
        pending: list[tuple[str, list[list[Any]]]] = []
        for kind, table, rows, key in ops:
            columns = _columns(kind, rows, key)
            jsons = _json_columns(table, columns)
            if kind == "insert" and len(rows) >= COPY_THRESHOLD:
                _run_pipeline(connection, raw, cursor, pending)
                pending = []
                sql = _pg_statement("copy", table, columns, ())
                _observed(connection, cursor, sql, None)
                types, json_columns = _copy_types(table, columns)
                with cursor.copy(sql) as copy:
                    copy.set_types(types)
                    for values in _copy_rows(rows, columns, json_columns):
                        copy.write_row(values)
            elif kind == "insert":
                pending.append(
                    (
                        _pg_statement("insert", table, columns, ()),
                        [_values(row, columns, jsons) for row in rows],
                    )
                )
            elif len(rows) >= COPY_THRESHOLD and _unique_keys(rows, key):
                pending.append(_update_many(table, rows, columns, key, jsons))
            else:
                pending.append(
                    (
                        _pg_statement("update", table, columns, key),
                        [[*_values(row, columns, jsons), *(row[k] for k in key)] for row in rows],
                    )
                )
        _run_pipeline(connection, raw, cursor, pending)


def _update_many(
    table: Table,
    rows: list[dict[str, Any]],
    columns: tuple[str, ...],
    key: tuple[str, ...],
    json_columns: frozenset[str],
) -> tuple[str, list[list[Any]]]:
    """One ``UPDATE … FROM`` for many rows: the rows as JSON if every row has the same
    columns and orjson can write their values, else a column array per parameter."""
    wanted = {*columns, *key}
    if all(row.keys() == wanted for row in rows):
        try:
            text = jsons.dumps_str(rows)
        except TypeError:  # e.g. a Decimal: the arrays below take any value psycopg can
            pass
        else:
            return _pg_statement("update_from_json", table, columns, key), [[text]]
    values = [[*_values(row, columns, json_columns), *(row[k] for k in key)] for row in rows]
    return (
        _pg_statement("update_from_arrays", table, columns, key),
        [[list(column) for column in zip(*values, strict=True)]],
    )


def _unique_keys(rows: list[dict[str, Any]], key: tuple[str, ...]) -> bool:
    """No row is updated twice (one ``UPDATE … FROM`` would apply only one of them)."""
    return len({tuple(row[k] for k in key) for row in rows}) == len(rows)


# A unit of work this small is written by one statement (see ``_combined``).
COMBINE_MAX_ROWS = 24
COMBINE_MAX_PARAMS = 2000


def _combined(
    ops: list[tuple[str, Table, list[dict[str, Any]], tuple[str, ...]]],
) -> tuple[str, list[Any]] | None:
    """The writes of a small unit of work as *one* statement of data-modifying CTEs::

        WITH w0 AS (INSERT INTO events ... VALUES (...)),
             w1 AS (INSERT INTO purchase_lines ... VALUES (...), (...), (...)),
             ...
        UPDATE accounts SET ... WHERE member_id = ...

    One execute instead of a pipeline of seven (measured with callgrind on a single
    purchase: 14 % fewer instructions for ``ingest_with_retry``; see db.session for
    psycopg's parse cache, without which it was more).
    Foreign keys hold: PostgreSQL checks them when the whole statement ends, after every
    part ran. The parts share one snapshot, so an UPDATE cannot see a row inserted by
    another part, and two UPDATEs of one row would both act on the old version: such
    batches (and large ones) return ``None`` and go through the pipeline."""
    rows_total = sum(len(rows) for _kind, _table, rows, _key in ops)
    if not ops or rows_total > COMBINE_MAX_ROWS:
        return None
    updated: dict[str, set[tuple[Any, ...]]] = {}
    for kind, table, rows, key in ops:
        if kind == "update":
            seen = updated.setdefault(table.name, set())
            for row in rows:
                values = tuple(row[k] for k in key)
                if values in seen:
                    return None
                seen.add(values)
    for kind, table, rows, _key in ops:
        if kind == "insert" and table.name in updated:
            keys = [k for k in rows[0] if k in table.primary_key.columns]
            if not keys:
                return None
            mine = {tuple(row[k] for k in keys) for row in rows}
            if mine & updated[table.name]:
                return None
    shape = []
    params: list[Any] = []
    for kind, table, rows, key in ops:
        columns = _columns(kind, rows, key)
        shape.append((kind, table, columns, key, len(rows)))
        jsons = _json_columns(table, columns)
        for row in rows:
            params.extend(_values(row, columns, jsons))
            if kind != "insert":
                params.extend(row[k] for k in key)
    if len(params) > COMBINE_MAX_PARAMS:
        return None
    return _combined_sql(tuple(shape)), params


@functools.lru_cache(maxsize=256)
def _combined_sql(
    shape: tuple[tuple[str, Table, tuple[str, ...], tuple[str, ...], int], ...],
) -> str:
    """The text of ``_combined``'s statement for the writes of one shape (kind, table,
    columns, key and number of rows of each), built once: composing it was 1.6 % of a
    worker's CPU at single-event saturation."""
    parts: list[str] = []
    for kind, table, columns, key, count in shape:
        if kind == "insert":
            head = _pg_statement("insert_head", table, columns, ())
            marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
            parts.append(head + ", ".join([marks] * count))
        else:
            parts.extend([_pg_statement("update", table, columns, key)] * count)
    if len(parts) == 1:
        return parts[0]
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts[:-1]))
    return f"WITH {ctes} {parts[-1]}"


def _run_pipeline(
    connection: Connection, raw: Any, cursor: Any, statements: list[tuple[Any, list[list[Any]]]]
) -> None:
    if not statements:
        return
    with raw.pipeline():
        for statement, params in statements:
            _observed(connection, cursor, statement, params)
            if len(params) == 1:
                cursor.execute(statement, params[0])
            else:
                cursor.executemany(statement, params)
