"""Every 5xx the fuzzers found, as a fixed request: now a clear 4xx (on both backends)."""
from __future__ import annotations

import base64

import pytest
from factories import assessment
from flask.testing import FlaskClient

pytestmark = pytest.mark.both_backends  # fuzzer findings, several PostgreSQL-only (NUL, integer range)

FHIR = "application/fhir+json"
HUGE = "99999999999"  # beyond PostgreSQL's INTEGER, within BIGINT
HUGER = "9" * 30  # beyond BIGINT too


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("path, expected", [
    # int("²") raises although "²".isdigit() is true
    ("/fhir/Patient/x/_history/²", 404),
    ("/api/v1/assessments?limit=²", 400),
    ("/fhir/Patient?_count=²", 400),
    ("/fhir/Patient?_offset=²", 400),
    ("/fhir/_history?_count=²", 400),
    ("/fhir/Patient/x/_history?_offset=²", 400),
    ("/api/v1/exchange/jobs?limit=²", 400),
    ("/fhir/AuditEvent?_count=²", 400),
    # numbers PostgreSQL will not compare with an INTEGER column
    (f"/fhir/Patient/x/_history/{HUGE}", 404),
    (f"/fhir/Patient/x/_history/{HUGER}", 404),
    (f"/api/v1/exchange/jobs/{HUGE}", 404),
    (f"/api/v1/exchange/jobs/{HUGER}", 404),
    (f"/api/v1/assessments?cursor={cursor('pk:' + HUGE)}", 400),
    (f"/api/v1/assessments?cursor={cursor('pk:' + HUGER)}", 400),
    (f"/api/v1/assessments?cursor={cursor('pk:²')}", 400),
    (f"/api/v1/exchange/jobs?cursor={cursor('pk:' + HUGE)}", 400),
    (f"/fhir/AuditEvent?_offset={HUGER}", 200),
])
def test_fuzzer_findings_are_client_errors(client: FlaskClient, path: str, expected: int) -> None:
    response = client.get(path)
    assert response.status_code == expected, response.get_data(as_text=True)


@pytest.mark.parametrize("path, expected", [
    # PostgreSQL refuses NUL in any text it is asked to compare or store
    ("/fhir/Patient?name=%00", 400), ("/fhir/Patient?identifier=x%00", 400), ("/fhir/Patient?_id=%00", 400),
    ("/fhir/Patient?gender=%00", 400), ("/fhir/Patient/%00", 400), ("/fhir/Patient/a%00b/_history", 400),
    ("/fhir/Patient/a%00/_history/1", 400), ("/api/v1/assessments?patient_identifier=%00", 400),
    ("/api/v1/assessments/%00", 400), ("/api/v1/assessments/%00/versions", 400),
    ("/api/v1/exchange/jobs?endpoint=%00", 400),
])
def test_nul_in_the_url_is_400(client: FlaskClient, path: str, expected: int) -> None:
    assert client.get(path).status_code == expected


def test_nul_in_searches_that_arrive_by_header_form_or_bundle_is_400(client: FlaskClient) -> None:
    patient = {"resourceType": "Patient", "gender": "female"}
    conditional = client.post("/fhir/Patient", json=patient, headers={"If-None-Exist": "identifier=a%00",
                                                                       "Content-Type": FHIR})
    assert conditional.status_code == 400 and "NUL" in conditional.get_data(as_text=True)
    form = client.post("/fhir/Patient/_search", data="name=%00", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 400
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=%00"}}]}
    assert client.post("/fhir", json=bundle, headers={"Content-Type": FHIR}).status_code == 400
    assert client.get("/fhir/Patient").json["total"] == 0


@pytest.mark.parametrize("path, body", [
    ("/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "x\x00"}]}),
    ("/fhir/Patient", {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "a\x00b"}]}),
    ("/api/v1/assessments", assessment(external_id="a\x00b")),
    ("/api/v1/assessments", assessment(**{"source": "ok", "x\x00": 1})),
])
def test_nul_in_a_json_string_is_422_and_nothing_is_stored(client: FlaskClient, path: str, body: dict) -> None:
    response = client.post(path, json=body, headers={"Content-Type": FHIR})
    assert response.status_code == 422 and "NUL" in response.get_data(as_text=True)
    assert client.get("/api/v1/assessments").json["count"] == 0 and client.get("/fhir/Patient").json["total"] == 0


def test_retrying_a_job_beyond_integer_range_is_404(client: FlaskClient) -> None:
    assert client.post(f"/api/v1/exchange/jobs/{HUGE}/retry").status_code == 404
