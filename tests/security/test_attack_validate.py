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

from service import create_app
from service.config import VALUES_PER_ENTRY, Settings
from service.fhirjson import MAX_ISSUES, MAX_OUTCOME_BYTES
from service.jsondoc import parse_json

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


# --- a batch or transaction: its JSON limits grow with KFHIR_MAX_BUNDLE_ENTRIES -------------------------------

def values_in(node: Any) -> int:
    """Values as service/jsondoc.py counts them: this one and every one inside it."""
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return 1 + sum(values_in(child) for child in children)


def examples_in_reference_order() -> list[dict[str, Any]]:
    """Our IG's examples, each after every example it refers to (so any first n of a copy stand on their own)."""
    pending = {f"{r['resourceType']}/{r['id']}": r for r in (
        json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*-*.json")))}
    ordered: list[dict[str, Any]] = []
    while pending:
        ready = [key for key, r in pending.items() if not any(
            f'"{other}"' in json.dumps(r) for other in pending if other != key)]
        assert ready, f"examples refer to each other in a circle: {sorted(pending)}"
        ordered += [pending.pop(key) for key in ready]
    return ordered


def ig_transaction(entries: int) -> dict[str, Any]:
    """A transaction of `entries` of our IG's examples: copies of the whole set, the k-th with `-k` ids and the
    references rewritten to them, each PUT at its id."""
    examples = examples_in_reference_order()
    keys = [f"{r['resourceType']}/{r['id']}" for r in examples]
    out: list[dict[str, Any]] = []
    for k in range(entries // len(examples) + 1):
        for example in examples:
            text = json.dumps(example)
            for key in keys:
                text = text.replace(f'"{key}"', f'"{key}-{k}"')
            resource = json.loads(text) | {"id": f"{example['id']}-{k}"}
            url = f"{resource['resourceType']}/{resource['id']}"
            out.append({"fullUrl": f"https://clinic.example/fhir/{url}", "resource": resource,
                        "request": {"method": "PUT", "url": url}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": out[:entries]}


def test_our_examples_fit_the_value_budget_of_an_entry() -> None:
    entry = ig_transaction(len(examples_in_reference_order()))["entry"]
    assert max(values_in(e) for e in entry) <= VALUES_PER_ENTRY  # 75 when the budget was set


def test_a_transaction_of_our_examples_at_the_entry_limit_fits_the_json_limits_at_the_defaults() -> None:
    settings = Settings.load({}, environ={})
    bundle = ig_transaction(settings.max_bundle_entries)
    items, values = settings.bundle_json_limits()

    assert values == settings.max_bundle_entries * VALUES_PER_ENTRY > settings.max_json_values  # grows with entries
    assert parse_json(json.dumps(bundle).encode(), settings.max_json_depth, items, values) == bundle


def test_a_transaction_at_the_entry_limit_is_stored_and_absurd_bundles_are_refused_before_the_walk(
        database_url: str, api_key: Callable[..., str]) -> None:
    """Limits low enough for a quick test of their wiring: 40 entries, and 1,000 values in any other body."""
    app = create_app(Settings.load({"database_url": database_url, "max_bundle_entries": 40,
                                    "max_json_values": 1_000}, environ={}))
    client, writer = app.test_client(), api_key("system/*.cu", "system/ketamine-records.cu")
    try:
        stored = post(client, "/fhir", ig_transaction(40), writer)  # about 1,800 values: more than another body
        assert stored.status_code == 200, stored.get_json()
        assert all(e["response"]["status"].startswith("201") for e in stored.get_json()["entry"])
        assert post(client, "/fhir/Observation", observation(note=[{"text": "x"}] * 600), writer).status_code == 413
        assert post(client, "/fhir", ig_transaction(41), writer).status_code == 413
        for absurd, limit in ((observation(note=[{}] * 200_000), "1000 items"),  # one entry: the array attack
                              (observation(note=[{"text": "x"}] * 999, component=[{"code": {}}] * 999), "values")):
            refused = post(client, "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": absurd, "request": {"method": "POST", "url": "Observation"}}]}, writer)
            assert refused.status_code == 413 and limit in refused.get_data(as_text=True)
    finally:
        app.extensions["kfhir_security"].audit.close()
        app.extensions["kfhir"].engine.dispose()
