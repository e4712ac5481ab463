"""Limits answer with a clear 4xx naming the limit and store nothing: strings, lists, nesting, Bundles, _count."""
from __future__ import annotations

import json
from typing import Any

import pytest
from factories import FACTORIES, administration, treatment_plan
from flask.testing import FlaskClient

from service.config import MAX_PAGE_SIZE, Settings
from service.search.query import MAX_COUNT

FHIR = "application/fhir+json"
PLURAL = {"treatment-plan": "treatment-plans", "administration": "administrations",
          "adverse-event": "adverse-events", "assessment": "assessments"}


def stored(client: FlaskClient) -> int:
    return sum(client.get(f"/api/v1/{p}").json["count"] for p in PLURAL.values())


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {e["field"] for e in problem.get("errors", [])}


@pytest.mark.parametrize("kind, changes, field", [
    ("assessment", {"external_id": "x" * 201}, "external_id"),
    ("assessment", {"source": "s" * 201}, "source"),
    ("administration", {"lot_number": "L" * 101}, "lot_number"),
    ("adverse-event", {"description": "d" * 4001}, "description"),
    ("assessment", {"patient": {"identifier": {"system": "https://x/" + "s" * 500, "value": "1"}}},
     "patient.identifier.system"),
    ("assessment", {"patient": {"identifier": {"system": "https://x", "value": "1"},
                                "name": {"given": ["g" * 201]}}}, "patient.name.given[0]"),
    ("assessment", {"patient": {"identifier": {"system": "https://x", "value": "1"},
                                "name": {"given": ["g"] * 11}}}, "patient.name.given"),
    ("treatment-plan", {"screening": {"contraindications": [{"code": "c" * 101, "present": False}]}},
     "screening.contraindications[0].code"),
    ("treatment-plan", {"screening": {"contraindications": [{"code": f"c-{i}", "present": False}
                                                            for i in range(51)]}}, "screening.contraindications"),
    ("treatment-plan", {"goals": [{"measure": "phq9", "target": "response"}] * 21}, "goals"),
])
def test_domain_strings_and_lists_are_capped(client: FlaskClient, kind: str, changes: dict[str, Any],
                                             field: str) -> None:
    response = client.post(f"/api/v1/{PLURAL[kind]}", json=FACTORIES[kind](**changes))
    assert response.status_code == 422, response.json
    assert field in fields_of(response.json)
    assert stored(client) == 0


@pytest.mark.both_backends  # column types and sizes
def test_the_longest_allowed_strings_pass(client: FlaskClient) -> None:
    record = administration(external_id="x" * 200, lot_number="L" * 100)
    assert client.post("/api/v1/administrations", json=record).status_code == 201


@pytest.mark.both_backends  # column types and sizes
def test_a_plan_at_every_list_cap_passes(client: FlaskClient) -> None:
    plan = treatment_plan(screening={"contraindications": [{"code": f"c-{i}", "present": False} for i in range(50)]})
    response = client.post("/api/v1/treatment-plans", json=plan)
    assert response.status_code in (201, 422)
    assert "screening.contraindications" not in fields_of(response.json)


def test_domain_page_size_is_clamped_to_the_maximum(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A larger `limit` is served as the largest page (service/params.py), as FHIR's _count is."""
    assert client.get(f"/api/v1/assessments?limit={MAX_PAGE_SIZE + 1}").status_code == 200
    monkeypatch.setattr("service.web.domain_api.MAX_PAGE_SIZE", 2)
    for n in range(3):
        assert client.post("/api/v1/assessments", json=FACTORIES["assessment"](external_id=f"a-{n}")).status_code == 201
    page = client.get("/api/v1/assessments?limit=100000").json
    assert page["count"] == 2 and page["next"] is not None
    response = client.get("/api/v1/assessments?limit=0")
    assert response.status_code == 400 and "limit" in fields_of(response.json)


def test_fhir_count_is_clamped_to_the_maximum(client: FlaskClient) -> None:
    bundle = client.get("/fhir/Patient?_count=5000").json
    assert bundle["resourceType"] == "Bundle"
    [link] = [link["url"] for link in bundle["link"] if link["relation"] == "self"]
    assert f"_count={MAX_COUNT}" in link
    huge = client.get("/fhir/Patient?_count=" + "9" * 5000).json  # served as the largest page, as HAPI does
    assert f"_count={MAX_COUNT}" in next(link["url"] for link in huge["link"] if link["relation"] == "self")
    refused = client.get("/fhir/Patient?_count=-1")
    assert refused.status_code == 400 and refused.json["resourceType"] == "OperationOutcome"


def test_fhir_bundles_over_the_entry_cap_are_413(client: FlaskClient) -> None:
    entry = {"resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST", "url": "Patient"}}
    cap = Settings().max_bundle_entries  # the client's app runs at the defaults
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * (cap + 1)}
    response = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR)
    assert response.status_code == 413 and response.json["resourceType"] == "OperationOutcome"
    assert f"at most {cap}" in response.json["issue"][0]["details"]["text"]
    assert client.get("/fhir/Patient").json.get("total", 0) == 0


def test_fhir_json_nested_too_deep_is_400(client: FlaskClient) -> None:
    deep: Any = "leaf"
    for _ in range(70):
        deep = {"extension": [{"url": "http://x", "valueString": "v"}], "x": deep}
    response = client.post("/fhir/Patient", data=json.dumps({"resourceType": "Patient", "text": deep}),
                           content_type=FHIR)
    assert response.status_code == 400 and "nested more than 64" in response.json["issue"][0]["details"]["text"]
