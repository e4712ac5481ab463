"""A Bundle entry answers as the same request sent alone: single, batch entry and transaction entry compared.

R4 http.html#transaction: the entries "are each processed separately as if they were an individual
interaction ... subject to the normal processing for each, including the meta element, verification and
version aware updates"; a batch entry is "treated as if an individual interaction" (http.html#brules).
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

FHIR = "application/fhir+json"
WAYS = ("single", "batch", "transaction")


def send(client: FlaskClient, way: str, method: str, url: str, body: Any = None,
         if_match: str | None = None) -> tuple[int, Any]:
    """The status (and resource, if any) of one request sent alone, as a batch's entry or a transaction's."""
    if way == "single":
        response = client.open(f"/fhir/{url}", method=method, content_type=FHIR,
                               data=None if body is None else json.dumps(body),
                               headers={"If-Match": if_match} if if_match else {})
        return response.status_code, response.json if response.data else None
    request = {"method": method, "url": url} | ({"ifMatch": if_match} if if_match else {})
    entry = {"request": request} | ({} if body is None else {"resource": body})
    response = client.post("/fhir", data=json.dumps({"resourceType": "Bundle", "type": way, "entry": [entry]}),
                           content_type=FHIR)
    if response.status_code != 200:  # a transaction that failed whole
        return response.status_code, response.json
    answer = response.json["entry"][0]
    return int(answer["response"]["status"].split()[0]), answer.get("resource")


def status(client: FlaskClient, way: str, method: str, url: str, body: Any = None,
           if_match: str | None = None) -> int:
    return send(client, way, method, url, body, if_match)[0]


def patient(resource_id: str | None = None, **changes: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "gender": "female"} | ({"id": resource_id} if resource_id else {}) | changes


def put(client: FlaskClient, resource_id: str, **changes: Any) -> None:
    assert status(client, "single", "PUT", f"Patient/{resource_id}", patient(resource_id, **changes)) in (200, 201)


@pytest.mark.parametrize("way", WAYS)
def test_if_match_on_a_deleted_resource_fails_and_leaves_it_deleted(client: FlaskClient, way: str) -> None:
    """http.html#concurrency: If-Match names the current version; a deleted resource has none (a read is 410)."""
    put(client, way)
    assert client.delete(f"/fhir/Patient/{way}").headers["ETag"] == 'W/"2"'
    assert status(client, way, "PUT", f"Patient/{way}", patient(way), if_match='W/"2"') == 412
    assert client.get(f"/fhir/Patient/{way}").status_code == 410


@pytest.mark.parametrize("way", WAYS)
def test_if_match_on_the_current_version_updates(client: FlaskClient, way: str) -> None:
    put(client, way)
    assert status(client, way, "PUT", f"Patient/{way}", patient(way, gender="male"), if_match='W/"2"') == 412
    assert status(client, way, "PUT", f"Patient/{way}", patient(way, gender="male"), if_match='W/"1"') == 200
    assert client.get(f"/fhir/Patient/{way}").json["gender"] == "male"


@pytest.mark.parametrize("way", WAYS)
def test_an_if_match_that_is_no_etag_of_ours_fails(client: FlaskClient, way: str) -> None:
    """RFC 9110 §13.1.1: a condition that cannot hold is 412, in the header or in Bundle.entry.request.ifMatch."""
    put(client, way)
    assert status(client, way, "PUT", f"Patient/{way}", patient(way, gender="male"), if_match="abc") == 412
    assert client.get(f"/fhir/Patient/{way}").json["gender"] == "female"


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("if_match", ["1", '"1"', "W/1"])
def test_an_if_match_without_the_weak_quoted_form_is_read_as_hapi_reads_it(client: FlaskClient, way: str,
                                                                           if_match: str) -> None:
    """HAPI FHIR accepts a version in If-Match with or without W/ and quotes; clients that send a bare 1 work."""
    put(client, way)
    assert status(client, way, "PUT", f"Patient/{way}", patient(way, gender="male"), if_match=if_match) == 200
    assert client.get(f"/fhir/Patient/{way}").json["gender"] == "male"


@pytest.mark.parametrize("way", WAYS)
def test_an_id_that_is_not_a_fhir_id_is_refused(client: FlaskClient, way: str) -> None:
    """http.html#update, datatypes.html#id: 1-64 of A-Z a-z 0-9 - and ."""
    assert status(client, way, "PUT", f"Patient/{way}_1", patient(f"{way}_1")) == 400
    assert client.get(f"/fhir/Patient/{way}_1").status_code == 404


@pytest.mark.parametrize("way", WAYS)
def test_an_update_with_another_id_is_refused_for_the_id_before_its_content(client: FlaskClient, way: str) -> None:
    assert status(client, way, "PUT", f"Patient/{way}", patient("other", gender="x")) == 400


@pytest.mark.parametrize("way", WAYS)
def test_a_placeholder_reference_that_names_nothing_is_refused(client: FlaskClient, way: str) -> None:
    """references.html: a reference SHALL resolve; a urn:uuid names an entry of the same transaction or nothing
    (400, as HAPI answers it: "Unable to satisfy placeholder ID")."""
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": way},
                   "subject": {"reference": "urn:uuid:0b7f6a3e-0000-4000-8000-000000000001"}}
    refused, outcome = send(client, way, "POST", "Observation", observation)
    assert refused == 400, outcome
    assert client.get("/fhir/Observation", query_string={"code": way}).json["total"] == 0


@pytest.mark.parametrize("way", WAYS)
def test_a_client_id_and_server_meta_are_ignored_on_create(client: FlaskClient, way: str) -> None:
    """http.html#create: the server assigns the id and meta.versionId/lastUpdated."""
    sent = patient("client-chosen", name=[{"family": way}]) | {
        "meta": {"versionId": "9", "lastUpdated": "2020-01-01T00:00:00Z", "tag": [{"code": way}]}}
    assert status(client, way, "POST", "Patient", sent) == 201
    found = client.get("/fhir/Patient", query_string={"family": way}).json["entry"][0]["resource"]
    assert found["id"] != "client-chosen" and found["meta"]["versionId"] == "1"
    assert found["meta"]["lastUpdated"] != "2020-01-01T00:00:00Z" and found["meta"]["tag"] == [{"code": way}]


@pytest.mark.parametrize("way", WAYS)
def test_a_get_of_a_version_reads_that_version(client: FlaskClient, way: str) -> None:
    put(client, way)
    put(client, way, gender="male")
    answered, resource = send(client, way, "GET", f"Patient/{way}/_history/1")
    assert (answered, resource["gender"], resource["meta"]["versionId"]) == (200, "female", "1")
    assert status(client, way, "GET", f"Patient/{way}/_history/3") == 404


@pytest.mark.parametrize("way", WAYS)
def test_a_read_of_a_deleted_resource_is_gone(client: FlaskClient, way: str) -> None:
    put(client, way)
    client.delete(f"/fhir/Patient/{way}")
    assert status(client, way, "GET", f"Patient/{way}") == 410
    assert status(client, way, "DELETE", f"Patient/{way}") == 204
    assert status(client, way, "DELETE", f"Patient/{way}-never") == 404


@pytest.mark.parametrize("way", ("batch", "transaction"))
@pytest.mark.parametrize("method, url", [("PUT", "Patient/{}/_history/1"), ("DELETE", "Patient/{}/x"),
                                         ("GET", "Patient/{}/_history")])
def test_a_url_that_is_not_type_id_is_refused(client: FlaskClient, way: str, method: str, url: str) -> None:
    """Not read as Type/id with the rest dropped (a PUT there would overwrite the current version)."""
    put(client, way)
    body = patient(way, gender="male") if method == "PUT" else None
    assert status(client, way, method, url.format(way), body) == 400
    assert client.get(f"/fhir/Patient/{way}").json["meta"]["versionId"] == "1"


def test_a_conditional_create_answers_alike(client: FlaskClient) -> None:
    identifier = {"system": "urn:example", "value": "1"}
    for way in WAYS:
        body, criteria = patient(identifier=[identifier]), "identifier=urn:example|1"
        if way == "single":
            answered = client.post("/fhir/Patient", data=json.dumps(body), content_type=FHIR,
                                   headers={"If-None-Exist": criteria}).status_code
        else:
            entry = {"resource": body, "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria}}
            bundle = client.post("/fhir", data=json.dumps({"resourceType": "Bundle", "type": way, "entry": [entry]}),
                                 content_type=FHIR).json
            answered = int(bundle["entry"][0]["response"]["status"].split()[0])
        assert answered == (201 if way == "single" else 200)
    assert client.get("/fhir/Patient", query_string={"identifier": "urn:example|1"}).json["total"] == 1


@pytest.mark.parametrize("way", WAYS)
def test_a_conditional_update_answers_alike(client: FlaskClient, way: str) -> None:
    """PUT Type?criteria (http.html#cond-update): no match creates, one match updates it, two are 412."""
    identifier = {"system": "urn:example", "value": way}
    url = f"Patient?identifier=urn:example|{way}"
    assert status(client, way, "PUT", url, patient(identifier=[identifier])) == 201
    code, _ = send(client, way, "PUT", url, patient(identifier=[identifier], gender="male"))
    assert code == 200
    found = client.get("/fhir/Patient", query_string={"identifier": f"urn:example|{way}"}).json
    assert found["total"] == 1
    assert (found["entry"][0]["resource"]["gender"], found["entry"][0]["resource"]["meta"]["versionId"]) == ("male", "2")
    assert status(client, way, "PUT", url, patient("someone-else", identifier=[identifier])) == 400
    assert status(client, "single", "POST", "Patient", patient(identifier=[identifier])) == 201
    assert status(client, way, "PUT", url, patient(identifier=[identifier])) == 412


@pytest.mark.parametrize("entry, code, field", [
    ({"resource": {"resourceType": "Patient"}}, 400, "Bundle.entry[1].request"),
    ({"request": {"method": "HEAD", "url": "Patient"}}, 400, "Bundle.entry[1].request"),
    ({"request": {"method": "PUT", "url": "Patient/p", "ifMatch": "version one"},
      "resource": {"resourceType": "Patient", "id": "p"}}, 412, "Bundle.entry[1].request.ifMatch"),
])
def test_a_transaction_entry_whose_request_cannot_be_read_fails_the_transaction_naming_it(
        client: FlaskClient, entry: dict[str, Any], code: int, field: str) -> None:
    """An entry with no request, a method that is none of GET, POST, PUT, DELETE, or an ifMatch that is no ETag:
    the transaction fails whole, naming the entry's field, and the entry before it is not written."""
    first = {"request": {"method": "PUT", "url": "Patient/before"}, "resource": patient("before")}
    response = client.post("/fhir", data=json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                     "entry": [first, entry]}), content_type=FHIR)
    assert response.status_code == code
    assert field in json.dumps(response.json)
    assert client.get("/fhir/Patient/before").status_code == 404
