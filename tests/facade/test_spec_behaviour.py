"""Where real clients lean on the spec: referential integrity on delete, formats (406/415, fhirVersion), and
transaction/batch errors that say which entry failed."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

FHIR = "application/fhir+json"


def put(client: FlaskClient, resource: dict[str, Any]) -> Any:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", data=json.dumps(resource),
                      content_type=FHIR)


def post(client: FlaskClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, data=json.dumps(body), content_type=FHIR, headers=headers)


def observation(oid: str, patient: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "note"},
            "subject": {"reference": f"Patient/{patient}"}}


@pytest.fixture
def held(client: FlaskClient) -> None:
    assert put(client, {"resourceType": "Patient", "id": "p1"}).status_code == 201
    for oid in ("o1", "o2"):
        assert put(client, observation(oid)).status_code == 201


# --- referential integrity on delete ------------------------------------------------------------

@pytest.mark.both_backends
def test_a_delete_while_others_refer_is_409_naming_them(client: FlaskClient, held: None) -> None:
    refused = client.delete("/fhir/Patient/p1")
    assert refused.status_code == 409
    text = refused.json["issue"][0]["details"]["text"]
    assert "Observation/o1" in text and "Observation/o2" in text and "Patient/p1" in text
    assert {i.get("expression", [""])[0] for i in refused.json["issue"][1:]} == {"Observation.subject"}
    assert client.get("/fhir/Patient/p1").status_code == 200  # nothing changed


def test_once_the_referrers_are_gone_the_delete_goes_through(client: FlaskClient, held: None) -> None:
    assert client.delete("/fhir/Observation/o1").status_code == 204
    assert put(client, observation("o2") | {"subject": {"display": "someone"}}).status_code == 200
    assert client.delete("/fhir/Patient/p1").status_code == 204  # its Provenance does not hold it back


def test_a_transaction_may_delete_a_resource_with_its_referrers(client: FlaskClient, held: None) -> None:
    deletes = [{"request": {"method": "DELETE", "url": url}} for url in ("Patient/p1", "Observation/o1",
                                                                         "Observation/o2")]
    done = post(client, "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": deletes})
    assert done.status_code == 200, done.json
    assert client.get("/fhir/Patient/p1").status_code == 410


def test_a_transaction_that_leaves_a_referrer_fails_whole(client: FlaskClient, held: None) -> None:
    deletes = [{"request": {"method": "DELETE", "url": url}} for url in ("Patient/p1", "Observation/o1")]
    refused = post(client, "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": deletes})
    assert refused.status_code == 409 and "Observation/o2" in refused.json["issue"][0]["details"]["text"]
    assert client.get("/fhir/Observation/o1").status_code == 200


def test_a_batch_delete_is_refused_on_its_own(client: FlaskClient, held: None) -> None:
    entries = [{"request": {"method": "DELETE", "url": "Patient/p1"}},
               {"request": {"method": "DELETE", "url": "Observation/o1"}}]
    done = post(client, "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": entries}).json
    assert [e["response"]["status"] for e in done["entry"]] == ["409 Conflict", "204 No Content"]
    assert "Entry 0 (DELETE Patient/p1)" in done["entry"][0]["response"]["outcome"]["issue"][0]["details"]["text"]


# --- formats ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "accept"), [
    ({"_format": "xml"}, None), ({"_format": "application/fhir+xml"}, None), ({"_format": "ttl"}, None),
    ({}, "application/fhir+xml"), ({}, "application/xml, text/xml"), ({}, "text/html"),
    ({}, "application/fhir+json; fhirVersion=3.0"), ({"_format": "application/fhir+json;fhirVersion=5.0"}, None),
])
def test_formats_we_do_not_serve_are_406(client: FlaskClient, query: dict[str, str], accept: str | None) -> None:
    for path in ("/fhir/metadata", "/fhir/Patient", "/fhir/Patient/nobody"):
        answer = client.get(path, query_string=query, headers={"Accept": accept} if accept else {})
        assert answer.status_code == 406, (path, answer.json)
        assert answer.mimetype == FHIR and answer.json["resourceType"] == "OperationOutcome"
        text = answer.json["issue"][0]["details"]["text"]
        assert "application/fhir+json" in text and ("R4 only" in text) == ("fhirVersion" in str(query) + str(accept))


@pytest.mark.parametrize(("query", "accept"), [
    ({"_format": "json"}, None), ({"_format": "application/fhir+json"}, None), ({}, "*/*"),
    ({}, "application/fhir+json; fhirVersion=4.0"), ({}, "application/fhir+xml;q=0.9, application/json;q=0.5"),
    ({}, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),  # a browser
    ({"_format": "json"}, "application/fhir+xml"),  # _format overrides Accept
])
def test_json_is_served_to_whoever_takes_it(client: FlaskClient, query: dict[str, str], accept: str | None) -> None:
    answer = client.get("/fhir/metadata", query_string=query, headers={"Accept": accept} if accept else {})
    assert answer.status_code == 200 and answer.json["fhirVersion"] == "4.0.1"


def test_a_body_of_another_fhir_version_is_415(client: FlaskClient) -> None:
    body = json.dumps({"resourceType": "Patient"})
    refused = client.post("/fhir/Patient", data=body, content_type="application/fhir+json; fhirVersion=3.0")
    assert refused.status_code == 415 and "fhirVersion=3.0" in refused.json["issue"][0]["details"]["text"]
    taken = client.post("/fhir/Patient", data=body, content_type="application/fhir+json; fhirVersion=4.0")
    assert taken.status_code == 201


# --- which entry failed -------------------------------------------------------------------------

def test_a_failed_transaction_names_the_entry_and_its_full_url(client: FlaskClient) -> None:
    good = {"fullUrl": "urn:uuid:6a1e0c55-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient"}}
    bad = {"fullUrl": "urn:uuid:6a1e0c55-0000-4000-8000-000000000002",
           "resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}
    refused = post(client, "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [good, bad]})
    assert refused.status_code == 422
    assert "at entry 1 (urn:uuid:6a1e0c55-0000-4000-8000-000000000002)" in refused.json["issue"][0]["details"]["text"]
    malformed = {"fullUrl": "urn:uuid:6a1e0c55-0000-4000-8000-000000000003", "request": {"method": "POST",
                                                                                       "url": "Banana"}}
    refused = post(client, "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [good, malformed]})
    assert refused.status_code == 404 and "entry 1 (urn:uuid:" in refused.json["issue"][0]["details"]["text"]


def test_a_batch_entry_outcome_names_the_entry(client: FlaskClient) -> None:
    bad = {"fullUrl": "urn:uuid:6a1e0c55-0000-4000-8000-000000000004",
           "resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}
    done = post(client, "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [bad]}).json
    assert done["entry"][0]["response"]["status"].startswith("422")
    text = done["entry"][0]["response"]["outcome"]["issue"][0]["details"]["text"]
    assert text.startswith("Entry 0 (urn:uuid:6a1e0c55-0000-4000-8000-000000000004): ")


def test_a_dangling_placeholder_sent_alone_is_400_as_hapi_answers(client: FlaskClient) -> None:
    dangling = observation("x") | {"subject": {"reference": "urn:uuid:6a1e0c55-0000-4000-8000-00000000000f"}}
    del dangling["id"]
    refused = post(client, "/fhir/Observation", dangling)
    assert refused.status_code == 400 and "urn:uuid:6a1e0c55" in refused.json["issue"][0]["details"]["text"]
