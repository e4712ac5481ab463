"""Search features real clients send, through raw HTTP (the fhirpy client's view: tests/facade/test_fhirpy.py)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

FHIR = "application/fhir+json"


def put(client: FlaskClient, resource: dict[str, Any]) -> None:
    answer = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", data=json.dumps(resource),
                        content_type=FHIR)
    assert answer.status_code in (200, 201), answer.json


def ids(client: FlaskClient, path: str, **query: str) -> list[str]:
    answer = client.get(path, query_string=query)
    assert answer.status_code == 200, answer.json
    return sorted(e["resource"]["id"] for e in answer.json.get("entry", []) if e["search"]["mode"] == "match")


@pytest.fixture
def people(client: FlaskClient) -> None:
    put(client, {"resourceType": "Patient", "id": "ana", "name": [{"family": "Ñúñez", "given": ["Ana"]}],
                 "identifier": [{"system": "https://clinic.example/mrn", "value": "MRN-1"}]})
    put(client, {"resourceType": "Patient", "id": "bo", "name": [{"family": "Nunez", "given": ["Bo"]}],
                 "identifier": [{"system": "https://clinic.example/mrn", "value": "MRN-2"}]})
    put(client, {"resourceType": "Patient", "id": "cy", "name": [{"family": "Abernunez"}]})


@pytest.mark.both_backends
def test_string_modifiers(client: FlaskClient, people: None) -> None:
    assert ids(client, "/fhir/Patient", family="nunez") == ["ana", "bo"]          # prefix, case and accents folded
    assert ids(client, "/fhir/Patient", **{"family:exact": "Ñúñez"}) == ["ana"]    # as written
    assert ids(client, "/fhir/Patient", **{"family:exact": "nunez"}) == []
    assert ids(client, "/fhir/Patient", **{"family:contains": "NUNE"}) == ["ana", "bo", "cy"]


@pytest.fixture
def charts(client: FlaskClient, people: None) -> None:
    """Ana has two observations (one with a category), Bo one; a condition of Ana's."""
    for oid, who, category in (("o1", "ana", "vital-signs"), ("o2", "ana", None), ("o3", "bo", None)):
        observation = {"resourceType": "Observation", "id": oid, "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                       "subject": {"reference": f"Patient/{who}"}, "effectiveDateTime": "2026-03-02T10:00:00Z",
                       "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">HR</div>"}}
        if category:
            observation["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                              "observation-category", "code": category}]}]
        put(client, observation)


@pytest.mark.both_backends
def test_chained_search_by_identifier_and_name(client: FlaskClient, charts: None) -> None:
    assert ids(client, "/fhir/Observation", **{"subject:Patient.identifier": "https://clinic.example/mrn|MRN-1"}) \
        == ["o1", "o2"]
    assert ids(client, "/fhir/Observation", **{"patient.identifier": "MRN-2"}) == ["o3"]
    assert ids(client, "/fhir/Observation", **{"subject.name": "bo"}) == ["o3"]
    assert ids(client, "/fhir/Observation", **{"patient.name": "nunez"}) == ["o1", "o2", "o3"]
    assert ids(client, "/fhir/Observation", **{"patient.name:exact": "Nunez"}) == ["o3"]
    assert client.get("/fhir/Observation", query_string={"subject:Patient.shoe": "x"}).status_code == 400
    assert client.get("/fhir/Observation", query_string={"subject.name.family": "x"}).status_code == 400


@pytest.mark.both_backends
def test_reverse_chain_has(client: FlaskClient, charts: None) -> None:
    assert ids(client, "/fhir/Patient", **{"_has:Observation:patient:category": "vital-signs"}) == ["ana"]
    assert ids(client, "/fhir/Patient", **{"_has:Observation:subject:code": "http://loinc.org|8867-4"}) \
        == ["ana", "bo"]
    assert ids(client, "/fhir/Patient", **{"_has:Observation:patient:_id": "o3"}) == ["bo"]
    assert client.get("/fhir/Patient", query_string={"_has:Banana:patient:code": "x"}).status_code == 400


def test_missing(client: FlaskClient, charts: None) -> None:
    assert ids(client, "/fhir/Observation", **{"category:missing": "true"}) == ["o2", "o3"]
    assert ids(client, "/fhir/Observation", **{"category:missing": "false"}) == ["o1"]
    assert ids(client, "/fhir/Patient", **{"identifier:missing": "true"}) == ["cy"]
    assert client.get("/fhir/Patient", query_string={"identifier:missing": "maybe"}).status_code == 400


def test_revinclude(client: FlaskClient, charts: None) -> None:
    bundle = client.get("/fhir/Patient", query_string={"_id": "ana", "_revinclude": "Observation:subject"}).json
    modes = sorted((e["search"]["mode"], e["resource"]["id"]) for e in bundle["entry"])
    assert modes == [("include", "o1"), ("include", "o2"), ("match", "ana")]
    assert bundle["total"] == 1
    assert client.get("/fhir/Patient", query_string={"_revinclude": "Observation:code"}).status_code == 400


def test_total_summary_and_elements(client: FlaskClient, charts: None) -> None:
    none = client.get("/fhir/Observation", query_string={"_total": "none"}).json
    assert "total" not in none and len(none["entry"]) == 3
    assert client.get("/fhir/Observation", query_string={"_total": "estimate"}).json["total"] == 3
    assert client.get("/fhir/Observation", query_string={"_total": "sometimes"}).status_code == 400
    count = client.get("/fhir/Observation", query_string={"_summary": "count", "patient": "ana"}).json
    assert count["total"] == 2 and not count.get("entry")
    summary = client.get("/fhir/Observation", query_string={"_summary": "true", "_id": "o1"}).json["entry"][0]
    assert "text" not in summary["resource"] and summary["resource"]["effectiveDateTime"]  # isSummary: effective[x]
    assert {"code": "SUBSETTED"}.items() <= summary["resource"]["meta"]["tag"][-1].items()
    data = client.get("/fhir/Observation", query_string={"_summary": "data", "_id": "o1"}).json["entry"][0]
    assert "text" not in data["resource"] and data["resource"]["category"]
    text = client.get("/fhir/Observation", query_string={"_summary": "text", "_id": "o1"}).json["entry"][0]
    assert set(text["resource"]) == {"resourceType", "id", "meta", "text", "status", "code"}  # + mandatory
    elements = client.get("/fhir/Observation", query_string={"_elements": "subject", "_id": "o1"}).json
    assert set(elements["entry"][0]["resource"]) == {"resourceType", "id", "meta", "subject", "status", "code"}
    whole = client.get("/fhir/Observation", query_string={"_summary": "false", "_id": "o1"}).json["entry"][0]
    assert "text" in whole["resource"] and "tag" not in whole["resource"]["meta"]
    assert client.get("/fhir/Observation", query_string={"_summary": "brief"}).status_code == 400
    assert client.get("/fhir/Observation", query_string={"_elements": "a b"}).status_code == 400


@pytest.mark.parametrize("value", ["abc/_history/1", "/abc", "Patient//_history/2", "/_history/1"])
@pytest.mark.parametrize("name", ["patient", "subject"])
def test_a_reference_value_without_type_or_id_is_a_400_with_the_parameter(client: FlaskClient, name: str,
                                                                         value: str) -> None:
    answer = client.get("/fhir/Observation", query_string={name: value})
    assert answer.status_code == 400, answer.json
    assert "Type/id" in json.dumps(answer.json), answer.json
    assert f"{name}=" in json.dumps(answer.json)


def test_a_versioned_reference_value_searches_by_type_and_id(client: FlaskClient, people: None) -> None:
    put(client, {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                 "subject": {"reference": "Patient/ana"}})
    assert ids(client, "/fhir/Observation", patient="Patient/ana/_history/2") == ["o1"]
