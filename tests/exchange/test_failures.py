"""Failures a real server will not produce on demand, with `responses`: each becomes a FhirError that
says what happened and whether trying later can help."""
from __future__ import annotations

import pytest
import requests
import responses

from service.exchange.auth import Bearer
from service.exchange.client import FhirClient, FhirError, retry_after

BASE = "https://ehr.example/fhir"


@pytest.fixture
def client() -> FhirClient:
    return FhirClient(BASE, timeout=2)


@responses.activate
def test_429_is_retryable_after_the_servers_delay(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/1", status=429, headers={"Retry-After": "7"})
    with pytest.raises(FhirError) as busy:
        client.read("Patient", "1")
    assert busy.value.retryable and busy.value.retry_after == 7


@responses.activate
def test_503_with_an_html_page_is_retryable_and_described(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/1", status=503, body="<html>down</html>", content_type="text/html")
    with pytest.raises(FhirError) as down:
        client.read("Patient", "1")
    assert down.value.retryable and "text/html" in down.value.message


@pytest.mark.parametrize("failure", [requests.ConnectionError("reset by peer"), requests.Timeout()])
@responses.activate
def test_network_failures_are_retryable(client: FhirClient, failure: Exception) -> None:
    responses.get(f"{BASE}/metadata", body=failure)
    with pytest.raises(FhirError) as lost:
        client.capabilities()
    assert lost.value.retryable and lost.value.status is None


@responses.activate
def test_malformed_json_is_not_retryable(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/1", status=200, body="{not json", content_type="application/fhir+json")
    with pytest.raises(FhirError) as garbled:
        client.read("Patient", "1")
    assert not garbled.value.retryable and "not JSON" in garbled.value.message


@responses.activate
def test_an_operation_outcome_becomes_the_message(client: FhirClient) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Unknown code 'bogus'",
         "location": ["Observation.status"]}]}
    responses.post(f"{BASE}/Observation", status=422, json=outcome)
    with pytest.raises(FhirError) as refused:
        client.json("POST", "Observation", {"resourceType": "Observation"})
    assert refused.value.message.endswith("error: Unknown code 'bogus' (Observation.status)")
    assert refused.value.outcome == outcome and not refused.value.retryable


@responses.activate
def test_a_server_that_is_not_r4_is_refused(client: FhirClient) -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "3.0.2"})
    with pytest.raises(FhirError, match="not R4"):
        client.capabilities()


@responses.activate
def test_a_401_is_answered_by_one_fresh_token() -> None:
    class Rotating(Bearer):
        issued = 0

        def headers(self, session: requests.Session) -> dict[str, str]:
            return {"Authorization": f"Bearer token-{self.issued}"}

        def refresh(self) -> bool:
            self.issued += 1
            return True

    auth = Rotating("unused")
    responses.get(f"{BASE}/Patient/1", status=401, match=[responses.matchers.header_matcher(
        {"Authorization": "Bearer token-0"})])
    responses.get(f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"}, match=[
        responses.matchers.header_matcher({"Authorization": "Bearer token-1"})])
    assert FhirClient(BASE, auth).read("Patient", "1")["id"] == "1"
    assert auth.issued == 1


def test_retry_after_as_an_http_date() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("120") == 120.0 and retry_after("soon") is None and retry_after(None) is None
