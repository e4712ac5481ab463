"""Record repository: idempotent create, optimistic update, read, filtered cursor listing."""
from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Select, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, MultipleResultsFound
from sqlalchemy.orm import Session

from service.errors import Contention
from service.store import driver, postgres
from service.store.batch import Serialised, serialise
from service.store.engine import SHARED_READ, alone, answering, connection_of, session, wrote
from service.store.models import RecordRow, RecordVersionRow

RECORDS = cast(Table, RecordRow.__table__)
#: a record's create and lookups, as plain SQL built once (the ORM's flush cost more than SQLite's insert); its
#: content and warnings serialised once for the record and its version, before the write's unit (batch.Serialised)
SERIALISED = {name: bindparam(name, type_=Serialised()) for name in ("content", "warnings")}
ADD_RECORD = insert(RECORDS).values(**SERIALISED)
VERSIONS = cast(Table, RecordVersionRow.__table__)
ADD_RECORD_VERSION = insert(VERSIONS).values(**SERIALISED)
FIND_RECORD = select(RECORDS).where(RECORDS.c.kind == bindparam("kind"), RECORDS.c.source == bindparam("source"),
                                    RECORDS.c.external_id == bindparam("external_id"))
#: FIND_RECORD's id, version and content hash only: whether a record read before is unchanged (no content to decode)
FIND_STAMP = FIND_RECORD.with_only_columns(RECORDS.c.id, RECORDS.c.version, RECORDS.c.content_hash)
#: what a record is now, as read again to tell it unchanged: its id, version and content hash; None if absent
Stamp = tuple[str, int, str] | None
GET_RECORD = select(RECORDS).where(RECORDS.c.kind == bindparam("kind"), RECORDS.c.id == bindparam("record_id"))


@dataclass(frozen=True)
class StoredRecord:
    """A record as stored: plain data, detached from any database session."""

    pk: int
    id: str
    kind: str
    source: str
    external_id: str
    version: int
    content: dict[str, Any]
    content_hash: str
    warnings: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RecordRow | Any) -> StoredRecord:
        """From an ORM row or a Core row of records."""
        return cls(row.pk, row.id, row.kind, row.source, row.external_id, row.version, row.content,
                   row.content_hash, row.warnings, row.created_at, row.updated_at)


@dataclass(frozen=True)
class NewRecord:
    """What intake hands the store: identity, index columns and the canonical content."""

    kind: str
    source: str
    external_id: str
    patient_system: str
    patient_value: str
    clinical_at: datetime | None
    content: dict[str, Any]
    content_hash: str
    warnings: list[dict[str, Any]]


@dataclass(frozen=True)
class ListQuery:
    kind: str
    patient_system: str | None = None
    patient_value: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    after_pk: int = 0
    limit: int = 50


#: Work done in a record write's own transaction: (session, the record as stored) → None.
Within = Callable[[Session, "StoredRecord"], None]


class StaleVersion(Exception):
    """The record changed since the version the caller read."""

    def __init__(self, current: StoredRecord) -> None:
        super().__init__(f"record {current.id} is at version {current.version}")
        self.current = current


def utcnow() -> datetime:
    """UTC without tzinfo: both backends store naive UTC, so comparisons agree. Its date and time joined, not
    replace(tzinfo=None), whose keyword parsing cost ~10,000 instructions a call (callgrind), ~12 a clinic record
    inside the writers' turn."""
    now = datetime.now(UTC)
    return datetime.combine(now.date(), now.time())


class RecordStore:
    def __init__(self, engine: Engine, outer: Session | None = None, reading: Connection | None = None) -> None:
        self.engine = engine
        self._outer = outer
        self._reading = reading

    def bound(self, outer: Session) -> RecordStore:
        """This store working inside the caller's transaction: each operation is a savepoint of it, so a
        failed insert (the identity constraint) undoes only itself and the caller's work commits as one."""
        return RecordStore(self.engine, outer)

    def reading(self, connection: Connection) -> RecordStore:
        """This store's lookups by key (find, get, stamp) in the read transaction open on `connection`
        (ResourceStore.read_by_key's); for reads only."""
        return RecordStore(self.engine, reading=connection)

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        if self._outer is not None:
            with self._outer.begin_nested():
                yield self._outer
            return
        with session(self.engine, write) as current:
            yield current

    def create(self, new: NewRecord, within: Within | None = None) -> tuple[StoredRecord, bool]:
        """Insert `new`, or return the record already stored under its identity (created=False).

        The unique constraint decides between concurrent identical creates, so exactly one wins.
        `within(session, record)` runs in the same transaction (the record's FHIR resources).
        """
        now, record_id = utcnow(), str(uuid.uuid4())
        content, warnings = serialise(new.content), serialise(new.warnings)
        values = {"id": record_id, "kind": new.kind, "source": new.source, "external_id": new.external_id,
                  "patient_system": new.patient_system, "patient_value": new.patient_value,
                  "clinical_at": new.clinical_at, "version": 1, "content": content,
                  "content_hash": new.content_hash, "warnings": warnings, "created_at": now, "updated_at": now}
        if self.engine.dialect.name == "postgresql" and (self._outer is None or within is None):
            return self._add(new, values, within)
        if self._outer is not None and within is None and self.engine.dialect.name == "sqlite":
            return self._add_in(self._outer, new, values)
        if self._outer is None:  # what it answers with, before its unit waits for the writers' turn
            answering(StoredRecord(0, record_id, new.kind, new.source, new.external_id, 1, new.content,
                                   new.content_hash, new.warnings, now, now), True)
        try:
            with self._session(write=True) as session:
                connection = session.connection()
                # on SQLite's own cursor (store/driver.py): through Core each cost ~150 µs more, in the unit
                pk = driver.insert(connection, RECORDS, values, tuple(SERIALISED))
                if pk is None:
                    pk = int(cast(Any, connection.execute(ADD_RECORD, values).inserted_primary_key)[0])
                stored = StoredRecord(pk, record_id, new.kind, new.source, new.external_id, 1, new.content,
                                      new.content_hash, new.warnings, now, now)
                version = {"record_pk": pk, "version": 1, "content": content, "content_hash": new.content_hash,
                           "warnings": warnings, "created_at": now}
                if driver.insert(connection, VERSIONS, version, tuple(SERIALISED)) is None:
                    connection.execute(ADD_RECORD_VERSION, version)
                wrote(session, stored, True)
                if within is not None:
                    within(session, stored)
            return stored, True
        except IntegrityError:
            existing = self.find(new.kind, new.source, new.external_id)
            if existing is None:  # the constraint that failed was not the identity: a real error
                raise
            return existing, False

    def _add_in(self, outer: Session, new: NewRecord, values: dict[str, Any]) -> tuple[StoredRecord, bool]:
        """create() on SQLite in the caller's transaction with nothing to write `within` (a record read from a FHIR
        resource), without a savepoint, whose two statements and the ORM's nested transaction cost ~0.25 M instructions
        of a facade create's ~4 M inside the writers' turn: SQLite backs out a statement that fails on a constraint by
        itself and the transaction goes on, so a record already there under its identity leaves nothing behind, as the
        savepoint's rollback did. Any other failure raises, and the caller's unit, which it ends, is rolled back."""
        outer.flush()  # what the caller's ORM objects hold goes first, as begin_nested flushed it
        connection = connection_of(outer)
        try:
            pk = driver.insert(connection, RECORDS, values, tuple(SERIALISED))
        except IntegrityError:
            existing = self.find(new.kind, new.source, new.external_id)
            if existing is None:  # the constraint that failed was not the identity: a real error
                raise
            return existing, False
        assert pk is not None  # noqa: S101 - driver.insert inserts on SQLite
        stored = StoredRecord(pk, values["id"], new.kind, new.source, new.external_id, 1, new.content,
                              new.content_hash, new.warnings, values["created_at"], values["updated_at"])
        driver.insert(connection, VERSIONS, {"record_pk": pk, "version": 1, "content": values["content"],
                                             "content_hash": new.content_hash, "warnings": values["warnings"],
                                             "created_at": values["created_at"]}, tuple(SERIALISED))
        wrote(outer, stored, True)
        return stored, True

    def _add(self, new: NewRecord, values: dict[str, Any], within: Within | None) -> tuple[StoredRecord, bool]:
        """create() on PostgreSQL: the record and its version in one statement (store/postgres.py); in the caller's
        transaction (with nothing to write `within`), without a savepoint (two round trips): a record already there
        under its identity makes the statement insert nothing, and nothing else is written here that a savepoint
        would have to undo. In a transaction of its own with `within`, the statement goes with within's first
        (postgres.hold_record: a round trip fewer), the record's key known only once back: `within` is given it as
        0; a record there under its identity aborts the transaction (IdentityHeld)."""
        made: list[int] = []
        try:
            with self._session(write=True) if self._outer is None else nullcontext(self._outer) as session:
                connection = session.connection()
                held = within is not None and postgres.hold_record(connection, values, made.append)
                pk = 0 if held else postgres.add_record(connection, values)
                if pk is not None:
                    stored = StoredRecord(pk, values["id"], new.kind, new.source, new.external_id, 1, new.content,
                                          new.content_hash, new.warnings, values["created_at"], values["updated_at"])
                    wrote(session, stored, True)
                    if within is not None:
                        within(session, stored)
            if pk is not None:
                return (replace(stored, pk=made[0]) if held else stored), True
        except postgres.IdentityHeld:
            pass
        existing = self.find(new.kind, new.source, new.external_id)
        if existing is None:  # records are never deleted: a holder gone since would be a concurrent writer's doing
            raise Contention("A concurrent write held this record's identity; send it again.")
        return existing, False

    def update(self, record_id: str, expected_version: int, new: NewRecord,
               within: Within | None = None) -> StoredRecord:
        """Store `new` as the next version if the record is still at `expected_version`."""
        with self._session(write=True) as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(RecordRow)
                .where(RecordRow.id == record_id, RecordRow.version == expected_version)
                .values(version=expected_version + 1, content=new.content, content_hash=new.content_hash,
                        warnings=new.warnings, patient_system=new.patient_system,
                        patient_value=new.patient_value, clinical_at=new.clinical_at, updated_at=utcnow())
                .execution_options(synchronize_session=False))
            row = session.scalars(select(RecordRow).where(RecordRow.id == record_id)).one()
            if result.rowcount != 1:
                raise StaleVersion(StoredRecord.of(row))
            session.add(_version_of(row))
            wrote(session, StoredRecord.of(row), False)
            if within is not None:
                within(session, StoredRecord.of(row))
            return StoredRecord.of(row)

    def get(self, kind: str, record_id: str) -> StoredRecord | None:
        return self._lookup(GET_RECORD, {"kind": kind, "record_id": record_id})

    def find(self, kind: str, source: str, external_id: str) -> StoredRecord | None:
        return self._lookup(FIND_RECORD, {"kind": kind, "source": source, "external_id": external_id})

    def stamp(self, kind: str, source: str, external_id: str) -> Stamp:
        """find()'s record's (id, version, content_hash), or None: what a record read before is now. In the caller's
        transaction (a write unit's) on the driver's cursor (store/driver.py)."""
        if self._outer is not None and (mark := driver.placeholder(connection_of(self._outer))) is not None:
            self._outer.flush()  # as _one
            found = driver.rows(connection_of(self._outer), _stamp_sql(mark), (kind, source, external_id))
            return (str(found[0][0]), int(found[0][1]), str(found[0][2])) if found else None
        row = self._one(FIND_STAMP, {"kind": kind, "source": source, "external_id": external_id})
        return (row.id, row.version, row.content_hash) if row is not None else None

    def _lookup(self, statement: Select[Any], params: dict[str, Any]) -> StoredRecord | None:
        row = self._one(statement, params)
        return StoredRecord.of(row) if row is not None else None

    def _one(self, statement: Select[Any], params: dict[str, Any]) -> Any:
        """One row by a unique key; inside the caller's transaction without a savepoint (a read undoes nothing)."""
        if self._outer is not None:
            self._outer.flush()  # what the caller's ORM objects hold goes first, as a query of the ORM would
            return _one_row(connection_of(self._outer), statement, params)
        if self._reading is not None:
            return _one_row(self._reading, statement, params)
        if SHARED_READ.get() is None:  # one statement: alone (on PostgreSQL no BEGIN and COMMIT, two round trips)
            with alone(self.engine) as connection:
                return _one_row(connection, statement, params)
        with session(self.engine) as current:
            return _one_row(current.connection(), statement, params)

    def versions(self, record: StoredRecord) -> list[dict[str, Any]]:
        with self._session() as session:
            rows = session.scalars(select(RecordVersionRow).where(RecordVersionRow.record_pk == record.pk)
                                   .order_by(RecordVersionRow.version))
            return [{"version": r.version, "content": r.content, "warnings": r.warnings,
                     "created_at": r.created_at} for r in rows]

    def list(self, q: ListQuery) -> list[StoredRecord]:
        """Records of a kind in insertion order after `after_pk`, at most `limit`."""
        stmt = select(RecordRow).where(RecordRow.kind == q.kind, RecordRow.pk > q.after_pk)
        if q.patient_value is not None:
            stmt = stmt.where(RecordRow.patient_value == q.patient_value)
        if q.patient_system is not None:
            stmt = stmt.where(RecordRow.patient_system == q.patient_system)
        if q.date_from is not None:
            stmt = stmt.where(RecordRow.clinical_at >= q.date_from)
        if q.date_to is not None:
            stmt = stmt.where(RecordRow.clinical_at < q.date_to)
        with self._session() as session:
            return [StoredRecord.of(r) for r in session.scalars(stmt.order_by(RecordRow.pk).limit(q.limit))]


def _one_row(connection: Connection, statement: Select[Any], params: dict[str, Any]) -> Any:
    """`statement`'s one row or None, its values by column name: on the driver's own cursor (driver.select), the
    values Core makes. Through Core a record's lookup by its identity (rules.check's plan, an adverse event's
    session) cost ~0.4 M instructions more of a record POST's ~33 M on SQLite."""
    found = driver.select(connection, statement, params)
    if found is None:
        return connection.execute(statement, params).one_or_none()
    if len(found) > 1:
        raise MultipleResultsFound("Multiple rows were found when one or none was required")
    return _row_type(statement)._make(found[0]) if found else None


@lru_cache(maxsize=8)
def _row_type(statement: Select[Any]) -> Any:
    """A row of `statement`'s columns, each read by its name as of Core's Row."""
    return namedtuple("Row", [column.key for column in statement.selected_columns])  # type: ignore[misc]


@lru_cache(maxsize=4)
def _stamp_sql(mark: str) -> str:
    """FIND_STAMP in the driver's SQL, with its placeholder `mark`."""
    return (f"SELECT id, version, content_hash FROM {RECORDS.name} "  # noqa: S608 - constants
            f"WHERE kind = {mark} AND source = {mark} AND external_id = {mark}")


def _version_of(row: RecordRow) -> RecordVersionRow:
    return RecordVersionRow(record_pk=row.pk, version=row.version, content=row.content,
                            content_hash=row.content_hash, warnings=row.warnings, created_at=row.updated_at)
