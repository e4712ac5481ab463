"""The audit trail: every access to /api and /fhir leaves one AuditEvent (BALP pattern), naming the client,
the action, what was touched and the patient by a keyed hash only; append-only; readable with an audit scope."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from factories import PATIENT, administration
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.security.audit import PATIENT_HASH, AuditLog, AuditQuery
from service.validation import default_validator

pytestmark = pytest.mark.both_backends  # PostgreSQL triggers keep the trail append-only

FHIR = "application/fhir+json"
MRN = {"system": "https://clinic.example/mrn", "value": "MRN-AUDIT-7"}


def audit(app: Flask) -> AuditLog:
    log: AuditLog = app.extensions["kfhir_security"].audit
    return log


def events(app: Flask, **query: Any) -> list[dict[str, Any]]:
    return audit(app).search(AuditQuery(newest_first=True, **query))[0]


def post_patient(client: FlaskClient) -> Any:
    body = {"resourceType": "Patient", "identifier": [MRN], "name": [{"family": "Auditee"}], "birthDate": "1970-01-02"}
    return client.post("/fhir/Patient", data=json.dumps(body), content_type=FHIR)


def test_a_fhir_create_is_recorded_as_balp_create_with_the_patient_hashed(app: Flask, client: FlaskClient) -> None:
    pid = post_patient(client).get_json()["id"]
    [event] = events(app)
    assert event["type"]["code"] == "rest" and event["subtype"][0]["code"] == "create"
    assert event["action"] == "C" and event["outcome"] == "0"
    client_agent, server_agent = event["agent"]
    assert client_agent["type"]["coding"][0]["code"] == "110153" and client_agent["who"]["display"] == "tests"
    assert client_agent["network"] == {"address": "127.0.0.1", "type": "2"}
    assert server_agent["type"]["coding"][0]["code"] == "110152"
    whats = [e["what"] for e in event["entity"]]
    assert {"reference": f"Patient/{pid}"} in whats
    digest = audit(app).patient_hash(MRN["system"], MRN["value"])
    assert {"identifier": {"system": PATIENT_HASH, "value": digest}} in whats
    stored = json.dumps(event)
    for phi in ("MRN-AUDIT-7", "Auditee", "1970-01-02"):
        assert phi not in stored


def test_a_create_that_refers_to_a_patient_names_the_patient_as_its_transaction_sees_them(
        app: Flask, client: FlaskClient) -> None:
    """The event is written just before the write commits, with the patient's identifier as the write read it; a
    transaction that changes the patient's identifier and refers to it names the new one."""
    pid = post_patient(client).get_json()["id"]
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "mood"},
                   "subject": {"reference": f"Patient/{pid}"}, "valueString": "better"}
    assert client.post("/fhir/Observation", data=json.dumps(observation), content_type=FHIR).status_code == 201
    hashes = [e["what"]["identifier"]["value"] for e in events(app)[0]["entity"] if "identifier" in e["what"]]
    assert hashes == [audit(app).patient_hash(MRN["system"], MRN["value"])]
    moved = {**MRN, "value": "MRN-AUDIT-8"}
    patient = {"resourceType": "Patient", "id": pid, "identifier": [moved], "name": [{"family": "Auditee"}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("/fhir", data=json.dumps(bundle), content_type=FHIR).status_code == 200
    hashes = [e["what"]["identifier"]["value"] for e in events(app)[0]["entity"] if "identifier" in e["what"]]
    assert hashes == [audit(app).patient_hash(moved["system"], moved["value"])]


def test_every_kind_of_access_is_recorded_with_its_action_and_outcome(
        app: Flask, client: FlaskClient, anonymous_client: FlaskClient) -> None:
    pid = post_patient(client).get_json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/Patient", query_string={"identifier": f"{MRN['system']}|{MRN['value']}"})
    client.delete(f"/fhir/Patient/{pid}")
    client.get("/fhir/Patient/nobody")
    anonymous_client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/metadata")  # open and patient-free: not an access worth recording
    audit(app).flush(everything=True)  # the unidentified caller's refusal: written when its burst ends
    seen = [(e["subtype"][0]["code"], e["action"], e["outcome"], e["outcomeDesc"]) for e in reversed(events(app))]
    assert seen == [("create", "C", "0", "HTTP 201"), ("read", "R", "0", "HTTP 200"),
                    ("search-type", "E", "0", "HTTP 200"), ("delete", "D", "0", "HTTP 204"),
                    ("read", "R", "4", "HTTP 404"), ("read", "R", "4", "HTTP 401")]
    search = events(app, action="E")[0]
    query = [e for e in search["entity"] if e["role"]["code"] == "24"][0]
    assert query["description"] == "parameters: identifier"  # which parameters, never their values
    assert MRN["value"] not in json.dumps(search)
    anonymous = events(app)[0]
    assert anonymous["agent"][0]["who"] == {"display": "unauthenticated client"}


def test_domain_records_are_recorded_with_the_record_id_and_patient_hash(app: Flask, client: FlaskClient) -> None:
    created = client.post("/api/v1/administrations", json=administration()).get_json()
    client.get("/api/v1/administrations", query_string={"patient_identifier": PATIENT["identifier"]["value"]})
    listed, made = events(app)[:2]
    assert made["action"] == "C" and listed["action"] == "E"
    ids = [e["what"].get("identifier", {}).get("value") for e in made["entity"]]
    assert created["id"] in ids
    digest = audit(app).patient_hash(PATIENT["identifier"]["system"], PATIENT["identifier"]["value"])
    assert digest in ids
    assert PATIENT["identifier"]["value"] not in json.dumps(made) + json.dumps(listed)
    assert events(app, patient_hash=digest)[0]["id"] == listed["id"]


def test_a_transaction_records_every_resource_it_wrote(app: Flask, client: FlaskClient) -> None:
    entry = {"resource": {"resourceType": "Practitioner", "name": [{"family": "Nurse"}]},
             "request": {"method": "POST", "url": "Practitioner"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    answered = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR).get_json()
    [event] = events(app)
    assert event["subtype"][0]["code"] == "transaction" and event["action"] == "E"
    locations = ["/".join(e["response"]["location"].split("/")[:2]) for e in answered["entry"]]
    assert [e["what"]["reference"] for e in event["entity"]] == locations


def test_recorded_audit_events_are_valid_r4(app: Flask, client: FlaskClient, anonymous_client: FlaskClient) -> None:
    post_patient(client)
    client.get("/api/v1/administrations")
    anonymous_client.get("/fhir/Patient")
    for event in events(app):
        errors = [f for f in default_validator().validate(event) if f.severity in ("error", "fatal")]
        assert errors == [], (event, errors)


def test_the_audit_trail_is_append_only_in_the_database(app: Flask, client: FlaskClient) -> None:
    post_patient(client)
    engine = app.extensions["kfhir"].engine
    statements = ["UPDATE audit_events SET action = 'R'", "DELETE FROM audit_events"]
    if engine.dialect.name == "postgresql":  # a TRUNCATE once emptied the trail: row triggers never see it
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert len(events(app)) == 1 and events(app)[0]["action"] == "C"


# --- GET /fhir/AuditEvent -------------------------------------------------------------------------

def test_audit_events_are_searchable_and_paged(app: Flask, client: FlaskClient) -> None:
    for _ in range(3):
        post_patient(client)
    client.get("/api/v1/administrations")
    page = client.get("/fhir/AuditEvent", query_string={"_count": 2, "action": "C"}).get_json()
    assert page["type"] == "searchset" and page["total"] == 3 and len(page["entry"]) == 2
    following = [link["url"] for link in page["link"] if link["relation"] == "next"][0]
    rest = client.get(following.replace("http://localhost", "")).get_json()  # reading is recorded too, but
    assert len(rest["entry"]) == 1 and not [link for link in rest["link"] if link["relation"] == "next"]
    paged = [e["resource"]["id"] for e in page["entry"] + rest["entry"]]  # oldest first: pages do not shift
    assert paged == [e["id"] for e in reversed(events(app, action="C"))]
    by_action = client.get("/fhir/AuditEvent", query_string={"action": "C"}).get_json()
    assert by_action["total"] == 3
    by_type = client.get("/fhir/AuditEvent", query_string={"entity-type": "administration"}).get_json()
    assert by_type["total"] == 1
    assert client.get("/fhir/AuditEvent", query_string={"agent": "tests"}).get_json()["total"] >= 4
    assert client.get("/fhir/AuditEvent", query_string={"agent": "someone"}).get_json()["total"] == 0
    assert client.get("/fhir/AuditEvent", query_string={"date": "ge2000-01-01"}).get_json()["total"] >= 4
    assert client.get("/fhir/AuditEvent", query_string={"date": "lt2000-01-01"}).get_json()["total"] == 0
    one = by_action["entry"][0]["resource"]
    read = client.get(f"/fhir/AuditEvent/{one['id']}")
    assert read.status_code == 200 and read.get_json() == one


@pytest.mark.parametrize("query", [{"date": "yesterday"}, {"action": "X"}, {"colour": "red"}, {"_count": "x"}])
def test_bad_audit_searches_are_400(client: FlaskClient, query: dict[str, str]) -> None:
    response = client.get("/fhir/AuditEvent", query_string=query)
    assert response.status_code == 400 and response.get_json()["resourceType"] == "OperationOutcome"


def test_the_audit_trail_needs_an_audit_scope_and_cannot_be_written(
        anonymous_client: FlaskClient, client: FlaskClient, api_key: Callable[..., str]) -> None:
    everything = {"Authorization": f"Bearer {api_key('system/*.cruds')}"}
    assert anonymous_client.get("/fhir/AuditEvent", headers=everything).status_code == 403
    assert anonymous_client.get("/fhir/AuditEvent/x", headers=everything).status_code == 403
    auditor = {"Authorization": f"Bearer {api_key('system/AuditEvent.rs')}"}
    assert anonymous_client.get("/fhir/AuditEvent", headers=auditor).status_code == 200
    assert anonymous_client.get("/fhir/AuditEvent/nope", headers=auditor).status_code == 404
    event = {"resourceType": "AuditEvent"}
    for headers in (everything, auditor):
        refused = anonymous_client.post("/fhir/AuditEvent", data=json.dumps(event), content_type=FHIR, headers=headers)
        assert refused.status_code == 403
    # even a client granted create on AuditEvent cannot write one: this server does not serve that
    writer = {"Authorization": f"Bearer {api_key('system/AuditEvent.cruds')}"}
    assert anonymous_client.post("/fhir/AuditEvent", data=json.dumps(event), content_type=FHIR,
                                 headers=writer).status_code == 404
