"""The durable outbox: a job per (record version, endpoint), enqueued in the record's own transaction,
claimed by workers under a lease, finished as done or dead, every attempt kept.

    queued ──claim──► in_flight ──► done
       ▲                  │  └────► dead (400/422, 412 multiple matches, too many attempts)
       └── retry later ◄──┘ (network, 429, 5xx; or the lease expired: the worker vanished)

Jobs of one (endpoint, business key) run one at a time, oldest first: a job is claimable only when no
earlier job of its key is queued or in flight, so an older version never overwrites a newer one, and a
partial unique index refuses a second in-flight job outright. A new version supersedes the queued
(not yet started) jobs of its key. PostgreSQL claims with FOR UPDATE SKIP LOCKED, so workers on many
machines share the queue; SQLite serialises writers (BEGIN IMMEDIATE), which suits its one worker.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from service.errors import Conflict, NotFound
from service.exchange.endpoints import Endpoint
from service.store import driver, postgres
from service.store.batch import Serialised, serialise
from service.store.engine import session as transaction
from service.store.models import OutboxAttemptRow, OutboxJobRow
from service.store.records import ListQuery, RecordStore, StoredRecord, utcnow

STATES = ("queued", "in_flight", "done", "dead")
OPEN = ("queued", "in_flight")
#: How long a claim holds without a heartbeat; a worker that vanished loses its jobs after this.
LEASE_S = 60.0
#: What time it is (naive UTC, as stored); tests give the outbox one they can move instead of sleeping.
Clock = Callable[[], datetime]
#: a record's jobs are written through Core, as its resources are (service/store/resources.py): the ORM's flush of
#: one job and its bulk UPDATE cost more than the statements, built once here
JOBS = cast(Table, OutboxJobRow.__table__)
ADD_JOB = insert(JOBS).values(payload=bindparam("payload", type_=Serialised()))
SUPERSEDE = update(JOBS).where(
    JOBS.c.endpoint == bindparam("the_endpoint"), JOBS.c.business_key == bindparam("the_key"),
    JOBS.c.state == "queued", JOBS.c.pk < bindparam("the_pk"),
).values(state="done", superseded_by=bindparam("the_pk"), finished_at=bindparam("the_now"),
         updated_at=bindparam("the_now"))


def business_key(record: StoredRecord) -> str:
    """The key a record's jobs share across its versions: the jobs of one key supersede and wait for each other.
    `kind/source/external_id` read back unambiguously only while the source holds no "/": (source "clinic/x", id
    "1") and ("clinic", "x/1") made one key, and the second record's job superseded the first's, which was never
    sent. A source with a "/" is written `kind//length/source/external_id`: "//" after the kind never starts the
    plain form (a source is never empty), and its length says where it ends. Plain keys are unchanged (migration
    0018 rewrote the stored keys of the other form)."""
    return _key(record.kind, record.source, record.external_id)


def _key(kind: str, source: str, external_id: str) -> str:
    if "/" in source:
        return f"{kind}//{len(source)}/{source}/{external_id}"
    return f"{kind}/{source}/{external_id}"


def enqueue(session: Session, record: StoredRecord, bundle: dict[str, Any], endpoints: list[Endpoint],
            clock: Clock = utcnow) -> list[int]:
    """One job per enabled endpoint that takes this kind, in the caller's transaction (the record's)."""
    return queue(session, record, bundle,
                 [e.name for e in endpoints if e.enabled and record.kind in e.kinds], clock)


def queue(session: Session, record: StoredRecord, bundle: dict[str, Any], names: list[str],
          clock: Clock = utcnow, payload: str | None = None, created: bool = False) -> list[int]:
    """One job for each of the endpoints `names` (enabled, taking this kind: Endpoints.taking), in the caller's
    transaction; the Bundle is serialised once for all of them (the JSON type serialised it for each job), or
    before the transaction (`payload`: serialise(bundle)). `created`: the record was created in this transaction,
    so no job of its business key can be queued before this one (jobs are queued for stored records only, and
    records are never deleted): nothing to supersede (a statement fewer in the writers' turn, ~0.16 M instructions)."""
    if not names:
        return []
    now, key, payload = clock(), business_key(record), serialise(bundle) if payload is None else payload
    pks = []
    connection = session.connection()
    for name in names:
        job = {"endpoint": name, "record_id": record.id, "record_kind": record.kind,
               "record_version": record.version, "business_key": key, "state": "queued", "attempts": 0,
               "next_attempt_at": now, "payload": payload, "created_at": now, "updated_at": now}
        # on SQLite's own cursor (store/driver.py): through Core each statement cost ~150 µs more, in the write unit
        pk = driver.insert(connection, JOBS, job, ("payload",))
        if pk is None:
            pk = int(cast(Any, connection.execute(ADD_JOB, job).inserted_primary_key)[0])
        # Not yet started jobs of older versions have nothing left to say: this one carries the newest.
        if not created:
            _supersede(connection, name, key, pk, now)
        pks.append(pk)
    return pks


def _supersede(connection: Connection, endpoint: str, key: str, pk: int, now: datetime) -> None:
    """SUPERSEDE; on SQLite on the driver's cursor, its time bound as the column's type binds it (Core's text)."""
    if connection.dialect.name != "sqlite" or (mark := driver.placeholder(connection)) is None:
        connection.execute(SUPERSEDE, {"the_endpoint": endpoint, "the_key": key, "the_pk": pk, "the_now": now})
        return
    time = driver.binder(JOBS.c.finished_at.type, connection.dialect)  # isoformat's text, not the type's dict format
    moment = now if time is None else time(now)
    driver.rows(connection, _supersede_sql(mark), (pk, moment, moment, endpoint, key, "queued", pk))


@lru_cache(maxsize=4)
def _supersede_sql(mark: str) -> str:
    """SUPERSEDE in the driver's SQL, with its placeholder `mark`."""
    return (f"UPDATE {JOBS.name} SET state = 'done', superseded_by = {mark}, finished_at = {mark}, "  # noqa: S608
            f"updated_at = {mark} WHERE endpoint = {mark} AND business_key = {mark} AND state = {mark} "
            f"AND pk < {mark}")


def queue_taking(session: Session, record: StoredRecord, bundle: dict[str, Any], taking: Callable[[], list[str]],
                 payload: str | None = None, clock: Clock = utcnow, at_commit: bool = False,
                 created: bool = False) -> list[int] | None:
    """queue() for the enabled endpoints that take the record's kind (`taking()`: their names, as `session` sees them,
    Endpoints.taking): on PostgreSQL read, queued and superseded in one statement (store/postgres.QUEUE_SQL), one
    round trip where they were three; `at_commit`: that statement sent with the transaction's COMMIT, one round trip
    fewer, and None: the jobs are then not seen in the transaction until it commits, nor their keys known.
    `created`: as queue's (on SQLite)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return queue(session, record, bundle, taking(), clock, payload, created)
    now = clock()
    return postgres.queue_jobs(connection, record.kind, {
        "record_id": record.id, "record_kind": record.kind, "record_version": record.version,
        "business_key": business_key(record), "next_attempt_at": now, "created_at": now, "updated_at": now,
        "payload": serialise(bundle) if payload is None else payload}, at_commit)


@dataclass(frozen=True)
class Job:
    pk: int
    endpoint: str
    record_id: str
    record_kind: str
    record_version: int
    business_key: str
    state: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    last_outcome: dict[str, Any] | None
    written: list[dict[str, Any]] | None
    superseded_by: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, row: OutboxJobRow) -> Job:
        return cls(row.pk, row.endpoint, row.record_id, row.record_kind, row.record_version, row.business_key,
                   row.state, row.attempts, row.next_attempt_at, row.lease_owner, row.lease_expires_at,
                   row.last_error, row.last_outcome, row.written, row.superseded_by, row.created_at,
                   row.updated_at, row.finished_at, row.payload)

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the payload (the Bundle is in the FHIR facade)."""
        return {"id": self.pk, "endpoint": self.endpoint, "record": {"id": self.record_id, "kind": self.record_kind,
                "version": self.record_version}, "business_key": self.business_key, "state": self.state,
                "attempts": self.attempts, "next_attempt_at": _iso(self.next_attempt_at),
                "lease_owner": self.lease_owner, "lease_expires_at": _iso(self.lease_expires_at),
                "last_error": self.last_error, "last_outcome": self.last_outcome, "written": self.written,
                "superseded_by": self.superseded_by, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at), "finished_at": _iso(self.finished_at)}


@dataclass(frozen=True)
class JobQuery:
    state: str | None = None
    endpoint: str | None = None
    kind: str | None = None
    since: datetime | None = None   # created at or after
    after_pk: int = 0
    limit: int = 50
    before_pk: int | None = None
    #: oldest first pages the API's cursor stably; newest first suits a person (the console)
    newest_first: bool = False


@dataclass(frozen=True)
class Failure:
    """Why an attempt did not deliver: what to show, the HTTP status and the server's OperationOutcome."""

    message: str
    status: int | None = None
    outcome: dict[str, Any] | None = None


class Outbox:
    def __init__(self, engine: Engine, lease_s: float = LEASE_S, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"

    # --- the worker's side -----------------------------------------------------------------

    def claim(self, worker: str, endpoints: list[str], limit: int = 1) -> list[Job]:
        """Take up to `limit` due jobs (or jobs whose lease expired) of `endpoints` for `worker`."""
        now = self.clock()
        job, earlier = OutboxJobRow, aliased(OutboxJobRow)
        blocked = exists().where(earlier.endpoint == job.endpoint, earlier.business_key == job.business_key,
                                 earlier.pk < job.pk, earlier.state.in_(OPEN))
        due = or_(and_(job.state == "queued", job.next_attempt_at <= now),
                  and_(job.state == "in_flight", job.lease_expires_at < now))
        stmt = select(job).where(job.endpoint.in_(endpoints), due, ~blocked).order_by(job.pk).limit(limit)
        if self.postgres:
            stmt = stmt.with_for_update(skip_locked=True, of=job)
        with transaction(self.engine, write=True) as session:
            rows = list(session.scalars(stmt))
            for row in rows:
                if row.state == "in_flight":  # its worker vanished: the attempt it began is lost
                    self._finish_attempt(session, row, "lost", Failure("the worker's lease expired"), now)
                row.state, row.lease_owner = "in_flight", worker
                row.lease_expires_at = now + timedelta(seconds=self.lease_s)
                row.attempts += 1
                row.updated_at = now
                session.add(OutboxAttemptRow(job_pk=row.pk, number=row.attempts, worker=worker, started_at=now))
            return [Job.of(r) for r in rows]

    def heartbeat(self, worker: str, pk: int) -> bool:
        """Extend `worker`'s lease on job `pk`; False when the job is no longer its own."""
        now = self.clock()
        with transaction(self.engine, write=True) as session:
            result = session.execute(update(OutboxJobRow).where(
                OutboxJobRow.pk == pk, OutboxJobRow.state == "in_flight", OutboxJobRow.lease_owner == worker,
            ).values(lease_expires_at=now + timedelta(seconds=self.lease_s))
                .execution_options(synchronize_session=False))
            return bool(getattr(result, "rowcount", 0))

    def complete(self, worker: str, pk: int, written: list[dict[str, Any]], http_status: int | None = None) -> bool:
        return self._finish(worker, pk, "done", Failure("", http_status) if http_status else None, written=written)

    def retry_later(self, worker: str, pk: int, failure: Failure, delay_s: float) -> bool:
        return self._finish(worker, pk, "queued", failure, delay_s=delay_s)

    def bury(self, worker: str, pk: int, failure: Failure) -> bool:
        """Dead letter: trying again cannot help until a person acts (then POST …/retry)."""
        return self._finish(worker, pk, "dead", failure)

    def _finish(self, worker: str, pk: int, state: str, failure: Failure | None, delay_s: float = 0.0,
                written: list[dict[str, Any]] | None = None) -> bool:
        """Record an attempt's end, if `worker` still holds the job (a reclaimed job is someone else's)."""
        now = self.clock()
        with transaction(self.engine, write=True) as session:
            row = session.scalars(self._own(pk, worker)).one_or_none()
            if row is None:
                return False
            self._finish_attempt(session, row, {"queued": "retry"}.get(state, state), failure, now)
            row.state, row.lease_owner, row.lease_expires_at, row.updated_at = state, None, None, now
            if failure is not None and state != "done":
                row.last_error, row.last_outcome = failure.message, failure.outcome
            if state == "queued":
                row.next_attempt_at = now + timedelta(seconds=delay_s)
            else:
                row.finished_at = now
            if written is not None:
                row.written = written
            return True

    def _own(self, pk: int, worker: str) -> Any:
        stmt = select(OutboxJobRow).where(OutboxJobRow.pk == pk, OutboxJobRow.state == "in_flight",
                                          OutboxJobRow.lease_owner == worker)
        return stmt.with_for_update() if self.postgres else stmt

    @staticmethod
    def _finish_attempt(session: Session, row: OutboxJobRow, result: str, failure: Failure | None,
                        now: datetime) -> None:
        attempt = session.scalars(select(OutboxAttemptRow).where(
            OutboxAttemptRow.job_pk == row.pk, OutboxAttemptRow.number == row.attempts)).one_or_none()
        if attempt is None:
            return
        attempt.finished_at, attempt.result = now, result
        if failure is not None:  # a delivery passes its HTTP status alone, as a Failure without a message
            attempt.error, attempt.http_status = failure.message or None, failure.status
            attempt.outcome = failure.outcome

    # --- the API's side --------------------------------------------------------------------

    def get(self, pk: int) -> Job:
        with transaction(self.engine) as session:
            row = session.get(OutboxJobRow, pk)
            if row is None:
                raise NotFound(f"No outbox job {pk}.")
            return Job.of(row)

    def attempts(self, pk: int) -> list[dict[str, Any]]:
        with transaction(self.engine) as session:
            rows = session.scalars(select(OutboxAttemptRow).where(OutboxAttemptRow.job_pk == pk)
                                   .order_by(OutboxAttemptRow.number))
            return [{"number": a.number, "worker": a.worker, "started_at": _iso(a.started_at),
                     "finished_at": _iso(a.finished_at), "result": a.result, "http_status": a.http_status,
                     "error": a.error, "outcome": a.outcome} for a in rows]

    def list(self, q: JobQuery) -> list[Job]:
        stmt = select(OutboxJobRow).where(OutboxJobRow.pk > q.after_pk)
        if q.before_pk is not None:
            stmt = stmt.where(OutboxJobRow.pk < q.before_pk)
        for column, value in ((OutboxJobRow.state, q.state), (OutboxJobRow.endpoint, q.endpoint),
                              (OutboxJobRow.record_kind, q.kind)):
            if value is not None:
                stmt = stmt.where(column == value)
        if q.since is not None:
            stmt = stmt.where(OutboxJobRow.created_at >= q.since)
        with transaction(self.engine) as session:
            order = OutboxJobRow.pk.desc() if q.newest_first else OutboxJobRow.pk.asc()
            return [Job.of(r) for r in session.scalars(stmt.order_by(order).limit(q.limit))]

    def counts(self, endpoint: str | None = None) -> dict[str, int]:
        stmt = select(OutboxJobRow.state, func.count()).group_by(OutboxJobRow.state)
        if endpoint is not None:
            stmt = stmt.where(OutboxJobRow.endpoint == endpoint)
        with transaction(self.engine) as session:
            found = {str(state): int(n) for state, n in session.execute(stmt)}
        return {state: found.get(state, 0) for state in STATES}

    def retry(self, pk: int) -> Job:
        """Send a dead job again now (after a person fixed the cause); other states are refused, and so is a
        job of an older version than one queued or sent since (it would overwrite the newer one)."""
        now = self.clock()
        with transaction(self.engine, write=True) as session:
            row = session.get(OutboxJobRow, pk, with_for_update=self.postgres)
            if row is None:
                raise NotFound(f"No outbox job {pk}.")
            if row.state != "dead":
                raise Conflict(f"Outbox job {pk} is {row.state}; only a dead job can be retried.")
            newer = _newer(session, row)
            if newer is not None:
                raise Conflict(f"Outbox job {pk} carries version {row.record_version} of its record; job {newer} "
                               "carries a newer one, so sending this one again would overwrite it.")
            row.state, row.next_attempt_at, row.finished_at, row.updated_at = "queued", now, None, now
            return Job.of(row)

    def retry_dead(self, endpoint: str) -> int:
        """Queue every dead job of `endpoint` again; how many. A dead job of an older version than a later job
        of its record is finished as superseded instead (sending it would overwrite the newer version)."""
        now = self.clock()
        queued = 0
        with transaction(self.engine, write=True) as session:
            stmt = select(OutboxJobRow).where(OutboxJobRow.endpoint == endpoint, OutboxJobRow.state == "dead")
            for row in list(session.scalars(stmt.with_for_update() if self.postgres else stmt)):
                row.superseded_by = _newer(session, row)
                row.state = "done" if row.superseded_by else "queued"
                row.next_attempt_at, row.updated_at = now, now
                row.finished_at = now if row.superseded_by else None
                queued += row.superseded_by is None
        return queued

    def backfill(self, endpoint: Endpoint, records: Iterable[StoredRecord],
                 bundle_of: Callable[[StoredRecord], dict[str, Any]]) -> dict[str, int]:
        """Queue the current version of every record never queued for `endpoint`; how many were queued, by why
        they were not before (stored before the endpoint was added, or while it was disabled). Mapping runs
        outside the write transaction."""
        counts: dict[str, int] = {}
        for record in records:
            if not endpoint.enabled or record.kind not in endpoint.kinds or self._queued_before(endpoint, record):
                continue
            bundle = bundle_of(record)
            with transaction(self.engine, write=True) as session:
                if enqueue(session, record, bundle, [endpoint], self.clock):
                    reason = endpoint.why_not_queued(record.updated_at)
                    counts[reason] = counts.get(reason, 0) + 1
        return counts

    def _queued_before(self, endpoint: Endpoint, record: StoredRecord) -> bool:
        with transaction(self.engine) as session:
            return session.scalar(select(OutboxJobRow.pk).where(
                OutboxJobRow.endpoint == endpoint.name, OutboxJobRow.record_id == record.id,
                OutboxJobRow.record_version == record.version).limit(1)) is not None


def _newer(session: Session, row: OutboxJobRow) -> int | None:
    """The latest later job of the same record and endpoint, if any."""
    return session.scalar(select(func.max(OutboxJobRow.pk)).where(
        OutboxJobRow.endpoint == row.endpoint, OutboxJobRow.business_key == row.business_key,
        OutboxJobRow.pk > row.pk))


def every_record(store: RecordStore, kinds: Iterable[str], page: int = 200) -> Iterator[StoredRecord]:
    for kind in kinds:
        after = 0
        while batch := store.list(ListQuery(kind=kind, after_pk=after, limit=page)):
            yield from batch
            after = batch[-1].pk


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None
