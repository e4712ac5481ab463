"""Domain API v1: create, idempotent re-send, conflict, read, list, PUT with If-Match, versions."""
from __future__ import annotations

from typing import Any

import pytest
from factories import (
    FACTORIES,
    RECHECK_40_MIN,
    administration,
    adverse_event,
    assessment,
    esketamine_session,
    treatment_plan,
)
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

PLURAL = {"treatment-plan": "treatment-plans", "administration": "administrations",
          "adverse-event": "adverse-events", "assessment": "assessments"}


def post(client: FlaskClient, plural: str, record: Any) -> TestResponse:
    return client.post(f"/api/v1/{plural}", json=record)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_create_answers_201_with_location_and_etag(client: FlaskClient, kind: str) -> None:
    response = post(client, PLURAL[kind], FACTORIES[kind]())
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/{PLURAL[kind]}/{body['id']}"
    assert response.headers["ETag"] == 'W/"1"'
    assert body["kind"] == kind and body["version"] == 1 and body["record"]["external_id"]
    assert client.get(response.headers["Location"]).get_json() == body


@pytest.mark.both_backends  # the identity constraint
def test_identical_resend_answers_200_without_duplicate(client: FlaskClient) -> None:
    first = post(client, "assessments", assessment())
    again = post(client, "assessments", assessment())
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert client.get("/api/v1/assessments").get_json()["count"] == 1


@pytest.mark.both_backends  # JSON as each database stores it
def test_resend_with_equivalent_json_is_identical(client: FlaskClient) -> None:
    post(client, "administrations", administration(dose_mg=35))
    assert post(client, "administrations", administration(dose_mg=35.0)).status_code == 200


@pytest.mark.both_backends  # the identity constraint
def test_conflicting_resend_answers_409_naming_the_record(client: FlaskClient) -> None:
    first = post(client, "assessments", assessment()).get_json()
    response = post(client, "assessments", assessment(score=3))
    assert response.status_code == 409
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert problem["existing_id"] == first["id"] and first["id"] in problem["detail"]
    assert client.get(f"/api/v1/assessments/{first['id']}").get_json()["record"]["score"] == 18


def test_source_defaults_so_resend_without_source_matches(client: FlaskClient) -> None:
    first = post(client, "assessments", assessment(source=None)).get_json()
    assert first["source"] == "default"
    assert post(client, "assessments", assessment(source="default")).status_code == 200


def test_findings_are_stored_and_returned_with_their_severity(client: FlaskClient) -> None:
    vitals = [{"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 150, "diastolic": 95}, RECHECK_40_MIN]
    body = post(client, "administrations", esketamine_session(vitals=vitals)).get_json()
    assert [w["rule"] for w in body["warnings"]] == ["esketamine-predose-bp"]
    assert body["findings"] == body["warnings"]
    finding = body["findings"][0]
    assert (finding["severity"], finding["code"], finding["field"]) == (
        "moderate", "elevated-predose-blood-pressure", "vitals[0]")
    assert finding["values"]["systolic"] == 150 and finding["source"].startswith("clinical.md §3")
    read = client.get(f"/api/v1/administrations/{body['id']}").get_json()
    assert read["findings"] == body["findings"]


def test_a_session_that_happened_is_stored_and_flagged_not_refused(client: FlaskClient) -> None:
    response = post(client, "administrations", esketamine_session(dose_mg=112))
    assert response.status_code == 201
    assert [(f["severity"], f["code"]) for f in response.get_json()["findings"]] == [("high", "dose-outside-range")]
    bundle = client.get(f"/api/v1/administrations/{response.get_json()['id']}/fhir").get_json()
    flags = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert [(f["severity"], f["code"]["coding"][0]["code"]) for f in flags] == [("high", "dose-outside-range")]


def test_rule_error_is_422_with_field_and_nothing_stored(client: FlaskClient) -> None:
    vitals = [{"at": "2026-03-02T09:20:00-05:00", "phase": "intra", "systolic": 60, "diastolic": 120}]
    response = post(client, "administrations", administration(vitals=vitals))
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        {"field": "vitals[0].systolic", "message": "systolic 60 is not above diastolic 120", "rule": "implausible"}]
    assert client.get("/api/v1/administrations").get_json()["count"] == 0


def test_schema_errors_name_each_field(client: FlaskClient) -> None:
    response = post(client, "assessments", assessment(score="18", at="2026-03-01T10:00:00", extra=1))
    assert response.status_code == 422
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert fields == {"score", "at", "extra"}


def test_adverse_event_onset_checked_against_the_stored_session(client: FlaskClient) -> None:
    post(client, "administrations", administration())
    early = adverse_event(administration_external_id="adm-1", onset_at="2026-03-02T08:00:00-05:00")
    response = post(client, "adverse-events", early)
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "onset_at"
    assert post(client, "adverse-events", adverse_event(administration_external_id="adm-1")).status_code == 201


def test_read_unknown_id_is_404_problem(client: FlaskClient) -> None:
    response = client.get("/api/v1/assessments/does-not-exist")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_read_through_the_wrong_kind_is_404(client: FlaskClient) -> None:
    rid = post(client, "assessments", assessment()).get_json()["id"]
    assert client.get(f"/api/v1/administrations/{rid}").status_code == 404


# --- PUT with If-Match ----------------------------------------------------------------------

def _created(client: FlaskClient) -> dict[str, Any]:
    return post(client, "assessments", assessment()).get_json()


def test_put_with_current_etag_stores_a_new_version(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    response = client.put(f"/api/v1/assessments/{rid}", json=assessment(score=9), headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"2"'
    versions = client.get(f"/api/v1/assessments/{rid}/versions").get_json()["versions"]
    assert [(v["version"], v["content"]["score"]) for v in versions] == [(1, 18), (2, 9)]


@pytest.mark.both_backends  # the version check in the UPDATE
def test_put_with_stale_etag_is_412_and_changes_nothing(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    client.put(f"/api/v1/assessments/{rid}", json=assessment(score=9), headers={"If-Match": 'W/"1"'})
    response = client.put(f"/api/v1/assessments/{rid}", json=assessment(score=4), headers={"If-Match": 'W/"1"'})
    assert response.status_code == 412 and response.get_json()["current_version"] == 2
    assert client.get(f"/api/v1/assessments/{rid}").get_json()["record"]["score"] == 9


def test_put_without_if_match_is_428(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    assert client.put(f"/api/v1/assessments/{rid}", json=assessment(score=9)).status_code == 428


@pytest.mark.parametrize("header", ["1", 'W/"x"', '"abc"', "W/1"])
def test_put_with_unusable_if_match_is_412(client: FlaskClient, header: str) -> None:
    rid = _created(client)["id"]
    assert client.put(f"/api/v1/assessments/{rid}", json=assessment(score=9), headers={"If-Match": header}).status_code == 412


def test_put_with_if_match_star_replaces_the_current_version(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    response = client.put(f"/api/v1/assessments/{rid}", json=assessment(score=9), headers={"If-Match": "*"})
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"2"'


def test_stale_etag_is_judged_before_the_body(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    client.put(f"/api/v1/assessments/{rid}", json=assessment(score=9), headers={"If-Match": 'W/"1"'})
    response = client.put(f"/api/v1/assessments/{rid}", data="{", content_type="application/json",
                          headers={"If-Match": 'W/"1"'})
    assert response.status_code == 412


def test_full_last_page_has_no_next(client: FlaskClient) -> None:
    _seed(client)
    page = client.get("/api/v1/assessments?limit=4").get_json()
    assert page["count"] == 4 and page["next"] is None


def test_put_cannot_change_identity(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    response = client.put(f"/api/v1/assessments/{rid}", json=assessment(external_id="other"), headers={"If-Match": 'W/"1"'})
    assert response.status_code == 409
    assert client.get(f"/api/v1/assessments/{rid}").get_json()["record"]["external_id"] == "asmt-1"


def test_put_same_content_keeps_the_version(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    response = client.put(f"/api/v1/assessments/{rid}", json=assessment(), headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"1"'


def test_put_to_unknown_record_is_404(client: FlaskClient) -> None:
    assert client.put("/api/v1/assessments/nope", json=assessment(), headers={"If-Match": 'W/"1"'}).status_code == 404


def test_put_invalid_record_is_422_and_keeps_the_old(client: FlaskClient) -> None:
    rid = _created(client)["id"]
    response = client.put(f"/api/v1/assessments/{rid}", json=assessment(score=99), headers={"If-Match": 'W/"1"'})
    assert response.status_code == 422
    assert client.get(f"/api/v1/assessments/{rid}").headers["ETag"] == 'W/"1"'


def test_server_fields_in_the_body_are_unknown_fields(client: FlaskClient) -> None:
    response = post(client, "assessments", assessment(id="mine", version=7, warnings=[]))
    assert response.status_code == 422
    assert {e["field"] for e in response.get_json()["errors"]} == {"id", "version", "warnings"}


# --- list -----------------------------------------------------------------------------------

def _seed(client: FlaskClient) -> None:
    for n, (mrn, at) in enumerate([("MRN-1", "2026-03-01T10:00:00+00:00"), ("MRN-2", "2026-03-02T23:30:00-05:00"),
                                   ("MRN-1", "2026-03-04T10:00:00+00:00"), ("MRN-1", "2026-03-05T10:00:00+00:00")]):
        patient = {"identifier": {"system": "https://clinic.example/mrn", "value": mrn}}
        assert post(client, "assessments", assessment(external_id=f"a-{n}", patient=patient, at=at)).status_code == 201


def _ids(client: FlaskClient, query: str) -> list[str]:
    response = client.get(f"/api/v1/assessments?{query}")
    assert response.status_code == 200, response.get_json()
    return [item["external_id"] for item in response.get_json()["items"]]


def test_list_by_patient_identifier(client: FlaskClient) -> None:
    _seed(client)
    assert _ids(client, "patient_identifier=MRN-1") == ["a-0", "a-2", "a-3"]
    assert _ids(client, "patient_identifier=https://clinic.example/mrn|MRN-2") == ["a-1"]
    assert _ids(client, "patient_identifier=https://elsewhere|MRN-2") == []


@pytest.mark.both_backends  # time columns
def test_list_by_date_range_in_utc(client: FlaskClient) -> None:
    _seed(client)
    # a-1 is 2026-03-02T23:30-05:00 = 2026-03-03T04:30Z: inside a range of the 3rd (UTC).
    assert _ids(client, "date_from=2026-03-03&date_to=2026-03-04") == ["a-1", "a-2"]
    assert _ids(client, "date_from=2026-03-04T10:00:00%2B00:00") == ["a-2", "a-3"]
    assert _ids(client, "date_to=2026-03-04T10:00:00Z") == ["a-0", "a-1", "a-2"]


@pytest.mark.both_backends  # ordering and cursors in SQL
def test_list_pages_follow_next_until_done(client: FlaskClient) -> None:
    _seed(client)
    seen, url = [], "/api/v1/assessments?limit=3&patient_identifier=MRN-1"
    while url:
        page = client.get(url).get_json()
        seen += [item["external_id"] for item in page["items"]]
        url = page["next"]
    assert seen == ["a-0", "a-2", "a-3"]


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"), ("date_from=03/01/2026", "date_from"),
    ("date_to=2026-03-01T10:00:00", "date_to"), ("cursor=%%%", "cursor"), ("cursor=cGs6YQ", "cursor"),
    ("patient=MRN-1", "patient"), ("patient_identifier=sys|", "patient_identifier"),
])
def test_bad_list_parameters_are_400_naming_the_parameter(client: FlaskClient, query: str, field: str) -> None:
    response = client.get(f"/api/v1/assessments?{query}")
    assert response.status_code == 400
    assert [e["field"] for e in response.get_json()["errors"]] == [field]


def test_unknown_kind_is_404_problem(client: FlaskClient) -> None:
    response = client.get("/api/v1/prescriptions")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/v1/assessments")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]
    assert response.mimetype == "application/problem+json"


@pytest.mark.both_backends  # JSON and time columns
def test_treatment_plan_round_trip_keeps_every_field(client: FlaskClient) -> None:
    plan = treatment_plan(
        goals=[{"measure": "madrs", "target": "response", "baseline": 32}],
        concurrent_therapy={"psychotherapy": None, "antidepressants": [{"name": "sertraline", "rxnorm": "36437"}]},
        screening={"contraindications": [{"code": "hypersensitivity", "present": False}],
                   "baseline_bp": {"systolic": 120, "diastolic": 80}, "pregnant": None,
                   "interacting_medications": [{"name": "lorazepam", "class": "benzodiazepine"}]},
        prescriber={"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"}, "name": "Dr X"})
    body = post(client, "treatment-plans", plan).get_json()
    assert body["record"] == plan
