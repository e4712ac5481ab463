"""What a database holds, table by table: row counts and a content hash, to prove a request changed nothing."""
from __future__ import annotations

import hashlib
import time

from sqlalchemy import Engine, inspect, text

#: tables whose rows record that a request happened (not what it changed): audit, rate and key bookkeeping
BOOKKEEPING = {"alembic_version", "audit_events", "api_clients"}


def snapshot(engine: Engine, skip: set[str] = BOOKKEEPING) -> dict[str, tuple[int, str]]:
    """{table: (rows, sha256 of every row in primary-key order)}."""
    out: dict[str, tuple[int, str]] = {}
    inspector = inspect(engine)
    with engine.connect() as conn:
        for table in sorted(set(inspector.get_table_names()) - skip):
            keys = inspector.get_pk_constraint(table)["constrained_columns"] or [
                c["name"] for c in inspector.get_columns(table)]
            order = ", ".join(f'"{k}"' for k in keys)
            rows = conn.execute(text(f'SELECT * FROM "{table}" ORDER BY {order}')).all()  # noqa: S608
            digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
            out[table] = (len(rows), digest)
    return out


def counts(engine: Engine) -> dict[str, int]:
    return {table: rows for table, (rows, _) in snapshot(engine).items()}


def wait_for_writer(monitor: Engine, timeout: float = 30.0) -> float:
    """Seconds until another session of this PostgreSQL database holds a transaction that has written."""
    started = time.monotonic()
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()")
    with monitor.connect() as conn:
        while time.monotonic() - started < timeout:
            if conn.execute(query).scalar():
                return time.monotonic() - started
            conn.rollback()
            time.sleep(0.002)
    raise AssertionError(f"no transaction wrote within {timeout} s")
