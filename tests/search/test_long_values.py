"""A token or reference longer than an index row holds (search/parameters.INDEXED, 500 characters): the resource is
stored and found by it on both backends (PostgreSQL refused the row: a 500), the search cut as the row is."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from service.search.parameters import INDEXED, cut

pytestmark = pytest.mark.both_backends
FHIR = "application/fhir+json"


def test_cut_keeps_what_fits_and_the_first_characters_of_what_does_not() -> None:
    assert cut(None) is None and cut("a" * INDEXED) == "a" * INDEXED
    assert cut("a" * INDEXED + "b") == "a" * INDEXED


def test_an_identifier_longer_than_a_row_holds_is_stored_and_found(client: FlaskClient,
                                                                   api_key: Callable[..., str]) -> None:
    headers = {"Authorization": f"Bearer {api_key('system/Observation.cruds')}", "Content-Type": FHIR}
    value, system = "v" * 600, "https://clinic.example/" + "s" * 580
    created = client.post("/fhir/Observation", headers=headers, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
        "identifier": [{"system": system, "value": value}]})
    assert created.status_code == 201, created.get_json()
    for query in (f"identifier={value}", f"identifier={system}|{value}", f"identifier={system}|"):
        found = client.get(f"/fhir/Observation?{query}", headers=headers).get_json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [created.get_json()["id"]], query
    other = client.get(f"/fhir/Observation?identifier={'w' * 600}", headers=headers).get_json()
    assert other["total"] == 0 if "total" in other else not other.get("entry")


def test_a_reference_longer_than_a_row_holds_never_fails_the_write(client: FlaskClient,
                                                                    api_key: Callable[..., str]) -> None:
    """A relative reference whose id is longer than a row holds (not a valid id, so it finds nothing, but the
    resource may still be stored): its subject row and its link row are cut alike, and nothing answers 500."""
    headers = {"Authorization": f"Bearer {api_key('system/Observation.cruds')}", "Content-Type": FHIR}
    created = client.post("/fhir/Observation", headers=headers, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
        "subject": {"reference": "Patient/" + "p" * 600}})
    assert created.status_code < 500, created.get_json()
