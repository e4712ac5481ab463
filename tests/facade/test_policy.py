"""The facade's profile policy: ordinary R4 resources under their base, ketamine ones and claimants under ours."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.facade.policy import is_ketamine

FHIR = "application/fhir+json"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PATIENT = {"resourceType": "Patient", "id": "pat-1", "name": [{"family": "Okafor"}]}
#: SNOMED CT 38341003 Hypertensive disorder, systemic arterial: /work/shared/reference/terminology.md (VSAC
#: "Finding of Elevated Blood Pressure or Hypertension", 2.16.840.1.113762.1.4.1047.514)
HYPERTENSION = {"system": "http://snomed.info/sct", "code": "38341003",
                "display": "Hypertensive disorder, systemic arterial (disorder)"}
#: RxNorm 312941 sertraline 50 MG Oral Tablet: VSAC "Antidepressant Medication" 2.16.840.1.113883.3.464.1003.196.12.1213
#: (eCQM Update 2021-05-06), as listed in canvas-medical/canvas-plugins canvas_sdk/value_set/v2022/medication.py
SERTRALINE = {"system": RXNORM, "code": "312941", "display": "sertraline 50 MG Oral Tablet"}
#: RxNorm 104894 ondansetron 4 MG Disintegrating Oral Tablet: NDC→RxNorm crosswalk of NDC 68462-158-13
#: (https://ndclist.com/ndc/68462-158/package/68462-158-13, a mirror of RxNorm, as terminology.md uses)
ONDANSETRON = {"system": RXNORM, "code": "104894", "display": "ondansetron 4 MG Disintegrating Oral Tablet"}
#: RxNorm 2201623 esketamine Nasal Spray: terminology.md, and our medications value set
ESKETAMINE = {"system": RXNORM, "code": "2201623", "display": "esketamine Nasal Spray"}


def put(client: FlaskClient, resource: dict[str, Any]) -> Any:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", data=json.dumps(resource),
                      content_type=FHIR, headers={"Prefer": "return=OperationOutcome"})


def hypertension() -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "htn-1", "subject": {"reference": "Patient/pat-1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [HYPERTENSION]}, "recordedDate": "2026-03-02"}


def sertraline_order() -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": "ssri-1", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [SERTRALINE]}, "subject": {"reference": "Patient/pat-1"},
            "authoredOn": "2026-03-02", "dosageInstruction": [{"text": "50 mg by mouth once daily"}]}


def ondansetron_given() -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "id": "ond-1", "status": "completed",
            "medicationCodeableConcept": {"coding": [ONDANSETRON]}, "subject": {"reference": "Patient/pat-1"},
            "effectiveDateTime": "2026-03-02T10:40:00+01:00",
            "dosage": {"route": {"text": "oral"}, "dose": {"value": 4, "unit": "mg",
                                                           "system": "http://unitsofmeasure.org", "code": "mg"}}}


@pytest.fixture
def patient(client: FlaskClient) -> None:
    assert put(client, PATIENT).status_code == 201


@pytest.mark.parametrize("make", [hypertension, sertraline_order, ondansetron_given],
                         ids=["hypertension-condition", "sertraline-request", "ondansetron-administration"])
def test_an_ordinary_r4_resource_is_accepted_under_its_base(client: FlaskClient, patient: None, make: Any) -> None:
    resource = make()
    answer = put(client, resource)
    assert answer.status_code == 201, answer.json
    notes = [i["details"]["text"] for i in answer.json["issue"] if i["severity"] == "information"]
    assert any(f"Held to the R4 base {resource['resourceType']}" in n for n in notes), notes
    assert client.get(f"/fhir/{resource['resourceType']}/{resource['id']}").json["id"] == resource["id"]


def test_an_ordinary_resource_must_still_be_valid_r4(client: FlaskClient, patient: None) -> None:
    broken = {**ondansetron_given(), "status": "given"}  # not a MedicationAdministration status
    answer = put(client, broken)
    assert answer.status_code == 422
    assert any(i.get("expression") == ["MedicationAdministration.status"] for i in answer.json["issue"])


def test_a_ketamine_administration_without_meta_profile_is_held_to_ours(client: FlaskClient, patient: None) -> None:
    resource = {**ondansetron_given(), "id": "esk-1", "medicationCodeableConcept": {"coding": [ESKETAMINE]}}
    assert is_ketamine(resource)
    answer = put(client, resource)
    assert answer.status_code == 422  # our administration profile wants the session number, the encounter, …
    assert "ketamine-administration" in json.dumps(answer.json)


def test_a_contained_ketamine_medication_counts_too() -> None:
    resource = {**ondansetron_given(), "contained": [{"resourceType": "Medication", "id": "m",
                                                     "code": {"coding": [ESKETAMINE]}}]}
    del resource["medicationCodeableConcept"]
    assert not is_ketamine(resource)
    assert is_ketamine({**resource, "medicationReference": {"reference": "#m"}})


def test_a_resource_claiming_our_profile_is_held_to_it(client: FlaskClient, patient: None) -> None:
    claimant = {**hypertension(), "meta": {"profile": [
        "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-indication"]}}
    answer = put(client, claimant)
    assert answer.status_code == 422, answer.json  # hypertension is not in our indications value set
    assert "ketamine-indication" in json.dumps(answer.json)


def test_a_profile_we_do_not_know_is_not_a_reason_to_refuse(client: FlaskClient, patient: None) -> None:
    us_core = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns"
    answer = put(client, {**hypertension(), "meta": {"profile": [us_core]}})
    assert answer.status_code == 201, answer.json
    assert any(us_core in i["details"]["text"] for i in answer.json["issue"])
