"""A read whose AuditEvent cannot be written discloses nothing (503, Retry-After), unless the deployment chose to
answer such reads (KFHIR_ANSWER_UNAUDITED_READS=1); an answer that shows nothing stored is given either way."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.config import Settings
from service.security.audit import AuditLog

pytestmark = pytest.mark.both_backends

FHIR = "application/fhir+json"
FAMILY = "Unauditedfamily"
PATIENT_BODY = {"resourceType": "Patient", "identifier": [{"system": "https://clinic.example/mrn", "value": "U-1"}],
                "name": [{"family": FAMILY}]}


def _fail(*_: Any, **__: Any) -> Any:
    raise RuntimeError("the audit table refused the row")


def _patient(client: FlaskClient) -> str:
    made = client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR)
    assert made.status_code == 201
    return str(made.get_json()["id"])


@pytest.fixture
def answering_app(database_url: str) -> Iterator[Flask]:
    application = create_app(Settings.load({"database_url": database_url},
                                           environ={"KFHIR_ANSWER_UNAUDITED_READS": "1"}))
    application.config["TESTING"] = True
    yield application
    application.extensions["kfhir_security"].audit.close()
    application.extensions["kfhir"].engine.dispose()


def test_the_default_refuses_to_answer_unaudited_reads() -> None:
    assert Settings.load({}, environ={}).answer_unaudited_reads is False
    assert Settings.load({}, environ={"KFHIR_ANSWER_UNAUDITED_READS": "1"}).answer_unaudited_reads is True


@pytest.mark.parametrize("path", ["/fhir/Patient/{id}", "/fhir/Patient?family=" + FAMILY, "/fhir/Patient/{id}/_history"])
def test_a_fhir_read_whose_event_cannot_be_written_is_a_503_that_shows_nothing(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    patient_id = _patient(client)
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.get(path.format(id=patient_id))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.mimetype == FHIR
    body = answer.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "audit trail" in json.dumps(body)
    assert FAMILY not in answer.get_data(as_text=True) and patient_id not in answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"  # the API's headers, on the replacement answer too


def test_a_domain_search_whose_event_cannot_be_written_is_a_problem_503(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.get("/api/v1/administrations")
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["status"] == 503


def test_an_error_answer_is_given_even_when_its_event_cannot_be_written(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.get("/fhir/Patient/no-such-patient")
    assert answer.status_code == 404  # shows nothing stored: answered as it is


def test_with_the_setting_on_an_unaudited_read_is_answered(
        answering_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    client = answering_app.test_client()
    patient_id = _patient(client)
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.get(f"/fhir/Patient/{patient_id}")
    assert answer.status_code == 200
    assert answer.get_json()["name"][0]["family"] == FAMILY


def test_a_read_whose_event_is_written_is_answered(client: FlaskClient) -> None:
    patient_id = _patient(client)
    answer = client.get(f"/fhir/Patient/{patient_id}")
    assert answer.status_code == 200 and answer.get_json()["id"] == patient_id


def test_a_conditional_create_that_finds_its_match_is_a_read_and_refused_unaudited(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    _patient(client)
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.post("/fhir/Patient", data=json.dumps(PATIENT_BODY), content_type=FHIR,
                         headers={"If-None-Exist": "identifier=https://clinic.example/mrn|U-1",
                                  "Prefer": "return=representation"})
    assert answer.status_code == 503
    assert FAMILY not in answer.get_data(as_text=True)


def _batch(*entries: dict[str, Any]) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "batch", "entry": list(entries)})


def test_a_batch_of_reads_whose_event_cannot_be_written_is_refused(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    patient_id = _patient(client)
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.post("/fhir", data=_batch({"request": {"method": "GET", "url": f"Patient/{patient_id}"}}),
                         content_type=FHIR)
    assert answer.status_code == 503
    assert FAMILY not in answer.get_data(as_text=True)


def test_a_batch_that_wrote_is_answered_though_its_event_failed(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its writes committed before the event was tried: a 503 would tell the client to send them again."""
    monkeypatch.setattr(AuditLog, "record", _fail)
    answer = client.post("/fhir", data=_batch({"resource": PATIENT_BODY, "request": {"method": "POST", "url": "Patient"}}),
                         content_type=FHIR)
    assert answer.status_code == 200
    assert answer.get_json()["entry"][0]["response"]["status"].startswith("201")
