"""FHIR $validate over HTTP, and FHIR-style errors (OperationOutcome) under /fhir."""
from __future__ import annotations

import json

from flask.testing import FlaskClient

from service.resources import profiles_dir

OURS = "https://ketamine-fhir.org/fhir/StructureDefinition/"
SESSION = json.loads((profiles_dir() / "examples" / "MedicationAdministration-iv-session-3.json").read_text())


def post(client: FlaskClient, path: str, body: object) -> dict:
    response = client.post(path, data=json.dumps(body), content_type="application/fhir+json")
    assert response.mimetype == "application/fhir+json"
    return {"status": response.status_code, **response.get_json()}


def errors(outcome: dict) -> list[str]:
    return [i["expression"][0] for i in outcome["issue"] if i["severity"] == "error" and "expression" in i]


def test_a_valid_session_has_no_errors(client: FlaskClient) -> None:
    outcome = post(client, "/fhir/MedicationAdministration/$validate", SESSION)
    assert outcome["status"] == 200 and errors(outcome) == []


def test_an_invalid_session_is_200_with_the_errors_and_their_paths(client: FlaskClient) -> None:
    broken = {k: v for k, v in SESSION.items() if k != "context"}
    outcome = post(client, "/fhir/$validate", broken)
    assert outcome["status"] == 200 and errors(outcome) == ["MedicationAdministration.context"]
    issue = next(i for i in outcome["issue"] if i["severity"] == "error")
    assert issue["code"] == "required" and "minimum required = 1" in issue["details"]["text"]


def test_profile_from_parameters_or_query(client: FlaskClient) -> None:
    patient = {"resourceType": "Patient"}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient}, {"name": "profile", "valueCanonical": OURS + "ketamine-administration"}]}
    assert any("is for MedicationAdministration" in i["details"]["text"] for i in post(client, "/fhir/$validate", params)["issue"])
    outcome = post(client, f"/fhir/$validate?profile={OURS}ketamine-administration", patient)
    assert any("is for MedicationAdministration" in i["details"]["text"] for i in outcome["issue"])


def test_unknown_profile_is_400(client: FlaskClient) -> None:
    outcome = post(client, "/fhir/$validate?profile=https://example.org/nope", {"resourceType": "Patient"})
    assert outcome["status"] == 400 and outcome["issue"][1]["expression"] == ["profile"]


def test_parameters_without_resource_is_400(client: FlaskClient) -> None:
    outcome = post(client, "/fhir/$validate", {"resourceType": "Parameters", "parameter": []})
    assert outcome["status"] == 400


def test_unknown_fhir_path_is_a_404_operation_outcome(client: FlaskClient) -> None:
    response = client.get("/fhir/nothing/here")
    assert response.status_code == 404 and response.get_json()["resourceType"] == "OperationOutcome"


def test_wrong_method_is_405_operation_outcome(client: FlaskClient) -> None:
    response = client.get("/fhir/$validate")
    assert response.status_code == 405 and response.get_json()["issue"][0]["code"] == "not-supported"


def test_issues_of_a_raw_resource_carry_line_and_column(client: FlaskClient) -> None:
    text = '{\n  "resourceType": "Patient",\n  "birthDate": "1980-13-01"\n}'
    response = client.post("/fhir/$validate", data=text, content_type="application/fhir+json")
    issue = next(i for i in response.get_json()["issue"] if i["expression"] == ["Patient.birthDate"])
    assert issue["location"] == ["Patient.birthDate", "Line[3] Col[16]"]
    assert {"url": "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line", "valueInteger": 3} \
        in issue["extension"]
