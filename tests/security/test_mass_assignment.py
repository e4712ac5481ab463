"""Server-managed fields cannot be set by a client: a FHIR resource's id on create, meta.versionId and
meta.lastUpdated, stored validation warnings; a record's id, version, timestamps and warnings."""
from __future__ import annotations

import json
from typing import Any

import pytest
from factories import administration
from flask import Flask
from flask.testing import FlaskClient

FHIR = "application/fhir+json"
FORGED_META = {"versionId": "99", "lastUpdated": "1999-01-01T00:00:00Z", "source": "urn:client"}


def send(client: FlaskClient, method: str, path: str, body: Any) -> Any:
    return client.open(path, method=method, data=json.dumps(body), content_type=FHIR)


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "gender": "female", **extra}


def test_create_ignores_the_clients_id_version_and_last_updated(client: FlaskClient) -> None:
    created = send(client, "POST", "/fhir/Patient", patient(id="chosen-by-client", meta=FORGED_META)).get_json()
    assert created["id"] != "chosen-by-client"
    assert created["meta"]["versionId"] == "1" and not created["meta"]["lastUpdated"].startswith("1999")
    assert created["meta"]["source"] == "urn:client"  # what a client may say in meta stays
    assert client.get("/fhir/Patient/chosen-by-client").status_code == 404
    stored = client.get(f"/fhir/Patient/{created['id']}").get_json()
    assert stored["meta"]["versionId"] == "1"


def test_update_numbers_versions_itself(client: FlaskClient) -> None:
    created = send(client, "POST", "/fhir/Patient", patient()).get_json()
    path = f"/fhir/Patient/{created['id']}"
    updated = send(client, "PUT", path, created | {"meta": FORGED_META, "gender": "male"}).get_json()
    assert updated["meta"]["versionId"] == "2" and not updated["meta"]["lastUpdated"].startswith("1999")
    assert client.get(f"{path}/_history/99").status_code == 404


def test_transaction_entries_cannot_choose_ids_or_versions(client: FlaskClient) -> None:
    entry = {"fullUrl": "urn:uuid:8f8b7e0e-1d3c-4d6f-9a51-2f7a1e9b0c11",
             "resource": patient(id="forged", meta=FORGED_META), "request": {"method": "POST", "url": "Patient"}}
    answered = send(client, "POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    location = answered.get_json()["entry"][0]["response"]["location"]
    assert location.startswith("Patient/") and "/forged/" not in location and location.endswith("/_history/1")
    assert client.get("/fhir/Patient/forged").status_code == 404


def test_stored_validation_warnings_come_from_the_validator_only(app: Flask, client: FlaskClient) -> None:
    forged = patient(warnings=[{"severity": "warning", "message": "planted"}])
    assert send(client, "POST", "/fhir/Patient", forged).status_code == 422  # not an element of Patient
    created = send(client, "POST", "/fhir/Patient", patient()).get_json()
    with app.extensions["kfhir"].resources.unit() as unit:
        stored = unit.get("Patient", created["id"])
    assert stored is not None and "planted" not in json.dumps(stored.warnings) and stored.record_id is None


@pytest.mark.parametrize("field", [
    {"id": "00000000-0000-4000-8000-000000000000"}, {"version": 7}, {"warnings": []},
    {"created_at": "2000-01-01T00:00:00Z"}, {"updated_at": "2000-01-01T00:00:00Z"}, {"kind": "assessment"},
])
def test_a_record_cannot_carry_server_managed_fields(client: FlaskClient, field: dict[str, Any]) -> None:
    refused = client.post("/api/v1/administrations", json=administration() | field)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.get_json()["errors"]] == list(field)
    assert client.get("/api/v1/administrations").get_json()["count"] == 0  # nothing stored


def test_a_record_update_cannot_move_ids_or_versions(client: FlaskClient) -> None:
    created = client.post("/api/v1/administrations", json=administration()).get_json()
    path = f"/api/v1/administrations/{created['id']}"
    forged = administration(dose_mg=36) | {"id": "other", "version": 9}
    assert client.put(path, json=forged, headers={"If-Match": 'W/"1"'}).status_code == 422
    replaced = client.put(path, json=administration(dose_mg=36), headers={"If-Match": 'W/"1"'}).get_json()
    assert replaced["id"] == created["id"] and replaced["version"] == 2
