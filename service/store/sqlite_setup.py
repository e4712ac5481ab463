"""How each SQLite connection of an engine is set up (store/engine.make_engine listens with these): its pragmas when
it connects, and the kind of each transaction it begins."""
from __future__ import annotations

from typing import Any

from service.store import driver

#: How long a SQLite writer waits for the lock before failing (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: a read's execution option: it reads a few rows found by key (no sort or count over many rows), which need no
#: temporary file: its connection's temp store is left as it is (begin)
KEYED = "kfhir_keyed_read"
#: WAL pages a commit may leave before SQLite checkpoints inside that commit (its default is 1,000): a safety net
#: only, for a process whose checkpointer has not run; the checkpointer (store/checkpoint.py) keeps the WAL well
#: short of it.
SQLITE_AUTOCHECKPOINT_PAGES = 20_000


def pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cur.close()
    # Let SQLAlchemy, not the driver, open transactions, so `begin` chooses their kind.
    dbapi_conn.isolation_level = None


#: a SQLite connection's `info` key: whether its temporary files are in memory (a write's) or on file (a read's)
_TEMP_STORE = "kfhir_temp_store_write"


def begin(conn: Any) -> None:
    """Writers take the write lock up front (BEGIN IMMEDIATE) so the busy timeout applies;
    a deferred transaction that reads then writes fails at once with 'database is locked'. A write's temporary
    files are in memory (a write unit's savepoint journal went to a file past 64 KiB: ~190 pwrites a record inside
    the turn), a read's on file (a search's total, count() OVER (), holds every match's key: ~40 MiB at 1M). A KEYED
    read keeps what the connection has: a record's draft read, on the connection the last write gave back, switched
    it to FILE and that write's successor back to MEMORY, inside the writers' turn (two PRAGMAs a record)."""
    options = conn.get_execution_options()
    write = bool(options.get(driver.WRITE))
    info = conn.connection.info
    # a pooled connection serves reads and writes: switched as it changes
    if info.get(_TEMP_STORE) != write and (write or not options.get(KEYED)):
        conn.connection.driver_connection.execute(f"PRAGMA temp_store={'MEMORY' if write else 'FILE'}")
        info[_TEMP_STORE] = write
    statement = "BEGIN IMMEDIATE" if write else "BEGIN"
    # on SQLite's own cursor, as the savepoints are (engine._plain_savepoints): through exec_driver_sql each cost ~45 K
    # instructions more, a write's inside the writers' turn
    if not driver.run(conn, statement):
        conn.exec_driver_sql(statement)
