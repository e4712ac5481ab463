"""Every 5xx the fuzzers found, as a fixed request: now a clear 4xx (on both backends)."""
from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient

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


def test_retrying_a_job_beyond_integer_range_is_404(client: FlaskClient) -> None:
    assert client.post(f"/api/v1/exchange/jobs/{HUGE}/retry").status_code == 404
