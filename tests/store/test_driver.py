"""Statements on the driver's own cursor fail as SQLAlchemy's do: the same exception classes, and the values they
bound (patient data) kept out of the message, as the engine keeps them (hide_parameters); rows sent together are
stored as executemany stored them."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from service.app.runtime import Runtime
from service.exchange.registry import ENDPOINTS
from service.store import driver
from service.store.batch import RESOURCES
from service.store.engine import make_engine

SECRET = "MRN-SECRET-77"  # noqa: S105 - a patient identifier, not a password
PEOPLE = Table("people", MetaData(), Column("id", Integer, primary_key=True), Column("mrn", String, unique=True))
DOCS = Table("docs", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON))


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    engine = make_engine(f"sqlite:///{tmp_path / 'driver.db'}", group_commit=False)
    PEOPLE.create(engine)
    with engine.begin() as conn:
        yield conn
    engine.dispose()


def test_a_duplicate_key_is_an_integrity_error_without_the_values(connection: Connection) -> None:
    driver.insert(connection, PEOPLE, {"mrn": SECRET})
    with pytest.raises(IntegrityError) as raised:
        driver.insert(connection, PEOPLE, {"mrn": SECRET})
    assert SECRET not in str(raised.value)
    with pytest.raises(IntegrityError) as many:
        driver.insert_many(connection, PEOPLE, [{"mrn": "other"}, {"mrn": SECRET}], returning=("id",))
    assert SECRET not in str(many.value)


def test_a_failed_read_is_sqlalchemys_error_without_the_values(connection: Connection) -> None:
    with pytest.raises(OperationalError) as raised:
        driver.rows(connection, "SELECT id FROM nowhere WHERE mrn = ?", (SECRET,))
    assert SECRET not in str(raised.value)


@pytest.mark.both_backends
def test_a_select_on_the_drivers_cursor_gives_the_values_core_gives(runtime: Runtime) -> None:
    """driver.select binds and makes values as Core does: times, JSON, booleans, NULL, and the parameters the
    statement gives itself (SQLite's OFFSET of a LIMIT); a statement it has not run before is made then. On SQLite's
    cursor and on psycopg's (named parameters)."""
    engine = runtime.engine
    when = datetime(2026, 3, 5, 14, 0, 0, 123456)
    rows = [{"resource_type": "Patient", "id": f"p{n}", "version": n, "deleted": n == 2, "last_updated": when,
             "content": {"resourceType": "Patient", "name": [{"family": "Ünïcode"}]} if n != 3 else None,
             "warnings": [{"severity": "warning"}] if n == 1 else [], "record_id": None if n else "r"}
             for n in range(4)]
    newest = select(RESOURCES).where(RESOURCES.c.resource_type == bindparam("the_type"),
                                     RESOURCES.c.last_updated <= bindparam("at")).order_by(
        RESOURCES.c.pk).limit(bindparam("count"))
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cursor, statement, *_: seen.append(statement))
    with engine.begin() as conn:
        conn.execute(insert(RESOURCES), rows)
        params = {"the_type": "Patient", "at": when, "count": 4}
        assert driver.select(conn, newest, params) == [tuple(r) for r in conn.execute(newest, params)]
        assert seen[-2] == seen[-1]  # the engine's listeners see it as they see Core's (tests count statements)
        assert [r[4:8] for r in driver.select(conn, newest, params) or []] == [
            (False, when, rows[0]["content"], []), (False, when, rows[1]["content"], rows[1]["warnings"]),
            (True, when, rows[2]["content"], []), (False, when, None, [])]



def test_json_read_on_the_drivers_cursor_is_what_core_reads_whatever_the_text(tmp_path: Path) -> None:
    """A JSON column's text is scanned by json.loads' own scanner (driver._json_made), and what it does not take whole
    goes to SQLAlchemy's processor: the same values as Core for every text, and the same error for a broken one."""
    engine = make_engine(f"sqlite:///{tmp_path / 'docs.db'}", group_commit=False)
    DOCS.create(engine)
    texts = ['{"resourceType": "Patient", "name": [{"family": "\\u00dcn\\u00efcode", "given": ["A"]}]}',
             '[{"severity": "warning"}]', "[]", '"a string"', "7", "1.5e3", "null", "true", "NaN",
             ' {"padded": 1} ', '{"a": 1}\n', '{"deep": [[[[{"x": [1, 2.25, -3, null, false]}]]]]}',
             '"\\ud83d\\ude00 \\\\ \\""', '{"same": 1, "same": 2}']
    every = select(DOCS.c.doc).order_by(DOCS.c.id)
    with engine.begin() as conn:
        for text_ in texts:
            conn.exec_driver_sql("INSERT INTO docs (doc) VALUES (?)", (text_,))
        conn.exec_driver_sql("INSERT INTO docs (doc) VALUES (42)")  # a number SQLite holds as one
        conn.exec_driver_sql("INSERT INTO docs (doc) VALUES (NULL)")
        core = [tuple(r) for r in conn.execute(every)]
        assert driver.select(conn, every, {}) == core
        assert [repr(v) for (v,) in driver.select(conn, every, {}) or []] == [repr(v) for (v,) in core]
        for broken in ('{"a": 1} extra', '{"a": ', "\ufeff{}", ""):
            conn.exec_driver_sql("DELETE FROM docs")
            conn.exec_driver_sql("INSERT INTO docs (doc) VALUES (?)", (broken,))
            with pytest.raises(ValueError) as through_core:
                conn.execute(every).all()
            with pytest.raises(ValueError) as on_the_driver:
                driver.select(conn, every, {})
            assert (type(on_the_driver.value), str(on_the_driver.value)) == \
                (type(through_core.value), str(through_core.value))
    engine.dispose()

@pytest.mark.both_backends
def test_a_float_column_read_on_the_drivers_cursor_or_through_core_as_core_reads_it(runtime: Runtime) -> None:
    """psycopg's Float and Numeric processors need the result's type code, which only Core's cursor gives: on
    PostgreSQL such a statement goes through Core (None here), on SQLite the driver reads it (review 5: a TypeError,
    a 500 for its first caller)."""
    timeouts = select(ENDPOINTS.c.name, ENDPOINTS.c.timeout_s).order_by(ENDPOINTS.c.name)
    with runtime.engine.begin() as conn:
        now = datetime(2026, 12, 6, 11, 0)
        conn.execute(insert(ENDPOINTS), [{
            "name": "float-ehr", "base_url": "http://127.0.0.1:9/fhir", "auth": {}, "mode": "transaction",
            "max_entries": 100, "timeout_s": 2.5, "kinds": "administration", "note": "", "enabled": True,
            "added_at": now, "added_by": "test", "enabled_at": now, "updated_at": now}])
        core = [tuple(r) for r in conn.execute(timeouts)]
        found = driver.select(conn, timeouts, {})
        assert found == (core if runtime.engine.dialect.name == "sqlite" else None)
        assert ("float-ehr", 2.5) in core


VALUES = Table("values_kept", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer),
               Column("s", String), Column("flag", Integer), Column("t", String))


def test_rows_sent_together_are_stored_as_executemany_stored_them_in_their_order(tmp_path: Path) -> None:
    """driver.many and insert_many send rows as multi-row INSERTs of CHUNKS' sizes (300 rows: 256 + 32 + 8 + 4),
    None and bool bound through the adapters make_engine registers: each row is stored, in the rows' order, with
    the values and SQLite types sqlite3's executemany stored (NULL for None, the integers 0 and 1 for bools)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'many.db'}", group_commit=False)
    VALUES.create(engine)
    rows = [(n, n * 7 - 1000, None if n % 3 else f"é{n}", n % 2 == 0 if n % 5 else None, None) for n in range(300)]
    sql = "INSERT INTO values_kept (id, n, s, flag, t) VALUES (?, ?, ?, ?, ?)"
    with engine.begin() as conn:
        assert driver.many(conn, sql, rows)
        back = driver.insert_many(conn, VALUES, [dict(zip(("id", "n", "s", "flag", "t"), (1000 + row[0], *row[1:]),
                                                              strict=True)) for row in rows], returning=("id",))
        assert sorted(pk for pk, in back or []) == [1000 + n for n in range(300)]
        stored = conn.exec_driver_sql("SELECT id, n, s, flag, t, typeof(s), typeof(flag), typeof(t) FROM values_kept "
                                      "ORDER BY rowid").all()
    engine.dispose()
    plain = sqlite3.connect(":memory:")  # the same rows by executemany, one at a time
    plain.execute("CREATE TABLE values_kept (id INTEGER PRIMARY KEY, n INTEGER, s VARCHAR, flag INTEGER, t VARCHAR)")
    plain.executemany(sql, rows + [(1000 + row[0], *row[1:]) for row in rows])
    assert stored == plain.execute("SELECT id, n, s, flag, t, typeof(s), typeof(flag), typeof(t) FROM values_kept "
                                   "ORDER BY rowid").fetchall()
    assert {(row[6], row[3]) for row in stored} == {("integer", 0), ("integer", 1), ("null", None)}
    assert [row[0] for row in stored[:300]] == list(range(300))


def test_sqlites_time_binder_makes_the_text_the_datetime_type_makes() -> None:
    """driver.binder's SQLite DateTime processor (isoformat for a naive datetime) makes the DateTime type's text:
    whole seconds, microseconds, years below 1000, the extremes; other values go to the type's own processor."""
    dialect = sqlite.dialect()
    own, fast = DateTime().dialect_impl(dialect).bind_processor(dialect), driver.binder(DateTime(), dialect)
    assert own is not None and fast is not None
    values = [datetime(2026, 3, 5, 13, 50), datetime(2026, 3, 5, 13, 50, 0, 999999), datetime(999, 1, 2, 3, 4, 5, 6),
              datetime.min, datetime.max, datetime(2026, 12, 6, 6, 36, 27, 596000),
              datetime(2026, 3, 5, 13, 50, tzinfo=UTC), date(2026, 3, 5), None]
    assert [fast(v) for v in values] == [own(v) for v in values]
    assert fast(values[0]) == "2026-03-05 13:50:00.000000"
