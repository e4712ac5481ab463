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
from service.facade.query import parse
from service.mapping import Mapper, MappingError
from service.store.resources import StoredResource, Unit

CANONICAL = "https://ketamine-fhir.org/fhir/StructureDefinition/"
MAIN_PROFILES = {
    "CarePlan": CANONICAL + "ketamine-treatment-plan",
    "MedicationAdministration": CANONICAL + "ketamine-administration",
    "AdverseEvent": CANONICAL + "ketamine-adverse-event",
    "Observation": CANONICAL + "ketamine-outcome-score",
}


#: more readings than a session can have (vital signs every few minutes of a long infusion, scores)
MAX_READINGS = 500


class RecordLinker:
    def __init__(self, intake: Intake, mapper: Any) -> None:
        self.intake = intake
        self._mapper = mapper  # a Mapper, or a function giving one (the specs load on first use)

    @property
    def mapper(self) -> Mapper:
        return self._mapper() if callable(self._mapper) else self._mapper  # type: ignore[no-any-return]

    def __call__(self, unit: Unit, stored: StoredResource) -> list[str]:
        main = self._main(unit, stored)
        key = f"{main.resource_type}/{main.id}" if main is not None else ""
        if main is None or key in unit.linked:
            return []
        unit.linked.add(key)  # a transaction's readings of one session make its record once
        try:
            reversed_ = self.mapper.to_record(_payload(unit, main),
                                              resolve=lambda reference: _resolve(unit, reference))
            record = self._store(self.intake.bound(unit.session), reversed_.kind, reversed_.record)
        except (MappingError, RequestError) as exc:
            return [f"Not read into a clinic record: {getattr(exc, 'detail', exc)}"]
        unit.link_record(main.resource_type, main.id, record)
        return list(reversed_.notes)

    @staticmethod
    def _main(unit: Unit, stored: StoredResource) -> StoredResource | None:
        """The record's main resource this write belongs to: itself, or, for a session's vital sign or
        score (an Observation partOf the session), the session's MedicationAdministration, whose record
        is read again with the new reading."""
        content = stored.content or {}
        if stored.resource_type == "Observation" and content.get("partOf"):
            for part_of in content["partOf"]:
                reference = str((part_of or {}).get("reference", "")).split("/_history/")[0]
                kind, _, rid = reference.rpartition("/")
                if kind.endswith("MedicationAdministration") and rid:
                    session = unit.get("MedicationAdministration", rid)
                    if session is not None and not session.deleted and _is_main(session):
                        return session
            return None
        return stored if _is_main(stored) else None

    @staticmethod
    def _store(intake: Intake, kind: str, record: dict[str, Any]) -> str:
        try:
            return intake.submit(kind, record, export=False).record.id
        except Conflict as exc:  # the EHR sent a new version of a record it sent before
            current = intake.get(kind, exc.extra["existing_id"])
            return intake.replace(kind, current.id, current.version, record, export=False).record.id


def _is_main(stored: StoredResource) -> bool:
    profile = MAIN_PROFILES.get(stored.resource_type)
    return profile is not None and profile in (((stored.content or {}).get("meta") or {}).get("profile") or [])


def _payload(unit: Unit, main: StoredResource) -> dict[str, Any]:
    """What the record is read from: the main resource, and for a session the readings that are partOf it
    (they refer to it, not it to them, so resolving references from it would never find them)."""
    content = main.content or {}
    if main.resource_type != "MedicationAdministration":
        return content
    query = parse("Observation", [("part-of", f"MedicationAdministration/{main.id}")])
    query.count, query.total = MAX_READINGS, False
    readings, _ = unit.search(query)
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": content}, *({"resource": r.content} for r in readings if r.content)]}


def _resolve(unit: Unit, reference: str) -> dict[str, Any] | None:
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return None
    found = unit.get(parts[-2], parts[-1])
    return found.content if found and not found.deleted else None
