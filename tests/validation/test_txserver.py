"""The terminology server client's failures that a real server does not produce on demand (a timeout, a 500, a
redirect elsewhere, a body that is not FHIR), scripted with `responses`: each ends in the offline answer and a
warning, never an exception, and a failed server is not asked again for a while. The real server's answers are
tests/peers/test_hapi_tx.py."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from service.conformance.definitions import load
from service.fhirjson import Finding
from service.validation import txserver
from service.validation.engine import Validator
from service.validation.policy import PolicyError, ValidationPolicy

TX = "http://tx.test/fhir"
VALIDATE_CODE = f"{TX}/CodeSystem/$validate-code"
OBSERVATION = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]}}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load())


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    txserver.forget()
    yield
    txserver.forget()


def tx_findings(validator: Validator) -> list[Finding]:
    return [f for f in validator.validate(OBSERVATION, policy=ValidationPolicy(tx_server=TX, tx_timeout=0.5))
            if f.expression.startswith("Observation.code")]


@pytest.mark.parametrize("failure, said", [
    ({"body": requests.ReadTimeout()}, "did not answer within 0.5 s"),
    ({"body": requests.ConnectionError()}, "could not be reached (ConnectionError)"),
    ({"status": 500, "json": {"resourceType": "OperationOutcome"}}, "answered 500"),
    ({"status": 503, "body": "<html>down</html>"}, "answered 503"),
    ({"status": 200, "body": "<html>a login page</html>"}, "with a body that is not JSON"),
    ({"status": 200, "json": {"result": True}}, "JSON that is not a FHIR resource"),
    ({"status": 200, "json": {"resourceType": "Bundle"}}, "not Parameters"),
])
@responses.activate
def test_a_server_that_cannot_answer_leaves_the_offline_answer_and_a_warning(validator: Validator,
                                                                              failure: dict[str, Any],
                                                                              said: str) -> None:
    responses.post(VALIDATE_CODE, **failure)
    [warning] = tx_findings(validator)
    assert (warning.severity, warning.code, warning.expression) == ("warning", "transient",
                                                                    "Observation.code.coding[0]")
    assert said in warning.message and "checked offline only" in warning.message, warning.message


@responses.activate
def test_a_failed_server_is_not_asked_again_for_a_while(validator: Validator) -> None:
    responses.post(VALIDATE_CODE, status=500)
    tx_findings(validator)
    tx_findings(validator)
    assert len(responses.calls) == 1  # every coding of every resource would otherwise wait out the timeout


@responses.activate
def test_a_redirect_to_another_origin_is_not_followed(validator: Validator) -> None:
    responses.post(VALIDATE_CODE, status=307, headers={"Location": "http://elsewhere.test/fhir/CodeSystem/$validate-code"})
    elsewhere = responses.post("http://elsewhere.test/fhir/CodeSystem/$validate-code",
                               json={"resourceType": "Parameters", "parameter": [{"name": "result",
                                                                                   "valueBoolean": True}]})
    [warning] = tx_findings(validator)
    assert "redirected to another origin (http://elsewhere.test/fhir/CodeSystem/$validate-code)" in warning.message
    assert elsewhere.call_count == 0


@responses.activate
def test_a_redirect_within_the_origin_is_followed(validator: Validator) -> None:
    moved = f"{TX}/r4/CodeSystem/$validate-code"
    responses.post(VALIDATE_CODE, status=308, headers={"Location": "/fhir/r4/CodeSystem/$validate-code"})
    responses.post(moved, json={"resourceType": "Parameters", "parameter": [
        {"name": "result", "valueBoolean": True}, {"name": "display", "valueString": "Heart rate"}]})
    assert tx_findings(validator) == []


@responses.activate
def test_the_servers_own_issues_are_reported_at_our_paths(validator: Validator) -> None:
    """A server that answers with R5-style `issues` (tx.fhir.org): its issues, their paths under the coding."""
    issues = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "invalid", "expression": ["Coding.display"],
        "details": {"text": "Wrong Display Name 'Heart rate' for http://loinc.org#8867-4",
                    "coding": [{"system": "http://hl7.org/fhir/tools/CodeSystem/tx-issue-type",
                                "code": "invalid-display"}]}}]}
    responses.post(VALIDATE_CODE, json={"resourceType": "Parameters", "parameter": [
        {"name": "result", "valueBoolean": False}, {"name": "issues", "resource": issues}]})
    [issue] = tx_findings(validator)
    assert (issue.severity, issue.code, issue.expression) == ("error", "invalid",
                                                              "Observation.code.coding[0].display")


@pytest.mark.parametrize("url", ["ftp://tx.test/fhir", "http://tx.test/fhir?x=1", "tx.test", "http://u:p@tx.test/"])
def test_a_policy_names_only_http_base_urls(url: str) -> None:
    with pytest.raises(PolicyError, match="tx_server"):
        ValidationPolicy(tx_server=url)
