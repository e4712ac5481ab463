"""Statements a write unit makes many times, sent on the driver's own cursor: through SQLAlchemy's Core each cost
~150-200 µs of CPU (its cache key, events, parameter and result processing) against ~20 µs in SQLite, and every
other SQLite writer waits for the unit (store/group.py)."""
from __future__ import annotations

import functools
import json
import re
import sqlite3
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Dialect, Float, Numeric, Select, Table
from sqlalchemy.exc import DBAPIError

from service.store import pipeline

#: Execution option marking a connection that will write.
WRITE = "kfhir_write"
#: Execution option marking a PostgreSQL connection whose statements run alone (psycopg in autocommit mode:
#: store/pg_pool.statements_alone)
ALONE = "kfhir_alone"
#: a statement that writes: its first word, or a data-modifying WITH (store/postgres.py) or one behind a comment
_WRITING = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


class WriteWithoutTransaction(RuntimeError):
    """A writing statement on a PostgreSQL connection whose statements run alone (autocommit) and that was not marked
    a write: a read-only route's session (store/engine.reading, alone). Were it allowed, a route that wrote two
    statements there would commit the first even if the second failed. Write in `session(write=True)` or
    `execute_alone`."""


def refuse_write_alone(connection: Connection, sql: str) -> None:
    """WriteWithoutTransaction if `sql` writes on `connection` in autocommit without WRITE (a SELECT ... FOR UPDATE
    counts: a lock taken alone ends with its statement)."""
    options = connection.get_execution_options()
    if options.get(ALONE) and not options.get(WRITE) and _WRITING.search(sql):
        raise WriteWithoutTransaction(" ".join(sql.split(None, 3)[:3]))


def cheap_sqlite_binds() -> None:
    """sqlite3 binds None and bool as before, without its adaptation's lookups: a value of any type but int, float,
    str and bytearray is looked up as `__adapt__` and `__conform__` when bound, each lookup failing with an
    AttributeError whose message is formatted and dropped, ~10,000 instructions a value (callgrind). A clinic
    record's ~113 index rows bind ~450 None, 24 % of their INSERTs' instructions, inside the writers' turn. Adapters
    registered for their types are found first: None stays None (NULL), a bool becomes its int (the 0 or 1 SQLite
    stored for it). For every connection of sqlite3 in the process."""
    sqlite3.register_adapter(type(None), _NONE)
    sqlite3.register_adapter(bool, int)


#: a C function returning None for any key: the None adapter, as cheap a call as there is
_NONE: Callable[[Any], None] = {}.get


#: the driver's placeholder by its DB-API parameter style (sqlite3: qmark, psycopg: format)
PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def placeholder(connection: Connection) -> str | None:
    """The placeholder of `connection`'s driver, None for one of another parameter style (use Core then)."""
    return PLACEHOLDER.get(connection.dialect.paramstyle)


def rows(connection: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any],
         generic: bool = False) -> list[tuple[Any, ...]]:
    """`sql` (with the driver's placeholders, or psycopg's named ones for a mapping of `params`) run on the driver's
    cursor of `connection`, in its transaction; `generic`: on PostgreSQL under a generic plan (pipeline.GENERIC)."""
    refuse_write_alone(connection, sql)
    raw = connection.connection.driver_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    values = dict(params) if isinstance(params, Mapping) else tuple(params)
    try:
        pipeline.sent(raw, lambda: cursor.execute(sql, values), generic)
        return list(cursor.fetchall())
    except connection.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
        raise wrapped(connection, sql, params, exc) from exc
    finally:
        cursor.close()


def insert(connection: Connection, table: Table, values: dict[str, Any], ready: tuple[str, ...] = ()) -> int | None:
    """INSERT one row of `values` into `table` on SQLite's own cursor, each value bound as its column's type binds it
    (the same stored text as Core's insert), but those of the `ready` columns, which are that text already (JSON
    serialised, batch.Serialised); returns its key (rowid), or None on another database (use Core: its drivers need
    casts and RETURNING). Errors are raised as SQLAlchemy raises them (IntegrityError on a unique key)."""
    if connection.dialect.name != "sqlite":
        return None
    sql, processors = _insert_of(table, tuple(values), ready, connection.dialect)
    params = tuple(value if process is None else process(value)
                   for value, process in zip(values.values(), processors, strict=True))
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return int(cursor.lastrowid)
    except connection.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
        raise wrapped(connection, sql, params, exc) from exc
    finally:
        cursor.close()


def many(connection: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> bool:
    """`sql` (an INSERT of one row, `INSERT INTO t (...) VALUES (?, ...)`, its values bound already) for each of
    `rows`, on SQLite's own cursor as multi-row INSERTs (chunked); False on another database (use Core)."""
    if connection.dialect.name != "sqlite":
        return False
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        _chunked(cursor, sql, rows)
        return True
    except connection.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
        raise wrapped(connection, sql, rows, exc) from exc
    finally:
        cursor.close()


def _chunked(cursor: Any, sql: str, rows: Sequence[Sequence[Any]], returning: str = "") -> list[tuple[Any, ...]]:
    """`sql` (an INSERT of one row) for each of `rows` as multi-row INSERTs on a sqlite3 cursor, in the rows' order, of
    CHUNKS' sizes, largest first; what `returning` (`RETURNING ...`, if given) gives back. executemany stepped each
    row on its own, and each step releases the GIL and takes it again: a turn holder that lost it then waited for
    the interpreter's switch interval (5 ms) while every other writer waited for the turn. A clinic record's ~113
    index rows: 113 steps, then 4 (64 + 32 + 16 + 1), and 2 % fewer instructions (/work/notes/unit2-tools/
    cg_layout.sh). Sizes of powers of two keep the texts few, each prepared once a connection (sqlite3's cache)."""
    head, _, one = sql.partition(" VALUES ")
    back: list[tuple[Any, ...]] = []
    start = 0
    while start < len(rows):
        size = next(size for size in CHUNKS if size <= len(rows) - start)
        chunk = rows[start:start + size]
        cursor.execute(_multi_row(head, one, size, returning), [value for row in chunk for value in row])
        if returning:
            back += cursor.fetchall()
        start += size
    return back


@functools.cache
def _multi_row(head: str, one: str, size: int, returning: str) -> str:
    """`head VALUES one, one, ...` (`size` times) `returning`: its text made once."""
    return f"{head} VALUES {', '.join([one] * size)}{' ' + returning if returning else ''}"


def wrapped(connection: Connection, sql: str, params: Any, exc: Exception) -> BaseException:
    """A driver error as SQLAlchemy raises it (IntegrityError, OperationalError, ...), its parameters (patient data)
    kept out of its message as the engine keeps them (make_engine: hide_parameters)."""
    return DBAPIError.instance(sql, params, exc, connection.dialect.dbapi.Error,  # type: ignore[union-attr]
                               hide_parameters=connection.engine.hide_parameters, dialect=connection.dialect)


#: The INSERTs made, by dialect (held weakly: an id() could name a later dialect once this one is freed).
_INSERTS: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, tuple[str, ...], tuple[str, ...]],
                                                  tuple[str, list[Callable[[Any], Any] | None]]]] = \
    weakref.WeakKeyDictionary()


def _insert_of(table: Table, names: tuple[str, ...], ready: tuple[str, ...],
               dialect: Dialect) -> tuple[str, list[Callable[[Any], Any] | None]]:
    """The INSERT of `names` into `table`, and each column type's bind processor for `dialect` (none for `ready`
    columns), made once."""
    made, key = _INSERTS.setdefault(dialect, {}), (table.name, names, ready)
    if key not in made:
        columns = ", ".join(names)
        marks = ", ".join("?" * len(names))
        made[key] = (f"INSERT INTO {table.name} ({columns}) VALUES ({marks})",  # noqa: S608 - the table's names
                     [None if name in ready else binder(table.c[name].type, dialect) for name in names])
    return made[key]


def binder(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """`column_type`'s bind processor for `dialect`; SQLite's DateTime's makes a naive datetime's text by isoformat
    (C) where the type formats a dict of its seven fields: the same text (test_driver), ~45 times a clinic record
    inside the writers' turn."""
    impl = column_type.dialect_impl(dialect)
    process: Callable[[Any], Any] | None = impl.bind_processor(dialect)
    if (process is None or dialect.name != "sqlite" or not isinstance(column_type, DateTime)
            or getattr(impl, "_storage_format", None) != _SQLITE_TIME):
        return process
    return functools.partial(_sqlite_time, process)


#: SQLite's DateTime's text (sqlalchemy.dialects.sqlite.DATETIME), which isoformat(" ", "microseconds") makes
_SQLITE_TIME = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"


def _sqlite_time(process: Callable[[Any], Any], value: Any) -> Any:
    if type(value) is datetime and value.tzinfo is None:
        return value.isoformat(" ", "microseconds")
    return process(value)


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]], ready: tuple[str, ...] = (),
                returning: tuple[str, ...] = ()) -> list[tuple[Any, ...]] | None:
    """insert() of several rows (each of the same columns), as multi-row INSERTs (_chunked); with `returning`, each
    row's `returning` columns come back, in no promised order. None on another database, or rows of different
    columns (use Core)."""
    if connection.dialect.name != "sqlite" or not rows:
        return None
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows):
        return None
    sql, processors = _insert_of(table, names, ready, connection.dialect)
    processed = [(n, process) for n, process in enumerate(processors) if process is not None]
    params: list[list[Any]] = []
    for row in rows:  # only the values whose types process them (a version row: 2 of 8)
        values = list(row.values())
        for n, process in processed:
            values[n] = process(values[n])
        params.append(values)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        return _chunked(cursor, sql, params, f"RETURNING {', '.join(returning)}" if returning else "")
    except connection.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
        raise wrapped(connection, sql, params, exc) from exc
    finally:
        cursor.close()


def select(connection: Connection, statement: Select[Any], params: Mapping[str, Any]) -> list[tuple[Any, ...]] | None:
    """`statement` (a SELECT built once, its values bind parameters) run on SQLite's or psycopg's own cursor, its
    values bound and its rows' values made as Core binds and makes them (its types' processors); None on another
    database (use Core). Through Core a read by key cost ~100 µs of CPU more than SQLite's lookup, inside a write unit
    too; on PostgreSQL ~70 µs more than on psycopg's (165 against 94 µs a read by key: pg2-tools/select_cost.py)."""
    if connection.dialect.name not in ("sqlite", "postgresql"):
        return None
    made = _select_of(statement, connection.dialect)
    if made is None:
        return None
    sql, names, binds, results, fixed, keys = made
    values = [params[name] if name in params else fixed[name] for name in names]
    bound = [value if bind is None else bind(value) for value, bind in zip(values, binds, strict=True)]
    _seen(connection, sql, bound)
    found = rows(connection, sql, bound if keys is None else dict(zip(keys, bound, strict=True)))
    return [tuple(value if make is None or value is None else make(value)
                  for value, make in zip(row, results, strict=True)) for row in found]


def run(connection: Connection, sql: str) -> bool:
    """`sql` (a statement without parameters, e.g. SAVEPOINT) on SQLite's own cursor; False on another database."""
    if connection.dialect.name != "sqlite":
        return False
    _seen(connection, sql, ())
    rows(connection, sql, ())
    return True


def _seen(connection: Connection, sql: str, params: Sequence[Any]) -> None:
    """Tell the engine's before_cursor_execute listeners of `sql` as of a statement of Core's (tests count them), with
    neither cursor nor execution context."""
    if connection.dispatch.before_cursor_execute:
        connection.dispatch.before_cursor_execute(connection, None, sql, tuple(params), None, False)


_Select = tuple[str, tuple[str, ...], list[Any], list[Any], dict[str, Any], tuple[str, ...] | None]
_SELECTS: weakref.WeakKeyDictionary[Dialect, dict[Any, _Select | None]] = weakref.WeakKeyDictionary()


def _select_of(statement: Select[Any], dialect: Dialect) -> _Select | None:
    """`statement` compiled for `dialect` (SQLite's qmark, psycopg's pyformat), the names of its parameters (in their
    order), their bind processors, its columns' result processors, the values of the parameters it gives itself
    (SQLite's OFFSET 0) and, for named parameters, the names its text gives them: made once. None for a statement
    that reads a Numeric or Float column on PostgreSQL: psycopg's processors for those need the result's type code,
    which only Core's cursor gives (review 5)."""
    made = _SELECTS.setdefault(dialect, {})
    if statement not in made and dialect.name == "postgresql" and any(
            isinstance(column.type, (Numeric, Float)) for column in statement.selected_columns):
        made[statement] = None
    if statement not in made:
        compiled = statement.compile(dialect=dialect)
        positional = compiled.positiontup is not None
        names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.binds)
        made[statement] = (compiled.string, names,
                           [compiled.binds[name].type._cached_bind_processor(dialect) for name in names],
                           [_json_made(column.type._cached_result_processor(dialect, None), column.type, dialect)
                            for column in statement.selected_columns],
                           {name: bind.value for name, bind in compiled.binds.items() if not bind.required},
                           None if positional else tuple(compiled.escaped_bind_names.get(n, n) for n in names))
    return made[statement]


#: json.loads' own scanner (the C one): what it runs on a text, without its Python around it
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def _json_made(process: Any, kind: Any, dialect: Dialect) -> Any:
    """`process`, a column's result processor, or for a JSON column on SQLite decoded by json.loads (the dialect's
    default) one that scans a text with json.loads' own scanner first: a row's content and warnings went through
    SQLAlchemy's two processors and json.loads' Python, ~10 % of a facade create's read ahead's decoding. A text the
    scanner does not take whole (leading or trailing whitespace, a BOM, anything malformed) and any other value
    go to `process`, which gives what it gave, or raises what it raised."""
    if process is None or dialect.name != "sqlite" or not isinstance(kind, JSON) or \
            getattr(dialect, "_json_deserializer", None) is not None:
        return process

    def made(value: Any) -> Any:
        if type(value) is str:
            try:
                found, end = _SCAN(value, 0)
            except (StopIteration, ValueError):
                return process(value)
            if end == len(value):
                return found
        return process(value)
    return made


#: the rows a multi-row INSERT takes (_chunked), largest first: at most 256 (SQLite's limit of bound values is
#: 32,766; the widest rows sent so hold 9 values)
CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)




def at_commit(connection: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any],
              failed: Callable[[Exception], BaseException], generic: bool = False,
              done: Callable[[list[tuple[Any, ...]]], None] | None = None) -> bool:
    """Send `sql` (a write whose answer nobody reads: the request's audit event, a record's outbox jobs) with the
    COMMIT of `connection`'s write transaction (pipeline.begin_with_first), in one round trip, after those given
    before it: if it fails, the transaction rolls back whole and the commit raises `failed(the database's error)`.
    False where it cannot (SQLite, a connection not in such a transaction, or in a savepoint, whose rollback would
    not drop it): run it now. A rollback drops them. What it writes is not seen in the transaction before it is sent.
    `generic`: as rows(generic=True). `done`: it goes with the next statement sent on the connection if one comes
    first (in the transaction, before a savepoint), whose rows it is then given (pipeline.Later)."""
    raw = connection.connection.driver_connection
    if connection.dialect.name != "postgresql" or not pipeline.in_write(raw) or connection.in_nested_transaction():
        return False
    refuse_write_alone(connection, sql)
    pipeline.later(raw, pipeline.Later(sql, dict(params) if isinstance(params, Mapping) else tuple(params), failed,
                                       generic, done))
    return True


def send_held(connection: Connection) -> None:
    """Send now the statements at_commit holds with `done` on `connection` (one round trip), if any still wait."""
    pipeline.send_held(connection.connection.driver_connection)


def waiting(connection: Connection) -> int:
    """How many statements wait to be sent with the COMMIT of `connection`'s transaction (at_commit)."""
    return pipeline.waiting(connection.connection.driver_connection)
