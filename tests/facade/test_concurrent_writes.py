"""Concurrent writes of one resource through the facade: each settles as if it had come a moment after the others.

On PostgreSQL writers do not take turns (SQLite's do): two updates of one resource both read its version and both
write the next, and the second fails on the unique version once the first commits. It was a 500; now it is tried
again after the first (interactions.SETTLE_ATTEMPTS), as HAPI's retry on a version conflict does."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.security.audit import AuditLog, AuditQuery

FHIR = {"Content-Type": "application/fhir+json"}
WRITERS = 6


def _at_once(app: Flask, call: Any) -> list[Any]:
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return list(pool.map(lambda i: call(app.test_client(), i), range(WRITERS)))


@pytest.mark.both_backends  # a race on the versions' unique key
def test_updates_of_one_resource_at_once_each_make_a_version(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/busy", json={"resourceType": "Patient", "id": "busy"},
                      headers=FHIR).status_code == 201

    def put(c: FlaskClient, i: int) -> int:
        body = {"resourceType": "Patient", "id": "busy", "birthDate": f"{1950 + i}"}
        return c.put("/fhir/Patient/busy", json=body, headers=FHIR).status_code

    assert _at_once(client.application, put) == [200] * WRITERS
    history = client.get("/fhir/Patient/busy/_history", query_string={"_count": 50}).json
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"]) == list(range(1, WRITERS + 2))
    assert {e["resource"].get("birthDate") for e in history["entry"]} == {None} | {f"{1950 + i}" for i in
                                                                                   range(WRITERS)}
    # each with its audit event, a retried one too: on PostgreSQL its first attempt's event went with the rollback
    log: AuditLog = client.application.extensions["kfhir_security"].audit
    updates = [e for e in log.search(AuditQuery(count=200))[0] if e["action"] == "U"]
    assert sorted(e["outcomeDesc"] for e in updates) == ["HTTP 200"] * WRITERS + ["HTTP 201"]  # the first PUT


@pytest.mark.both_backends
def test_updates_at_once_whose_audit_looks_up_their_patient_each_make_a_version(
        client: FlaskClient, api_key: Callable[..., str]) -> None:
    """A client that may not read Patients: the write's reference check passes its subject by (it would tell which
    ids exist), so the audit event reads the patient's identifier itself, inside the write's transaction. On
    PostgreSQL that read carries the write's last rows (store/pipeline.py), which fail there on the version a
    concurrent update stored first: that is the write's conflict, tried again, not the audit's failure (a 503)."""
    assert client.put("/fhir/Patient/seen", json={"resourceType": "Patient", "id": "seen", "identifier": [
        {"system": "https://clinic.example/mrn", "value": "M-1"}]}, headers=FHIR).status_code == 201
    headers = FHIR | {"Authorization": f"Bearer {api_key('system/Observation.cru')}"}

    def put(c: FlaskClient, i: int) -> int:
        body = {"resourceType": "Observation", "id": "pulse", "status": "final", "code": {"text": "Heart rate"},
                "subject": {"reference": "Patient/seen"}, "valueQuantity": {"value": 60 + i}}
        return c.put("/fhir/Observation/pulse", json=body, headers=headers).status_code

    assert put(client, 0) == 201
    for _round in range(3):
        assert _at_once(client.application, put) == [200] * WRITERS
    assert client.get("/fhir/Observation/pulse").json["meta"]["versionId"] == str(3 * WRITERS + 1)
    # each with its event, naming the patient by the identifier its lookup read
    log: AuditLog = client.application.extensions["kfhir_security"].audit
    mrn = log.patient_hash("https://clinic.example/mrn", "M-1")
    named = log.search(AuditQuery(action="U", patient_hash=mrn, count=200))[0]
    assert Counter(e["outcomeDesc"] for e in named) == {"HTTP 201": 2, "HTTP 200": 3 * WRITERS}  # both PUTs creating


@pytest.mark.both_backends  # a race on the resources' unique (type, id)
def test_puts_creating_one_new_id_at_once_make_one_resource_and_a_version_each(client: FlaskClient) -> None:
    def put(c: FlaskClient, i: int) -> int:
        body = {"resourceType": "Patient", "id": "fresh", "gender": "female" if i % 2 else "male"}
        return c.put("/fhir/Patient/fresh", json=body, headers=FHIR).status_code

    assert Counter(_at_once(client.application, put)) == {201: 1, 200: WRITERS - 1}
    assert client.get("/fhir/Patient/fresh").json["meta"]["versionId"] == str(WRITERS)
    assert client.get("/fhir/Patient", query_string={"_id": "fresh"}).json["total"] == 1


@pytest.mark.both_backends
def test_updates_at_once_with_one_if_match_let_one_through_and_the_rest_fail_the_precondition(
        client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/guarded", json={"resourceType": "Patient", "id": "guarded"},
                      headers=FHIR).status_code == 201

    def put(c: FlaskClient, i: int) -> int:
        body = {"resourceType": "Patient", "id": "guarded", "birthDate": f"{1950 + i}"}
        return c.put("/fhir/Patient/guarded", json=body, headers=FHIR | {"If-Match": 'W/"1"'}).status_code

    assert Counter(_at_once(client.application, put)) == {200: 1, 412: WRITERS - 1}
    assert client.get("/fhir/Patient/guarded").json["meta"]["versionId"] == "2"


@pytest.mark.both_backends
def test_deletes_of_one_resource_at_once_all_succeed_and_delete_it_once(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/gone", json={"resourceType": "Patient", "id": "gone"},
                      headers=FHIR).status_code == 201
    assert _at_once(client.application, lambda c, i: c.delete("/fhir/Patient/gone").status_code) == [204] * WRITERS
    assert client.get("/fhir/Patient/gone").status_code == 410
    history = client.get("/fhir/Patient/gone/_history").json
    assert history["total"] == 2
