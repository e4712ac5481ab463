"""Group commit: audit events written on their own, committed together; each caller returns once its own is durable."""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any, cast

from sqlalchemy import Engine, Table, insert

from service.store.engine import execute_alone
from service.store.models import AuditEventRow

#: an audit_events row's columns (its key comes from the database)
EventRow = dict[str, Any]
#: one event or many in one statement, built once; Core, not the ORM, whose flush cost more than the INSERT itself (on
#: SQLite on its own cursor: store/engine.execute_alone's `into`)
EVENTS = cast(Table, AuditEventRow.__table__)
ADD_EVENT = insert(EVENTS)


class _Waiting:
    """One event waiting for its commit: told when it is committed (or failed), or that it leads the next group."""

    def __init__(self, row: EventRow) -> None:
        self.row = row
        self.done = threading.Event()
        self.lead = False
        self.error: Exception | None = None


class GroupCommit:
    """The events this process writes on their own (reads, searches, refusals), committed in groups: a request
    that finds no commit under way leads one, taking every event queued so far into one transaction; requests that
    arrive meanwhile queue theirs and wait, and the first of them leads the next group once this one commits. Each
    request still returns only once its own event is committed (fsynced), so nothing is answered before its event
    is durable; what the group shares is the commit and its fsync (6.8 ms on the bench's disk). With one request
    at a time per process (gunicorn's sync workers) every group is one event, as before; threads (KFHIR_THREADS)
    make groups of the requests in hand."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leading = False
        mine = weakref.ref(self)  # weak: an app built and dropped (tests, CLI) is not kept alive by the hook
        os.register_at_fork(after_in_child=lambda: _forked(mine()))

    def _forked(self) -> None:
        """A child forked while a commit was led (or queued for) here would wait for ever on a leader that is not
        in it: its copy starts empty. The queued events are the parent's requests', answered there."""
        self._lock, self._queue, self._leading = threading.Lock(), [], False

    def commit(self, row: EventRow) -> None:
        """Return once `row` is committed; raise what its commit raised."""
        me = _Waiting(row)
        with self._lock:
            self._queue.append(me)
            lead, self._leading = not self._leading, True
        if not lead:
            me.done.wait()
        if lead or me.lead:
            self._lead(me)
        if me.error is not None:
            raise me.error

    def _lead(self, me: _Waiting) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        failed = self._commit(group)
        with self._lock:
            after = self._queue[0] if self._queue else None
            if after is None:
                self._leading = False
        for waiting in group:
            waiting.error = failed.get(id(waiting))
            if waiting is not me:
                waiting.done.set()
        if after is not None:
            after.lead = True
            after.done.set()

    def _commit(self, group: list[_Waiting]) -> dict[int, Exception]:
        """Commit the group's events in one transaction; if that fails, each on its own, so that one event the
        database refuses does not take the others with it. Returns the errors by waiting id."""
        try:
            execute_alone(self.engine, ADD_EVENT, [w.row for w in group], EVENTS)
            return {}
        except Exception as exc:
            if len(group) == 1:
                return {id(group[0]): exc}
        failed: dict[int, Exception] = {}
        for waiting in group:
            try:
                execute_alone(self.engine, ADD_EVENT, [waiting.row], EVENTS)
            except Exception as exc:
                failed[id(waiting)] = exc
        return failed


def _forked(group: GroupCommit | None) -> None:
    if group is not None:
        group._forked()
