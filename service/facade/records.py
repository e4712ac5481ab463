"""Resources an EHR posts become clinic records: the mapping read backwards, then the usual intake.

Only a record's main resource starts this (a ketamine-treatment-plan CarePlan, a
ketamine-administration MedicationAdministration, a ketamine-adverse-event AdverseEvent, a
ketamine-outcome-score Observation that is not part of a session); the resources it refers to
are read from the store. The resource keeps the id of its record. A resource that cannot become
a record stays stored as FHIR; the reason is returned as a note for the response and the console.

It runs inside the write's own transaction, the record's part in a savepoint: the resource, its
record and the link between them commit together (one commit, nothing half-done after a crash),
while a record that cannot be made undoes only its savepoint.
"""
from __future__ import annotations

from typing import Any

from service.domain.intake import Intake
from service.errors import Conflict, RequestError
from service.mapping import Mapper, MappingError
from service.store.resources import ResourceStore, StoredResource, Unit

CANONICAL = "https://ketamine-fhir.org/fhir/StructureDefinition/"
MAIN_PROFILES = {
    "CarePlan": CANONICAL + "ketamine-treatment-plan",
    "MedicationAdministration": CANONICAL + "ketamine-administration",
    "AdverseEvent": CANONICAL + "ketamine-adverse-event",
    "Observation": CANONICAL + "ketamine-outcome-score",
}


class RecordLinker:
    def __init__(self, store: ResourceStore, intake: Intake, mapper: Any) -> None:
        self.store = store
        self.intake = intake
        self._mapper = mapper  # a Mapper, or a function giving one (the specs load on first use)

    @property
    def mapper(self) -> Mapper:
        return self._mapper() if callable(self._mapper) else self._mapper  # type: ignore[no-any-return]

    def __call__(self, unit: Unit, stored: StoredResource) -> list[str]:
        content = stored.content or {}
        profile = MAIN_PROFILES.get(stored.resource_type)
        if profile is None or profile not in ((content.get("meta") or {}).get("profile") or []):
            return []
        if stored.resource_type == "Observation" and content.get("partOf"):
            return []  # a session's score: part of the administration's record
        try:
            reversed_ = self.mapper.to_record(content, resolve=lambda reference: _resolve(unit, reference))
            record = self._store(self.intake.bound(unit.session), reversed_.kind, reversed_.record)
        except (MappingError, RequestError) as exc:
            return [f"Not read into a clinic record: {getattr(exc, 'detail', exc)}"]
        unit.link_record(stored.resource_type, stored.id, record)
        return list(reversed_.notes)

    @staticmethod
    def _store(intake: Intake, kind: str, record: dict[str, Any]) -> str:
        try:
            return intake.submit(kind, record, export=False).record.id
        except Conflict as exc:  # the EHR sent a new version of a record it sent before
            current = intake.get(kind, exc.extra["existing_id"])
            return intake.replace(kind, current.id, current.version, record, export=False).record.id


def _resolve(unit: Unit, reference: str) -> dict[str, Any] | None:
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return None
    found = unit.get(parts[-2], parts[-1])
    return found.content if found and not found.deleted else None
