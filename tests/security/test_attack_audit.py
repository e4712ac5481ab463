"""Audit gaps and low items (issue 20, items 7 and 9): every read of a patient's data is found by the patient
filter, a batch's event keeps its refused entries and names the patient, API answers are never cached or sniffed,
and a CR/LF in the sign-in `next` is no 500."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from admin.support import PASSWORD, USER, sign_in
from flask import Flask
from flask.testing import FlaskClient

from service.admin.accounts import Accounts
from service.security.audit import AuditQuery

FHIR = "application/fhir+json"
MRN = ("urn:oid:2.16.840.1.113883.19.5", "MRN-7777")
LOINC = "http://loinc.org"


def a_patient_and_an_observation(client: FlaskClient) -> tuple[str, str]:
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": MRN[0], "value": MRN[1]}]}, content_type=FHIR)
    assert patient.status_code == 201, patient.json
    observation = client.post("/fhir/Observation", json=observation_of(patient.json["id"]), content_type=FHIR)
    assert observation.status_code == 201, observation.json
    return patient.json["id"], observation.json["id"]


def observation_of(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient_id}"},
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]}}


def events_of_the_patient(app: Flask) -> list[dict[str, Any]]:
    audit = app.extensions["kfhir_security"].audit
    found, _ = audit.search(AuditQuery(patient_hash=audit.patient_hash(*MRN), count=100))
    return found


def test_reads_of_a_patients_other_resources_carry_the_patients_identifier_hash(client: FlaskClient,
                                                                                app: Flask) -> None:
    patient_id, observation_id = a_patient_and_an_observation(client)
    before = len(events_of_the_patient(app))

    assert client.get(f"/fhir/Observation/{observation_id}").status_code == 200
    assert client.get("/fhir/Observation", query_string={"subject": f"Patient/{patient_id}"}).status_code == 200

    found = events_of_the_patient(app)
    assert len(found) == before + 2
    assert {e["subtype"][0]["code"] for e in found[-2:]} == {"read", "search-type"}


def test_a_batch_event_keeps_refused_entries_and_names_the_patient(client: FlaskClient, app: Flask,
                                                                   api_key: Callable[..., str]) -> None:
    patient_id, _ = a_patient_and_an_observation(client)
    observations_only = api_key("system/Observation.c")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation_of(patient_id), "request": {"method": "POST", "url": "Observation"}}]}

    answer = client.post("/fhir", json=batch, content_type=FHIR,
                         headers={"Authorization": f"Bearer {observations_only}"})

    assert answer.status_code == 200
    assert answer.json["entry"][0]["response"]["status"].startswith("403")
    event = events_of_the_patient(app)[-1]
    assert event["subtype"][0]["code"] == "batch"
    shown = [e.get("what", {}).get("display") or e.get("what", {}).get("reference", "") for e in event["entity"]]
    assert "Patient" in shown and any(s.startswith("Observation/") for s in shown)


def test_api_answers_are_never_cached_or_sniffed(client: FlaskClient, anonymous_client: FlaskClient) -> None:
    for answer in (client.get("/fhir/Patient"), anonymous_client.get("/api/v1/administrations"),
                   client.get("/fhir/metadata")):
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_line_break_in_the_sign_in_next_is_ignored_not_a_500(client: FlaskClient, app: Flask) -> None:
    Accounts(app.extensions["kfhir"].engine).create(USER, PASSWORD)
    target = "/admin/\r\nSet-Cookie: stolen=1"

    assert client.get("/admin/sign-in", query_string={"next": target}).status_code == 200
    signed_in = sign_in(client, next=target)

    assert signed_in.status_code == 302
    assert "\n" not in signed_in.headers["Location"] and "stolen" not in signed_in.headers["Location"]


def test_links_and_the_audit_use_the_configured_base_url_not_the_host_header(database_url: str) -> None:
    from service import create_app
    from service.config import Settings

    app = create_app(Settings.load({"database_url": database_url, "base_url": "https://kfhir.example.org"},
                                   environ={}))
    try:
        answer = app.test_client().get("/fhir/Patient", headers={"Host": "evil.example"})
        assert answer.status_code == 200
        assert all(link["url"].startswith("https://kfhir.example.org/fhir/") for link in answer.json["link"])
        event = app.extensions["kfhir_security"].audit.search(AuditQuery(count=10, newest_first=True))[0][0]
        assert event["agent"][1]["network"]["address"] == "https://kfhir.example.org/fhir"
    finally:
        app.extensions["kfhir"].engine.dispose()


def test_reference_checks_reveal_no_patient_to_a_client_that_cannot_read_patients(
        client: FlaskClient, api_key: Callable[..., str]) -> None:
    patient_id, _ = a_patient_and_an_observation(client)
    observations_only = {"Authorization": f"Bearer {api_key('system/Observation.c')}"}
    answers = [client.post("/fhir/Observation", json=observation_of(who), content_type=FHIR,
                           headers=observations_only).status_code for who in (patient_id, "no-such-patient")]

    assert answers[0] == answers[1]
    reader = {"Authorization": f"Bearer {api_key('system/Observation.c', 'system/Patient.r')}"}
    assert client.post("/fhir/Observation", json=observation_of("no-such-patient"), content_type=FHIR,
                       headers=reader).status_code == 400  # who may read Patients still gets the check
