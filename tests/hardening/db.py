"""What a database holds, table by table: row counts and a content hash, to prove a request changed nothing."""
from __future__ import annotations

import hashlib
import time

from sqlalchemy import Engine, bindparam, inspect, text

#: tables whose rows record that a request happened (not what it changed): audit, rate and key bookkeeping
BOOKKEEPING = frozenset({"alembic_version", "audit_events", "api_clients"})


_TABLES: dict[tuple[str, frozenset[str]], list[tuple[str, str]]] = {}


def _tables(engine: Engine, skip: frozenset[str]) -> list[tuple[str, str]]:
    """(table, its primary-key columns as an ORDER BY list), reflected once per database."""
    key = (engine.url.render_as_string(), skip)
    if key not in _TABLES:
        inspector = inspect(engine)
        found = []
        for table in sorted(set(inspector.get_table_names()) - skip):
            keys = inspector.get_pk_constraint(table)["constrained_columns"] or [
                c["name"] for c in inspector.get_columns(table)]
            found.append((table, ", ".join(f'x."{k}"' for k in keys)))
        _TABLES[key] = found
    return _TABLES[key]


def snapshot(engine: Engine, skip: frozenset[str] = BOOKKEEPING) -> dict[str, tuple[int, str]]:
    """{table: (rows, hash of every row in primary-key order)}: PostgreSQL hashes in one round trip."""
    tables = _tables(engine, skip)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # table names come from the database's own catalogue
            parts = [f"(SELECT count(*) FROM \"{t}\"), (SELECT md5(coalesce(string_agg(x::text, '|' "  # noqa: S608
                     f"ORDER BY {order}), '')) FROM \"{t}\" x)" for t, order in tables]
            row = conn.execute(text("SELECT " + ", ".join(parts))).one()
            return {t: (row[2 * i], row[2 * i + 1]) for i, (t, _) in enumerate(tables)}
        out: dict[str, tuple[int, str]] = {}
        for table, order in tables:
            rows = conn.execute(text(f'SELECT * FROM "{table}" x ORDER BY {order}')).all()  # noqa: S608
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


WRITERS = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()")


def wait_for_writer(monitor: Engine, timeout: float = 30.0, present: bool = True) -> float:
    """Seconds until another session of this PostgreSQL database holds a transaction that has written
    (`present`), or until none does."""
    started = time.monotonic()
    with monitor.connect() as conn:
        while time.monotonic() - started < timeout:
            if bool(conn.execute(WRITERS).scalar()) == present:
                return time.monotonic() - started
            conn.rollback()
            time.sleep(0.002)
    raise AssertionError(f"{'no' if present else 'a'} transaction held writes for {timeout} s")


def wait_until_no_writer(monitor: Engine, timeout: float = 30.0) -> float:
    return wait_for_writer(monitor, timeout, present=False)
