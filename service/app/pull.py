"""Pull: a patient's ketamine resources from an EHR, read into this service through the FHIR facade's path
(validation against our profiles, then the reverse mapping into clinic records).

Only resources that claim one of our profiles are taken, with the Patient and Practitioners they refer
to. People are matched by identifier (the EHR's ids for them are its own): a person we already hold
keeps our id and takes the changes the EHR made to it under the newest-wins rule of the records
(service/app/people.from_ehr: the EHR's change ranks at its time there), a new one is created conditionally,
and every reference is rewritten accordingly.
Resources we hold with the same content are left alone, so pulling twice changes nothing.
"""
from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from service.app.people import from_ehr
from service.app.runtime import Runtime
from service.conformance.profiles import STRUCTURES
from service.exchange.client import FhirClient, FhirError
from service.facade.server import FhirServer
from service.fhirjson import references, rewrite_references
from service.mapping import main_profiles
from service.store.resources import ResourceStore

PEOPLE = ("Patient", "Practitioner")
#: The types a patient's ketamine records are made of (all searchable by `subject`), in the order they are
#: stored: what a record's main resource refers to comes first.
TYPES = ("Condition", "Goal", "MedicationRequest", "MedicationStatement", "Procedure", "Encounter", "Observation",
         "CarePlan", "MedicationAdministration", "AdverseEvent")
#: What a reference may lead to and is read along (not, say, an Organization graph without end): a plan's or
#: session's safety flags (DetectedIssue, which R4 searches by `patient`, not `subject`) too.
FOLLOWED = {*TYPES, *PEOPLE, "DetectedIssue"}
MAX_RESOURCES = 2000


@dataclass
class PullReport:
    patients: int = 0
    fetched: int = 0
    written: int = 0
    unchanged: int = 0
    records: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_identifier(text: str) -> str:
    """`system|value` or a bare `value`, as FHIR token search takes it (a `|` inside one escaped as `\\|`)."""
    if not text.strip() or len(re.split(r"(?<!\\)\|", text)) > 2:
        raise ValueError(f"{text!r}: expected SYSTEM|VALUE or VALUE")
    return text.strip()


def pull(client: FhirClient, runtime: Runtime, identifier: str) -> PullReport:
    """Read the ketamine resources of the patient(s) with `identifier` on the EHR into our store."""
    report = PullReport()
    for patient in client.search("Patient", {"identifier": parse_identifier(identifier)}):
        report.patients += 1
        fetched = _fetch(client, patient)
        report.fetched += len(fetched)
        _import(client, runtime.fhir, runtime.resources, fetched, report)
    return report


def _fetch(client: FhirClient, patient: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The patient's resources with our profiles, what is part of them, and everything they refer to (an
    Encounter, the people), keyed Type/id."""
    found = {f"Patient/{patient['id']}": patient}
    others: dict[str, dict[str, Any]] = {}
    for resource_type in TYPES:
        for resource in client.search(resource_type, {"subject": f"Patient/{patient['id']}", "_count": "100"}):
            ours = any(p.startswith(STRUCTURES) for p in (resource.get("meta") or {}).get("profile") or [])
            (found if ours else others)[f"{resource_type}/{resource['id']}"] = resource
    # and what is part of ours without a profile of ours (a session's body weight: core bodyweight profile)
    found |= {key: r for key, r in others.items() if any(ref in found for _, ref in references(r.get("partOf")))}
    pending = [ref for resource in found.values() for _, ref in references(resource)]
    while pending and len(found) < MAX_RESOURCES:
        reference = pending.pop()
        kind, _, rid = reference.partition("/")
        if reference in found or not rid or "/" in rid or kind not in FOLLOWED:
            continue  # contained (#x), absolute or versioned references are not followed
        try:
            found[reference] = client.read(kind, rid)
        except FhirError as exc:
            if exc.status not in (404, 410):
                raise
            continue  # the import reports what stays unresolved
        pending += [ref for _, ref in references(found[reference])]
    return found


def _import(client: FhirClient, fhir: FhirServer, store: ResourceStore, fetched: dict[str, dict[str, Any]],
            report: PullReport) -> None:
    names: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for key, person in fetched.items():
        if key.split("/")[0] in PEOPLE:
            local = _local_person(fhir, person)
            names[key] = local or f"urn:uuid:{uuid.uuid4()}"
            if local is None:
                entries.append(_conditional_create(person, names[key]))
                continue
            with store.unit() as unit:  # a person we hold takes the changes the EHR made to it that win
                held = unit.get(*local.split("/"))
                updated = from_ehr(unit.session, held.content, person) if held and held.content else None
            if updated is not None:  # meta.source: the EHR's version it came from (what ranks it later)
                content = _clean(updated)
                source = f"{client.base_url}/{key}/_history/{(person.get('meta') or {}).get('versionId', '')}"
                content["meta"] = {**(content.get("meta") or {}), "source": source.removesuffix("/_history/")}
                entries.append({"fullUrl": local, "resource": content, "request": {"method": "PUT", "url": local}})
    for key, resource in sorted(fetched.items(), key=lambda kv: _rank(kv[1])):
        if key.split("/")[0] in PEOPLE:
            continue
        content = rewrite_references(_clean(resource), names)
        with store.unit() as unit:
            current = unit.get(resource["resourceType"], resource["id"])
        if current is not None and not current.deleted and _clean(current.content or {}) == content:
            report.unchanged += 1
            continue
        entries.append({"fullUrl": key, "resource": content, "request": {"method": "PUT", "url": key}})
    if entries:
        fhir.bundle({"resourceType": "Bundle", "type": "transaction", "entry": entries}, "")
        report.written += len(entries)
    with store.unit() as unit:
        for key, resource in fetched.items():
            stored = unit.get(*key.split("/")) if resource["resourceType"] in main_profiles() else None
            if stored is not None and stored.record_id and stored.record_id not in report.records:
                report.records.append(stored.record_id)


def _local_person(fhir: FhirServer, person: dict[str, Any]) -> str | None:
    """Our Type/id for the person with the same identifier, if we hold one."""
    token = _identifier(person)
    if token is None:
        return None
    found = fhir.search(person["resourceType"], [("identifier", token)], "")
    matches = [e["resource"] for e in found.get("entry") or [] if (e.get("search") or {}).get("mode") == "match"]
    return f"{person['resourceType']}/{matches[0]['id']}" if matches else None


def _conditional_create(person: dict[str, Any], full_url: str) -> dict[str, Any]:
    content = {k: v for k, v in _clean(person).items() if k != "id"}
    token = _identifier(person)
    request = {"method": "POST", "url": person["resourceType"]}
    if token is not None:
        request["ifNoneExist"] = f"identifier={token}"
    return {"fullUrl": full_url, "resource": content, "request": request}


def _identifier(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or []:
        if identifier.get("system") and identifier.get("value"):
            return f"{identifier['system']}|{identifier['value']}"
    return None


def _rank(resource: dict[str, Any]) -> int:
    """Supporting resources first, then main ones; a session's scores before a standalone score."""
    main = _main(resource)
    return (TYPES.index(resource["resourceType"]) if resource["resourceType"] in TYPES else 0) + (100 if main else 0)


def _main(resource: dict[str, Any]) -> bool:
    """A record's main resource (what the facade reads into a record), not a session's score."""
    profile = main_profiles().get(resource["resourceType"])
    return profile in ((resource.get("meta") or {}).get("profile") or []) and not resource.get("partOf")


def _clean(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without what the server added: version, last update, source, narrative it generated."""
    out = copy.deepcopy(resource)
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated", "source")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out
