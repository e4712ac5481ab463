"""Long console actions in the background: a sandbox-check an admin starts runs in a thread of the web process
while the endpoint's page shows its steps as they pass (a row in console_tasks, written at every step), so no
request waits minutes for a remote server. When it ends, its report is kept like any check (endpoint_checks)
and `on_done` is told (the console audits it there, with its real outcome)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from service.admin import exchange
from service.exchange.endpoints import Endpoint
from service.exchange.sandbox_report import Report, Step
from service.store.engine import session
from service.store.models import ConsoleTaskRow
from service.store.records import utcnow

log = logging.getLogger(__name__)
#: A running task not heard of for this long died with its process (a restart, a killed worker).
STALE = timedelta(minutes=10)


class Busy(Exception):
    """A sandbox-check of this endpoint is running already."""


@dataclass(frozen=True)
class Task:
    pk: int
    endpoint: str
    state: str              # running | passed | failed | interrupted
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: list[dict[str, Any]]
    run_by: str

    @property
    def running(self) -> bool:
        return self.state == "running"


def latest(engine: Engine, endpoint: str) -> Task | None:
    with session(engine) as s:
        row = s.scalars(select(ConsoleTaskRow).where(ConsoleTaskRow.endpoint == endpoint,
                                                     ConsoleTaskRow.kind == exchange.SANDBOX)
                        .order_by(ConsoleTaskRow.pk.desc()).limit(1)).one_or_none()
        if row is None:
            return None
        state = "interrupted" if row.state == "running" and utcnow() - row.updated_at > STALE else row.state
        return Task(row.pk, row.endpoint, state, row.started_at, row.updated_at, row.finished_at,
                    list((row.progress or {}).get("steps") or []), row.run_by)


def start_sandbox_check(engine: Engine, endpoint: Endpoint, user: str, cleanup: bool,
                        on_done: Callable[[exchange.Check], None]) -> int:
    """Start the check in a thread; the task's number. Busy when one of this endpoint runs already."""
    found = latest(engine, endpoint.name)
    if found is not None and found.running:
        raise Busy(f"A sandbox-check of {endpoint.name} started by {found.run_by} is still running.")
    now = utcnow()
    with session(engine, write=True) as s:
        row = ConsoleTaskRow(endpoint=endpoint.name, kind=exchange.SANDBOX, state="running", started_at=now,
                             updated_at=now, progress={"steps": [], "cleanup": cleanup}, run_by=user)
        s.add(row)
        s.flush()
        pk = row.pk
    thread = threading.Thread(target=_run, args=(engine, pk, endpoint, user, cleanup, on_done),
                              name=f"sandbox-check-{endpoint.name}-{pk}", daemon=True)
    thread.start()
    return pk


def _run(engine: Engine, pk: int, endpoint: Endpoint, user: str, cleanup: bool,
         on_done: Callable[[exchange.Check], None]) -> None:
    def progress(report: Report, step: Step) -> None:
        _save(engine, pk, "running", report.steps)

    try:
        check = exchange.run_sandbox_check(engine, endpoint, user, cleanup, progress)
        state = "passed" if check.passed else "failed"
        with session(engine, write=True) as s:
            row = s.get(ConsoleTaskRow, pk)
            if row is not None:
                row.state, row.finished_at, row.updated_at = state, utcnow(), utcnow()
        on_done(check)
    except Exception:  # a bug: the task says it failed instead of running forever; the log has the traceback
        log.exception("sandbox-check task %s of %s", pk, endpoint.name)
        with session(engine, write=True) as s:
            row = s.get(ConsoleTaskRow, pk)
            if row is not None:
                row.state, row.finished_at, row.updated_at = "failed", utcnow(), utcnow()


def _save(engine: Engine, pk: int, state: str, steps: list[Step]) -> None:
    shown = [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 2), "message": s.message}
             for s in steps]
    with session(engine, write=True) as s:
        row = s.get(ConsoleTaskRow, pk)
        if row is not None:
            row.progress = {**(row.progress or {}), "steps": shown}
            row.state, row.updated_at = state, utcnow()
