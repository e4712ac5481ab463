"""A PostgreSQL write transaction's statements sent together, in psycopg's pipeline: each round trip is a wait for
the server (and on a shared machine a context switch each way), so what need not wait for an answer goes with what
does. Its BEGIN goes with its first statement; statements whose answer nobody reads go with its COMMIT (later);
a write unit's last rows go with the next statement sent or the COMMIT, whichever comes first (later, `done`); and
the plan mode a statement runs under (GENERIC) is switched only when it changes (_switch).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: PostgreSQL connections (psycopg's, in autocommit mode: store/pg_pool.py) whose transaction is open but not begun
#: on the server: its BEGIN goes with its first statement, in one round trip (psycopg, out of autocommit, sends BEGIN
#: alone and waits for its answer; in its pipeline mode too). Its COMMIT or rollback ends it, begun or not.
_UNBEGUN: weakref.WeakSet[Any] = weakref.WeakSet()
#: what begins a write transaction (begin_with_first): READ COMMITTED, PostgreSQL's default, whatever the database's
#: default_transaction_isolation says (its retries of a concurrent write assume it)
BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
#: what begins one opened outside the write path (unbegun): psycopg's plain BEGIN out of autocommit, at the
#: database's or role's default_transaction_isolation, as before the pool was in autocommit mode
BEGIN_AS_SET = "BEGIN"


@dataclass(frozen=True)
class Later:
    """A statement sent with the COMMIT of its connection's write transaction; its failure raises `failed(the
    database's error)`; `generic`: under a generic plan (GENERIC). `done`: it goes with the next statement sent, if
    one comes before the COMMIT (its rows handed to `done` once they are back)."""

    sql: str
    params: Any
    failed: Callable[[Exception], BaseException]
    generic: bool = False
    done: Callable[[list[tuple[Any, ...]]], None] | None = None


#: per psycopg connection of such a write: the statements sent later (later()), in order
_LATER: weakref.WeakKeyDictionary[Any, list[Later]] = weakref.WeakKeyDictionary()
#: the psycopg connections inside begin_with_first, each with its plan mode in the transaction: generic (True) or the
#: engine's (False). Every statement but a generic one runs under the engine's, a SAVEPOINT and a ROLLBACK TO too, so
#: a savepoint begins under it and a ROLLBACK TO leaves it so. Only their COMMIT sends what later() holds (another
#: connection in autocommit mode, `alone`'s, has no COMMIT to send it with).
#: None after a statement failed: the transaction is aborted and only a ROLLBACK TO (or ROLLBACK) can run, before which
#: no switch may be sent (sent).
_WITH_FIRST: weakref.WeakKeyDictionary[Any, bool | None] = weakref.WeakKeyDictionary()


@contextmanager
def begin_with_first(raw: Any) -> Iterator[None]:
    """Inside, the transaction of `raw` (a psycopg connection in autocommit mode) begins with its first statement
    sent through `sent` (every statement SQLAlchemy executes, and driver.rows): no statement can run outside it. A
    block that sent none leaves nothing open."""
    _UNBEGUN.add(raw)
    _WITH_FIRST[raw] = False
    try:
        yield
    finally:
        _UNBEGUN.discard(raw)
        _WITH_FIRST.pop(raw, None)
        _LATER.pop(raw, None)


#: PostgreSQL connections (in autocommit mode) whose transaction SQLAlchemy opened outside begin_with_first and that
#: is not begun on the server: its BEGIN is sent alone just before its first statement, as psycopg out of autocommit
#: sends it (in psycopg's pipeline a statement of several commands, `DROP ...; CREATE ...`, is refused).
_BEGIN_ALONE: weakref.WeakSet[Any] = weakref.WeakSet()


def unbegun(raw: Any) -> None:
    """The transaction just opened on `raw` (a psycopg connection in autocommit mode) begins just before its first
    statement sent through `sent` (_BEGIN_ALONE), or never if none is: its COMMIT or rollback ends it either way
    (store/pg_pool._begun)."""
    _BEGIN_ALONE.add(raw)


def in_write(raw: Any) -> bool:
    """Whether `raw` is inside begin_with_first (a COMMIT of ours is to come)."""
    return raw in _WITH_FIRST


def later(raw: Any, statement: Later) -> None:
    """Send `statement` with the COMMIT of the write transaction of `raw` (in_write), after those given before it; a
    rollback drops it. See Later."""
    _LATER.setdefault(raw, []).append(statement)


def send_held(raw: Any) -> None:
    """Send now what waits to go with the next statement of `raw` (Later.done), if anything does: one round trip."""
    if raw in _WITH_FIRST and any(statement.done is not None for statement in _LATER.get(raw, ())):
        sent(raw, lambda: None)


def waiting(raw: Any) -> int:
    """How many statements wait to be sent with the COMMIT of the transaction of `raw` (later)."""
    return len(_LATER.get(raw, ()))


def statements_sent(dialect: Any) -> None:
    """Every statement `dialect` executes (do_execute, do_executemany) goes through `sent`; its commit sends the
    transaction's later statements, a rollback drops them."""
    for method in ("do_execute", "do_executemany", "do_execute_no_params"):
        execute = getattr(dialect, method)
        setattr(dialect, method, lambda cursor, *args, run=execute: sent(cursor.connection, lambda: run(cursor, *args)))
    from psycopg.pq import TransactionStatus  # a PostgreSQL dialect's: psycopg is there

    commit, rollback, idle = dialect.do_commit, dialect.do_rollback, TransactionStatus.IDLE
    dialect.do_commit = lambda dbapi_connection: _commit(dbapi_connection, commit)

    def dropped(dbapi_connection: Any) -> None:
        raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        _UNBEGUN.discard(raw)
        _BEGIN_ALONE.discard(raw)
        _LATER.pop(raw, None)
        if raw in _WITH_FIRST:
            _WITH_FIRST[raw] = False
        if raw.pgconn.transaction_status != idle:  # else psycopg's rollback would send nothing either
            rollback(dbapi_connection)

    dialect.do_rollback = dropped


def _commit(dbapi_connection: Any, commit: Callable[[Any], None]) -> None:
    """COMMIT, after the transaction's later statements if it has any (and BEGIN, if nothing began it yet), all in
    psycopg's pipeline: one round trip. A statement that fails skips those after it and the COMMIT; the transaction
    stays aborted (a rollback follows) and its `failed` is raised. Any other error (the COMMIT's own, the
    connection's) is raised as it is (_statement_failed)."""
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    last = _LATER.pop(raw, None)
    if not last:
        _UNBEGUN.discard(raw)  # a transaction that sent nothing began nothing: psycopg's commit then sends none
        _BEGIN_ALONE.discard(raw)
        commit(dbapi_connection)
    else:
        with _failing(raw, last) as cursors, raw.pipeline():
            if raw in _UNBEGUN:
                _UNBEGUN.discard(raw)
                raw.execute(BEGIN)
            for statement in last:
                _switch(raw, statement.generic)  # the COMMIT ends a switch: none back
                cursors.append(raw.execute(statement.sql, statement.params))
            raw.execute("COMMIT")
        _done(last, cursors)
    if raw in _WITH_FIRST:  # SET LOCAL's switch ended with the transaction
        _WITH_FIRST[raw] = False


@contextmanager
def _failing(raw: Any, statements: list[Later]) -> Iterator[list[Any]]:
    """The cursors of `statements` as the block sends them (in order); a psycopg error inside raises the `failed` of
    the first of them that failed (_statement_failed), or as it is."""
    cursors: list[Any] = []
    try:
        yield cursors
    except raw.Error as exc:  # psycopg's, a DB-API Error
        for n, statement in enumerate(statements):
            if _statement_failed(exc, cursors[n] if n < len(cursors) else None):
                raise statement.failed(exc) from exc
        raise


def _done(statements: list[Later], cursors: list[Any]) -> None:
    for statement, cursor in zip(statements, cursors, strict=True):
        if statement.done is not None:
            statement.done(list(cursor.fetchall()))


def _statement_failed(exc: Exception, statement: Any) -> bool:
    """Whether a later statement is what failed (the first of them for which this holds): not when it ran (its
    result came back) and a later one or the COMMIT then failed (a deferred constraint, a serialization failure), nor
    when the connection went (08…, 57…: whether the COMMIT was carried out is unknown), nor without a server's
    SQLSTATE."""
    state = getattr(exc, "sqlstate", None)
    if state is None or state[:2] in ("08", "57"):
        return False
    return statement is None or statement.pgresult is None


#: what a statement run with generic=True runs under, in its transaction: PostgreSQL plans it once a connection for
#: any values (the engines force a plan for each execution's values: make_engine). For the write unit's one
#: statement when it only adds rows (postgres.ADD_SQL) planning cost ~0.4 ms of the server's CPU a create, more than
#: running it, and its generic plan joins as its custom plans do (hash joins on its CTEs): checked with EXPLAIN
#: ANALYZE for a create and a 1,000-entry transaction Bundle (/work/notes/pgr-tools/batch_generic.py). A plan made
#: once may read a table whole that was small when it was made, so: statements that read no table, and QUEUE_SQL,
#: whose one such plan (the outbox analysed empty) lasts until the next ANALYZE (see there). The first switches to
#: generic plans, the second back.
GENERIC = ("SET LOCAL plan_cache_mode = force_generic_plan", "SET LOCAL plan_cache_mode = force_custom_plan")


def _switch(raw: Any, generic: bool) -> None:
    """In a pipeline of `raw` inside begin_with_first: switch its plan mode to `generic` if it is not so already
    (each SET is a statement the server runs, and a record's transaction sent six, two around each generic one)."""
    if _WITH_FIRST[raw] is not generic:
        raw.execute(GENERIC[0] if generic else GENERIC[1])
        _WITH_FIRST[raw] = generic


def sent(raw: Any, run: Callable[[], Any], generic: bool = False) -> None:
    """`run()` (a statement's execution on a cursor of `raw`) under a generic plan if `generic`, else the engine's;
    after BEGIN if the transaction of `raw` is still to begin (begin_with_first) and after the later statements
    that go with the next one (Later.done): all in psycopg's pipeline, one round trip, whose end makes the results
    readable. An error of any is raised at the pipeline's end (a later statement's as its `failed`); the transaction
    is then aborted, as it would be. Inside begin_with_first the plan mode is switched as a statement needs it
    (_switch) and left so, for the next; elsewhere a generic statement is sent between both switches."""
    if raw in _BEGIN_ALONE:
        _BEGIN_ALONE.discard(raw)
        raw.execute(BEGIN_AS_SET)
    tracked = raw in _WITH_FIRST
    if tracked and _WITH_FIRST[raw] is None:  # a statement failed: this is the ROLLBACK TO that recovers, sent as it is
        run()
        _WITH_FIRST[raw] = False  # the mode the savepoint began under: every SAVEPOINT is sent under the engine's
        return
    try:
        _send(raw, run, generic, tracked)
    except BaseException:
        if tracked:  # aborted: a switch sent now would fail, and the ROLLBACK TO after it would never run
            _WITH_FIRST[raw] = None
        raise


def _send(raw: Any, run: Callable[[], Any], generic: bool, tracked: bool) -> None:
    begin = raw in _UNBEGUN
    pending = _LATER.get(raw) if tracked else None  # a sqlite3 connection takes no weak reference
    held = [s for s in pending if s.done is not None] if pending else []
    if not begin and not held and (_WITH_FIRST[raw] is generic if tracked else not generic):
        run()
        return
    _UNBEGUN.discard(raw)
    if held:
        _LATER[raw] = [s for s in pending if s.done is None] if pending else []
    with _failing(raw, held) as cursors, raw.pipeline():
        if begin:
            raw.execute(BEGIN)
        for statement in held:
            _switch(raw, statement.generic)
            cursors.append(raw.execute(statement.sql, statement.params))
        if tracked:
            _switch(raw, generic)
            run()
        else:
            if generic:
                raw.execute(GENERIC[0])
            run()
            if generic:
                raw.execute(GENERIC[1])
    _done(held, cursors)
