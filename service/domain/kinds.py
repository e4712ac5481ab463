"""The four record kinds: their schema, URL segment and the field that dates each record."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cache
from typing import Any

from marshmallow import Schema

from service.domain.schemas import AdministrationSchema, AdverseEventSchema, AssessmentSchema, TreatmentPlanSchema


@dataclass(frozen=True)
class Kind:
    name: str
    plural: str  # the /api/v1 URL segment
    schema: type[Schema]
    clinical_at: Callable[[dict[str, Any]], datetime | date | None]


#: Every record kind, in the order lists, forms and the CLI show them: the one list of them in the service.
KINDS: dict[str, Kind] = {
    k.name: k for k in (
        Kind("treatment-plan", "treatment-plans", TreatmentPlanSchema, lambda r: (r.get("period") or {}).get("start")),
        Kind("administration", "administrations", AdministrationSchema, lambda r: r["started_at"]),
        Kind("adverse-event", "adverse-events", AdverseEventSchema, lambda r: r["onset_at"]),
        Kind("assessment", "assessments", AssessmentSchema, lambda r: r["at"]),
    )
}
NAMES = tuple(KINDS)


@cache
def schema_of(name: str) -> Schema:
    """The schema of the kind `name`, built once: the schemas keep no state between loads and dumps, and building
    one (its fields and their nested schemas) cost more than loading a session with it."""
    return KINDS[name].schema()
BY_PLURAL = {k.plural: k for k in KINDS.values()}


def as_utc_naive(value: datetime | date | None) -> datetime | None:
    return None if value is None else utc_naive(value)


def utc_naive(value: datetime | date) -> datetime:
    """The instant the store indexes: aware datetimes to UTC, dates at 00:00 UTC, without tzinfo."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min, tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None)
