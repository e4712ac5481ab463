"""Database engine: SQLite (WAL, foreign keys, busy timeout) by default, PostgreSQL by URL."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

#: How long a SQLite writer waits for the lock before failing (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Execution option marking a connection that will write.
WRITE = "kfhir_write"
#: Key of `Session.info` under which a transaction lists what it wrote, as (stored resource or record, created).
WRITTEN = "kfhir_written"
#: What a write transaction that wrote resources or records runs last, inside itself, before it commits: the web
#: layer's audit event of the request (service/web/auth.py), so that a write and its event commit together or not
#: at all, under one writer lock and one flush. Set for one request in its own thread; None elsewhere.
BEFORE_COMMIT: ContextVar[Callable[[Session], None] | None] = ContextVar("kfhir_before_commit", default=None)


def make_engine(url: str) -> Engine:
    """An engine for `url`. SQL parameters are hidden from error messages: they carry patient data."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss.
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
    # Let SQLAlchemy, not the driver, open transactions, so `_sqlite_begin` chooses their kind.
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    """Writers take the write lock up front (BEGIN IMMEDIATE) so the busy timeout applies;
    a deferred transaction that reads then writes fails at once with 'database is locked'."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


@contextmanager
def session(engine: Engine, write: bool = False) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises.
    Writers say so up front, so SQLite takes the write lock at BEGIN (see _sqlite_begin)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: write})
        with Session(bind=conn, expire_on_commit=False) as current, current.begin():
            yield current
            last = BEFORE_COMMIT.get() if write else None
            if last is not None and current.info.get(WRITTEN):
                last(current)


def wrote(current: Session, item: Any, created: bool) -> None:
    """Note in `current`'s transaction that it wrote `item` (a StoredResource or a StoredRecord), for BEFORE_COMMIT."""
    current.info.setdefault(WRITTEN, []).append((item, created))
