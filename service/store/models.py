"""Tables: records and record_versions (clinic records, every version kept); fhir_* (the FHIR facade's
resources, their versions, search index and conditional-create claims); admin_*; outbox_* (EHR delivery).
On PostgreSQL the columns holding whole documents (contents, payloads) compress with lz4, not pglz (0017)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    __tablename__ = "records"
    __table_args__ = (
        # Race-free idempotency: the database, not a search-then-insert, refuses a second copy.
        UniqueConstraint("kind", "source", "external_id", name="uq_records_identity"),
        Index("ix_records_kind_patient", "kind", "patient_value", "patient_system"),
        Index("ix_records_kind_clinical_at", "kind", "clinical_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    source: Mapped[str] = mapped_column(String(200), nullable=False)
    external_id: Mapped[str] = mapped_column(String(200), nullable=False)
    patient_system: Mapped[str] = mapped_column(String(500), nullable=False)
    patient_value: Mapped[str] = mapped_column(String(200), nullable=False)
    #: The record's clinical instant in UTC (session start, onset, plan start): what date filters use.
    clinical_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


class RecordVersionRow(Base):
    __tablename__ = "record_versions"

    record_pk: Mapped[int] = mapped_column(ForeignKey("records.pk", ondelete="RESTRICT"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


# --- the FHIR facade's resources -----------------------------------------------------------------

class ResourceRow(Base):
    """The current version of one FHIR resource (a deleted one keeps its row, `deleted` set)."""

    __tablename__ = "fhir_resources"
    __table_args__ = (
        UniqueConstraint("resource_type", "id", name="uq_fhir_resources_identity"),
        Index("ix_fhir_resources_type_updated", "resource_type", "last_updated"),
        # a search's candidates of one type, live ones, in key order, without reading their rows (0011)
        Index("ix_fhir_resources_live", "resource_type", "deleted"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: validation warnings of the current version, for the admin console
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    #: the clinic record this resource was read into (or mapped from), if any
    record_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ResourceVersionRow(Base):
    """Every version of every resource, in the order they were written (pk): the history."""

    __tablename__ = "fhir_resource_versions"
    __table_args__ = (
        UniqueConstraint("resource_pk", "version", name="uq_fhir_versions"),
        Index("ix_fhir_versions_type_updated", "resource_type", "last_updated"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("fhir_resources.pk", ondelete="RESTRICT"), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    id: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


#: the rows the search index's partial indexes hold (SQL): relative references with their paths (a reference
#: parameter's row or a LINK row: search/parameters.index), and date ranges
LINK_ROWS = "path IS NOT NULL"
DATE_ROWS = "low IS NOT NULL"


class SearchIndexRow(Base):
    """One searchable value of a current resource: a token, a date range or a reference; a relative reference's row
    (a reference parameter's, else a LINK row) also says where the resource refers (`path`), for Unit.referrers.
    On PostgreSQL resource_type, param and value compare byte by byte, COLLATE "C" (0019), as SQLite's do."""

    __tablename__ = "fhir_search_index"
    __table_args__ = (
        # the keys a value finds, without reading the index's rows (a search's IN list; 0011)
        Index("ix_fhir_search_keys", "resource_type", "param", "value", "resource_pk"),
        # partial (0012, 0014): a date search reads date rows, a referrer lookup the rows with a path, and every other
        # row cost each index an entry nobody read (a clinic record's ~76 rows: ~9 dates, ~29 paths)
        Index("ix_fhir_search_dates", "resource_type", "param", "low", "high", sqlite_where=text(DATE_ROWS),
              postgresql_where=text(DATE_ROWS)),
        # a resource's rows (a changed one's dropped, a date sort's): SQLite only (0016); on PostgreSQL the table's
        # primary key is (resource_pk, pk), whose index reads them by its first column, one index fewer a row written
        Index("ix_fhir_search_resource", "resource_pk").ddl_if(dialect="sqlite"),
        # who refers to Type/id, whatever its type, in key order (Unit.referrers' first few; 0016: PostgreSQL's key no
        # longer gives the rows in pk order, and SQLite's (value) entries ended in the rowid already): a query must say
        # LINK_ROWS as written for the index to serve it
        Index("ix_fhir_search_links", "value", "pk", sqlite_where=text(LINK_ROWS), postgresql_where=text(LINK_ROWS)),
        # SQLite only (0015): on PostgreSQL each index row's check was a trigger and a locking read of its resource,
        # ~85 a clinic record (0.4-0.7 ms of the server's CPU); the rows are written in the statement that writes
        # their resource (store/postgres.py), and no resource row is ever deleted (a deletion is a version)
        ForeignKeyConstraint(["resource_pk"], ["fhir_resources.pk"], ondelete="CASCADE").ddl_if(dialect="sqlite"),
    )

    #: the key; on PostgreSQL the table's primary key is (resource_pk, pk) (0016), unique all the same
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_pk: Mapped[int] = mapped_column(Integer, nullable=False)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    param: Mapped[str] = mapped_column(String(64), nullable=False)
    system: Mapped[str | None] = mapped_column(String(500), nullable=True)
    value: Mapped[str | None] = mapped_column(String(500), nullable=True)
    low: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    high: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    #: a relative reference's path (`Observation.performer[0].actor`), None for every other row
    path: Mapped[str | None] = mapped_column(String(500), nullable=True)


class ConditionalClaimRow(Base):
    """A conditional create's criteria, claimed once: the database refuses a concurrent second claim,
    so identical If-None-Exist creates racing each other make exactly one resource."""

    __tablename__ = "fhir_conditional_claims"
    __table_args__ = (UniqueConstraint("resource_type", "criteria", name="uq_fhir_claims"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    criteria: Mapped[str] = mapped_column(String(1000), nullable=False)
    resource_pk: Mapped[int] = mapped_column(ForeignKey("fhir_resources.pk", ondelete="CASCADE"), nullable=False)


# --- the admin console --------------------------------------------------------------------------

class AdminAccountRow(Base):
    """One admin console account: an argon2 password hash, never the password."""

    __tablename__ = "admin_accounts"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    #: raised by sign-out and password changes: every session cookie signed before stops working
    session_version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)


class AdminThrottleRow(Base):
    """Failed sign-ins per username (known or not, so a lockout reveals nothing) and the lock they earned."""

    __tablename__ = "admin_sign_in_throttle"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


class AdminSecretRow(Base):
    """Secrets the service generates once and every process shares (the session signing key)."""

    __tablename__ = "admin_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


# --- the outbox ---------------------------------------------------------------------------------

class OutboxJobRow(Base):
    """One record version to deliver to one EHR endpoint: queued → in_flight → done | dead.

    `payload` is the record's FHIR Bundle as stored in the same transaction, so what is sent is
    exactly what was stored, whatever the mappings say later."""

    __tablename__ = "outbox_jobs"
    __table_args__ = (
        Index("ix_outbox_claim", "state", "next_attempt_at"),
        Index("ix_outbox_key", "endpoint", "business_key", "pk"),
        Index("ix_outbox_record", "record_id"),
        # The database itself refuses a second in-flight job for the same (endpoint, business key).
        Index("uq_outbox_in_flight", "endpoint", "business_key", unique=True,
              sqlite_where=text("state = 'in_flight'"), postgresql_where=text("state = 'in_flight'")),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    record_id: Mapped[str] = mapped_column(String(36), nullable=False)
    record_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    record_version: Mapped[int] = mapped_column(Integer, nullable=False)
    #: kind/source/external_id (exchange/outbox.business_key): jobs of one key run one at a time, oldest first
    business_key: Mapped[str] = mapped_column(String(500), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: what the server wrote: [{resourceType, id, version, status}]
    written: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    #: a later job for the same key made this one pointless: it was finished without sending
    superseded_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)


class OutboxAttemptRow(Base):
    """One try at delivering a job: who tried, when, and what the server said."""

    __tablename__ = "outbox_attempts"
    __table_args__ = (UniqueConstraint("job_pk", "number", name="uq_outbox_attempts"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("outbox_jobs.pk", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    worker: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    #: done | retry | dead | lost (the worker vanished: its lease expired)
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class EndpointRow(Base):
    """An EHR endpoint records are sent to (migration 0010): every process reads the same ones here. `auth` names
    the environment variables holding secrets, never a secret (service/exchange/endpoints.py)."""

    __tablename__ = "endpoints"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(2000), nullable=False)
    auth: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    max_entries: Mapped[int] = mapped_column(Integer, nullable=False)
    timeout_s: Mapped[float] = mapped_column(Float, nullable=False)
    kinds: Mapped[str] = mapped_column(Text, nullable=False)   # space-delimited record kinds
    note: Mapped[str] = mapped_column(Text, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    #: `file endpoints.yaml`, `cli`, `console <user>`: where it came from
    added_by: Mapped[str] = mapped_column(String(200), nullable=False)
    #: when it was last enabled (its adding, or an `enable` since): records stored before were not queued for it
    enabled_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)


# --- API clients and the audit trail -------------------------------------------------------------

class ApiClientRow(Base):
    """An API client: its key's public id and keyed hash (never the key), its scopes, whether revoked."""

    __tablename__ = "api_clients"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    key_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)


class AuditEventRow(Base):
    """One AuditEvent, append-only (database triggers refuse UPDATE and DELETE); the columns are what
    searches filter on, `content` the FHIR AuditEvent itself."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_recorded", "recorded"),
        Index("ix_audit_events_agent", "agent", "recorded"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    recorded: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    action: Mapped[str] = mapped_column(String(1), nullable=False)
    outcome: Mapped[str] = mapped_column(String(2), nullable=False)
    agent: Mapped[str] = mapped_column(String(200), nullable=False)
    #: ` Patient 2 administration ` — the audited types and entity type codes, space-delimited for LIKE
    entity_types: Mapped[str] = mapped_column(String(1000), nullable=False)
    #: keyed hashes of the patients' identifiers, space-delimited; never the identifiers
    patients: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class EndpointCheckRow(Base):
    """One capability check or sandbox-check of an endpoint, as an admin ran it (migration 0006)."""

    __tablename__ = "endpoint_checks"
    __table_args__ = (Index("ix_endpoint_checks_latest", "endpoint", "kind", "pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)   # capabilities | sandbox-check
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    seconds: Mapped[float] = mapped_column(Float, nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    #: a sandbox-check's steps [{name, status, seconds, message}], or a failed call's OperationOutcome
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    run_by: Mapped[str] = mapped_column(String(64), nullable=False)


class OutboxWorkerRow(Base):
    """An outbox worker's heartbeat (migration 0007): the console says which workers are alive and warns when
    jobs wait with none; counts are since the worker started."""

    __tablename__ = "outbox_workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    endpoints: Mapped[str] = mapped_column(Text, nullable=False)   # space-delimited endpoint names
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    delivered: Mapped[int] = mapped_column(Integer, nullable=False)
    failed: Mapped[int] = mapped_column(Integer, nullable=False)


class ConsoleTaskRow(Base):
    """A long console action (a sandbox-check) run in the background (migration 0007): running → passed |
    failed, its steps so far in `progress`; the finished report is also kept as an EndpointCheckRow."""

    __tablename__ = "console_tasks"
    __table_args__ = (Index("ix_console_tasks_latest", "endpoint", "kind", "pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=False), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    run_by: Mapped[str] = mapped_column(String(64), nullable=False)
