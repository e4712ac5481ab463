"""The SQLite engine: writers take turns through a lock file, and the WAL is checkpointed outside the commits."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from service.store import checkpoint as checkpoint_module
from service.store import driver, sqlite_setup
from service.store import engine as engine_module
from service.store.engine import make_engine, session


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with session(engine, write=True) as s:
        s.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def lock_file(engine: Engine) -> str:
    return f"{engine.url.database}-writer"


def taken(engine: Engine) -> bool:
    """Does anyone hold the writers' turn? (tried from a descriptor of our own, as another process would)"""
    fd = os.open(lock_file(engine), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def rows(engine: Engine) -> int:
    with session(engine) as s:
        return int(s.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_a_writer_holds_the_turn_until_it_has_committed_and_a_reader_takes_none(db: Engine) -> None:
    with session(db) as s:
        s.execute(text("SELECT count(*) FROM t"))
        assert not taken(db)
    with session(db, write=True) as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
        assert taken(db)
    assert not taken(db)
    assert rows(db) == 1


def test_a_writer_waits_for_the_turn_then_writes(db: Engine) -> None:
    holder = os.open(lock_file(db), os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    done: list[float] = []

    def write() -> None:
        with session(db, write=True) as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
        done.append(time.monotonic())

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)
    assert done == [] and rows(db) == 0  # still waiting for its turn
    released = time.monotonic()
    os.close(holder)
    writer.join(10)
    assert done and done[0] >= released and rows(db) == 1


@pytest.mark.parametrize("group_commit", [True, False])
def test_a_write_inside_a_write_of_the_same_thread_to_the_same_file_is_refused_at_once(
        tmp_path: Path, group_commit: bool) -> None:
    """The inner transaction would wait for SQLite's lock, which the outer (its own thread's) holds: it is refused
    at once, saying why, not after the busy timeout (10 s; with a group of each engine's, 10 s for the writers'
    turn first). The outer one goes on."""
    db = make_engine(f"sqlite:///{tmp_path / 'nested.db'}", group_commit=group_commit)
    started = time.monotonic()
    with session(db, write=True) as outer:
        outer.execute(text("CREATE TABLE t (n INTEGER)"))
        with pytest.raises(engine_module.NestedWrite, match="inside another write"), \
                session(db, write=True) as inner:
            inner.execute(text("INSERT INTO t VALUES (2)"))
        outer.execute(text("INSERT INTO t VALUES (1)"))
    assert time.monotonic() - started < 5
    assert rows(db) == 1
    db.dispose()


def test_past_the_busy_timeout_a_writer_goes_on_without_its_turn(db: Engine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A turn held too long (a writer stuck elsewhere) is not waited for past SQLite's own busy timeout: SQLite's
    lock, which it does not hold, decides."""
    monkeypatch.setattr(sqlite_setup, "SQLITE_BUSY_TIMEOUT_MS", 200)
    holder = os.open(lock_file(db), os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with session(db, write=True) as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        os.close(holder)
    assert rows(db) == 1


def test_a_write_units_savepoint_journal_is_kept_in_memory_and_a_reads_temporary_tables_on_file(db: Engine) -> None:
    """A write unit is a savepoint of the group's transaction: the pages it changes are journalled in memory, not
    in a temporary file written page by page (system calls inside the writers' turn). A read's temporary tables (a
    search's total holds every match's key in one) stay on file, whichever the pooled connection served before."""
    for _ in range(2):
        with session(db, write=True) as s:
            assert s.execute(text("PRAGMA temp_store")).scalar_one() == 2  # MEMORY
        with session(db) as s:
            assert s.execute(text("PRAGMA temp_store")).scalar_one() == 1  # FILE


def test_a_keyed_read_keeps_the_temp_store_its_connection_has(db: Engine) -> None:
    """A read of a few rows by key (a record's draft) switches no temp store: on the connection a write gave back it
    reads with MEMORY, and the next write finds MEMORY still (no PRAGMA inside the writers' turn); a read that is
    not keyed switches to FILE as before, and a keyed read after it keeps FILE."""
    statements: list[str] = []
    event.listen(db, "connect", lambda dbapi_conn, _record: dbapi_conn.set_trace_callback(statements.append))
    db.dispose()
    with session(db, write=True) as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
    statements.clear()
    with session(db, keyed=True) as s:
        assert s.execute(text("PRAGMA temp_store")).scalar_one() == 2  # MEMORY, as the write left it
    with session(db, write=True) as s:
        s.execute(text("INSERT INTO t VALUES (2)"))
    assert not [sql for sql in statements if sql.startswith("PRAGMA temp_store=")]
    with session(db) as s:
        assert s.execute(text("PRAGMA temp_store")).scalar_one() == 1  # FILE
    with session(db, keyed=True) as s:
        assert s.execute(text("PRAGMA temp_store")).scalar_one() == 1
    assert [sql for sql in statements if sql.startswith("PRAGMA temp_store=")] == ["PRAGMA temp_store=FILE"]
    assert rows(db) == 2


def test_a_transactions_begin_goes_on_the_drivers_cursor_seen_and_refused_as_through_core(
        db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """BEGIN and BEGIN IMMEDIATE are sent on sqlite3's own cursor, as the savepoints are: no Core execution (no
    after_cursor_execute), still told to before_cursor_execute listeners (statements are counted there); a BEGIN
    IMMEDIATE finding the database locked past the busy timeout raises SQLAlchemy's OperationalError, as before."""
    before: list[str] = []
    after: list[str] = []
    event.listen(db, "before_cursor_execute", lambda _c, _cur, sql, *_: before.append(sql))
    event.listen(db, "after_cursor_execute", lambda _c, _cur, sql, *_: after.append(sql))
    with session(db) as s:
        s.execute(text("SELECT count(*) FROM t"))
    with session(db, write=True) as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
    assert "BEGIN" in before and "BEGIN IMMEDIATE" in before
    assert "BEGIN" not in after and "BEGIN IMMEDIATE" not in after and "SELECT count(*) FROM t" in after
    monkeypatch.setattr(sqlite_setup, "SQLITE_BUSY_TIMEOUT_MS", 100)
    db.dispose()  # connections made again, with the short busy timeout
    holder = sqlite3.connect(str(db.url.database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="database is locked"), session(db, write=True) as s:
            s.execute(text("INSERT INTO t VALUES (2)"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert rows(db) == 1


def test_commits_leave_the_checkpoint_to_the_checkpointer(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """No commit checkpoints up to 20,000 pages of WAL; the checkpointer copies them into the database."""
    monkeypatch.setattr(engine_module.CHECKPOINTER, "wrote", lambda engine: None)
    with session(db, write=True) as s:
        assert s.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == sqlite_setup.SQLITE_AUTOCHECKPOINT_PAGES
        assert s.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL: every commit synced
    for n in range(50):
        with session(db, write=True) as s:
            s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    engine_module.CHECKPOINTER.checkpoint(db)
    raw = db.raw_connection()
    try:
        busy, frames, copied = raw.driver_connection.execute(  # type: ignore[union-attr]
            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        raw.close()
    assert busy == 0 and frames == copied  # everything in the WAL is in the database file
    assert rows(db) == 50


def test_a_process_that_writes_starts_its_checkpointer(db: Engine) -> None:
    engine_module.CHECKPOINTER._last.pop(db, None)
    with session(db, write=True) as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
    assert any(t.name == "kfhir-checkpoint" and t.is_alive() for t in threading.enumerate())


def wal_frames(engine: Engine) -> int:
    return checkpoint_module.passive(engine)


def test_the_wal_starts_over_though_a_writer_committed_while_it_was_checkpointed(
        db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that commits during the checkpoint leaves frames it did not copy; the pass with the turn held copies
    them, so the next writer starts the WAL over instead of growing it."""
    monkeypatch.setattr(engine_module.CHECKPOINTER, "wrote", lambda engine: None)  # this test checkpoints alone
    for n in range(30):
        with session(db, write=True) as s:
            s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    grown = wal_frames(db)
    passive, passes = checkpoint_module.passive, []

    def overtaken(engine: Engine) -> int:
        frames = passive(engine)
        if not passes:  # another writer commits just after the first pass
            writer = threading.Thread(target=lambda: rows_written(engine, 1))
            writer.start()
            writer.join(10)
        passes.append(frames)
        return frames

    monkeypatch.setattr(checkpoint_module, "RESTART_AFTER_FRAMES", 10)
    monkeypatch.setattr(checkpoint_module, "passive", overtaken)
    engine_module.CHECKPOINTER.checkpoint(db)
    monkeypatch.setattr(checkpoint_module, "passive", passive)
    assert len(passes) == 2
    rows_written(db, 1)
    assert wal_frames(db) < grown  # started over: the last write's frames only


def rows_written(engine: Engine, count: int) -> None:
    for n in range(count):
        with session(engine, write=True) as s:
            s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})


@pytest.mark.both_backends
def test_savepoints_go_as_the_drivers_sql_and_a_rolled_back_one_undoes_only_its_own_work(database_url: str) -> None:
    """SQLAlchemy's SAVEPOINT statements carry no cache key: compiled anew each time (~0.1 ms of CPU a pair) in every
    write unit. Sent as the driver's SQL they compile nothing, and nest, release and roll back as before."""
    engine = make_engine(database_url, group_commit=False)
    sent: list[tuple[str, bool]] = []

    def seen(conn: object, cursor: object, statement: str, params: object, context: Any, many: bool) -> None:
        sent.append((statement, context is not None and context.compiled is not None))  # none: the driver's cursor

    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE sp (n INTEGER)"))
            conn.commit()
            event.listen(engine, "before_cursor_execute", seen)
            with conn.begin():
                conn.execute(text("INSERT INTO sp VALUES (1)"))
                with pytest.raises(ZeroDivisionError), conn.begin_nested():
                    conn.execute(text("INSERT INTO sp VALUES (2)"))
                    with conn.begin_nested():
                        conn.execute(text("INSERT INTO sp VALUES (3)"))
                    raise ZeroDivisionError
                with conn.begin_nested():
                    conn.execute(text("INSERT INTO sp VALUES (4)"))
            event.remove(engine, "before_cursor_execute", seen)
            assert [n for (n,) in conn.execute(text("SELECT n FROM sp ORDER BY n"))] == [1, 4]
    finally:
        engine.dispose()
    savepoints = [(s, compiled) for s, compiled in sent if "SAVEPOINT" in s]
    assert [s.split(" sa_")[0] for s, _ in savepoints] == [
        "SAVEPOINT", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "SAVEPOINT", "RELEASE SAVEPOINT"]
    assert not any(compiled for _, compiled in savepoints)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_a_connection_whose_statements_run_alone_refuses_to_write_unless_marked_a_write(
        database_url: str) -> None:
    """A read-only route's statements run alone (autocommit): a write there would commit statement by statement, so
    two writes that must stand or fall together could half-commit. Such a write is refused before it is sent."""
    engine = make_engine(database_url)
    try:
        with session(engine, write=True) as s:
            s.execute(text("CREATE TABLE alone_t (n INTEGER)"))
        with engine_module.reading(engine), session(engine) as s:
            assert s.execute(text("SELECT count(*) FROM alone_t")).scalar_one() == 0  # reads are what it is for
            with pytest.raises(engine_module.WriteWithoutTransaction, match="INSERT INTO alone_t"):
                s.execute(text("INSERT INTO alone_t VALUES (1)"))
        for sql in ("  update alone_t SET n = 2", "/* x */ INSERT INTO alone_t VALUES (2)",
                    "WITH w AS (INSERT INTO alone_t VALUES (2) RETURNING n) SELECT n FROM w"):
            with engine_module.alone(engine) as connection, pytest.raises(engine_module.WriteWithoutTransaction):
                connection.execute(text(sql))
        with engine_module.alone(engine) as connection, pytest.raises(engine_module.WriteWithoutTransaction):
            driver.rows(connection, "INSERT INTO alone_t VALUES (2) RETURNING n", ())  # the driver's own cursor
        engine_module.execute_alone(engine, text("INSERT INTO alone_t VALUES (3)"), {})  # one statement, marked
        with session(engine) as s:
            assert s.execute(text("SELECT n FROM alone_t")).scalars().all() == [3]
    finally:
        with session(engine, write=True) as s:
            s.execute(text("DROP TABLE alone_t"))
        engine.dispose()


def test_a_sqlite_files_pool_hands_out_the_connection_given_back_last(tmp_path: Path) -> None:
    """LIFO: a request's next checkout (its read unit after its key check) gets the connection just used, whose page
    cache no other connection's write has dropped since; FIFO gave it the one left longest."""
    engine = make_engine(f"sqlite:///{tmp_path / 'lifo.db'}")
    with engine.connect() as first, engine.connect() as second:
        used_first, used_second = first.connection.driver_connection, second.connection.driver_connection
    # `second` went back, then `first`
    with engine.connect() as again:
        assert again.connection.driver_connection is used_first and used_first is not used_second
    engine.dispose()


@pytest.mark.parametrize("url", [
    "sqlite://", "sqlite:///:memory:",
    # SQLAlchemy's create_engine warns that its pool choice for `mode=memory` will change: the URL works meanwhile
    pytest.param("sqlite:///shared-mem?mode=memory&cache=shared&uri=true",
                 marks=pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")),
])
def test_an_in_memory_database_gets_an_engine_as_before_the_lifo_pool(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pool (one connection a thread) takes no pool_use_lifo: `mode=memory` once raised TypeError here."""
    monkeypatch.chdir(tmp_path)  # a relative name's turn files (store/turn.py) go there
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()
