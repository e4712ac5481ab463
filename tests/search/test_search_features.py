"""Search features real clients send, through raw HTTP (the fhirpy client's view: tests/facade/test_fhirpy.py)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

FHIR = "application/fhir+json"


def put(client: FlaskClient, resource: dict[str, Any]) -> None:
    answer = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", data=json.dumps(resource),
                        content_type=FHIR)
    assert answer.status_code in (200, 201), answer.json


def ids(client: FlaskClient, path: str, **query: str) -> list[str]:
    answer = client.get(path, query_string=query)
    assert answer.status_code == 200, answer.json
    return sorted(e["resource"]["id"] for e in answer.json.get("entry", []) if e["search"]["mode"] == "match")


@pytest.fixture
def people(client: FlaskClient) -> None:
    put(client, {"resourceType": "Patient", "id": "ana", "name": [{"family": "Ñúñez", "given": ["Ana"]}],
                 "identifier": [{"system": "https://clinic.example/mrn", "value": "MRN-1"}]})
    put(client, {"resourceType": "Patient", "id": "bo", "name": [{"family": "Nunez", "given": ["Bo"]}],
                 "identifier": [{"system": "https://clinic.example/mrn", "value": "MRN-2"}]})
    put(client, {"resourceType": "Patient", "id": "cy", "name": [{"family": "Abernunez"}]})


@pytest.mark.both_backends
def test_string_modifiers(client: FlaskClient, people: None) -> None:
    assert ids(client, "/fhir/Patient", family="nunez") == ["ana", "bo"]          # prefix, case and accents folded
    assert ids(client, "/fhir/Patient", **{"family:exact": "Ñúñez"}) == ["ana"]    # as written
    assert ids(client, "/fhir/Patient", **{"family:exact": "nunez"}) == []
    assert ids(client, "/fhir/Patient", **{"family:contains": "NUNE"}) == ["ana", "bo", "cy"]
