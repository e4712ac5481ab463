"""The outbox on SQLite and PostgreSQL: enqueued with the record or not at all, claimed under a lease,
one in-flight job per (endpoint, business key), oldest version first, dead letters retried by hand."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from factories import assessment, treatment_plan
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from support.clock import FakeClock

from service.app.runtime import Runtime
from service.errors import Conflict, NotFound
from service.exchange.outbox import LEASE_S, Failure, JobQuery, Outbox, business_key, every_record
from service.store import driver
from service.store.engine import make_engine
from service.store.engine import session as transaction
from service.store.models import OutboxJobRow, RecordRow, ResourceRow
from service.store.records import StoredRecord, utcnow

pytestmark = pytest.mark.both_backends  # claims (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite), leases, the partial unique index


def jobs(runtime: Runtime) -> list[OutboxJobRow]:
    with transaction(runtime.engine) as session:
        return list(session.scalars(select(OutboxJobRow).order_by(OutboxJobRow.pk)))


def test_storing_a_record_enqueues_one_job_per_endpoint_that_takes_its_kind(exchange_runtime: Runtime) -> None:
    plan = exchange_runtime.intake.submit("treatment-plan", treatment_plan()).record
    score = exchange_runtime.intake.submit("assessment", assessment()).record
    found = [(j.endpoint, j.record_id, j.record_version, j.state) for j in jobs(exchange_runtime)]
    assert found == [("ehr", plan.id, 1, "queued"), ("ehr", score.id, 1, "queued"),
                     ("registry", score.id, 1, "queued")]  # `paused` is disabled; registry takes assessments
    (job,) = [j for j in jobs(exchange_runtime) if j.record_id == plan.id]
    assert job.business_key == "treatment-plan/clinic-a/plan-1"
    assert {e["resource"]["resourceType"] for e in job.payload["entry"]} >= {"CarePlan", "Patient"}


def test_records_whose_source_and_external_id_split_a_slash_differently_keep_their_own_jobs(
        exchange_runtime: Runtime) -> None:
    """(source "clinic/x", id "1") and (source "clinic", id "x/1") are two records: the plain key `kind/source/id`
    made them one, and the second's job superseded the first's, which was never sent. Each keeps its queued job."""
    first = exchange_runtime.intake.submit("assessment", assessment(source="clinic/x", external_id="1")).record
    second = exchange_runtime.intake.submit("assessment", assessment(source="clinic", external_id="x/1")).record
    found = {(j.record_id, j.endpoint): (j.business_key, j.state, j.superseded_by) for j in jobs(exchange_runtime)}
    assert found == {(first.id, "ehr"): ("assessment//8/clinic/x/1", "queued", None),
                     (first.id, "registry"): ("assessment//8/clinic/x/1", "queued", None),
                     (second.id, "ehr"): ("assessment/clinic/x/1", "queued", None),
                     (second.id, "registry"): ("assessment/clinic/x/1", "queued", None)}


@pytest.mark.parametrize(("kind", "source", "external_id", "key"), [
    ("assessment", "clinic-a", "asmt-1", "assessment/clinic-a/asmt-1"),  # the plain form, as stored before 0018
    ("assessment", "clinic-a", "a/b//c", "assessment/clinic-a/a/b//c"),  # an id's "/" is read after the source's end
    ("assessment", "a/b", "c", "assessment//3/a/b/c"),
    ("assessment", "/", "/", "assessment//1////"),
    ("assessment", "7/clinic", "x/1", "assessment//8/7/clinic/x/1"),
])
def test_a_business_key_reads_back_as_its_records_kind_source_and_id(kind: str, source: str, external_id: str,
                                                                     key: str) -> None:
    now = utcnow()
    assert business_key(StoredRecord(pk=1, id="r", kind=kind, source=source, external_id=external_id, version=1,
                                     content={}, content_hash="", warnings=[], created_at=now, updated_at=now)) == key
    if key.startswith(f"{kind}//"):  # the length says where the source ends
        length, rest = key.removeprefix(f"{kind}//").split("/", 1)
        assert (rest[:int(length)], rest[int(length) + 1:]) == (source, external_id)
    else:
        assert key.split("/", 2)[1:] == [source, external_id]


def test_a_records_jobs_hold_its_bundle_as_the_json_type_writes_it(exchange_runtime: Runtime) -> None:
    """The Bundle is serialised once for every endpoint's job (outbox.queue): each job's payload is the text the
    column's JSON type writes for it, the same for both."""
    score = exchange_runtime.intake.submit("assessment", assessment()).record
    with transaction(exchange_runtime.engine) as session:
        texts = session.execute(text("SELECT endpoint, CAST(payload AS TEXT) FROM outbox_jobs WHERE record_id = :r "
                                     "ORDER BY endpoint"), {"r": score.id}).all()
    assert [endpoint for endpoint, _ in texts] == ["ehr", "registry"]
    (payload,) = {stored for _, stored in texts}
    assert payload == json.dumps(json.loads(payload))  # json.dumps' own text, as the JSON type binds it
    assert json.loads(payload)["entry"][0]["resource"]["resourceType"] == "Observation"


def test_the_same_record_again_enqueues_nothing(exchange_runtime: Runtime) -> None:
    exchange_runtime.intake.submit("assessment", assessment())
    exchange_runtime.intake.submit("assessment", assessment())
    assert len(jobs(exchange_runtime)) == 2


def test_a_failure_after_the_enqueue_rolls_back_record_resources_and_jobs(exchange_runtime: Runtime) -> None:
    export = exchange_runtime.intake.export
    assert export is not None

    def export_then_fail(session: Any, mapped: Any, record: Any, author: Any) -> None:
        export(session, mapped, record, author)
        # enqueued in this very transaction: seen in it on SQLite; on PostgreSQL its statement waits for the COMMIT
        assert session.scalars(select(OutboxJobRow)).all() or driver.waiting(session.connection()) == 1
        raise RuntimeError("the disk filled up")

    exchange_runtime.intake.export = export_then_fail
    with pytest.raises(RuntimeError, match="disk"):
        exchange_runtime.intake.submit("assessment", assessment())
    with transaction(exchange_runtime.engine) as session:
        for table in (RecordRow, ResourceRow, OutboxJobRow):
            assert session.scalars(select(table)).all() == []


def test_a_new_version_supersedes_the_queued_job_of_the_old_one(exchange_runtime: Runtime) -> None:
    first = exchange_runtime.intake.submit("assessment", assessment()).record
    exchange_runtime.intake.replace("assessment", first.id, 1, assessment(score=12))
    ehr = [j for j in jobs(exchange_runtime) if j.endpoint == "ehr"]
    assert [(j.record_version, j.state) for j in ehr] == [(1, "done"), (2, "queued")]
    assert ehr[0].superseded_by == ehr[1].pk and ehr[0].attempts == 0


def test_an_older_version_in_flight_holds_back_the_newer_one(exchange_runtime: Runtime) -> None:
    outbox = exchange_runtime.outbox
    first = exchange_runtime.intake.submit("assessment", assessment()).record
    (old,) = outbox.claim("w1", ["ehr"])
    exchange_runtime.intake.replace("assessment", first.id, 1, assessment(score=12))
    assert outbox.claim("w2", ["ehr"]) == []  # version 2 waits until version 1 is delivered
    assert outbox.complete("w1", old.pk, [])
    (new,) = outbox.claim("w2", ["ehr"])
    assert (new.record_version, new.state, new.attempts) == (2, "in_flight", 1)


def test_the_database_refuses_two_in_flight_jobs_for_one_key(exchange_runtime: Runtime) -> None:
    first = exchange_runtime.intake.submit("assessment", assessment()).record
    exchange_runtime.outbox.claim("w1", ["ehr"])
    exchange_runtime.intake.replace("assessment", first.id, 1, assessment(score=12))
    with pytest.raises(IntegrityError), transaction(exchange_runtime.engine, write=True) as session:
        session.execute(update(OutboxJobRow).where(OutboxJobRow.record_version == 2, OutboxJobRow.endpoint == "ehr")
                        .values(state="in_flight"))


def test_a_stale_lease_is_reclaimed_and_the_vanished_worker_cannot_finish(exchange_runtime: Runtime) -> None:
    exchange_runtime.intake.submit("assessment", assessment())
    clock = FakeClock()
    outbox = Outbox(exchange_runtime.engine, clock=clock)
    (job,) = outbox.claim("vanished", ["ehr"])
    clock.advance(LEASE_S - 1)
    assert outbox.claim("other", ["ehr"]) == []  # the lease still holds
    clock.advance(2)
    (again,) = outbox.claim("other", ["ehr"])
    assert (again.pk, again.lease_owner, again.attempts) == (job.pk, "other", 2)
    assert not outbox.complete("vanished", job.pk, [])
    assert outbox.complete("other", job.pk, [{"resourceType": "Observation", "id": "x", "version": "1"}])
    attempts = outbox.attempts(job.pk)
    assert [(a["number"], a["worker"], a["result"]) for a in attempts] == [(1, "vanished", "lost"),
                                                                            (2, "other", "done")]


def test_a_heartbeat_keeps_the_lease(exchange_runtime: Runtime) -> None:
    exchange_runtime.intake.submit("assessment", assessment())
    clock = FakeClock()
    outbox = Outbox(exchange_runtime.engine, clock=clock)
    (job,) = outbox.claim("busy", ["ehr"])
    for _ in range(4):  # twice the lease in all, half a lease between beats
        clock.advance(LEASE_S / 2)
        assert outbox.heartbeat("busy", job.pk)
    assert outbox.claim("other", ["ehr"]) == []
    assert not outbox.heartbeat("other", job.pk)


def test_retry_later_waits_and_dead_jobs_are_retried_by_hand(exchange_runtime: Runtime) -> None:
    exchange_runtime.intake.submit("assessment", assessment())
    clock = FakeClock()
    outbox = Outbox(exchange_runtime.engine, clock=clock)
    (job,) = outbox.claim("w", ["ehr"])
    assert outbox.retry_later("w", job.pk, Failure("503 Service Unavailable", 503), 60)
    clock.advance(59)
    assert outbox.claim("w", ["ehr"]) == []
    waiting = outbox.get(job.pk)
    assert waiting.state == "queued" and waiting.next_attempt_at == clock() + timedelta(seconds=1)
    with pytest.raises(Conflict, match="only a dead job"):
        outbox.retry(job.pk)
    clock.advance(1)
    (job,) = outbox.claim("w", ["ehr"])
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
    assert outbox.bury("w", job.pk, Failure("422: invalid", 422, outcome))
    dead = outbox.get(job.pk)
    assert (dead.state, dead.last_outcome, dead.attempts) == ("dead", outcome, 2)
    assert outbox.retry(job.pk).state == "queued"
    assert outbox.claim("w", ["ehr"])[0].pk == job.pk
    with pytest.raises(NotFound):
        outbox.retry(10_000)


def test_retry_dead_queues_every_dead_job_of_one_endpoint(exchange_runtime: Runtime) -> None:
    outbox = exchange_runtime.outbox
    for n in range(3):
        exchange_runtime.intake.submit("assessment", assessment(external_id=f"a-{n}"))
    for job in outbox.claim("w", ["ehr", "registry"], limit=10):
        assert outbox.bury("w", job.pk, Failure("400"))
    assert outbox.counts("ehr") == {"queued": 0, "in_flight": 0, "done": 0, "dead": 3}
    assert outbox.retry_dead("ehr") == 3
    assert outbox.counts("ehr")["queued"] == 3 and outbox.counts("registry")["dead"] == 3


def test_listing_filters_and_pages(exchange_runtime: Runtime) -> None:
    outbox = exchange_runtime.outbox
    exchange_runtime.intake.submit("treatment-plan", treatment_plan())
    for n in range(3):
        exchange_runtime.intake.submit("assessment", assessment(external_id=f"a-{n}"))
    assert len(outbox.list(JobQuery())) == 7
    assert [j.record_kind for j in outbox.list(JobQuery(kind="treatment-plan"))] == ["treatment-plan"]
    page = outbox.list(JobQuery(endpoint="registry", limit=2))
    rest = outbox.list(JobQuery(endpoint="registry", after_pk=page[-1].pk))
    assert [len(page), len(rest)] == [2, 1]
    assert outbox.list(JobQuery(since=utcnow() + timedelta(minutes=1))) == []
    assert outbox.list(JobQuery(state="dead")) == []


def test_backfill_queues_records_stored_before_the_endpoint_existed(exchange_runtime: Runtime) -> None:
    outbox = exchange_runtime.outbox
    exchange_runtime.intake.submit("assessment", assessment())
    with transaction(exchange_runtime.engine, write=True) as session:
        session.query(OutboxJobRow).delete()
    ehr = next(e for e in exchange_runtime.endpoints.all() if e.name == "ehr")
    records = list(every_record(exchange_runtime.store, ehr.kinds))
    assert outbox.backfill(ehr, records, lambda r: {"resourceType": "Bundle", "entry": []}) == {
        "not queued when stored": 1}
    assert outbox.backfill(ehr, records, lambda r: {"resourceType": "Bundle", "entry": []}) == {}


def test_concurrent_workers_never_hold_the_same_job(exchange_runtime: Runtime) -> None:
    """Four workers, each with its own engine (as on four machines), claim and finish 30 jobs; each runs once."""
    for n in range(30):
        exchange_runtime.intake.submit("assessment", assessment(external_id=f"c-{n}"))
    outbox = exchange_runtime.outbox
    engines = [make_engine(exchange_runtime.settings.database_url) for _ in range(4)]
    running: set[int] = set()
    ran: list[int] = []
    overlap: list[int] = []
    lock = threading.Lock()

    def work(name: str, mine: Outbox) -> None:
        while claimed := mine.claim(name, ["ehr"]):
            (job,) = claimed
            with lock:
                if job.pk in running:
                    overlap.append(job.pk)
                running.add(job.pk)
                ran.append(job.pk)
            time.sleep(0.005)
            with lock:
                running.discard(job.pk)
            assert mine.complete(name, job.pk, [])

    threads = [threading.Thread(target=work, args=(f"w{i}", Outbox(e))) for i, e in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert overlap == [] and sorted(ran) == sorted(set(ran)) and len(ran) == 30
    assert outbox.counts("ehr") == {"queued": 0, "in_flight": 0, "done": 30, "dead": 0}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_claims_skip_a_job_another_worker_has_locked(exchange_runtime: Runtime) -> None:
    """FOR UPDATE SKIP LOCKED: a claim passes over a row another transaction holds instead of waiting for it."""
    for n in range(2):
        exchange_runtime.intake.submit("assessment", assessment(external_id=f"s-{n}"))
    first = min(j.pk for j in exchange_runtime.outbox.list(JobQuery(endpoint="ehr")))
    with exchange_runtime.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pk FROM outbox_jobs WHERE pk = :pk FOR UPDATE"), {"pk": first})
        started = time.monotonic()
        (claimed,) = exchange_runtime.outbox.claim("other", ["ehr"])
        assert claimed.pk != first and time.monotonic() - started < 5


def test_a_dead_older_version_is_not_sent_again_over_a_newer_one(exchange_runtime: Runtime) -> None:
    outbox = exchange_runtime.outbox
    first = exchange_runtime.intake.submit("assessment", assessment()).record
    (old,) = outbox.claim("w", ["ehr"])
    assert outbox.bury("w", old.pk, Failure("422: invalid", 422))
    exchange_runtime.intake.replace("assessment", first.id, 1, assessment(score=12))  # fixed at the source
    with pytest.raises(Conflict, match="newer one"):
        outbox.retry(old.pk)
    assert outbox.retry_dead("ehr") == 0
    moot = outbox.get(old.pk)
    assert (moot.state, moot.record_version) == ("done", 1) and moot.superseded_by is not None
    assert outbox.get(moot.superseded_by).record_version == 2
    (new,) = outbox.claim("w", ["ehr"])
    assert new.record_version == 2
