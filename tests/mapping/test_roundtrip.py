"""Round trips: record → FHIR → record brings back what the specification promises (property-tested),
and FHIR → record → FHIR keeps every mapped element of the IG's examples."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS
from mapping.support import canonical, numbers

from service.demo import demo_records
from service.mapping import Mapper, map_record, read_fhir
from service.mapping.coverage import carried
from service.resources import profiles_dir

KINDS = list(RECORDS)


def round_trip(mapper: Mapper, kind: str, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what came back, what the specification says comes back), both in canonical form."""
    record = canonical(kind, record)
    mapped = map_record(kind, record, mapper)  # raises if the Bundle breaks a profile
    back = read_fhir(mapped.bundle, mapper=mapper)
    assert back.kind == kind
    return canonical(kind, back.record), canonical(kind, carried(mapper.specs[kind], record))


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_records_come_back_unchanged(mapper: Mapper, kind: str, data: st.DataObject) -> None:
    record = data.draw(RECORDS[kind]())
    back, promised = round_trip(mapper, kind, record)
    assert back == promised


@pytest.mark.parametrize("kind,record", demo_records(), ids=lambda x: x if isinstance(x, str) else x["external_id"])
def test_demo_records_come_back_unchanged(mapper: Mapper, kind: str, record: dict[str, Any]) -> None:
    back, promised = round_trip(mapper, kind, record)
    assert back == promised


def test_carried_drops_only_what_the_specification_declares(mapper: Mapper) -> None:
    """The yardstick is honest: for the demo data it differs from the record only in unmapped fields."""
    for kind, record in demo_records():
        record = canonical(kind, record)
        kept = carried(mapper.specs[kind], record)
        dropped = {k for k in record if k not in kept}
        declared = {u.field.split(".")[0] for u in mapper.specs[kind].unmapped} | {"screening", "seriousness_criteria"}
        assert dropped <= declared, (kind, dropped)


# --- FHIR → record → FHIR over the IG's examples --------------------------------------------

def _examples() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((profiles_dir() / "examples").glob("*.json")):
        if path.name != "manifest.json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            out[f"{doc['resourceType']}/{doc['id']}"] = doc
    return out


EXAMPLES = _examples()


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["reference"]} if isinstance(node.get("reference"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _is_main(doc: dict[str, Any]) -> bool:
    kind = doc["resourceType"]
    return kind in ("CarePlan", "MedicationAdministration", "AdverseEvent") or (
        kind == "Observation" and "ketamine-outcome-score" in json.dumps(doc.get("meta")) and not doc.get("partOf"))


MAINS = [key for key, doc in EXAMPLES.items() if _is_main(doc)]


def ehr_bundle(key: str) -> dict[str, Any]:
    """What an EHR would send for one record: the main resource and the examples that point at it or at
    what it points at (session Observations, safety flags on the order), as a collection Bundle."""
    near = {key} | {r for r in _refs(EXAMPLES[key]) if not r.startswith(("Patient/", "Practitioner/"))}
    members = [EXAMPLES[key]] + [doc for k, doc in EXAMPLES.items()
                                 if k != key and k not in MAINS and _refs(doc) & near]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in members]}


def projection(mapper: Mapper, payload: dict[str, Any]) -> dict[str, list[str]]:
    """Per role, the value each reversible rule reads (concepts as the local code they mean)."""
    kind, by_role = mapper.assign(payload, resolve=EXAMPLES.get)
    spec = mapper.specs[kind]
    links = mapper.reverse_links(payload, EXAMPLES.get)
    out: dict[str, list[str]] = {}
    for role in spec.roles:
        values = []
        for resource in by_role.get(role.role, []):
            row = {}
            for rule in role.rules:
                if not rule.reversible:
                    continue
                found = mapper.found(role, rule, resource)
                if found is not None:
                    row[rule.to] = numbers(mapper.read_value(rule, found, links))
            if row:  # a resource with nothing mapped (a flag without evidence) reads as nothing
                values.append(json.dumps(row, sort_keys=True))
        out[role.role] = sorted(values)
    return out


def test_every_example_main_resource_is_tried() -> None:
    assert len(MAINS) >= 8
    assert {EXAMPLES[k]["resourceType"] for k in MAINS} == {"CarePlan", "MedicationAdministration", "AdverseEvent",
                                                            "Observation"}


@pytest.mark.parametrize("key", MAINS)
def test_examples_keep_every_mapped_element_through_a_record(mapper: Mapper, key: str) -> None:
    sent = ehr_bundle(key)
    reversed_ = read_fhir(sent, resolve=EXAMPLES.get, mapper=mapper)
    record = canonical(reversed_.kind, reversed_.record)   # the record passes the contract
    again = map_record(reversed_.kind, record, mapper)     # and maps to a Bundle that conforms
    assert projection(mapper, again.bundle) == projection(mapper, sent)


def test_examples_name_their_records_by_resource_id(mapper: Mapper) -> None:
    back = read_fhir(ehr_bundle("MedicationAdministration/iv-session-1"), resolve=EXAMPLES.get, mapper=mapper)
    assert (back.record["source"], back.record["external_id"]) == ("fhir", "iv-session-1")
    assert back.record["plan_external_id"] == "iv-induction-alpha"
    assert back.record["medication"] == "ketamine"  # RxNorm 238084 is a narrower ketamine product

