"""What a database holds, table by table: row counts and a content hash, to prove a request changed nothing."""
from __future__ import annotations

import hashlib
import time

from sqlalchemy import Engine, bindparam, inspect, text

#: tables whose rows record that a request happened (not what it changed): audit, rate and key bookkeeping
BOOKKEEPING = frozenset({"alembic_version", "audit_events", "api_clients"})


_QUERIES: dict[tuple[str, frozenset[str]], list[tuple[str, str]]] = {}


def _queries(engine: Engine, skip: frozenset[str]) -> list[tuple[str, str]]:
    """(table, SELECT every row in primary-key order), reflected once per database."""
    key = (engine.url.render_as_string(), skip)
    if key not in _QUERIES:
        inspector = inspect(engine)
        found = []
        for table in sorted(set(inspector.get_table_names()) - skip):
            keys = inspector.get_pk_constraint(table)["constrained_columns"] or [
                c["name"] for c in inspector.get_columns(table)]
            order = ", ".join(f'"{k}"' for k in keys)
            found.append((table, f'SELECT * FROM "{table}" ORDER BY {order}'))  # noqa: S608
        _QUERIES[key] = found
    return _QUERIES[key]


def snapshot(engine: Engine, skip: frozenset[str] = BOOKKEEPING) -> dict[str, tuple[int, str]]:
    """{table: (rows, sha256 of every row in primary-key order)}."""
    out: dict[str, tuple[int, str]] = {}
    with engine.connect() as conn:
        for table, query in _queries(engine, skip):
            rows = conn.execute(text(query)).all()
            out[table] = (len(rows), hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest())
    return out


def counts(engine: Engine) -> dict[str, int]:
    return {table: rows for table, (rows, _) in snapshot(engine).items()}


def stored(engine: Engine, *resource_types: str) -> int:
    """How many FHIR resources of these types the store holds (other writes, such as Provenance, aside)."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM fhir_resources WHERE resource_type IN :types")
                                .bindparams(bindparam("types", expanding=True)), {"types": list(resource_types)})
                   .scalar_one())


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
