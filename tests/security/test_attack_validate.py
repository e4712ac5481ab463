"""Attack: one client burning CPU, memory and bandwidth through $validate and the write path (issue 20, item 1).

A client holding only `system/AuditEvent.rs` posted an Observation with 200,000 empty `note` entries to
$validate: 9–16 s, an 89 MB OperationOutcome. Now $validate needs a scope on the type, absurd arrays and
documents are refused before the validator walks them, and every OperationOutcome is capped."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from service.fhirjson import MAX_ISSUES, MAX_OUTCOME_BYTES

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"
FHIR = "application/fhir+json"


def observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads((EXAMPLES / "Observation-bp-esketamine-session-1-pre.json").read_text())
    resource.pop("id", None)
    return resource | changes


def post(client: FlaskClient, path: str, body: Any, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(path, data=json.dumps(body), content_type=FHIR, headers=headers)


def test_validate_needs_a_scope_on_the_type(client: FlaskClient, api_key: Callable[..., str]) -> None:
    audit_only = api_key("system/AuditEvent.rs")
    reader = api_key("system/Observation.r")

    assert post(client, "/fhir/$validate", observation(), audit_only).status_code == 403
    assert post(client, "/fhir/Observation/$validate", observation(), audit_only).status_code == 403
    assert post(client, "/fhir/$validate", observation(), reader).status_code == 200
    assert post(client, "/fhir/Patient/$validate", {"resourceType": "Patient"}, reader).status_code == 403


def test_an_absurd_array_is_refused_before_the_walk(client: FlaskClient) -> None:
    started = time.monotonic()
    response = post(client, "/fhir/$validate", observation(note=[{}] * 200_000))  # 600 KB

    assert response.status_code == 413
    assert "1000 items" in response.get_data(as_text=True)
    assert time.monotonic() - started < 5  # 0.14 s on a live server at load 15; the test may run at load 30


def test_a_document_of_too_many_values_is_refused_before_the_walk(client: FlaskClient) -> None:
    # arrays each within the limit, many of them: 900 components of 100 codings each
    component = {"code": {"coding": [{"code": "x"}] * 100}}
    response = post(client, "/fhir/Observation", observation(component=[component] * 900))

    assert response.status_code == 413
    assert "20000 values" in response.get_data(as_text=True)


def test_every_operation_outcome_is_capped_and_says_what_it_left_out(client: FlaskClient) -> None:
    """900 empty notes: 900 errors, within the array limit. The outcome keeps MAX_ISSUES issues, the last one
    counting the rest; on the write path (422) too."""
    for path in ("/fhir/$validate", "/fhir/Observation"):
        response = post(client, path, observation(note=[{}] * 900))
        outcome = response.get_json()
        last = outcome["issue"][-1]["details"]["text"]

        assert response.status_code == (200 if "validate" in path else 422)
        assert len(outcome["issue"]) == MAX_ISSUES + (0 if "validate" in path else 1)  # 422: the refusal on top
        assert len(response.get_data()) < MAX_OUTCOME_BYTES + 4096
        assert "more issues left out" in last and "8" in last


def test_long_issues_are_cut_to_the_byte_cap(client: FlaskClient) -> None:
    """900 notes, each with an unknown 2,000-character element: every issue quotes its name."""
    notes = [{f"{i:04}" + "x" * 2000: 1} for i in range(900)]
    for path in ("/fhir/$validate", "/fhir/Observation"):
        response = post(client, path, {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": observation(note=notes)}]} if "validate" in path else observation(note=notes))

        assert response.status_code in (200, 422)
        assert len(response.get_data()) < MAX_OUTCOME_BYTES + 4096
        assert "more issues left out" in response.get_json()["issue"][-1]["details"]["text"]
