"""service/store/postgres: on PostgreSQL a write unit's resource rows go in one statement and a new record with its
version in another, a record's outbox jobs in a third. They store the same rows as the statement-per-table path (Batch.send_each, SQLite's); a failure
anywhere in a unit commits nothing of it; a record already stored under its identity, met inside a facade write's
transaction (no savepoint now), leaves the rest of that transaction to commit."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from service.app.runtime import Runtime
from service.domain.intake import content_hash
from service.search.parameters import index
from service.store.batch import UNSENT, Batch, index_rows
from service.store.records import NewRecord, RecordStore

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
AT = datetime(2026, 3, 2, 14, 5, 6, 789000)
TABLES = {"fhir_resources": "pk, resource_type, id, version, deleted, last_updated, CAST(content AS TEXT), "
                            "CAST(warnings AS TEXT), record_id",
          "fhir_resource_versions": "pk, resource_pk, resource_type, id, version, method, deleted, last_updated, "
                                    "CAST(content AS TEXT)",
          "fhir_search_index": "pk, resource_pk, resource_type, param, system, value, low, high, path"}


def observation(at: str, name: str = "Hé rate") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "x", "meta": {"versionId": "1"}, "status": "final",
            "subject": {"reference": "Patient/p"}, "effectivePeriod": {"start": at},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": name}]}}


def batch(pks: dict[str, int]) -> Batch:
    """Two created resources, a changed one and a deleted one (`pks`: the stored keys of `a` and `b`)."""
    held = Batch()
    writes: list[tuple[str, dict[str, Any] | None, str]] = [
        ("c", observation("2026-03-02T13:12:02.25-05:00"), "POST"), ("d", observation("2026-03-03", "Ōta"), "POST"),
        ("a", observation("2026-03-04T10:00:00Z"), "PUT"), ("b", None, "DELETE")]
    for name, content, method in writes:
        pk = pks.get(name, UNSENT)
        values = {"version": 2 if pk else 1, "deleted": content is None, "last_updated": AT, "content": content,
                  "warnings": [{"severity": "warning", "text": "ünïcode"}] if name == "c" else [],
                  "record_id": "rec-1" if name == "d" else None}
        held.write(pk, ("Observation", name), values, method, index_rows("Observation", index(content)) if content else [])
    return held


def rows(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the resource tables, each key as its rank in its table (sequences are not rolled back, so the
    same rows sent twice get other keys, in the same order)."""
    found = {table: [tuple(r) for r in connection.execute(text(
        f"SELECT {columns} FROM {table} ORDER BY pk"))]  # noqa: S608 - the test's constants
             for table, columns in TABLES.items()}
    rank = {pk: n for n, (pk, *_) in enumerate(found["fhir_resources"])}
    return {table: [(n, *((rank[r[1]],) if table != "fhir_resources" else (r[1],)), *r[2:])
                    for n, r in enumerate(found[table])] for table in found}


def test_one_statement_stores_the_rows_a_statement_a_table_stores(runtime: Runtime) -> None:
    with runtime.resources.unit(write=True) as unit:
        for name in ("a", "b"):
            unit.write("Observation", name, observation("2026-03-01"), [], "PUT")
    with runtime.engine.connect() as connection:
        pks = {r[0]: r[1] for r in connection.execute(text("SELECT id, pk FROM fhir_resources"))}
        connection.rollback()
        seen = []
        for send in (Batch.send_each, Batch.send):
            with connection.begin() as transaction:
                made = send(batch(pks), connection)
                seen.append((sorted(made), rows(connection)))
                transaction.rollback()
    (keys, each), (keys_now, one) = seen
    assert keys == keys_now == [("Observation", "c"), ("Observation", "d")]
    assert one == each
    versions = {r[3]: r for r in one["fhir_resource_versions"] if r[4] == 2 or r[3] in "cd"}
    assert versions["b"][8] == "null" and json.loads(versions["c"][8])["code"]["coding"][0]["display"] == "Hé rate"
    assert len(one["fhir_search_index"]) > 10 and any(r[6] is not None for r in one["fhir_search_index"])


def test_a_failure_in_the_statement_leaves_nothing_of_it_and_the_unit_commits_nothing(runtime: Runtime) -> None:
    record = new_record("e-1")
    with pytest.raises(DBAPIError), runtime.resources.unit(write=True) as unit:
        RecordStore(runtime.engine).bound(unit.session).create(record)  # no savepoint: its rows are the unit's
        with unit.batch():
            unit.write("Observation", "fine", observation("2026-03-02"), [], "PUT")
            unit.write("Observation", "l" * 65, observation("2026-03-02"), [], "PUT")  # an id over its column's 64
    with runtime.engine.connect() as connection:
        for table in ("records", "record_versions", *TABLES):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table  # noqa: S608


def test_the_write_units_statement_is_planned_once_a_connection_and_nothing_after_it(runtime: Runtime) -> None:
    """postgres.ADD_SQL (a unit that only adds rows) runs under a generic plan (driver.GENERIC: made once a
    connection, psycopg having prepared it on its 5th use), every other statement under the plans the engine forces,
    made for their values."""
    for n in range(8):
        with runtime.resources.unit(write=True) as unit:
            unit.write("Observation", f"o-{n}", observation("2026-03-01"), [], "PUT")
            assert unit.session.connection().exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    with runtime.engine.connect() as connection:  # the pool's one connection, which sent them
        plans = connection.execute(text("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                        "WHERE statement LIKE 'WITH made AS%'")).all()
        assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    [(generic, custom)] = plans
    assert generic >= 2 and custom == 0  # its sends since psycopg prepared it: one plan, used again


def test_a_records_row_and_its_jobs_are_planned_once_a_connection(runtime: Runtime) -> None:
    """RECORD_SQL (it reads no table) and QUEUE_SQL (its older jobs read by ix_outbox_key whatever the table held)
    run under generic plans (driver.GENERIC), sent alone or with the COMMIT."""
    from service.exchange.endpoints import Endpoint
    from service.exchange.outbox import queue_taking
    from service.store.engine import session

    runtime.endpoints.add(Endpoint("ehr", "http://ehr.example/fhir", {}), by="test")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    for n in range(8):
        record, _ = runtime.store.create(new_record(f"g-{n}"))
        with session(runtime.engine, write=True) as current:
            queue_taking(current, record, bundle, lambda: [], clock=lambda: AT, at_commit=n % 2 == 0)
    with runtime.engine.connect() as connection:
        plans = dict(connection.execute(text(
            "SELECT substr(statement, 1, 11), generic_plans FROM pg_prepared_statements "
            "WHERE statement LIKE 'WITH v AS%' OR statement LIKE 'WITH taking%'")).all())
    assert plans.keys() == {"WITH v AS (", "WITH taking"} and min(plans.values()) >= 2, plans


def test_a_unit_that_changes_stored_rows_is_planned_for_its_values(runtime: Runtime) -> None:
    """postgres.BATCH_SQL (changed rows: their UPDATE and their index rows' DELETE read the resource and index tables)
    is planned for each execution's values: a plan made once, while the tables were small, read the whole index
    table for every write after it."""
    for n in range(8):
        with runtime.resources.unit(write=True) as unit:
            unit.write("Observation", "o", observation(f"2026-03-0{n + 1}"), [], "PUT")
    with runtime.engine.connect() as connection:
        plans = connection.execute(text("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                        "WHERE statement LIKE '%changed AS%'")).all()
    [(generic, custom)] = plans
    assert generic == 0 and custom >= 2


def new_record(external_id: str, score: int = 1) -> NewRecord:
    body = {"external_id": external_id, "score": score}
    return NewRecord("assessment", "clinic-a", external_id, "https://clinic.example/mrn", "MRN-1", AT, body,
                     content_hash(body), [{"severity": "warning", "text": "é"}])


def test_a_record_met_under_its_identity_inside_a_unit_leaves_the_unit_to_commit(runtime: Runtime) -> None:
    stored, _ = runtime.store.create(new_record("r-1"))
    with runtime.resources.unit(write=True) as unit:
        found, created = RecordStore(runtime.engine).bound(unit.session).create(new_record("r-1", score=2))
        made, created_now = RecordStore(runtime.engine).bound(unit.session).create(new_record("r-2"))
        unit.write("Observation", "kept", observation("2026-03-02"), [], "PUT")
    assert (found.id, found.content["score"], created) == (stored.id, 1, False)
    assert created_now and runtime.store.get("assessment", made.id) == made
    with runtime.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM records")).scalar_one() == 2
        assert connection.execute(text("SELECT count(*) FROM fhir_resources")).scalar_one() == 1
        version = connection.execute(text(
            "SELECT v.version, CAST(v.content AS TEXT), v.content_hash, CAST(v.warnings AS TEXT), v.created_at, "
            "CAST(r.content AS TEXT), r.created_at, r.clinical_at FROM record_versions v JOIN records r "
            "ON r.pk = v.record_pk WHERE r.id = :id"), {"id": made.id}).one()
    text_ = json.dumps(made.content)
    assert version == (1, text_, made.content_hash, json.dumps(made.warnings), made.created_at, text_,
                       made.created_at, AT)


def test_one_statement_queues_the_jobs_the_endpoints_read_and_a_statement_a_job_queue(runtime: Runtime) -> None:
    """outbox.queue_taking (store/postgres.QUEUE_SQL) against Endpoints.taking and outbox.queue: the same jobs, for
    the enabled endpoints that take the kind in their names' order, and the same older job superseded."""
    from service.exchange.endpoints import Endpoint
    from service.exchange.outbox import queue, queue_taking
    from service.store.engine import session
    from service.store.records import StoredRecord

    for name, kinds, enabled in (("b-ehr", ("assessment", "administration"), True), ("a-ehr", ("assessment",), True),
                                 ("c-off", ("assessment",), False), ("d-plans", ("treatment-plan",), True)):
        runtime.endpoints.add(Endpoint(name, "http://ehr.example/fhir", {}, kinds=kinds, enabled=enabled), by="test")
    record = StoredRecord(1, "r-1", "assessment", "clinic-a", "s-1", 2, {}, "h", [], AT, AT)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "note": "é"}}]}
    with session(runtime.engine, write=True) as current:  # an older version's queued jobs, to be superseded
        queue(current, record, bundle, ["a-ehr", "b-ehr"], lambda: AT)
    found = []
    for queued in (lambda s: queue_taking(s, record, bundle, lambda: [], clock=lambda: AT),
                   lambda s: queue(s, record, bundle, runtime.endpoints.taking(s, record.kind), lambda: AT)):
        with pytest.raises(Rollback), session(runtime.engine, write=True) as current:
            pks = queued(current)
            jobs = current.connection().execute(text(
                "SELECT pk, endpoint, record_id, record_kind, record_version, business_key, state, attempts, "
                "next_attempt_at, lease_owner, lease_expires_at, last_error, CAST(last_outcome AS TEXT), "
                "CAST(written AS TEXT), superseded_by, created_at, updated_at, finished_at, CAST(payload AS TEXT) "
                "FROM outbox_jobs ORDER BY pk")).all()
            rank = {pk: n for n, (pk, *_) in enumerate(jobs)}
            found.append(([rank[pk] for pk in pks], [(rank[pk], *rest[:13], rank.get(rest[13]), *rest[14:])
                                                     for pk, *rest in jobs]))
            raise Rollback
    assert found[0] == found[1]
    assert [(job[1], job[6], job[14]) for job in found[0][1]] == [("a-ehr", "done", 2), ("b-ehr", "done", 3),
                                                                  ("a-ehr", "queued", None), ("b-ehr", "queued", None)]


def test_jobs_queued_with_the_commit_are_those_queued_at_once(runtime: Runtime) -> None:
    """queue_taking(at_commit=True) sends QUEUE_SQL with the transaction's COMMIT (driver.at_commit): its jobs are not
    seen in the transaction, and once it commits they are the jobs queued at once, the older job superseded."""
    from service.exchange.endpoints import Endpoint
    from service.exchange.outbox import queue_taking
    from service.store.engine import session

    for name in ("b-ehr", "a-ehr"):
        runtime.endpoints.add(Endpoint(name, f"http://{name}.example/fhir", {}), by="test")
    record, _ = runtime.store.create(new_record("q-1"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    columns = "endpoint, record_id, record_version, business_key, state, payload::text, superseded_by IS NULL"
    seen = []
    for at_commit in (False, True):
        with session(runtime.engine, write=True) as current:
            current.connection().execute(text("DELETE FROM outbox_jobs"))
            queue_taking(current, record, bundle, lambda: [], clock=lambda: AT)
            queued = queue_taking(current, record, bundle, lambda: [], clock=lambda: AT, at_commit=at_commit)
            inside = current.connection().execute(text("SELECT count(*) FROM outbox_jobs")).scalar_one()
        with runtime.engine.connect() as connection:
            jobs = connection.execute(text(f"SELECT {columns} FROM outbox_jobs ORDER BY pk")).all()  # noqa: S608
        seen.append(jobs)
        assert (queued is None, inside) == ((True, 2) if at_commit else (False, 4))
    assert seen[0] == seen[1]
    assert [(job[0], job[4], job[6]) for job in seen[1]] == [("a-ehr", "done", False), ("b-ehr", "done", False),
                                                             ("a-ehr", "queued", True), ("b-ehr", "queued", True)]


class Rollback(Exception):
    """Ends a transaction the test looked into, writing nothing."""


def test_a_statement_for_the_commit_on_a_connection_alone_runs_at_once(runtime: Runtime) -> None:
    """alone()'s connection (autocommit, no COMMIT of ours to come) takes no statement for a COMMIT: at_commit says
    so (False) and the caller runs it, where it was held for a COMMIT never sent and silently dropped."""
    from service.store import driver
    from service.store.engine import WRITE, alone

    with alone(runtime.engine) as connection:
        connection = connection.execution_options(**{WRITE: True})
        held = driver.at_commit(connection, "SELECT 1", (), lambda exc: exc)
        assert (held, driver.waiting(connection)) == (False, 0)


class Refused(Exception):
    """What the tests' units make of a unique violation of their rows (Unit, `failed`)."""


def refused(exc: BaseException) -> BaseException:
    from sqlalchemy.exc import IntegrityError

    return Refused() if isinstance(exc, IntegrityError) else exc


def count(runtime: Runtime, table: str) -> int:
    with runtime.engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def test_a_units_last_rows_go_with_its_commit_and_their_failure_there_commits_nothing(runtime: Runtime) -> None:
    """A unit's batch's rows wait for the next statement or the COMMIT (store/pipeline.py: one round trip fewer): a
    unique violation at the COMMIT raises what the unit's `failed` makes of it, and nothing of the transaction is
    stored, the record written before them neither."""
    from service.store import driver
    from service.store.engine import session
    from service.store.resources import Unit

    with runtime.resources.unit(write=True) as unit:
        unit.write("Observation", "taken", observation("2026-03-01"), [], "PUT")
    with pytest.raises(Refused), session(runtime.engine, write=True) as current:
        unit = Unit(current, failed=refused)
        RecordStore(runtime.engine).bound(current).create(new_record("h-1"))
        with unit.batch():
            unit.write("Observation", "fine", observation("2026-03-02"), [], "POST", new=True)
            unit.write("Observation", "taken", observation("2026-03-02"), [], "POST", new=True)  # a concurrent one's
        assert driver.waiting(current.connection()) == 1
    assert [count(runtime, t) for t in ("records", "fhir_resources", "fhir_resource_versions")] == [0, 1, 1]


def test_a_units_last_rows_go_with_the_next_statement_which_sees_them(runtime: Runtime) -> None:
    """The rows wait for the next statement, which sees them; a write of one of them sends them first (it needs its
    row's key); their failure there raises what `failed` makes of it."""
    from service.store import driver
    from service.store.engine import session
    from service.store.resources import Unit

    with session(runtime.engine, write=True) as current:
        unit = Unit(current, failed=refused)
        with unit.batch():
            unit.write("Observation", "n-1", observation("2026-03-02"), [], "POST", new=True)
        connection = current.connection()
        assert driver.waiting(connection) == 1
        assert connection.execute(text("SELECT id FROM fhir_resources")).scalars().all() == ["n-1"]
        assert driver.waiting(connection) == 0
        with unit.batch():
            unit.write("Observation", "n-2", observation("2026-03-02"), [], "POST", new=True)
        assert unit.write("Observation", "n-2", observation("2026-03-03"), [], "PUT").version == 2
    with runtime.engine.connect() as connection:
        assert connection.execute(text("SELECT id, version FROM fhir_resource_versions ORDER BY pk")).all() == [
            ("n-1", 1), ("n-2", 1), ("n-2", 2)]
    with session(runtime.engine, write=True) as current:
        unit = Unit(current, failed=refused)
        with unit.batch():
            unit.write("Observation", "n-1", observation("2026-03-02"), [], "POST", new=True)
        with pytest.raises(Refused):
            current.connection().execute(text("SELECT 1"))
        current.rollback()
    assert count(runtime, "fhir_resources") == 2


def test_a_rollback_to_a_savepoint_leaves_the_engines_plan_mode(runtime: Runtime) -> None:
    """A generic statement leaves its transaction's plan mode generic for the next one (pipeline._switch), but a
    SAVEPOINT runs under the engine's: a ROLLBACK TO, which undoes what was switched inside, leaves the engine's, and
    searches are planned for their values."""
    from service.store import driver
    from service.store.engine import session

    with session(runtime.engine, write=True) as current:
        connection = current.connection()
        driver.rows(connection, "SELECT 1", (), generic=True)
        nested = current.begin_nested()
        driver.rows(connection, "SELECT 1", (), generic=True)
        assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
        driver.rows(connection, "SELECT 1", (), generic=True)
        nested.rollback()
        assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"


def test_a_statement_failing_inside_a_savepoint_is_undone_by_its_rollback_to_whatever_its_plan_mode(
        runtime: Runtime) -> None:
    """The transaction is aborted once a statement fails: a plan-mode switch sent before the ROLLBACK TO failed too
    (25P02), so the ROLLBACK TO never ran and the savepoint could not be recovered (review 6, finding 2)."""
    from service.store import driver
    from service.store.engine import session

    for first, failing in ((True, True), (False, True), (True, False)):
        with session(runtime.engine, write=True) as current:
            connection = current.connection()
            driver.rows(connection, "SELECT 1", ())
            nested = current.begin_nested()
            connection = current.connection()
            if first:  # a generic statement that ran, leaving the mode generic
                driver.rows(connection, "SELECT 1", (), generic=True)
            with pytest.raises(DBAPIError):
                driver.rows(connection, "SELECT 1 / 0", (), generic=failing)
            nested.rollback()
            assert driver.rows(connection, "SELECT 2", ()) == [(2,)]
            assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
            assert driver.rows(connection, "SELECT 3", (), generic=True) == [(3,)]


def test_a_record_whose_resources_meet_a_concurrent_writes_at_the_commit_is_sent_again(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record's resources go with its COMMIT (Unit.batch): one a concurrent write made meanwhile fails them there,
    which is the Contention a failure inside the export was (flows.RecordWritten), so the intake sends it again, and
    the record and its resources are stored, nothing lost."""
    from factories import administration
    from support.races import race_records_resource

    raced = race_records_resource(runtime, monkeypatch)
    outcome = runtime.intake.submit("administration", administration())
    assert outcome.created and raced
    with runtime.engine.connect() as connection:
        assert connection.execute(text("SELECT version, record_id FROM fhir_resources WHERE id = :id"),
                                  {"id": raced[0]}).one() == (2, outcome.record.id)
    assert count(runtime, "records") == 1


@pytest.mark.parametrize("reads", [False, True])
def test_a_record_sent_with_the_next_statement_meeting_its_identity_stores_nothing_and_answers_the_stored_one(
        runtime: Runtime, reads: bool) -> None:
    """A new record with work in its transaction goes with that work's first statement, or with its COMMIT if none
    comes (postgres.hold_record, a round trip fewer), its key unknown to the work (0): one stored under its identity
    meanwhile fails it there, nothing of the transaction is stored, and create() answers the stored record."""
    from service.store import driver
    from service.store.resources import Unit

    def within(current: Any, record: Any) -> None:
        given.append(record.pk)
        unit = Unit(current, failed=refused)
        with unit.batch():
            unit.write("Observation", f"with-{len(given)}", observation("2026-03-02"), [], "POST", new=True)
        if reads:
            assert driver.rows(current.connection(), "SELECT count(*) FROM records", ()) == [(len(given),)]

    given: list[int] = []
    made, created = runtime.store.create(new_record("held"), within)
    again, created_again = runtime.store.create(new_record("held", score=2), within)
    assert created and not created_again and again == made and given == [0, 0]
    with runtime.engine.connect() as connection:
        assert connection.execute(text("SELECT pk, id FROM records")).all() == [(made.pk, made.id)]
        assert connection.execute(text("SELECT id FROM fhir_resources")).scalars().all() == ["with-1"]
