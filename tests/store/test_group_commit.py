"""Group commit of writes (store/group.py): the write units of a process's threads share one SQLite transaction and
one commit; each returns only once its own unit is committed; a unit that fails is undone alone; updates of one
resource keep their order and versions; a server killed after answering loses none of the creates it answered."""
from __future__ import annotations

import gc
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from hardening.production import Production, production
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store import engine as engine_module
from service.store import group as group_module
from service.store import sqlite_setup
from service.store.engine import connection_of, make_engine
from service.store.group import WriteGroup
from service.store.models import AdminSecretRow, ResourceRow
from service.store.resources import ResourceStore

FHIR = "application/fhir+json"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    yield made
    made.dispose()


def group_of(engine: Engine) -> WriteGroup:
    return engine_module._GROUPS[engine]


def stored(engine: Engine, resource_type: str) -> dict[str, int]:
    """id → version of the stored resources of a type, read through a connection of its own (committed rows only)."""
    with sqlite3.connect(str(engine.url.database)) as raw:
        return dict(raw.execute("SELECT id, version FROM fhir_resources WHERE resource_type = ?", (resource_type,)))


def patient(resource_id: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": resource_id, **extra}


def create(store: ResourceStore, resource_id: str) -> None:
    with store.unit(write=True) as unit:
        unit.write("Patient", resource_id, patient(resource_id), [], "POST")


def until(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_units_queued_behind_one_in_flight_commit_together_and_a_failing_one_is_undone_alone(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_module, "MAX_OPEN_S", 60)  # the first unit holds the transaction while the rest queue
    store, group = ResourceStore(engine), group_of(engine)
    entered, release = threading.Event(), threading.Event()
    errors: dict[str, BaseException] = {}

    def first() -> None:
        with store.unit(write=True) as unit:
            unit.write("Patient", "first", patient("first"), [], "POST")
            entered.set()
            release.wait(10)

    def good(name: str) -> None:
        create(store, name)

    def refused(name: str) -> None:  # a validation error met after writing: raised out of the unit
        try:
            with store.unit(write=True) as unit:
                unit.write("Patient", name, patient(name), [], "POST")
                raise ValueError("refused")
        except ValueError as exc:
            errors[name] = exc

    def duplicate(name: str) -> None:  # the database refuses it: "first" exists already (unique type and id)
        try:
            with store.unit(write=True) as unit:
                unit.write("Patient", name, patient(name), [], "POST")
                unit.write("Patient", "first", patient("first"), [], "POST", new=True)
        except IntegrityError as exc:
            errors[name] = exc

    holder = threading.Thread(target=first)
    holder.start()
    assert entered.wait(10)
    others = [threading.Thread(target=f, args=(n,)) for f, n in
              ((good, "good-1"), (refused, "refused"), (good, "good-2"), (duplicate, "duplicate"), (good, "good-3"))]
    for t in others:
        t.start()
    until(lambda: group._waiting == len(others))
    commits = group.commits
    release.set()
    for t in [holder, *others]:
        t.join(30)
    assert set(errors) == {"refused", "duplicate"}
    assert set(stored(engine, "Patient")) >= {"first", "good-1", "good-2", "good-3"}
    assert not {"refused", "duplicate"} & set(stored(engine, "Patient"))  # undone with their unit, and only they
    assert group.commits == commits + 1  # six units, one commit


def test_each_unit_returns_only_once_it_is_committed_and_commits_are_shared(engine: Engine) -> None:
    store, group = ResourceStore(engine), group_of(engine)
    late: list[str] = []
    commits = group.commits

    def writer(k: int) -> None:
        for n in range(25):
            name = f"w{k}-{n}"
            create(store, name)
            if name not in stored(engine, "Patient"):  # another connection sees only what was committed
                late.append(name)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert late == []
    assert len(stored(engine, "Patient")) == 200
    assert group.commits - commits < 200  # eight threads: units waited behind commits and shared them


def test_concurrent_updates_of_one_resource_keep_one_version_each_in_order(engine: Engine) -> None:
    """Every update reads the current version and writes the next in one unit; units of a group see each other's
    writes (one transaction), so no two updates write the same version and none is lost."""
    store = ResourceStore(engine)
    create(store, "counted")

    def bump(times: int) -> None:
        for _ in range(times):
            with store.unit(write=True) as unit:
                current = unit.get("Patient", "counted")
                assert current is not None and current.content is not None
                count = int(current.content.get("birthDate", "0000")) + 1  # how many updates came before
                unit.write("Patient", "counted", patient("counted", birthDate=f"{count:04d}"), [], "PUT")

    threads = [threading.Thread(target=bump, args=(10,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with store.unit() as unit:
        current = unit.get("Patient", "counted")
        history, total = unit.history("Patient", "counted", None, 100, 0)
    assert current is not None and current.version == 61 and current.content is not None
    assert current.content["birthDate"] == "0060"  # every update counted once: none read a stale version
    assert total == 61 and [v.version for v in history] == list(range(61, 0, -1))
    assert all(v.content and v.content.get("birthDate", "0000") == f"{v.version - 1:04d}" for v in history[:-1])


def test_updates_with_if_match_from_many_threads_each_version_won_once(app: Flask) -> None:
    """PUT with If-Match from 8 threads at once: per version exactly one update wins (200), the others are 412;
    the versions stay contiguous and every winner's body is the version it names."""
    first = app.test_client().put("/fhir/Patient/contended", json=patient("contended"),
                                  headers={"Content-Type": FHIR})
    assert first.status_code == 201, first.get_data(as_text=True)
    won: list[tuple[int, str]] = []
    statuses: list[int] = []

    def contend(k: int) -> None:
        client = app.test_client()
        for n in range(8):
            seen = client.get("/fhir/Patient/contended")
            version = int(seen.get_json()["meta"]["versionId"])
            body = patient("contended", gender="other", name=[{"text": f"t{k}-{n}"}])
            answer = client.put("/fhir/Patient/contended", json=body,
                                headers={"Content-Type": FHIR, "If-Match": f'W/"{version}"'})
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                won.append((int(answer.get_json()["meta"]["versionId"]), f"t{k}-{n}"))

    threads = [threading.Thread(target=contend, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert set(statuses) <= {200, 412} and 200 in statuses
    versions = sorted(v for v, _ in won)
    assert versions == list(range(2, 2 + len(won)))  # one winner per version, none skipped
    client = app.test_client()
    for version, text in won:
        vread = client.get(f"/fhir/Patient/contended/_history/{version}")
        assert vread.get_json()["name"] == [{"text": text}]


# --- a server killed after answering --------------------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Production]:
    with production(database_url, tmp_path, KFHIR_WORKERS="2", KFHIR_THREADS="4") as server:
        yield server


def test_a_server_killed_after_answering_creates_keeps_every_answered_create(served: Production) -> None:
    headers = served.headers | {"Content-Type": FHIR}
    answered: list[str] = []
    enough, stop = threading.Event(), threading.Event()

    def client() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    answer = s.post(f"{served.base}/fhir/Patient", json={"resourceType": "Patient",
                                    "identifier": [{"system": "urn:test", "value": str(uuid.uuid4())}]},
                                    headers=headers, timeout=30)
                except requests.RequestException:
                    return  # the server is gone
                if answer.status_code == 201:
                    answered.append(answer.json()["id"])
                    if len(answered) >= 201:
                        enough.set()

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    assert enough.wait(240)
    workers = served.workers()
    os.kill(served.proc.pid, signal.SIGKILL)  # the master first, so that no worker is started again
    for worker in workers:
        os.kill(worker, signal.SIGKILL)  # with creates in hand: in a unit, queued, or committing
    killed_at = len(answered)
    stop.set()
    for t in threads:
        t.join(60)
    database = served.env["KFHIR_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as raw:  # reopened after the crash: SQLite replays the WAL's committed frames
        kept = {r[0] for r in raw.execute("SELECT id FROM fhir_resources WHERE resource_type = 'Patient'")}
    missing = [pid for pid in answered if pid not in kept]
    assert missing == [], f"{len(missing)} of {len(answered)} answered creates are not stored"
    assert killed_at >= 201


def test_with_group_commit_off_each_write_commits_on_its_own(database_url: str) -> None:
    """KFHIR_GROUP_COMMIT=0: the runtime's engine has no group; its writes take the writers' turn one by one."""
    from service.app.runtime import Runtime
    from service.config import Settings

    settings = Settings.load({"database_url": database_url}, environ={"KFHIR_GROUP_COMMIT": "0"})
    assert settings.group_commit is False
    runtime = Runtime.build(settings)
    try:
        assert runtime.engine not in engine_module._GROUPS
        create(ResourceStore(runtime.engine), "alone")
        assert "alone" in stored(runtime.engine, "Patient")
    finally:
        runtime.engine.dispose()
    on = Runtime.build(Settings.load({"database_url": database_url}, environ={}))
    try:
        assert on.engine in engine_module._GROUPS
    finally:
        on.engine.dispose()


class FailingCommit:
    """A shared transaction whose commit fails as SQLite's does when the disk is full."""

    connection: Any = None

    def settled(self) -> bool:
        return True

    def alive(self) -> bool:
        return True

    def end(self, commit: bool) -> None:
        if commit:
            raise sqlite3.OperationalError("database or disk is full")


def test_a_failed_commit_is_a_503_for_each_unit_of_its_group_even_one_that_refused_on_its_rows() -> None:
    """Each unit gets a TransactionLost of its own (a 503), never the commit's error (a 500 shared by N threads);
    a unit refused on a row of its group (a unique identity) is told the group was lost, not its refusal."""
    group, first_in, second_waits = WriteGroup(10), threading.Event(), threading.Event()
    raised: dict[str, BaseException] = {}

    def first() -> None:
        try:
            with group.unit(FailingCommit):
                first_in.set()
                until(lambda: group._waiting == 1)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what it is
            raised["first"] = exc

    def second() -> None:
        first_in.wait(10)
        second_waits.set()
        try:
            with group.unit(FailingCommit):
                raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        except BaseException as exc:  # noqa: BLE001
            raised["second"] = exc

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert set(raised) == {"first", "second"}
    assert all(isinstance(e, group_module.TransactionLost) for e in raised.values()), raised
    assert raised["first"] is not raised["second"]
    assert isinstance(raised["first"].__cause__, sqlite3.OperationalError)
    assert group.commits == 0


# --- a savepoint that could not be ended ----------------------------------------------------------------

def interrupt_next_statement(unit: Any) -> None:
    """SQLite interrupts the next statement this unit's connection runs (and only that one): sqlite3's progress
    handler returning non-zero is SQLITE_INTERRUPT, a real failure that leaves the transaction open."""
    raw = unit.session.connection().connection.driver_connection
    fired: list[bool] = []

    def handler() -> int:
        if fired:
            return 0
        fired.append(True)
        return 1

    raw.set_progress_handler(handler, 1)


def group_with_one_failing_to_end(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                  failing: Any) -> dict[str, BaseException]:
    """A unit holds the group's transaction while three queue behind it in this order: a good one, `failing` and
    another good one; what each raised."""
    monkeypatch.setattr(group_module, "MAX_OPEN_S", 60)
    store, group = ResourceStore(engine), group_of(engine)
    entered, release = threading.Event(), threading.Event()
    raised: dict[str, BaseException] = {}

    def run(name: str, body: Any) -> None:
        try:
            body(name)
        except BaseException as exc:  # noqa: BLE001 - the test looks at what it is
            raised[name] = exc

    def first(name: str) -> None:
        with store.unit(write=True) as unit:
            unit.write("Patient", name, patient(name), [], "POST")
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=run, args=("first", first))
    holder.start()
    assert entered.wait(10)
    others = [threading.Thread(target=run, args=(n, f)) for n, f in
              (("good-1", lambda n: create(store, n)), ("failing", failing), ("good-2", lambda n: create(store, n)))]
    for queued, t in enumerate(others, 1):
        t.start()
        until(lambda queued=queued: group._waiting == queued)  # in this order: the failing unit runs second
    release.set()
    for t in [holder, *others]:
        t.join(30)
    return raised


def test_a_unit_whose_savepoint_rollback_failed_loses_its_group_and_none_of_its_rows_is_committed(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit refused after writing whose ROLLBACK TO SAVEPOINT fails still has its rows in the shared transaction:
    committing the group would store what its client was told failed. The group is lost: each of its units a 503;
    the unit queued behind them runs in a group of its own."""
    def failing(name: str) -> None:
        with store.unit(write=True) as unit:
            unit.write("Patient", name, patient(name), [], "POST")
            interrupt_next_statement(unit)  # the ROLLBACK TO that undoes this unit
            raise ValueError("refused")

    store = ResourceStore(engine)
    raised = group_with_one_failing_to_end(engine, monkeypatch, failing)
    assert set(raised) == {"first", "good-1", "failing"}  # good-2 ran after them, in a group of its own
    assert all(isinstance(e, group_module.TransactionLost) for e in raised.values()), raised
    assert set(stored(engine, "Patient")) == {"good-2"}


def test_a_unit_whose_savepoint_release_failed_loses_its_group_and_none_of_its_rows_is_committed(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit whose RELEASE SAVEPOINT fails is told it failed, though its rows are in the shared transaction."""
    def failing(name: str) -> None:
        with store.unit(write=True) as unit:
            unit.write("Patient", name, patient(name), [], "POST")
            unit.session.flush()
            interrupt_next_statement(unit)  # the RELEASE that ends this unit

    store = ResourceStore(engine)
    raised = group_with_one_failing_to_end(engine, monkeypatch, failing)
    assert set(raised) == {"first", "good-1", "failing"}  # good-2 ran after them, in a group of its own
    assert all(isinstance(e, group_module.TransactionLost) for e in raised.values()), raised
    assert set(stored(engine, "Patient")) == {"good-2"}


def test_a_units_session_begins_no_transaction_of_its_own_and_its_failure_still_tells_its_listeners(
        engine: Engine) -> None:
    """A unit writes on its savepoint's connection (connection_of) without its Session beginning a transaction; a
    unit that raises is rolled back whole and its Session's after_rollback listeners are told all the same (the audit
    forgets an event that went with it: web/auth.py), as when its Session always began one."""
    store = ResourceStore(engine)
    told: list[Session] = []

    def rolled_back(session: Session) -> None:
        told.append(session)

    event.listen(Session, "after_rollback", rolled_back)
    try:
        with store.unit(write=True) as unit:
            unit.write("Patient", "kept", patient("kept"), [], "POST")
            assert not unit.session.in_transaction() and connection_of(unit.session) is unit.connection
        with pytest.raises(ValueError), store.unit(write=True) as unit:
            unit.write("Patient", "undone", patient("undone"), [], "POST")
            failed = unit.session
            raise ValueError("refused")
    finally:
        event.remove(Session, "after_rollback", rolled_back)
    assert told == [failed]
    assert set(stored(engine, "Patient")) == {"kept"}


def test_what_a_units_session_holds_is_flushed_before_its_release_and_a_query_joins_its_savepoint(
        engine: Engine) -> None:
    """Objects added to a unit's Session and not flushed go in with the unit; a query through its Session runs in the
    unit's savepoint (it sees the unit's rows), and rolling the Session back undoes the unit's rows alone."""
    store = ResourceStore(engine)
    with store.unit(write=True) as unit:
        unit.write("Patient", "p-1", patient("p-1"), [], "POST")
        unit.session.add(AdminSecretRow(name="pending", value="v", created_at=datetime(2026, 3, 2)))
    with sqlite3.connect(str(engine.url.database)) as raw:
        assert raw.execute("SELECT value FROM admin_secrets WHERE name = 'pending'").fetchall() == [("v",)]
    with pytest.raises(ValueError), store.unit(write=True) as unit:
        unit.write("Patient", "p-2", patient("p-2"), [], "POST")
        unit._send()
        assert unit.session.scalar(select(func.count()).select_from(ResourceRow)) == 2
        assert unit.session.in_transaction()
        raise ValueError("refused")
    assert set(stored(engine, "Patient")) == {"p-1"}


# --- a turn that does not come ----------------------------------------------------------------------------

def hold_the_turn(store: ResourceStore) -> tuple[threading.Thread, threading.Event]:
    """A thread in a unit of the store's group until the returned event is set (at most 20 s)."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.unit(write=True) as unit:
            unit.write("Patient", "holder", patient("holder"), [], "POST")
            entered.set()
            release.wait(20)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    return holder, release


def test_the_garbage_collector_pauses_from_a_units_turn_until_its_commit_and_only_then(engine: Engine) -> None:
    """Its passes, due where a unit's allocations tripped them, ran while every other writer waited for the turn."""
    store, inside = ResourceStore(engine), []
    assert gc.isenabled()
    with store.unit(write=True) as unit:
        inside.append(gc.isenabled())
        unit.write("Patient", "gc-1", patient("gc-1"), [], "POST")
    assert inside == [False] and gc.isenabled() and "gc-1" in stored(engine, "Patient")
    with pytest.raises(RuntimeError), store.unit(write=True):
        inside.append(gc.isenabled())
        raise RuntimeError("a unit that fails")
    assert inside == [False, False] and gc.isenabled()
    gc.disable()  # paused by someone else: a unit leaves it so
    try:
        create(store, "gc-2")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_turns_handed_on_without_a_gap_still_let_the_collector_run() -> None:
    """Review 5: threads taking the turn one after another, each before the last resumed it, kept the collector
    paused for good, and the garbage cycles hold piled up. Past PAUSE_BOUND times its threshold a pass runs."""
    from service.store import group as group_module

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    limit = group_module.PAUSE_BOUND * gc.get_threshold()[0]
    gc.collect()
    group_module._pause_gc()  # the first holder
    try:
        peak = 0
        for _ in range(200):
            for _ in range(100):
                Cycle()
            group_module._pause_gc()  # the next holder comes before this one goes
            group_module._resume_gc()
            peak = max(peak, gc.get_count()[0])
            assert not gc.isenabled()
        assert peak < limit + 300  # 20,000 cycles made, never more than the bound and one round's waiting
    finally:
        group_module._resume_gc()
    assert gc.isenabled()


def test_a_unit_waits_for_its_turn_no_longer_than_the_busy_timeout(engine: Engine) -> None:
    store, group = ResourceStore(engine), group_of(engine)
    assert group.timeout == sqlite_setup.SQLITE_BUSY_TIMEOUT_MS / 1000  # SQLite's own, for a writer of the file
    group.timeout = 0.3
    holder, release = hold_the_turn(store)
    started = time.monotonic()
    try:
        with pytest.raises(group_module.WritersBusy):
            create(store, "waiter")
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(30)
    assert 0.3 <= waited < 5
    assert group._waiting == 0 and "waiter" not in stored(engine, "Patient")
    create(store, "later")  # the group goes on
    assert {"holder", "later"} <= set(stored(engine, "Patient"))


def test_a_create_kept_waiting_past_the_busy_timeout_is_a_503_with_retry_after(app: Flask) -> None:
    runtime = app.extensions["kfhir"]
    group_of(runtime.engine).timeout = 0.3
    holder, release = hold_the_turn(runtime.resources)
    try:
        answer = app.test_client().post("/fhir/Patient", json={"resourceType": "Patient"},
                                        headers={"Content-Type": FHIR})
    finally:
        release.set()
        holder.join(30)
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.headers["Retry-After"] == str(group_module.RETRY_AFTER_S)
    assert answer.get_json()["resourceType"] == "OperationOutcome"  # the FHIR form of the problem (web/errors.py)
    assert app.test_client().post("/fhir/Patient", json={"resourceType": "Patient"},
                                  headers={"Content-Type": FHIR}).status_code == 201


# --- two engines on one file --------------------------------------------------------------------------------

def test_engines_on_one_file_share_its_group_and_a_write_nested_in_a_unit_fails_at_once(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests and the CLI build several engines on one file. Each had a group: a write through B from another
    thread contended with A's units for the file's lock, and one inside A's unit (this thread's) waited for the
    writers' turn (10 s), then SQLite's lock (10 s more), then failed with a 500. Now the file's writes queue in one
    group, and a write begun inside a unit of its own thread is refused at once, saying why."""
    monkeypatch.setattr(group_module, "MAX_OPEN_S", 60)
    link = tmp_path / "same.db"
    link.symlink_to(str(engine.url.database))
    other = make_engine(f"sqlite:///{link}")  # another spelling of the same file
    try:
        assert group_of(other) is group_of(engine)
        group, store, through_other = group_of(engine), ResourceStore(engine), ResourceStore(other)
        entered, release = threading.Event(), threading.Event()
        nested: list[tuple[BaseException, float]] = []

        def first() -> None:
            with store.unit(write=True) as unit:
                unit.write("Patient", "a", patient("a"), [], "POST")
                started = time.monotonic()
                try:
                    create(through_other, "nested")
                except engine_module.NestedWrite as exc:
                    nested.append((exc, time.monotonic() - started))
                entered.set()
                release.wait(10)

        holder = threading.Thread(target=first)
        holder.start()
        assert entered.wait(30)
        commits = group.commits
        queued = threading.Thread(target=create, args=(through_other, "b"))
        queued.start()
        until(lambda: group._waiting == 1)  # B's write waits in the file's group, behind A's unit
        release.set()
        for t in (holder, queued):
            t.join(30)
        assert [(type(e), waited < 1) for e, waited in nested] == [(engine_module.NestedWrite, True)]
        assert "same database" in str(nested[0][0])
        assert set(stored(engine, "Patient")) == {"a", "b"}  # the unit that met the nested write went on
        assert group.commits == commits + 1  # one commit for both engines' units
    finally:
        other.dispose()


# --- fork ---------------------------------------------------------------------------------------------------

def forked(child: Any) -> int:
    """Fork; the child runs `child()` (no thread of the parent runs there) and exits with what it returns (3 if it
    raised); the parent gets the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = child()
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_holds_no_turn_of_its_parent_and_no_connection_of_its_pool(engine: Engine) -> None:
    """A child forked while a unit holds the writers' turn inherits a copy of the turn's descriptor, and the flock
    belongs to the open file both copies share: after the parent's commit gave the turn back, the child's copy kept
    it, and every writer of the database waited for the child to exit (or the busy timeout). A child must not use
    the pool's connections either: they are the parent's (SQLite: a connection must not cross a fork)."""
    store = ResourceStore(engine)
    create(store, "before")  # the pool now holds a connection of the parent's

    def child_writes() -> int:
        fresh = engine.pool.checkedin() == 0  # type: ignore[attr-defined]
        create(store, "child")
        return 0 if fresh else 2

    assert exit_code(forked(child_writes)) == 0  # 2: the child's pool held the parent's connection
    holder, release = hold_the_turn(store)
    pid = forked(lambda: (time.sleep(4), 0)[1])  # alive, with what the fork gave it, while the parent writes
    try:
        release.set()
        holder.join(30)
        started = time.monotonic()
        create(store, "parent")  # the turn the holder's commit gave back
        waited = time.monotonic() - started
    finally:
        assert exit_code(pid) == 0
    assert waited < 2, f"the parent waited {waited:.1f} s for a turn its forked child held"
    assert {"before", "child", "holder", "parent"} <= set(stored(engine, "Patient"))
