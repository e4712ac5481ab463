"""Reads a write unit makes many times, sent on the driver's own cursor: through SQLAlchemy's Core each cost
~150-200 µs of CPU (its cache key, events, parameter and result processing) against ~20 µs in SQLite, and every
other SQLite writer waits for the unit (store/group.py)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

#: the driver's placeholder by its DB-API parameter style (sqlite3: qmark, psycopg: format)
PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def placeholder(connection: Connection) -> str | None:
    """The placeholder of `connection`'s driver, None for one of another parameter style (use Core then)."""
    return PLACEHOLDER.get(connection.dialect.paramstyle)


def rows(connection: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """`sql` (with the driver's placeholders) run on the driver's cursor of `connection`, in its transaction."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, tuple(params))
        return list(cursor.fetchall())
    finally:
        cursor.close()
