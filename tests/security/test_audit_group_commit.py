"""Group commit of the audit events written on their own (reads, searches): concurrent requests share one commit,
each returns only once its own event is committed, and a worker killed after answering loses none of the events
of what it answered (both backends, under gunicorn's gthread workers)."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hardening.production import Production, production
from sqlalchemy import Engine, event, select

from service.security.grouped import ADD_EVENT, EventRow, GroupCommit
from service.store.driver import ALONE
from service.store.engine import WRITE, make_engine, session
from service.store.models import AuditEventRow
from service.store.records import utcnow

pytestmark = pytest.mark.both_backends


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


def row(event_id: str | None = None) -> EventRow:
    event_id = event_id or str(uuid.uuid4())
    return {"id": event_id, "recorded": utcnow(), "action": "R", "outcome": "0", "agent": "tests", "entity_types": " ",
            "patients": " ", "content": {"resourceType": "AuditEvent", "id": event_id}}


def stored_ids(engine: Engine) -> set[str]:
    with session(engine) as s:
        return set(s.scalars(select(AuditEventRow.id)))


def test_concurrent_events_share_commits_and_each_returns_once_its_own_is_committed(engine: Engine) -> None:
    group = GroupCommit(engine)
    commits: list[int] = []

    def committed(conn: Any) -> None:  # a writer's transaction committed (SQLite: the INSERT on its own cursor)
        if conn.get_execution_options().get(WRITE):
            commits.append(1)

    def added(conn: Any, clause: Any, *_: Any) -> None:
        if clause is ADD_EVENT and conn.get_execution_options().get(ALONE):  # PostgreSQL: the INSERT alone is its
            commits.append(1)  # transaction, committed once it returns (store/engine.alone)

    event.listen(engine, "commit", committed)
    event.listen(engine, "after_execute", added)
    late: list[str] = []

    def one(n: int) -> None:
        for _ in range(n):
            made = row()
            group.commit(made)
            with engine.connect() as other:  # another connection sees committed rows only
                if other.execute(select(AuditEventRow.id).where(AuditEventRow.id == made["id"])).first() is None:
                    late.append(made["id"])

    try:
        threads = [threading.Thread(target=one, args=(25,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        event.remove(engine, "after_execute", added)
        event.remove(engine, "commit", committed)
    assert late == []  # nobody returned before its own event was committed
    assert len(stored_ids(engine)) == 200
    assert 0 < len(commits) < 200  # commits were shared (8 threads: most waited for a commit under way)


def test_an_event_the_database_refuses_fails_alone(engine: Engine) -> None:
    group = GroupCommit(engine)
    taken = row()
    group.commit(taken)
    good = [row() for _ in range(5)]
    errors: dict[str, BaseException] = {}
    gate = threading.Barrier(7)

    def send(made: EventRow) -> None:
        gate.wait()
        try:
            group.commit(made)
        except Exception as exc:
            errors[made["id"]] = exc

    threads = [threading.Thread(target=send, args=(r,)) for r in [*good, row(taken["id"])]]
    for t in threads:
        t.start()
    gate.wait()
    for t in threads:
        t.join()
    assert list(errors) == [taken["id"]]  # the duplicate id, refused; the others committed, in a group or alone
    assert stored_ids(engine) >= {r["id"] for r in good}


# --- a worker killed after answering -----------------------------------------------------------------

@pytest.fixture
def gthread(tmp_path: Path, database_url: str) -> Iterator[Production]:
    with production(database_url, tmp_path, KFHIR_WORKERS="1", KFHIR_THREADS="4") as server:
        yield server


def test_a_worker_killed_after_answering_reads_keeps_every_answered_read_in_the_trail(gthread: Production) -> None:
    headers = gthread.headers | {"Content-Type": "application/fhir+json"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"kill-{n}"}, "request": {"method": "PUT",
                                                                                "url": f"Patient/kill-{n}"}}
        for n in range(240)]}
    made = requests.post(f"{gthread.base}/fhir", json=bundle, headers=headers, timeout=120)
    assert made.status_code == 200, made.text[:300]
    answered: list[str] = []
    enough = threading.Event()

    def reader(ids: list[str]) -> None:
        with requests.Session() as s:
            for pid in ids:
                try:
                    answer = s.get(f"{gthread.base}/fhir/Patient/{pid}", headers=headers, timeout=30)
                except requests.RequestException:
                    return  # the worker is gone
                if answer.status_code == 200:
                    answered.append(pid)
                    if len(answered) >= 40:
                        enough.set()

    threads = [threading.Thread(target=reader, args=([f"kill-{n}" for n in range(k, 240, 6)],)) for k in range(6)]
    for t in threads:
        t.start()
    assert enough.wait(120)
    [worker] = gthread.workers()
    os.kill(worker, signal.SIGKILL)  # reads in hand, events queued or committing
    killed_at = len(answered)
    for t in threads:
        t.join()
    monitor = make_engine(gthread.env["KFHIR_DATABASE_URL"])
    try:
        with session(monitor) as s:
            contents = list(s.scalars(select(AuditEventRow.content).where(AuditEventRow.action == "R")))
    finally:
        monitor.dispose()
    read = {e["what"]["reference"] for c in contents for e in c.get("entity", []) if "reference" in e.get("what", {})}
    missing = [pid for pid in answered if f"Patient/{pid}" not in read]
    assert missing == [], f"{len(missing)} of {len(answered)} answered reads have no event"
    assert killed_at < 240 and len(answered) < 240, "the worker was killed after every read: nothing was tested"
    time.sleep(0)  # (the master replaces the worker; the fixture stops it)


def test_a_child_forked_while_a_commit_is_led_commits_its_own_events(engine: Engine) -> None:
    """Forked while another thread of the parent leads a commit (or waits in the queue), the child inherits that
    state but not those threads: its first event waited for ever for a leader that is not there."""
    group = GroupCommit(engine)
    group.commit(row())  # the engine's pool holds a connection of the parent's (the store drops it in the child)
    with group._lock:  # what another thread's commit under way leaves: a leader, an event queued behind it
        group._leading, group._queue = True, [object()]  # type: ignore[list-item]
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                child_event = row("child-event")
                done = threading.Thread(target=group.commit, args=(child_event,), daemon=True)
                done.start()
                done.join(10)
                code = 0 if not done.is_alive() and "child-event" in stored_ids(engine) else 2
            finally:
                os._exit(code)
    group._leading, group._queue = False, []
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0  # 2: the child's event never committed
