"""The Medplum peer itself: it starts, says what it is, and differs from HAPI FHIR where the notes say; our client
(service/exchange/client.py) copes with each difference, shown here against the real server."""
from __future__ import annotations

import uuid

import pytest
import requests
from peers.medplum_server import MedplumServer

from service.exchange.client import FhirClient, FhirError

JSON = {"Content-Type": "application/fhir+json"}


def test_it_answers_metadata_with_medplums_router_and_every_rest_interaction(medplum_server: MedplumServer) -> None:
    statement = medplum_server.metadata()
    assert statement["software"]["name"].startswith("Medplum FHIR router") and statement["fhirVersion"] == "4.0.1"
    (rest,) = statement["rest"]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {i["code"] for i in patient["interaction"]} == {"read", "vread", "update", "patch", "delete",
                                                           "history-instance", "create", "search-type"}
    assert medplum_server.startup_seconds < 30


def observations(server: MedplumServer, count: int) -> tuple[str, set[str]]:
    made = requests.post(f"{server.base_url}/Patient", json={"resourceType": "Patient"}, headers=JSON, timeout=10)
    patient = made.json()["id"]
    ids = set()
    for n in range(count):
        done = requests.post(f"{server.base_url}/Observation", headers=JSON, timeout=10, json={
            "resourceType": "Observation", "status": "final", "code": {"text": f"reading {n}"},
            "subject": {"reference": f"Patient/{patient}"}})
        assert done.status_code == 201 and done.headers["Location"].startswith(server.base_url)
        ids.add(done.json()["id"])
    return patient, ids


def test_pages_have_no_next_link_and_the_client_follows_total_with_offset(medplum_server: MedplumServer) -> None:
    patient, ids = observations(medplum_server, 5)
    page = requests.get(f"{medplum_server.base_url}/Observation", params={"subject": f"Patient/{patient}",
                                                                          "_count": "2"}, timeout=10).json()
    assert page["total"] == 5 and len(page["entry"]) == 2 and "link" not in page   # the difference
    found = list(FhirClient(medplum_server.base_url).search("Observation", {"subject": f"Patient/{patient}",
                                                                             "_count": "2"}))
    assert len(found) == 5 and {o["id"] for o in found} == ids


def test_a_reference_parameter_matches_type_and_id_not_a_bare_id(medplum_server: MedplumServer) -> None:
    patient, ids = observations(medplum_server, 1)
    client = FhirClient(medplum_server.base_url)
    assert list(client.search("Observation", {"subject": patient})) == []          # the difference
    assert {o["id"] for o in client.search("Observation", {"subject": f"Patient/{patient}"})} == ids


def test_version_ids_are_uuids_and_an_update_checks_them(medplum_server: MedplumServer) -> None:
    client = FhirClient(medplum_server.base_url)
    made = client.json("POST", "Patient", {"resourceType": "Patient", "gender": "female"})
    version = made["meta"]["versionId"]
    assert uuid.UUID(version)   # not 1, 2, 3: never counted, only compared
    changed = client.update(made | {"gender": "male"}, version)
    assert changed["meta"]["versionId"] != version
    with pytest.raises(FhirError) as stale:   # If-Match on the old version: 412 here (HAPI FHIR answers 409)
        client.update(made | {"gender": "other"}, version)
    assert stale.value.status == 412 and stale.value.conflict
