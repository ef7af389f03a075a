"""The PostgreSQL fast path: hot-path reads and writes sent on psycopg's cursor, past
SQLAlchemy's per-statement machinery.

Contract
--------
Callers get the same results on every backend, with the fast path or without it:

* ``fetch(connection, statement, params)``: the rows of a *prebuilt* ``SELECT`` (built
  once and reused: its compiled form is kept by identity; no expanding ``IN`` lists —
  ``Lookup`` and ``Query`` make those) as tuples, each column processed as SQLAlchemy
  would (``UTCDateTime`` gives aware values) — what ``connection.execute`` gives.
* ``Lookup`` and ``Query``: such SELECTs with one or many values, built once per kind of
  database (``column = ANY(<JSON array>)`` on PostgreSQL, ``IN`` elsewhere).
* ``WriteBatch``: the inserts and updates of one unit of work, applied in ``flush`` in
  the order given, in the connection's transaction, and after them its guarded
  additions (``add_within``), whose new values ``flush`` returns. Rows are plain dicts
  whose values are already what the column stores — UUIDs, aware datetimes, ints,
  strings, JSON-able dicts and lists: no column defaults, no ``TypeDecorator``
  processing, no ORM events, nothing in the Session's identity map. A batch that
  updates a row must not insert it too (one combined statement would not see the
  insert).
* Errors are SQLAlchemy's (``IntegrityError``, ``OperationalError``, …), translated as
  SQLAlchemy translates psycopg's: callers handle one kind whichever path ran.
* ``before_cursor_execute`` listeners see every statement sent (tests count statements
  that way); ``after_cursor_execute`` listeners do not.

What it does on PostgreSQL: see ``fetch``, ``WriteBatch`` and ``_combined``. Elsewhere
(SQLite) everything goes through SQLAlchemy Core.

Internals it relies on, and the fallback
----------------------------------------
SQLAlchemy: ``SQLCompiler._bind_processors`` and ``._result_columns``,
``TypeEngine._cached_result_processor``, ``Connection._has_events`` and
``Engine._has_events``. psycopg: ``psycopg._queries.MAX_CACHED_STATEMENT_PARAMS``
(``tune_psycopg``). pyproject.toml bounds both libraries below their next minor release;
tests/db/test_library_hooks.py fails naming the internal that is gone. At run time the
first PostgreSQL use checks them (``missing_hooks``): without SQLAlchemy's, ``fetch``
and ``WriteBatch`` take SQLAlchemy's standard path on PostgreSQL too (same results,
slower); without psycopg's, a small unit of work goes out as a pipeline instead of one
combined statement. Either way a warning is logged once (``treu.db.fastpath``).
"""

from __future__ import annotations

import functools
import logging
import operator
from collections import namedtuple
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, ColumnElement, Float, Integer, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.types import TypeEngine

from treu.kit import jsons

log = logging.getLogger("treu.db.fastpath")

_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]

SQLALCHEMY_HOOKS = (
    "SQLCompiler._bind_processors",
    "SQLCompiler._result_columns",
    "TypeEngine._cached_result_processor",
    "Connection._has_events",
    "Engine._has_events",
)
PSYCOPG_HOOK = "psycopg._queries.MAX_CACHED_STATEMENT_PARAMS"


def missing_hooks() -> list[str]:
    """The internals named in the module's docstring that the installed SQLAlchemy and
    psycopg lack (empty: the fast path can run)."""
    owners = {
        "SQLCompiler": select(bindparam("p", 1, type_=Integer())).compile(dialect=_PG_DIALECT),
        "TypeEngine": TypeEngine,
        "Connection": Connection,
        "Engine": Engine,
    }
    missing = []
    for hook in SQLALCHEMY_HOOKS:
        owner, name = hook.split(".")
        if not hasattr(owners[owner], name):
            missing.append(hook)
    if _psycopg_queries() is None:
        missing.append(PSYCOPG_HOOK)
    return missing


def _psycopg_queries() -> Any:
    """psycopg's private ``_queries`` module when it still has the parse-cache limit."""
    try:
        import psycopg._queries as queries
    except ImportError:
        return None
    return queries if hasattr(queries, PSYCOPG_HOOK.rsplit(".", 1)[1]) else None


_fast: bool | None = None
"""Whether SQLAlchemy's hooks are there (None: not checked yet in this process)."""
_combine = True
"""Whether a small unit of work is one statement (``tune_psycopg`` says)."""


def _fast_path() -> bool:
    global _fast
    if _fast is None:  # once per process
        gone = [name for name in missing_hooks() if name in SQLALCHEMY_HOOKS]
        if gone:
            import sqlalchemy

            log.warning(
                "the PostgreSQL fast path is off: SQLAlchemy %s has no %s; hot-path reads "
                "and writes take SQLAlchemy's standard path (same results, slower). Treu "
                "is tested with the SQLAlchemy versions pyproject.toml allows.",
                sqlalchemy.__version__,
                ", ".join(gone),
            )
        _fast = not gone
    return _fast


def tune_psycopg() -> None:
    """Let psycopg keep the parsed form of statements with many parameters.

    psycopg parses a statement with more than 50 parameters anew on every call (a
    private limit of its parse cache); a single purchase's writes are one statement of
    ~80 (``_combined``) and cost more than the pipeline they replace without this.
    Statement texts repeat, so the cache stays small. Without the limit to raise, small
    units of work go out as a pipeline."""
    global _combine
    queries = _psycopg_queries()
    if queries is None:
        log.warning(
            "psycopg %s has no %s: small units of work are written as a pipeline instead "
            "of one statement (slower). Treu is tested with the psycopg versions "
            "pyproject.toml allows.",
            psycopg.__version__,
            PSYCOPG_HOOK,
        )
        _combine = False
        return
    name = PSYCOPG_HOOK.rsplit(".", 1)[1]
    setattr(queries, name, max(getattr(queries, name), 4000))
    _combine = True


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


class Named:
    """A prebuilt SELECT whose rows come back as named tuples, for pages: a template
    reads ``row.column`` as it would read an ORM object's attribute, and the read costs
    what ``fetch`` costs instead of the ORM's statement building, caching and object
    loading (about half a millisecond of CPU for a short list). Built on first use, as
    ``Lookup`` is; parameters are bound by name (``bindparam``)."""

    def __init__(self, name: str, build: Callable[[], Any]) -> None:
        self._name = name
        self._build = build
        self._built: tuple[Any, Any] | None = None

    def _statement(self) -> tuple[Any, Any]:
        if self._built is None:
            statement = self._build()
            keys = [column.key for column in statement.selected_columns]
            shape = namedtuple(self._name, keys)  # type: ignore[misc]
            self._built = (statement, shape)
        return self._built

    def rows(self, connection: Connection, **params: Any) -> list[Any]:
        statement, made = self._statement()
        return [made._make(found) for found in fetch(connection, statement, params)]

    def first(self, connection: Connection, **params: Any) -> Any | None:
        found = self.rows(connection, **params)
        return found[0] if found else None

    def call(self, **params: Any) -> tuple[Named, dict[str, Any]]:
        """This read with its parameters, for ``together``."""
        return self, params

    @staticmethod
    def together(connection: Connection, *calls: tuple[Named, dict[str, Any]]) -> list[list[Any]]:
        """The rows of several reads (``call``), sent in one round trip (``fetch_together``)."""
        built = [(named._statement(), params) for named, params in calls]
        found = fetch_together(
            connection, [(statement, params) for (statement, _), params in built]
        )
        return [
            [made._make(row) for row in rows]
            for ((_, made), _), rows in zip(built, found, strict=True)
        ]


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
    if connection.dialect.name != "postgresql" or not _fast_path():
        return [tuple(row) for row in connection.execute(statement, params)]
    sql, defaults, binds, results = _pg_select(statement, connection.dialect)
    if defaults:
        params = {**defaults, **params}
    if binds:
        params = {k: (binds[k](v) if k in binds else v) for k, v in params.items()}
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


def fetch_together(
    connection: Connection, calls: list[tuple[Any, dict[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of several prebuilt SELECTs (as ``fetch``), on PostgreSQL sent in one
    round trip (the driver's pipeline mode): a page's independent short reads cost one
    wait for the server instead of one each. Elsewhere they run one after the other."""
    if connection.dialect.name != "postgresql" or not _fast_path() or len(calls) < 2:
        return [fetch(connection, statement, params) for statement, params in calls]
    prepared = []
    for statement, params in calls:
        sql, defaults, binds, results = _pg_select(statement, connection.dialect)
        if defaults:
            params = {**defaults, **params}
        if binds:
            params = {k: (binds[k](v) if k in binds else v) for k, v in params.items()}
        prepared.append((sql, params, tuple(results.items())))
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    cursors: list[Any] = []
    try:
        with raw.pipeline():
            for sql, params, _ in prepared:
                cursor = raw.cursor()
                cursors.append(cursor)
                _observed(connection, cursor, sql, params)
                cursor.execute(sql, params)
        found = []
        for cursor, (_, _, processors) in zip(cursors, prepared, strict=True):
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            found.append(_processed(rows, processors) if processors else rows)
        return found
    except Exception as exc:
        raise _translated(exc, connection, "fetch") from exc
    finally:
        for cursor in cursors:
            cursor.close()


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
            kind = column.type
            if isinstance(kind, Float) and not kind.asdecimal:
                continue  # psycopg gives a float; SQLAlchemy's needs the run-time type code
            processor = kind._cached_result_processor(dialect, None)
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
        self._adds: list[_Addition] = []

    def insert(
        self, table: Table, rows: list[dict[str, Any]], *, skip_existing: bool = False
    ) -> None:
        """``skip_existing``: ``INSERT … ON CONFLICT DO NOTHING`` (a row whose key is
        there already is left as it is), for records written once whoever comes first,
        such as a campaign's exposures."""
        if rows:
            self._ops.append(("insert_ignore" if skip_existing else "insert", table, rows, ()))

    def update(
        self, table: Table, rows: list[dict[str, Any]], *, key: str | tuple[str, ...] = "id"
    ) -> None:
        """``UPDATE table SET <other columns> WHERE <key columns> = row[...]`` for each row
        (``key``: one column or several, for composite primary keys)."""
        if rows:
            self._ops.append(("update", table, rows, (key,) if isinstance(key, str) else key))

    def add_within(
        self, table: Table, *, where: dict[str, Any], column: str, amount: int, limit: str
    ) -> int:
        """``UPDATE table SET column = column + amount WHERE <where> AND column + amount
        <= limit`` (``where``: column = value conditions naming the row; ``limit``: the
        row's column that bounds ``column``), after the batch's other writes: a counter
        that many units of work add to and none may take past its limit (a slot of a
        rule's budget, ``treu.rules.budgets``). Returns the addition's index in what
        ``flush`` returns: the column's new value, or None where no row matched (the
        limit would have been passed, or the conditions hold for no row). Columns
        updated on change (``onupdate``) keep their value.

        On PostgreSQL a batch's only addition goes in the batch's one statement
        (``_combined``), without a round trip of its own; several are sent one by one,
        in the order of their rows (one statement would take their rows in no set order,
        and two units could then wait for each other)."""
        if any(value is None for value in where.values()):
            raise ValueError("add_within: a condition's value is None")
        self._adds.append(
            _Addition(table, tuple(where), tuple(where.values()), column, amount, limit)
        )
        return len(self._adds) - 1

    def flush(self, connection: Connection) -> list[int | None]:
        """Apply the writes; the new values of the additions (``add_within``), in order."""
        ops, self._ops = self._ops, []
        adds, self._adds = self._adds, []
        if connection.dialect.name == "postgresql" and _fast_path():
            try:
                return _flush_postgresql(connection, ops, adds)
            except Exception as exc:
                raise _translated(exc, connection, "WriteBatch.flush") from exc
        self._flush_core(connection, ops)
        return _in_key_order(adds, lambda add: _add_core(connection, add))

    @staticmethod
    def _flush_core(
        connection: Connection, ops: list[tuple[str, Table, list[dict[str, Any]], tuple[str, ...]]]
    ) -> None:
        for kind, table, rows, key in ops:
            if kind == "insert":
                connection.execute(table.insert(), rows)
            elif kind == "insert_ignore":
                dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
                connection.execute(dialect.insert(table).on_conflict_do_nothing(), rows)
            else:
                columns = [c for c in rows[0] if c not in key]
                connection.execute(
                    table.update()
                    .where(*(table.c[k] == bindparam(f"b_{k}") for k in key))
                    .values({c: bindparam(f"b_{c}") for c in columns}),
                    [{f"b_{k}": v for k, v in row.items()} for row in rows],
                )


@dataclass(frozen=True)
class _Addition:
    """One ``WriteBatch.add_within``."""

    table: Table
    key: tuple[str, ...]
    values: tuple[Any, ...]
    column: str
    amount: int
    limit: str

    def params(self) -> list[Any]:
        return [self.amount, *self.values, self.amount]


def _add_core(connection: Connection, add: _Addition) -> int | None:
    table = add.table
    target = table.c[add.column]
    kept = {c.name: c for c in table.c if c.onupdate is not None}
    statement = (
        table.update()
        .where(*(table.c[k] == v for k, v in zip(add.key, add.values, strict=True)))
        .where(target + add.amount <= table.c[add.limit])
        .values({**kept, add.column: target + add.amount})
        .returning(target)
    )
    found = connection.execute(statement).scalar_one_or_none()
    return None if found is None else int(found)


@functools.lru_cache(maxsize=64)
def _addition_sql(table: Table, key: tuple[str, ...], column: str, limit: str) -> str:
    """``_Addition.params`` order: amount, the conditions' values, amount."""
    name = _quote(column)
    where = " AND ".join(f"{_quote(k)} = %s" for k in key)
    return (
        f"UPDATE {_quote(table.name)} SET {name} = {name} + %s "
        f"WHERE {where} AND {name} + %s <= {_quote(limit)} RETURNING {name}"
    )


def _addition(cursor: Any) -> int | None:
    row = cursor.fetchone()
    return None if row is None else int(row[0])


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
    if kind in ("insert", "insert_ignore"):
        marks = ", ".join(["%s"] * len(columns))
        tail = " ON CONFLICT DO NOTHING" if kind == "insert_ignore" else ""
        return f"INSERT INTO {_quote(table.name)} ({names}) VALUES ({marks}){tail}"
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
    if kind in ("insert", "insert_ignore"):
        return tuple(rows[0])
    return tuple(c for c in rows[0] if c not in key)


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
    connection: Connection,
    ops: list[tuple[str, Table, list[dict[str, Any]], tuple[str, ...]]],
    adds: list[_Addition],
) -> list[int | None]:
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)

    with raw.cursor() as cursor:
        folded = adds[:1] if len(adds) == 1 else []  # several: one by one, below
        combined = _combined(ops, folded[0] if folded else None) if _combine else None
        if combined is not None:
            statement, params = combined
            _observed(connection, cursor, statement, params)
            cursor.execute(statement, params)
            if folded:
                return [_addition(cursor)]
            return _in_key_order(adds, lambda add: _add_pg(connection, cursor, add))
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
            elif kind in ("insert", "insert_ignore"):  # COPY cannot skip existing rows
                pending.append(
                    (
                        _pg_statement(kind, table, columns, ()),
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
        return _in_key_order(adds, lambda add: _add_pg(connection, cursor, add))


def _in_key_order(
    adds: list[_Addition], run: Callable[[_Addition], int | None]
) -> list[int | None]:
    """Run several additions in the order of their rows (table, then key), whatever
    order they were added in, so that two units adding to the same rows never wait for
    each other; the results in the order added."""
    found: list[int | None] = [None] * len(adds)
    for index in sorted(range(len(adds)), key=lambda i: (adds[i].table.name, adds[i].values)):
        found[index] = run(adds[index])
    return found


def _add_pg(connection: Connection, cursor: Any, add: _Addition) -> int | None:
    sql = _addition_sql(add.table, add.key, add.column, add.limit)
    params = add.params()
    _observed(connection, cursor, sql, params)
    cursor.execute(sql, params)
    return _addition(cursor)


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
    add: _Addition | None = None,
) -> tuple[str, list[Any]] | None:
    """The writes of a small unit of work as *one* statement of data-modifying CTEs::

        WITH w0 AS (INSERT INTO events ... VALUES (...)),
             w1 AS (INSERT INTO purchase_lines ... VALUES (...), (...), (...)),
             ...
        UPDATE accounts SET ... WHERE member_id = ...

    A guarded addition (``WriteBatch.add_within``) is the statement's last part and its
    result: ``UPDATE … RETURNING <new value>``. Parts of one statement run in no set
    order, so the counter's row is locked for the statement and the commit after it, as
    long as an addition sent after the other writes would hold it.

    One execute instead of a pipeline of seven (measured with callgrind on a single
    purchase: 14 % fewer instructions for ``ingest_with_retry``; see db.session for
    psycopg's parse cache, without which it was more).
    Foreign keys hold: PostgreSQL checks them when the whole statement ends, after every
    part ran. The parts share one snapshot, so an UPDATE cannot see a row inserted by
    another part, and two UPDATEs of one row would both act on the old version: such
    batches (and large ones) return ``None`` and go through the pipeline."""
    adds = [add] if add is not None else []
    rows_total = sum(len(rows) for _kind, _table, rows, _key in ops) + len(adds)
    if not ops or rows_total > COMBINE_MAX_ROWS:
        return None
    updated: dict[str, set[tuple[Any, ...]]] = {}
    changes: list[tuple[str, list[tuple[Any, ...]]]] = [
        (table.name, [tuple(row[k] for k in key) for row in rows])
        for kind, table, rows, key in ops
        if kind == "update"
    ]
    changes += [(add.table.name, [add.values]) for add in adds]
    for name, changed in changes:
        seen = updated.setdefault(name, set())
        for values in changed:
            if values in seen:
                return None
            seen.add(values)
    for kind, table, rows, _key in ops:
        if kind in ("insert", "insert_ignore") and table.name in updated:
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
            if kind not in ("insert", "insert_ignore"):
                params.extend(row[k] for k in key)
    for one in adds:
        shape.append(("add", one.table, (one.column, one.limit), one.key, 1))
        params.extend(one.params())
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
        if kind == "add":  # last, at most one
            parts.append(_addition_sql(table, key, columns[0], columns[1]))
        elif kind in ("insert", "insert_ignore"):
            head = _pg_statement("insert_head", table, columns, ())
            marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
            tail = " ON CONFLICT DO NOTHING" if kind == "insert_ignore" else ""
            parts.append(head + ", ".join([marks] * count) + tail)
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
