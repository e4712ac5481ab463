"""Group commit of writes: the write units of a process's threads run one at a time in one shared transaction,
which commits (one fsync) once no unit is waiting; each unit's thread returns only after that commit."""
from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.sql.expression import ReleaseSavepointClause, RollbackToSavepointClause, SavepointClause

from service.errors import ServiceUnavailable

#: Units one shared transaction takes at most, and how long it stays open at most (s), before it commits though
#: units are waiting: another process's writers wait for the whole transaction (SQLite has one writer at a time).
#: A thread's unit waits in its group until the commit, so with gunicorn's 4 threads a group is at most 4 units.
MAX_UNITS = 32
MAX_OPEN_S = 0.1
#: Key of a group commit connection's `info`: the savepoints opened on it that no completed RELEASE or ROLLBACK TO
#: has ended yet, oldest first (see track_savepoints)
OPEN_SAVEPOINTS = "kfhir_open_savepoints"
LOST = "The write was not stored: the database rolled back the transaction it shared with others. Retry it."
BUSY = "The write was not stored: the database's other writes kept it waiting too long. Retry it."
#: What a write refused as WritersBusy tells its client to wait before retrying (s): the writes that held it up
#: have usually finished or failed by then.
RETRY_AFTER_S = 2


def track_savepoints(conn: Connection, clause: Any, *_: Any) -> None:
    """Keeps OPEN_SAVEPOINTS (told by the engines whose writes a group commits of each savepoint statement that
    succeeded: engine._plain_savepoints): a savepoint counts as ended only once its RELEASE or ROLLBACK TO has completed
    (SQLAlchemy calls a savepoint ended even when that statement failed, and runs no other; SQLite keeps it, and its
    rows, in the transaction). SQLite's RELEASE ends the savepoints opened after the one it names too, as
    does ROLLBACK TO, which leaves its own open: SQLAlchemy never ends that one again, and its rows were undone."""
    if isinstance(clause, SavepointClause):
        conn.info.setdefault(OPEN_SAVEPOINTS, []).append(clause.ident)
    elif isinstance(clause, ReleaseSavepointClause | RollbackToSavepointClause):
        names = conn.info.get(OPEN_SAVEPOINTS)
        if names and clause.ident in names:
            del names[names.index(clause.ident):]


class Shared(Protocol):
    """A write transaction open on `connection` (SQLite: the writers' turn and BEGIN IMMEDIATE held)."""

    connection: Connection

    def alive(self) -> bool:
        """Whether the transaction is still open: SQLite rolls a whole transaction back itself on some errors
        (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY …), not only the failed statement."""

    def settled(self) -> bool:
        """Whether every savepoint opened in the transaction so far was ended by a RELEASE or ROLLBACK TO that
        completed. One that failed (SQLITE_INTERRUPT, an I/O error) leaves the transaction open with the unit's rows
        in it: a unit told it failed whose rows its group would commit, or one told it succeeded whose savepoint the
        database may still undo."""

    def end(self, commit: bool) -> None:
        """Commit (and wait for it to be durable) or roll back; give back the connection and the turn."""


class TransactionLost(ServiceUnavailable):
    """The database rolled back the shared transaction after this unit had finished in it: its work is not stored,
    and the client is told so (503), as it was when its own transaction failed to commit."""


class WritersBusy(ServiceUnavailable):
    """A unit waited longer than its engine's busy timeout for its turn (a unit before it held the transaction that
    long): refused, as SQLite refuses a writer past its busy timeout, never waiting for ever."""

    def __init__(self) -> None:
        super().__init__(BUSY, retry_after=RETRY_AFTER_S)


class _Members:
    """The units of one shared transaction that finished and wait for its commit."""

    def __init__(self) -> None:
        self.count = 0
        self.opened = time.monotonic()
        self.done = threading.Event()
        self.error: BaseException | None = None


class WriteGroup:
    """The write units of this process to one database file (every engine on it). A unit takes the shared
    transaction (opening one if none is open), runs alone in it inside its own savepoint (the caller's Session joins
    the connection that way), then either hands the transaction to the next waiting unit or, when none waits (or the
    group is full), commits it for every unit in it. A unit that raises rolls back to its savepoint alone and the
    others still commit; every unit returns (or raises) only once the commit has returned, so nothing is answered
    before it is durable. What a group saves is the commit: while one commits (SQLite's fsync: 6.8 ms on the
    bench's disk) the next units queue, and they then share one."""

    def __init__(self, timeout: float) -> None:
        """`timeout`: how long a unit waits for its turn before WritersBusy (s): SQLite's busy timeout."""
        self.timeout = timeout
        self._turn = threading.Condition()
        self._busy = False  # a thread is running a unit, or opening or ending the transaction
        self._waiting = 0  # threads waiting to run a unit
        self._shared: Shared | None = None
        self._members = _Members()
        self._inside = threading.local()
        self.commits = 0  # transactions committed (for tests and measurement)
        _GROUPS.add(self)

    def inside(self) -> bool:
        """Whether this thread is running a unit of this group (a write it opens now cannot join it)."""
        return bool(getattr(self._inside, "on", False))

    @contextmanager
    def unit(self, begin: Callable[[], Shared]) -> Iterator[Connection]:
        """The shared transaction's connection, this thread's alone until the block ends; after the block, wait for
        the commit that makes this unit durable (raise if that commit failed). WritersBusy when the turn does not
        come within `timeout`. The commit itself is waited for without a deadline: a unit told it failed must have
        nothing stored, and its commit may still succeed. `begin` opens the shared transaction when none is open
        (the engines of one file share a group: the one whose unit comes first opens it)."""
        with self._turn:
            self._waiting += 1
            deadline = time.monotonic() + self.timeout
            try:
                while self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise WritersBusy
                    self._turn.wait(left)
            finally:
                self._waiting -= 1
            self._busy = True
        _pause_gc()
        try:
            if self._shared is None:
                self._shared, self._members = begin(), _Members()
        except BaseException:
            self._free()
            _resume_gc()
            raise
        shared, members = self._shared, self._members
        self._inside.on = True
        try:
            yield shared.connection
        except BaseException as exc:
            self._inside.on = False
            self._hand_on(shared, members, finished=False)
            # A unit refused on a row an earlier unit of its group wrote (a unique identity, a conditional claim)
            # goes on to read that row, or to try again: it must be committed by then, as it was when each unit
            # committed alone.
            members.done.wait()
            if members.error is not None and isinstance(exc, Exception):  # judged on rows the group then lost
                raise TransactionLost(LOST) from members.error
            raise
        self._inside.on = False
        self._hand_on(shared, members, finished=True)
        members.done.wait()
        if members.error is not None:  # a fresh 503 for each unit, never the commit's own error (a 500, shared)
            raise TransactionLost(LOST) from members.error

    def _hand_on(self, shared: Shared, members: _Members, finished: bool) -> None:
        """_after, then the garbage collector resumed: paused only while this thread holds the turn (the commit
        included when this unit ends the group), never while it waits for another's commit, or under load it stayed
        paused nearly all the time (review 5: 96 % of samples) and the garbage that cycles hold piled up."""
        try:
            self._after(shared, members, finished)
        finally:
            _resume_gc()

    def _after(self, shared: Shared, members: _Members, finished: bool) -> None:
        """A unit ended: hand the transaction on to a waiting unit, or end it."""
        members.count += finished
        if not shared.alive() or not shared.settled():
            self._end(shared, members, TransactionLost(LOST))
            return
        with self._turn:
            if (self._waiting and members.count < MAX_UNITS
                    and time.monotonic() - members.opened < MAX_OPEN_S):
                self._busy = False
                self._turn.notify()
                return
        self._end(shared, members, None)

    def _end(self, shared: Shared, members: _Members, lost: BaseException | None) -> None:
        """Commit the transaction (roll it back when no unit in it finished, or it is lost) and tell its units."""
        self._shared = None
        try:
            shared.end(commit=lost is None and members.count > 0)
            self.commits += lost is None and members.count > 0
        except BaseException as exc:  # noqa: BLE001 - told to every unit of the group, each raises it
            lost = lost or exc
        finally:
            members.error = lost
            self._free()
            members.done.set()

    def _free(self) -> None:
        with self._turn:
            self._busy = False
            self._turn.notify()

    def _forked(self) -> None:
        """In a forked child no thread of the parent runs: nothing is busy, no transaction is open."""
        self._turn, self._busy, self._waiting = threading.Condition(), False, 0
        self._shared, self._members, self._inside = None, _Members(), threading.local()


_GROUPS: weakref.WeakSet[WriteGroup] = weakref.WeakSet()
#: [threads holding a writers' turn, in every group of the process (at most one a group); whether the cyclic garbage
#: collector ran before the first of them]: while any does, it does not
_PAUSED: list[Any] = [0, False]
#: the young objects (in units of the collector's first threshold) past which a pass runs even in a writer's turn
PAUSE_BOUND = 10
_PAUSED_LOCK = threading.Lock()


def _pause_gc() -> None:
    """Keep the cyclic garbage collector's passes out of the writers' turn: they ran where a unit's allocations
    tripped them, ~3 % of a clinic record's unit (callgrind), while every other writer waited. Paused while a unit
    holds the turn (WriteGroup._hand_on resumes it); the pass due runs at the next allocation after. Only what cycles
    hold waits for it (reference counting frees the rest at once)."""
    with _PAUSED_LOCK:
        if _PAUSED[0] == 0:
            _PAUSED[1] = gc.isenabled()
            gc.disable()
        _PAUSED[0] += 1
        counts, limits = gc.get_count(), gc.get_threshold()
        if _PAUSED[1] and counts[0] >= PAUSE_BOUND * limits[0]:
            # turns handed from thread to thread without a gap keep it paused: the pass is run here, bounded
            gc.collect(max(g for g in range(3) if g == 0 or counts[g] >= limits[g]))


def _resume_gc() -> None:
    with _PAUSED_LOCK:
        _PAUSED[0] -= 1
        if _PAUSED[0] == 0 and _PAUSED[1]:
            gc.enable()


def _forked() -> None:
    global _PAUSED_LOCK
    for group in list(_GROUPS):
        group._forked()
    _PAUSED_LOCK = threading.Lock()  # a parent's thread may have held it at the fork
    if _PAUSED[0]:  # forked while a parent's thread was in a unit: no unit runs here
        _PAUSED[0] = 0
        if _PAUSED[1]:
            gc.enable()


os.register_at_fork(after_in_child=_forked)
