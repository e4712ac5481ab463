"""Counts for the console's overview: clinic records per kind, current FHIR resources per type."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from service.domain.kinds import KINDS
from service.store.engine import session
from service.store.models import RecordRow, ResourceRow


@dataclass(frozen=True)
class Overview:
    records: dict[str, int]       # every kind, zero included, in the order KINDS lists them
    resources: dict[str, int]     # resource types with at least one current (not deleted) resource


def overview(engine: Engine) -> Overview:
    with session(engine) as s:
        records = {kind: n for kind, n in s.execute(select(RecordRow.kind, func.count()).group_by(RecordRow.kind))}
        resources = {kind: n for kind, n in s.execute(select(ResourceRow.resource_type, func.count())
                                                      .where(ResourceRow.deleted.is_(False))
                                                      .group_by(ResourceRow.resource_type)
                                                      .order_by(ResourceRow.resource_type))}
    return Overview({k: records.get(k, 0) for k in KINDS}, resources)
