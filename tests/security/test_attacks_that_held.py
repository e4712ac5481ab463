"""The attacks of issue 20's pass that held, kept as tests so that they keep holding: authentication, scopes,
CSRF, escaping, SQL injection and log hygiene (each also tested at length beside its code; here, as an attacker
tries them against the running app)."""
from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from admin.support import PASSWORD, USER, csrf, sign_in
from flask import Flask
from flask.testing import FlaskClient

from service.admin.accounts import Accounts

FHIR = "application/fhir+json"
MRN = "MRN-ATTACK-4242"
INJECTIONS = ["' OR '1'='1", "x' OR 1=1--", "x\"; DROP TABLE fhir_resources;--", "%' OR ''='", "\\' UNION SELECT 1--"]


@pytest.fixture
def patient(client: FlaskClient) -> str:
    stored = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Attackson"}],
                                                "identifier": [{"system": "urn:x", "value": MRN}]},
                         content_type=FHIR)
    assert stored.status_code == 201, stored.json
    found: str = stored.json["id"]
    return found


def test_forged_revoked_and_malformed_tokens_are_401(anonymous_client: FlaskClient) -> None:
    for header in ("Bearer kfhir_0000000000000000_" + "A" * 43, "Bearer ", "Basic YWRtaW46YWRtaW4=",
                   "Bearer " + "x" * 10_000, "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."):
        assert anonymous_client.get("/fhir/Patient", headers={"Authorization": header}).status_code == 401


def test_scopes_hold_on_every_path(client: FlaskClient, api_key: Callable[..., str], patient: str) -> None:
    reader = {"Authorization": f"Bearer {api_key('system/Patient.rs')}"}
    assert client.get(f"/fhir/Patient/{patient}", headers=reader).status_code == 200
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}, content_type=FHIR,
                       headers=reader).status_code == 403
    assert client.get("/fhir/Observation", headers=reader).status_code == 403
    assert client.get("/fhir/AuditEvent", headers=reader).status_code == 403
    assert client.get("/api/v1/administrations", headers=reader).status_code == 403
    assert client.get("/fhir/Patient", query_string={"_include": "Patient:general-practitioner"},
                      headers=reader).status_code in (400, 403)
    wildcard = {"Authorization": f"Bearer {api_key('system/*.cruds')}"}
    assert client.get("/fhir/AuditEvent", headers=wildcard).status_code == 403  # the wildcard never reaches it


@pytest.mark.parametrize("value", INJECTIONS)
def test_sql_injection_in_search_values_finds_nothing_and_breaks_nothing(client: FlaskClient, patient: str,
                                                                         value: str) -> None:
    for params in ({"family": value}, {"identifier": value}, {"_id": value}, {"name:contains": value}):
        answer = client.get("/fhir/Patient", query_string=params)
        assert answer.status_code in (200, 400), (params, answer.status_code)
        if answer.status_code == 200:
            assert answer.json["total"] == 0, params
    records = client.get("/api/v1/administrations", query_string={"patient_identifier": value})
    assert records.status_code in (200, 400) and records.json.get("items", []) == []
    assert client.get(f"/fhir/Patient/{patient}").status_code == 200  # the table is still there


def test_console_forms_need_their_csrf_token(client: FlaskClient) -> None:
    assert client.post("/admin/sign-in", data={"username": "admin", "password": "x" * 12}).status_code == 403
    assert client.post("/admin/sign-in", data={"csrf_token": "forged", "username": "a",
                                               "password": "x" * 12}).status_code == 403
    assert csrf(client)  # with the token the form is served


def test_the_console_escapes_what_it_echoes(client: FlaskClient, app: Flask) -> None:
    Accounts(app.extensions["kfhir"].engine).create(USER, PASSWORD)
    assert sign_in(client).status_code == 302
    page = client.get("/admin/patients", query_string={"identifier": "<script>alert(1)</script>"})
    text = page.get_data(as_text=True)

    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "script-src" not in page.headers["Content-Security-Policy"]  # no script may run at all


def test_logs_hold_no_token_identifier_or_name(client: FlaskClient, patient: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        client.get("/fhir/Patient", query_string={"identifier": f"urn:x|{MRN}", "family": "Attackson"})
        client.get("/fhir/Patient", headers={"Authorization": "Bearer kfhir_secret_token_value"})
        client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Attackson"}],
                                           "birthDate": "not a date"}, content_type=FHIR)

    text = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert caplog.records
    for secret in (MRN, "Attackson", "kfhir_secret_token_value"):
        assert secret not in text
