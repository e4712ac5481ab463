"""Clinic records for the console: listed per kind with a search (external id or any part of the patient's
identifier), and one record with the ways on: its FHIR resources, its outbox jobs per endpoint, its patient."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, or_, select

from service.exchange.outbox import Job
from service.store.engine import session
from service.store.models import OutboxJobRow, RecordRow, ResourceRow

PAGE = 50


@dataclass(frozen=True)
class RecordLine:
    id: str
    kind: str
    source: str
    external_id: str
    patient_system: str
    patient_value: str
    version: int
    clinical_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class Resource:
    type: str
    id: str
    version: int
    deleted: bool
    last_updated: datetime
    content: dict[str, Any] | None


@dataclass(frozen=True)
class RecordDetail:
    line: RecordLine
    content: dict[str, Any]
    warnings: list[dict[str, Any]]
    resources: list[Resource]
    jobs: dict[str, list[Job]]      # per endpoint, newest first


def _line(r: RecordRow) -> RecordLine:
    return RecordLine(r.id, r.kind, r.source, r.external_id, r.patient_system, r.patient_value, r.version,
                      r.clinical_at, r.updated_at)


def listing(engine: Engine, kind: str, text: str = "", offset: int = 0) -> tuple[list[RecordLine], int]:
    """One page of `kind`'s records, newest clinical time first, and how many match."""
    stmt = select(RecordRow).where(RecordRow.kind == kind)
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(func.lower(RecordRow.external_id).like(pattern, escape="\\"),
                              func.lower(RecordRow.patient_value).like(pattern, escape="\\")))
    with session(engine) as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(RecordRow.clinical_at.desc(), RecordRow.pk.desc()).offset(offset).limit(PAGE))
        return [_line(r) for r in rows], int(total)


def detail(engine: Engine, kind: str, record_id: str, jobs_per_endpoint: int = 20) -> RecordDetail | None:
    with session(engine) as s:
        row = s.scalars(select(RecordRow).where(RecordRow.id == record_id, RecordRow.kind == kind)).one_or_none()
        if row is None:
            return None
        resources = [Resource(r.resource_type, r.id, r.version, r.deleted, r.last_updated, r.content)
                     for r in s.scalars(select(ResourceRow).where(ResourceRow.record_id == record_id)
                                        .order_by(ResourceRow.resource_type, ResourceRow.id))]
        jobs: dict[str, list[Job]] = {}
        for job in s.scalars(select(OutboxJobRow).where(OutboxJobRow.record_id == record_id)
                             .order_by(OutboxJobRow.pk.desc()).limit(500)):
            found = jobs.setdefault(job.endpoint, [])
            if len(found) < jobs_per_endpoint:
                found.append(Job.of(job))
        return RecordDetail(_line(row), row.content, list(row.warnings or []), resources, jobs)
