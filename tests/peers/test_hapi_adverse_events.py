"""Adverse events as R4 reads them reach the HAPI FHIR peer: every seriousness criterion, non-serious events
and each causality (an unrelated one with no suspect entity) validate in our validator, are accepted by HAPI
with our IG installed, and read back from HAPI into the record that was sent."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from peers.hapi_server import HapiServer
from peers.test_hapi_server import bundle_statuses, golden_record

from service.domain import vocabulary as v
from service.mapping import map_record, read_fhir

FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def fhir(hapi_server: HapiServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
        yield session


@pytest.fixture(scope="module")
def session_source(hapi_server: HapiServer, fhir: requests.Session) -> str:
    """A plan and its session on the peer (referential integrity: what an adverse event points at exists)."""
    source = f"ae-peer-{uuid.uuid4()}"
    plan = golden_record("treatment-plan", external_id="plan-7", source=source)
    session = golden_record("administration", source=source, patient=plan["patient"])
    for kind, record in (("treatment-plan", plan), ("administration", session)):
        statuses = bundle_statuses(fhir.post(hapi_server.base_url, json=map_record(kind, record).bundle))
        assert all(s.startswith(("200", "201")) for s in statuses), statuses
    return source


def adverse_event(source: str, **fields: Any) -> dict[str, Any]:
    session = golden_record("administration")
    record = golden_record("adverse-event", source=source, patient=golden_record("treatment-plan")["patient"],
                           administration_external_id=session["external_id"], external_id=f"ae-{uuid.uuid4()}")
    if "severity" in fields and "ctcae_grade" not in fields:
        record.pop("ctcae_grade", None)  # the golden event's grade 3 is severe (ket-21): another severity drops it
    record.update(fields)
    return {k: val for k, val in record.items() if val is not None}


def push_and_read_back(server: HapiServer, fhir: requests.Session, record: dict[str, Any]) -> dict[str, Any]:
    mapped = map_record("adverse-event", record)  # our validator: raises on any error
    response = fhir.post(server.base_url, json=mapped.bundle)
    statuses = bundle_statuses(response)
    assert statuses[0].startswith("201"), (statuses, response.text[:3000])
    event = mapped.bundle["entry"][0]["resource"]
    stored = fhir.get(f"{server.base_url}/AdverseEvent/{event['id']}").json()
    assert stored["resourceType"] == "AdverseEvent", stored

    def resolve(reference: dict[str, Any] | str) -> dict[str, Any] | None:
        text = reference if isinstance(reference, str) else reference.get("reference")
        found = fhir.get(f"{server.base_url}/{text}")
        return found.json() if found.status_code == 200 else None

    back = read_fhir(stored, resolve=resolve)
    assert back.kind == "adverse-event"
    return back.record


def same(sent: dict[str, Any], back: dict[str, Any]) -> None:
    for name, value in sent.items():
        if name in ("patient", "recorded_by"):
            continue  # people are matched by identifier; their resources are checked in the patient tests
        assert back.get(name) == value, (name, back.get(name), value)


@pytest.mark.parametrize("criterion", v.SERIOUSNESS)
def test_a_serious_event_with_each_criterion_reaches_the_ehr(hapi_server: HapiServer, fhir: requests.Session,
                                                              session_source: str, criterion: str) -> None:
    record = adverse_event(session_source, serious=True, seriousness_criteria=[criterion])
    back = push_and_read_back(hapi_server, fhir, record)
    same(record, back)


def test_every_criterion_at_once_and_a_non_serious_event(hapi_server: HapiServer, fhir: requests.Session,
                                                         session_source: str) -> None:
    every = adverse_event(session_source, serious=True, seriousness_criteria=list(v.SERIOUSNESS))
    same(every, push_and_read_back(hapi_server, fhir, every))
    mild = adverse_event(session_source, serious=False, seriousness_criteria=None, severity="mild", outcome="ongoing")
    same(mild, push_and_read_back(hapi_server, fhir, mild))


@pytest.mark.parametrize("causality", v.CAUSALITY)
def test_each_causality_reaches_the_ehr_and_unrelated_suspects_nothing(
        hapi_server: HapiServer, fhir: requests.Session, session_source: str, causality: str) -> None:
    record = adverse_event(session_source, causality=causality)
    mapped = map_record("adverse-event", record)
    event = mapped.bundle["entry"][0]["resource"]
    assert ("suspectEntity" in event) is (causality != "unrelated")
    assert event["encounter"]["identifier"]["value"].endswith("#encounter")
    same(record, push_and_read_back(hapi_server, fhir, record))


@pytest.mark.parametrize("field,values", [("term", v.AE_TERMS), ("severity", v.SEVERITY), ("outcome", v.AE_OUTCOMES),
                                          ("action_taken", v.AE_ACTIONS)])
def test_every_enumeration_value_reaches_the_ehr(hapi_server: HapiServer, fhir: requests.Session,
                                                 session_source: str, field: str, values: tuple[str, ...]) -> None:
    for value in values:
        record = adverse_event(session_source, **{field: value})
        same(record, push_and_read_back(hapi_server, fhir, record))


@pytest.mark.parametrize("grade", [1, 2, 3, 4, 5])
def test_each_ctcae_grade_reaches_the_ehr(hapi_server: HapiServer, fhir: requests.Session, session_source: str,
                                          grade: int) -> None:
    """Each CTCAE grade (v5.0: 1 mild, 2 moderate, 3 severe, 4 life-threatening, 5 death; clinical.md §7) with the
    severity, seriousness and outcome it implies is accepted by HAPI and read back with its grade."""
    severity = {1: "mild", 2: "moderate"}.get(grade, "severe")
    serious = {4: ["life-threatening"], 5: ["death"]}.get(grade)
    record = adverse_event(session_source, ctcae_grade=grade, severity=severity, serious=serious is not None,
                           seriousness_criteria=serious, outcome="fatal" if grade == 5 else "resolved")
    same(record, push_and_read_back(hapi_server, fhir, record))
