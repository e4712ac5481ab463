"""Database engine: SQLite (WAL, foreign keys, busy timeout, writers queued) by default, PostgreSQL by URL."""
from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.expression import ReleaseSavepointClause, RollbackToSavepointClause, SavepointClause

from service.store import driver, pg_pool, pipeline, sqlite_setup, turn
from service.store.checkpoint import Checkpointer
from service.store.group import OPEN_SAVEPOINTS, WriteGroup, track_savepoints
from service.store.sqlite_setup import KEYED

WRITE = driver.WRITE
WriteWithoutTransaction = driver.WriteWithoutTransaction
#: Key of `Session.info` under which a transaction lists what it wrote, as (stored resource or record, created).
WRITTEN = "kfhir_written"
#: What a write transaction that wrote resources or records runs last, inside itself, before it commits: the web
#: layer's audit event of the request (service/web/auth.py), so that a write and its event commit together or not
#: at all, under one writer lock and one flush. Set for one request in its own thread; None elsewhere.
BEFORE_COMMIT: ContextVar[Callable[[Session], None] | None] = ContextVar("kfhir_before_commit", default=None)
#: What BEFORE_COMMIT can work out before a write's unit of work waits for its turn, told what the write will answer
#: with (`answering`): the audit event but for its id and time, made where no other writer waits for it. Set and
#: None as BEFORE_COMMIT.
BEFORE_TURN: ContextVar[Callable[[Any, bool, Mapping[Any, Any]], None] | None] = ContextVar(
    "kfhir_before_turn", default=None)
#: The read transaction of a request that only reads (service/web/auth.py opens it with `reading`): every read
#: `session` of its engine joins it instead of beginning its own, so that authenticating the caller, the read or
#: search itself and the audit's patient lookup are one transaction (one pool checkout, one BEGIN, one snapshot)
#: instead of three. Set for one request in its own thread; None elsewhere.
SHARED_READ: ContextVar[Session | None] = ContextVar("kfhir_shared_read", default=None)
#: Per SQLite file engine: the lock file that queues its writers (see _writer_turn).
_TURN_FILES: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()
#: Per SQLite file engine: its writes' group commit (store/group.py), its file's (_FILE_GROUPS)
_GROUPS: WeakKeyDictionary[Engine, WriteGroup] = WeakKeyDictionary()
#: Per SQLite file (its resolved path): the group commit of this process's writes to it, shared by every engine on
#: that file (tests and the CLI build several), alive while one is. With a group each, a write through one engine
#: inside a unit of another's waited for the writers' turn (10 s), then for SQLite's lock (10 s more), then failed.
_FILE_GROUPS: weakref.WeakValueDictionary[str, WriteGroup] = weakref.WeakValueDictionary()
_FILE_GROUPS_LOCK = threading.Lock()
#: The turn files (see _writer_turn) whose turn this thread holds (`paths`).
_TURN = threading.local()
#: Every engine make_engine made, for _forked.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _queue_pooled(parsed: URL) -> bool:
    """Whether SQLAlchemy pools `parsed`'s connections in a QueuePool (a file), which alone takes pool_use_lifo."""
    with warnings.catch_warnings():  # its choice for `mode=memory` is deprecated: the choice is all we ask
        warnings.simplefilter("ignore")
        return issubclass(cast(Any, parsed.get_dialect()).get_pool_class(parsed), QueuePool)


def make_engine(url: str, group_commit: bool = True) -> Engine:
    """An engine for `url`. SQL parameters are hidden from error messages: they carry patient data.
    `group_commit`: a SQLite file's writes in this process share transactions (store/group.py)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        driver.cheap_sqlite_binds()
        # a file's pool hands out the connection given back last (LIFO): a connection's page cache is dropped whenever
        # another connection wrote since its last read, and pages are read in again; in turn (FIFO), every checkout
        # of a request (its key check, its read unit) got a connection left before the last writes (an in-memory
        # database, `mode=memory` too, has one connection a thread, and no such option)
        lifo = {"pool_use_lifo": True} if _queue_pooled(parsed) else {}
        engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True, **lifo)
        _ENGINES.add(engine)
        _plain_savepoints(engine)
        event.listen(engine, "connect", sqlite_setup.pragmas)
        event.listen(engine, "begin", sqlite_setup.begin)
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            path = os.path.realpath(parsed.database)
            _TURN_FILES[engine] = path + "-writer"
            if group_commit:
                _plain_savepoints(engine, track_savepoints)
                with _FILE_GROUPS_LOCK:
                    group = _FILE_GROUPS.get(path)
                    if group is None:
                        group = _FILE_GROUPS[path] = WriteGroup(sqlite_setup.SQLITE_BUSY_TIMEOUT_MS / 1000)
                _GROUPS[engine] = group
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # psycopg prepares a statement once a connection has run it 5 times, and PostgreSQL then may plan it once for
    # any values (a generic plan): a search, one statement text for every value searched, went from a plan made for
    # its values (0.1 ms to execute) to one that was not (a served search's PostgreSQL CPU 12 ms; 52 against 20 ms
    # a search in a loop). Plans are made for each execution's values; parsing is still saved. Checked again on
    # 12-05 with the searches that read their page off one value's index rows: generic plans still hurt a value two
    # rows hold after thousands of searches for a value 3,000 hold (patient=: 1.2 -> 2.2 ms; sorted: 1.7 -> 4.4 ms).
    # Planning once only what reads by key (searches sent unprepared, the rest prepared under `auto`) saved a served
    # read 0.13 ms of PostgreSQL CPU but cost a search ~0.15 ms (parsed again each time): not worth it as it stands.
    # TCP keepalives: a server host gone without closing its end (down, failed over) shows as an error on the socket
    # within ~1 minute of idleness, which the checkout's look at the socket then sees; without them, never.
    engine = create_engine(parsed, hide_parameters=True,
                           connect_args={"options": "-c plan_cache_mode=force_custom_plan", "keepalives": 1,
                                         "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                                         **pg_pool.CONNECT_ARGS})
    pg_pool.watched(engine)
    _ENGINES.add(engine)
    pipeline.statements_sent(engine.dialect)  # a transaction's BEGIN goes with its first statement
    return _plain_savepoints(engine)


def _plain_savepoints(engine: Engine, track: Callable[[Connection, Any], None] | None = None) -> Engine:
    """SAVEPOINT, RELEASE and ROLLBACK TO sent as the driver's SQL. SQLAlchemy's own statements for them carry no cache
    key, so each was compiled anew: ~0.1 ms of CPU a savepoint and its release, and a facade create made two (its group
    commit unit's, the clinic record it is read into), inside the write unit every other writer waits for.
    `track(connection, clause)`: told of each that completed, as SQLAlchemy would have executed it
    (group.track_savepoints was an after_execute listener, which no longer sees them, and ran after every statement)."""
    def sent(sql: str, clause: Callable[[str], Any]) -> Callable[[Connection, str], None]:
        def run(connection: Connection, savepoint: str) -> None:
            # SQLAlchemy's names (sa_savepoint_1 …) need no quoting; on SQLite's own cursor (two a write unit: through
            # exec_driver_sql each cost ~60 µs more, inside the writers' turn)
            if not driver.run(connection, sql + savepoint):
                connection.exec_driver_sql(sql + savepoint)
            if track is not None:  # only once it succeeded
                track(connection, clause(savepoint))
        return run

    for method, done in {"do_savepoint": sent("SAVEPOINT ", SavepointClause),
                         "do_release_savepoint": sent("RELEASE SAVEPOINT ", ReleaseSavepointClause),
                         "do_rollback_to_savepoint": sent("ROLLBACK TO SAVEPOINT ", RollbackToSavepointClause)}.items():
        setattr(engine.dialect, method, done)
    return engine


def _forked() -> None:
    """In a forked child: close the copies of the parent's turn descriptors (an flock belongs to the open file,
    which the copy shares: it kept the turn held after the parent gave it back, so every writer of the database
    waited for this process to exit or for the busy timeout), and drop the pools' connections without closing them
    (they are the parent's, in use there: a database connection must not cross a fork). SQLite's own lock state is
    the process's and crosses the fork too: a child forked while a write to a file was open cannot write that file.
    gunicorn forks its workers before any engine exists (no preload: service/web/serving.py)."""
    global _FILE_GROUPS_LOCK
    turn.closed()
    _FILE_GROUPS_LOCK = threading.Lock()  # held by a thread of the parent, perhaps: none runs here
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forked)


class NestedWrite(RuntimeError):
    """A write transaction begun inside another of the same thread on the same SQLite file: SQLite has one writer at a
    time, so it would wait for the outer one, its own thread's, until its busy timeout. Write in the outer
    transaction, or after it."""


def _held() -> set[str]:
    """The turn files whose turn this thread holds."""
    paths: set[str] | None = getattr(_TURN, "paths", None)
    if paths is None:
        paths = _TURN.paths = set()
    return paths


def _not_nested(engine: Engine, path: str) -> None:
    group = _GROUPS.get(engine)
    if path in _held() or (group is not None and group.inside()):
        raise NestedWrite(f"a write to {path.removesuffix('-writer')} was begun inside another write of this thread "
                          "to the same database: it would wait for itself")


@contextmanager
def _writer_turn(engine: Engine) -> Iterator[None]:
    """A SQLite writer's turn: an exclusive flock on a file beside the database, held from before BEGIN IMMEDIATE
    until after the commit (see _take_turn). Taken once a thread (a nested write is refused: _not_nested)."""
    path = _TURN_FILES.get(engine)
    held = _held()
    if path is None or path in held:
        yield
        return
    fd = _take_turn(path)
    held.add(path)
    try:
        yield
    finally:
        held.discard(path)
        _give_turn(fd)


def _take_turn(path: str) -> int:
    """The writers' turn of the file whose lock file is `path` (store/turn.py). SQLite's own busy handler sleeps 1,
    2, 5, 10 … 100 ms between tries and is not woken when the lock frees, so of two processes writing back to back
    the one waiting kept losing the lock to the one that had it (waits of 0.5-1 s, the serving benchmark's p99)."""
    return turn.take(path, sqlite_setup.SQLITE_BUSY_TIMEOUT_MS / 1000)


_give_turn = turn.give


#: The checkpointer of the SQLite files this process writes (store/checkpoint.py).
CHECKPOINTER = Checkpointer(_writer_turn)


@contextmanager
def session(engine: Engine, write: bool = False, fresh: bool = False, keyed: bool = False) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises.
    Writers say so up front, so SQLite takes the write lock at BEGIN (see sqlite_setup.begin), in turn (_writer_turn).
    A SQLite file's writers share transactions (group commit, store/group.py): the block is a savepoint in the
    process's open write transaction, and it ends once that transaction has committed, so on return the write is
    durable as before; if the block raises, only its own work is undone.
    A read joins the request's shared read transaction, if one is open on `engine` (SHARED_READ), unless `fresh`
    (it must see what other processes committed since that transaction began). `keyed`: a read of a few rows found
    by key (KEYED)."""
    shared = None if write or fresh else SHARED_READ.get()
    path = _TURN_FILES.get(engine) if write else None
    if path is not None:
        _not_nested(engine, path)
    group = _GROUPS.get(engine) if write else None
    if group is not None:
        with group.unit(partial(_Shared, engine)) as connection, _joined(connection) as current:
            yield current
    elif write:
        with _writer_turn(engine), _session(engine, write) as current:
            yield current
        if engine in _TURN_FILES:
            CHECKPOINTER.wrote(engine)
    elif shared is not None and cast(Connection, shared.bind).engine is engine:
        try:
            yield shared
        except DBAPIError:  # the transaction may be unusable now (PostgreSQL aborts it): later reads begin theirs
            SHARED_READ.set(None)
            raise
    else:
        with _session(engine, write, keyed=keyed) as current:
            yield current


@contextmanager
def keyed_read(engine: Engine) -> Iterator[Connection]:
    """A read transaction of a few statements by key (KEYED) on a Core connection: session(keyed=True) without its ORM
    Session, whose begin and commit cost ~0.27 M instructions more (a facade create's read ahead: 0.55 against 0.29 M).
    Never joins the request's shared read (SHARED_READ): ask session() where one may be open."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{WRITE: False, KEYED: True})
        with connection.begin():
            yield connection


def execute_alone(engine: Engine, statement: Any, params: Any, into: Table | None = None) -> None:
    """Run one writing statement (an INSERT of one row or many) in a write transaction, as `session(write=True)`
    would, but on a bare connection: no Session and, in a group's unit, no savepoint, which cost more than the
    statement (an audit event: ~0.5 ms of CPU a request). One statement is atomic on its own: if it fails, the
    database undoes it alone, and the rest of the shared transaction stands. `into`: `statement` is a plain INSERT into
    that table of `params`, a list of rows of the same columns, sent on SQLite's own cursor (driver.insert_many: the
    same stored text): through Core it cost ~0.22 M instructions more, 5 % of a read, whose audit event it is."""
    path = _TURN_FILES.get(engine)
    if path is not None:
        _not_nested(engine, path)
    group = _GROUPS.get(engine)
    if group is not None:
        with group.unit(partial(_Shared, engine)) as connection:
            _execute(connection, statement, params, into)
        return
    if engine.dialect.name == "postgresql":  # its own transaction: no BEGIN, no COMMIT (see alone)
        with alone(engine) as connection:
            connection.execution_options(**{WRITE: True}).execute(statement, params)
        return
    with _writer_turn(engine), engine.connect() as connection:
        connection = connection.execution_options(**{WRITE: True})
        with connection.begin():
            _execute(connection, statement, params, into)
    if engine in _TURN_FILES:
        CHECKPOINTER.wrote(engine)


def _execute(connection: Connection, statement: Any, params: Any, into: Table | None) -> None:
    if into is None or driver.insert_many(connection, into, params) is None:  # None: not SQLite (or mixed columns)
        connection.execute(statement, params)


@contextmanager
def alone(engine: Engine) -> Iterator[Connection]:
    """A connection on which each statement is a transaction of its own, for reads that need no snapshot shared
    with the next statement and writes of one statement: on PostgreSQL, autocommit. A transaction there costs a
    round trip to begin and one to end (psycopg sends BEGIN before the first statement, then COMMIT or, as the pool
    takes the connection back, ROLLBACK): two of the three of a one-statement read. A statement alone sees what
    it would see in a transaction (READ COMMITTED gives each statement its own snapshot either way): committed
    rows only. On SQLite, a plain connection (its transactions are begun locally, without a round trip)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":  # reset to the pool's default as it goes back to the pool
            connection = pg_pool.statements_alone(connection)
        yield connection


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """One read transaction that every read `session` of `engine` in this context joins until the block ends.
    On PostgreSQL its statements run alone (see alone): what joins it only reads (the routes that open it write,
    if at all, in transactions of their own: session(write=True)), and READ COMMITTED gave each of its statements
    a snapshot of its own anyway."""
    with _session(engine, False, engine.dialect.name == "postgresql") as current:
        token = SHARED_READ.set(current)
        try:
            yield current
        finally:
            SHARED_READ.reset(token)


@contextmanager
def _session(engine: Engine, write: bool, each_alone: bool = False, keyed: bool = False) -> Iterator[Session]:
    """On PostgreSQL a write's BEGIN goes with its first statement (pipeline.begin_with_first): its connection is in
    autocommit mode, so psycopg sends no BEGIN of its own (alone, waiting for the answer); COMMIT ends it as before."""
    deferred = write and engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        conn = (pg_pool.statements_alone(conn) if each_alone or deferred else conn).execution_options(
            **{WRITE: write, KEYED: keyed})
        with (pipeline.begin_with_first(conn.connection.driver_connection) if deferred else nullcontext(),
              Session(bind=conn, expire_on_commit=False) as current, current.begin()):
            yield current
            _last(current, write)


@contextmanager
def _joined(connection: Connection) -> Iterator[Session]:
    """A write unit in a transaction open on `connection`: its own savepoint, released or rolled back at the end.
    The savepoint is Core's, and the unit's Session begins a transaction only if something needs one (a query through
    it, pending objects flushed; rollback_only: it joins the savepoint, its rollback rolls that back, its commit and
    close leave it to this block). connection_of gives the connection without it: a facade create's unit used its
    Session for nothing else, and the Session's transaction (its begin, joining, commit and close) cost ~0.25 M
    instructions inside the writers' turn. A failure, the release's too, rolls the Session back (its after_rollback
    listeners told, as when it always began one: web/auth.py's), then the savepoint. Nothing may go on using the
    Session after its rollback: it would join the group's own transaction next, and a second rollback would undo
    other writers' units."""
    savepoint = connection.begin_nested()
    current = Session(bind=connection, expire_on_commit=False, join_transaction_mode="rollback_only")
    try:
        yield current
        _last(current, True)
        current.flush()  # what the ORM holds goes in before the release, as the Session's commit flushed it
        savepoint.commit()
    except BaseException:
        try:
            if not current.in_transaction():
                current.begin()  # nothing to roll back in it but its listeners to tell
            current.rollback()
        finally:
            savepoint.close()  # rolled back to, unless the Session's rollback did, or its release failed
        raise
    finally:
        current.close()


def connection_of(current: Session) -> Connection:
    """current.connection(), without the Session joining the transaction where it is bound to a connection in one
    already (a group commit unit's, _joined): the same connection, the same transaction."""
    bind = current.bind
    if isinstance(bind, Connection) and bind.in_transaction():
        return bind
    return current.connection()


def _last(current: Session, write: bool) -> None:
    """What a write transaction runs last, inside itself (BEFORE_COMMIT), if it wrote resources or records."""
    last = BEFORE_COMMIT.get() if write else None
    if last is not None and current.info.get(WRITTEN):
        last(current)


class _Shared:
    """A group commit's write transaction on a SQLite file (store/group.py's Shared): the writers' turn, then a
    connection with BEGIN IMMEDIATE."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        path = _TURN_FILES.get(engine)
        self._turn = _take_turn(path) if path is not None else None
        try:
            self.connection = engine.connect().execution_options(**{WRITE: True})
            self.connection.info[OPEN_SAVEPOINTS] = []
            try:
                self._transaction = self.connection.begin()
            except BaseException:
                self.connection.close()
                raise
        except BaseException:
            self._free()
            raise

    def alive(self) -> bool:
        try:
            raw = self.connection.connection.driver_connection
        except Exception:  # noqa: BLE001 - a connection SQLAlchemy invalidated (closed under us): nothing is open
            return False
        return not self.connection.invalidated and bool(getattr(raw, "in_transaction", True))

    def settled(self) -> bool:
        return not self.connection.info.get(OPEN_SAVEPOINTS)

    def end(self, commit: bool) -> None:
        try:
            if commit:
                self._transaction.commit()
            else:
                self._transaction.rollback()
        finally:
            try:
                self.connection.close()  # back to the pool, rolled back if the commit failed
            finally:
                self._free()
        if commit and self.engine in _TURN_FILES:
            CHECKPOINTER.wrote(self.engine)

    def _free(self) -> None:
        if self._turn is not None:
            _give_turn(self._turn)
            self._turn = None


def answering(item: Any, created: bool, read: Mapping[Any, Any] | None = None) -> None:
    """Tell BEFORE_TURN, if set, that the write transaction about to begin will write `item` (a StoredResource or a
    StoredRecord, as `wrote` will note it) first; `read`: rows read before it, by (type, id), if any."""
    early = BEFORE_TURN.get()
    if early is not None:
        early(item, created, read or {})


def wrote(current: Session, item: Any, created: bool) -> None:
    """Note in `current`'s transaction that it wrote `item` (a StoredResource or a StoredRecord), for BEFORE_COMMIT."""
    current.info.setdefault(WRITTEN, []).append((item, created))
