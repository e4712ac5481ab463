"""Statements on the driver's own cursor fail as SQLAlchemy's do: the same exception classes, and the values they
bound (patient data) kept out of the message, as the engine keeps them (hide_parameters)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, bindparam, event, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from service.store import driver
from service.store.batch import RESOURCES
from service.store.engine import make_engine

SECRET = "MRN-SECRET-77"  # noqa: S105 - a patient identifier, not a password
PEOPLE = Table("people", MetaData(), Column("id", Integer, primary_key=True), Column("mrn", String, unique=True))


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


def test_a_select_on_the_drivers_cursor_gives_the_values_core_gives(tmp_path: Path) -> None:
    """driver.select binds and makes values as Core does: times, JSON, booleans, NULL, and the parameters the
    statement gives itself (SQLite's OFFSET of a LIMIT); a statement it has not run before is made then."""
    engine = make_engine(f"sqlite:///{tmp_path / 'select.db'}", group_commit=False)
    RESOURCES.create(engine)
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
    engine.dispose()
