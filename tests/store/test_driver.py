"""Statements on the driver's own cursor fail as SQLAlchemy's do: the same exception classes, and the values they
bound (patient data) kept out of the message, as the engine keeps them (hide_parameters)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table
from sqlalchemy.exc import IntegrityError, OperationalError

from service.store import driver
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
