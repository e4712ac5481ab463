"""The facade through the Flask test client: transactions, search semantics, clinic-record links, metadata.

(Live-server tests with a real FHIR client library are in test_live_client.py.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from service.mapping import default_mapper
from service.store.models import ResourceRow
from service.store.records import RecordStore
from service.validation import default_validator

FHIR = "application/fhir+json"
ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "mapping" / "golden"


def post(client: FlaskClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, data=json.dumps(body), content_type=FHIR, headers=headers)


def golden_record(kind: str) -> dict[str, Any]:
    record = json.loads((GOLDEN / f"{kind}.record.json").read_text(encoding="utf-8"))
    record.pop("_scenario")
    return record


def golden_bundle(kind: str, **changes: Any) -> dict[str, Any]:
    from service.domain.kinds import KINDS

    schema = KINDS[kind].schema()
    return default_mapper().to_bundle(kind, schema.dump(schema.load(golden_record(kind) | changes)))


def the_plan(client: FlaskClient) -> None:
    """Session 2 belongs to plan-7 of the same patient: the plan's order must be there first."""
    patient = {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-1001"}}
    sent = post(client, "/fhir", golden_bundle("treatment-plan", external_id="plan-7", patient=patient))
    assert sent.status_code == 200, sent.json


def test_metadata_is_a_valid_r4_capability_statement(client: FlaskClient) -> None:
    statement = client.get("/fhir/metadata").json
    findings = default_validator().validate(statement)
    assert [f for f in findings if f.severity in ("error", "fatal")] == []
    served = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"MedicationAdministration", "Observation", "Patient", "Provenance"} <= served
    administration = next(r for r in statement["rest"][0]["resource"] if r["type"] == "MedicationAdministration")
    assert "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-administration" in administration[
        "supportedProfile"]
    assert {"read", "vread", "create", "update", "delete", "search-type"} <= {
        i["code"] for i in administration["interaction"]}


def test_a_session_before_its_plan_is_refused_whole(client: FlaskClient) -> None:
    refused = post(client, "/fhir", golden_bundle("administration"))
    assert refused.status_code == 400 and "MedicationRequest/" in refused.json["issue"][0]["details"]["text"]
    assert client.get("/fhir/_history").json["total"] == 0


@pytest.mark.both_backends  # conditional creates claimed in the database
def test_a_mapped_session_posts_as_a_transaction_and_again_changes_nothing(client: FlaskClient) -> None:
    the_plan(client)
    bundle = golden_bundle("administration")
    first = post(client, "/fhir", bundle)
    assert first.status_code == 200, first.json
    statuses = [(e["request"]["url"].split("/")[0], r["response"]["status"])
                for e, r in zip(bundle["entry"], first.json["entry"], strict=True)]
    # every resource of the session is new; the plan's patient is found by MRN (ifNoneExist)
    assert [s for t, s in statuses if t != "Patient"] == ["201 Created"] * (len(statuses) - 1)
    assert ("Patient", "200 OK") in statuses
    again = post(client, "/fhir", bundle).json
    # the deterministic ids update in place; the people are found by identifier, not duplicated
    assert [e["response"]["status"] for e in again["entry"]] == ["200 OK"] * len(bundle["entry"])
    assert client.get("/fhir/Patient").json["total"] == 1  # the plan's patient, found by MRN
    administration_id = bundle["entry"][0]["resource"]["id"]
    stored = client.get(f"/fhir/MedicationAdministration/{administration_id}").json
    assert stored["meta"]["versionId"] == "2"
    patient_ref = stored["subject"]["reference"]
    assert patient_ref.startswith("Patient/") and not patient_ref.startswith("urn:")
    observations = client.get("/fhir/Observation", query_string={"part-of": f"MedicationAdministration/{administration_id}"})
    assert observations.json["total"] == 6  # weight, bp, systolic, heart rate, SpO2, CADSS


@pytest.mark.both_backends  # one database transaction per Bundle
def test_a_failing_transaction_stores_nothing(client: FlaskClient) -> None:
    the_plan(client)
    before = client.get("/fhir/_history").json["total"]
    bundle = golden_bundle("administration")
    bundle["entry"][-1]["resource"]["identifier"][0]["system"] = "not a uri"
    refused = post(client, "/fhir", bundle)
    assert refused.status_code == 422 and refused.json["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/_history").json["total"] == before


def test_an_ehr_session_becomes_a_clinic_record(client: FlaskClient) -> None:
    the_plan(client)
    bundle = golden_bundle("administration")
    assert post(client, "/fhir", bundle).status_code == 200
    records = client.get("/api/v1/administrations").json["items"]
    assert len(records) == 1
    record = records[0]["record"]
    assert (record["source"], record["external_id"]) == ("clinic-a", "session-2")
    assert record["dose_mg"] == 35 and record["route"] == "intravenous"
    assert record["patient"]["identifier"] == {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-1001"}
    # the readings refer to the session (partOf), not it to them: they are part of its record all the same
    assert (record["vitals"], record["scores"]) == (golden_record("administration")["vitals"],
                                                   golden_record("administration")["scores"])
    assert records[0]["version"] == 1  # the session and its readings made the record once


def as_created(bundle: dict[str, Any]) -> dict[str, Any]:
    """`bundle` with each PUT entry a POST under a urn:uuid fullUrl (the server makes the ids), references following."""
    text = json.dumps(bundle)
    for n, entry in enumerate(bundle["entry"]):
        if entry["request"]["method"] == "PUT":
            text = text.replace(f'"{entry["fullUrl"]}"', f'"urn:uuid:00000000-0000-4000-8000-{n:012d}"')
    posted = json.loads(text)
    for entry in posted["entry"]:
        if entry["request"]["method"] == "PUT":
            entry["resource"].pop("id")
            entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    return posted


def test_a_session_created_with_its_readings_in_one_transaction_keeps_them(client: FlaskClient) -> None:
    """The session's id is made by the server as the transaction writes it, and its readings, created with it, refer
    to it: the record made from it has them (a created session's readings are only looked for in its own write)."""
    the_plan(client)
    sent = post(client, "/fhir", as_created(golden_bundle("administration")))
    assert sent.status_code == 200, sent.json
    assert {e["response"]["status"] for e in sent.json["entry"][:8]} == {"201 Created"}
    (item,) = client.get("/api/v1/administrations").json["items"]
    assert (item["record"]["vitals"], item["record"]["scores"]) == (golden_record("administration")["vitals"],
                                                                    golden_record("administration")["scores"])
    assert item["version"] == 1


def test_a_session_created_alone_becomes_a_record_without_readings(client: FlaskClient) -> None:
    the_plan(client)
    bundle = as_created(golden_bundle("administration"))
    sent = post(client, "/fhir", bundle | {"entry": [e for e in bundle["entry"] if not e["resource"].get("partOf")]})
    assert sent.status_code == 200, sent.json
    (item,) = client.get("/api/v1/administrations").json["items"]
    assert item["record"]["dose_mg"] == 35 and item["record"].get("vitals") in (None, [])


@pytest.mark.both_backends  # the row is sent with the record's id at the end of the write
def test_a_session_posted_or_put_alone_names_its_record_in_its_row(client: FlaskClient) -> None:
    """The administration's row carries the id of the record read from it (the console lists a record's resources
    by it), whether a request alone creates it by POST or by PUT."""
    the_plan(client)
    bundle = as_created(golden_bundle("administration"))
    sent = post(client, "/fhir", bundle | {"entry": [e for e in bundle["entry"] if not e["resource"].get("partOf")]})
    first = sent.json["entry"][0]["response"]["location"].split("/")[1]
    session = client.get(f"/fhir/MedicationAdministration/{first}").json
    session["meta"] = {"profile": session["meta"]["profile"]}  # the profile makes it a record's main resource
    engine = client.application.extensions["kfhir"].engine
    for method in ("POST", "PUT"):
        assert client.delete(f"/fhir/MedicationAdministration/{session.pop('id')}").status_code == 204
        if method == "POST":
            made = post(client, "/fhir/MedicationAdministration", session)
        else:
            made = client.put("/fhir/MedicationAdministration/session-2", data=json.dumps(session | {"id": "session-2"}),
                              content_type=FHIR)
        assert made.status_code == 201, made.json
        session["id"] = made.json["id"]
        with engine.connect() as connection:
            linked = connection.execute(select(ResourceRow.record_id).where(ResourceRow.id == session["id"])).scalar()
        (item,) = client.get("/api/v1/administrations").json["items"]  # the same session: the same record
        assert linked == item["id"]


def test_readings_posted_one_by_one_join_their_session_record(client: FlaskClient) -> None:
    """An EHR without transactions posts the session, then each vital sign and score on its own."""
    the_plan(client)
    bundle = golden_bundle("administration")
    readings = [e for e in bundle["entry"] if e["resource"].get("partOf")]
    rest = [e for e in bundle["entry"] if not e["resource"].get("partOf")]
    sent = post(client, "/fhir", bundle | {"entry": rest})
    assert readings and sent.status_code == 200
    assert client.get("/api/v1/administrations").json["items"][0]["record"].get("vitals") in (None, [])
    where = {e["fullUrl"]: "/".join(answer["response"]["location"].split("/")[:2])
             for e, answer in zip(rest, sent.json["entry"], strict=True)}
    for entry in readings:  # outside the transaction, references name the stored resources
        text = json.dumps(entry["resource"])
        for full_url, stored in where.items():
            text = text.replace(f'"{full_url}"', f'"{stored}"')
        answer = client.put(f"/fhir/{entry['request']['url']}", data=text, content_type=FHIR)
        assert answer.status_code == 201, answer.json
    item = client.get("/api/v1/administrations").json["items"][0]
    assert (item["record"]["vitals"], item["record"]["scores"]) == (golden_record("administration")["vitals"],
                                                                    golden_record("administration")["scores"])


@pytest.mark.both_backends  # one database transaction per Bundle
def test_a_crash_while_making_the_record_leaves_neither_resource_nor_record(
        client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resources, the clinic record and their link commit as one: a failure that is not a refusal of
    the record (here an error inside the record store, as a lost connection would be) undoes them all."""
    the_plan(client)
    before = client.get("/fhir/_history").json["total"]
    bundle = golden_bundle("administration")

    def lost_connection(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("connection lost")

    monkeypatch.setattr(RecordStore, "create", lost_connection)
    server = client.application.extensions["kfhir"].fhir
    with pytest.raises(OSError):
        server.bundle(bundle, "http://localhost/fhir")
    assert client.get("/fhir/_history").json["total"] == before
    assert client.get("/api/v1/administrations").json["items"] == []
    monkeypatch.undo()  # once it works, all of it is there, linked
    assert post(client, "/fhir", bundle).status_code == 200
    administration = client.get("/fhir/MedicationAdministration").json["entry"][0]["resource"]
    record = client.get("/api/v1/administrations").json["items"][0]
    assert record["record"]["external_id"] == "session-2"
    linked = client.application.extensions["kfhir"].fhir.read("MedicationAdministration", administration["id"])
    assert linked.record_id == record["id"]


def test_a_resource_that_cannot_be_a_record_is_kept_with_a_note(client: FlaskClient) -> None:
    # a patient without an MRN: the clinic record needs patient.identifier
    client.put("/fhir/Patient/no-mrn", data=json.dumps({"resourceType": "Patient", "id": "no-mrn"}), content_type=FHIR)
    observation = {"resourceType": "Observation", "meta": {"profile": [
        "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-outcome-score"]},
        "status": "final", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                                     "code": "survey"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": "Patient/no-mrn"}, "effectiveDateTime": "2026-03-20T10:00:00-05:00",
        "valueInteger": 9}
    made = post(client, "/fhir/Observation", observation, Prefer="return=OperationOutcome")
    assert made.status_code == 201
    notes = [i["details"]["text"] for i in made.json["issue"] if i["severity"] == "information"]
    assert any(n.startswith("Not read into a clinic record") for n in notes), made.json
    assert client.get("/api/v1/assessments").json["items"] == []


def test_references_must_name_resources_the_server_holds(client: FlaskClient) -> None:
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/nobody"}}
    refused = post(client, "/fhir/Observation", body)
    assert refused.status_code == 400
    assert refused.json["issue"][1]["expression"] == ["Observation.subject.reference"]
    elsewhere = body | {"subject": {"reference": "https://ehr.example/fhir/Patient/123"}}
    assert post(client, "/fhir/Observation", elsewhere).status_code == 201


def test_a_bundle_over_the_entry_limit_is_413(settings: Any) -> None:
    from service import create_app

    application = create_app(settings.replace(max_bundle_entries=2))
    try:
        entry = {"request": {"method": "GET", "url": "Patient/x"}}
        refused = post(application.test_client(), "/fhir", {"resourceType": "Bundle", "type": "batch",
                                                             "entry": [entry] * 3})
        assert refused.status_code == 413 and refused.json["resourceType"] == "OperationOutcome"
    finally:
        application.extensions["kfhir"].engine.dispose()


def test_a_batch_answers_each_entry_on_its_own(client: FlaskClient) -> None:
    good = {"resource": {"resourceType": "Patient", "gender": "female"}, "request": {"method": "POST", "url": "Patient"}}
    bad = {"resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}
    missing = {"request": {"method": "GET", "url": "Patient/nobody"}}
    answer = post(client, "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [good, bad, missing]}).json
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "422 Unprocessable content", "404 Not found"]
    assert answer["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient").json["total"] == 1


@pytest.fixture
def observations(client: FlaskClient) -> list[str]:
    client.put("/fhir/Patient/p1", data=json.dumps({"resourceType": "Patient", "id": "p1"}), content_type=FHIR)
    ids = []
    for day, value in ((2, 120), (5, 135), (9, 150)):
        body = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": f"2026-03-0{day}T09:00:00-05:00",
                "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
        ids.append(post(client, "/fhir/Observation", body).json["id"])
    return ids


@pytest.mark.both_backends  # search runs in SQL (LIKE, dates)
@pytest.mark.parametrize("query, expected", [
    ({"date": "2026-03-05"}, [1]),
    ({"date": "lt2026-03-05"}, [0]),
    ({"date": "le2026-03-05"}, [0, 1]),
    ({"date": "gt2026-03-05"}, [2]),
    ({"date": "ge2026-03-05T14:00:00Z"}, [1, 2]),
    ({"date": "2026-03"}, [0, 1, 2]),
    ({"code": "http://loinc.org|8867-4"}, [0, 1, 2]),
    ({"code": "http://snomed.info/sct|8867-4"}, []),
    ({"code": "8867-4,1234-5"}, [0, 1, 2]),
    ({"patient": "p1"}, [0, 1, 2]),
    ({"subject": "Patient/p1", "date": "ge2026-03-05"}, [1, 2]),
    ({"status": "final", "_sort": "-date"}, [2, 1, 0]),
])
def test_search_semantics(client: FlaskClient, observations: list[str], query: dict[str, str],
                          expected: list[int]) -> None:
    found = client.get("/fhir/Observation", query_string=query).json
    ids = [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"]
    if "_sort" not in query:
        ids = sorted(ids, key=observations.index)
    assert ids == [observations[i] for i in expected]
    assert found["total"] == len(expected)


@pytest.mark.both_backends  # search runs in SQL (ordering, offsets)
def test_paging_links_keep_every_parameter(client: FlaskClient, observations: list[str]) -> None:
    page = client.get("/fhir/Observation", query_string={"status": "final", "_count": 2, "_sort": "date"}).json
    assert [e["resource"]["id"] for e in page["entry"]] == observations[:2]
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert "status=final" in following and "_sort=date" in following and "_count=2" in following
    second = client.get(following.replace("http://localhost", "")).json
    assert [e["resource"]["id"] for e in second["entry"]] == observations[2:]
    assert not any(link["relation"] == "next" for link in second["link"])
    assert any(link["relation"] == "previous" for link in second["link"])


@pytest.mark.both_backends  # search runs in SQL (a page reads one row more than it shows)
def test_the_total_is_counted_when_asked_and_given_free_on_the_last_page(client: FlaskClient,
                                                                          observations: list[str]) -> None:
    def page(**query: str | int) -> dict[str, Any]:
        found: dict[str, Any] = client.get("/fhir/Observation", query_string={"status": "final", **query}).json
        return found

    def has_next(bundle: dict[str, Any]) -> bool:
        return any(link["relation"] == "next" for link in bundle["link"])

    full = page(_count=2)  # more follow: no count is made, and the next link says so
    assert "total" not in full and len(full["entry"]) == 2 and has_next(full)
    exact = page(_count=3)  # exactly one page: the row after it is looked for, not found
    assert exact["total"] == 3 and not has_next(exact)
    last = page(_count=2, _offset=2)
    assert last["total"] == 3 and len(last["entry"]) == 1 and not has_next(last)
    assert "total" not in page(_count=2, _offset=5)  # past the end: unknown without counting
    for asked in ({"_total": "accurate"}, {"_total": "estimate"}, {"_summary": "count"}, {"_count": 0}):
        assert page(**{"_count": 2, **asked})["total"] == 3, asked
    assert page(_count=2, _offset=5, _total="accurate")["total"] == 3
    assert "total" not in page(_total="none")
    for one_token in ({"code": "http://loinc.org|8867-4"},):  # one system|code: the store's prepared statement
        assert "total" not in page(_count=2, **one_token) and has_next(page(_count=2, **one_token))
        assert page(_count=3, **one_token)["total"] == 3 and not has_next(page(_count=3, **one_token))


@pytest.mark.both_backends  # search runs in SQL
def test_include_adds_the_referenced_patient(client: FlaskClient, observations: list[str]) -> None:
    found = client.get("/fhir/Observation", query_string={"_include": "Observation:patient"}).json
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in found["entry"]]
    assert modes.count(("Patient", "include")) == 1 and modes.count(("Observation", "match")) == 3


@pytest.mark.parametrize("query", [{"date": "yesterday"}, {"date": "ne2026-03-05"}, {"_count": "-1"},
                                   {"_sort": "colour"}, {"code:above": "x"}, {"_include": "Patient:organization"},
                                   {"_summary": "brief"}, {"_total": "sometimes"}, {"category:missing": "maybe"}])
def test_search_values_the_server_cannot_use_are_400(client: FlaskClient, query: dict[str, str]) -> None:
    refused = client.get("/fhir/Observation", query_string=query)
    assert refused.status_code == 400 and refused.json["resourceType"] == "OperationOutcome"


def test_a_clinic_record_is_stored_with_its_fhir_resources(client: FlaskClient) -> None:
    """Storing a record stores its mapped resources in the same transaction."""
    record = golden_record("administration")
    stored = client.post("/api/v1/administrations", json=record)
    assert stored.status_code == 201, stored.json
    bundle = client.get(f"/api/v1/administrations/{stored.json['id']}/fhir").json
    main = bundle["entry"][0]["resource"]
    held = client.get(f"/fhir/MedicationAdministration/{main['id']}").json
    assert held["identifier"] == main["identifier"] and held["dosage"] == main["dosage"]
    # the session points at its plan's order before the plan exists; the plan fills it in later
    assert held["request"]["reference"].startswith("MedicationRequest/")
    assert client.get("/fhir/Observation", query_string={"part-of": f"MedicationAdministration/{main['id']}"}
                      ).json["total"] == 6
    # a new version of the record updates the same resources
    changed = client.put(f"/api/v1/administrations/{stored.json['id']}", json=record | {"dose_mg": 28},
                         headers={"If-Match": stored.headers["ETag"]})
    assert changed.status_code == 200
    again = client.get(f"/fhir/MedicationAdministration/{main['id']}").json
    assert again["meta"]["versionId"] == "2" and again["dosage"]["dose"]["value"] == 28


@pytest.mark.both_backends  # conditional creates claimed in the database
def test_a_record_whose_resources_cannot_be_stored_is_not_stored(client: FlaskClient) -> None:
    """Two Patients already carry the MRN (an EHR's duplicates): the session's Patient entry
    (ifNoneExist) is ambiguous, so neither the record nor any of its resources is stored."""
    mrn = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-1001"}
    for _ in range(2):
        assert post(client, "/fhir/Patient", {"resourceType": "Patient", "identifier": [mrn]}).status_code == 201
    refused = client.post("/api/v1/administrations", json=golden_record("administration"))
    assert refused.status_code == 422, refused.json
    assert refused.json["detail"].endswith("matches 2 resources.")
    assert client.get("/api/v1/administrations").json["items"] == []
    assert client.get("/fhir/MedicationAdministration").json["total"] == 0


@pytest.mark.both_backends  # a race on a claim
def test_concurrent_records_of_one_new_patient_make_one_patient_resource(client: FlaskClient) -> None:
    """Eight sessions of a patient the server has never seen, stored at once: each export's
    Patient entry is a conditional create, claimed in the database, so one Patient results."""
    from concurrent.futures import ThreadPoolExecutor

    runtime = client.application.extensions["kfhir"]
    record = golden_record("administration")

    def store(i: int) -> str:
        session = record | {"external_id": f"session-{100 + i}", "session_number": 3 + i}
        return str(runtime.intake.submit("administration", session).record.id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(store, range(8)))
    assert len(set(ids)) == 8
    assert client.get("/fhir/Patient").json["total"] == 1
    assert client.get("/fhir/MedicationAdministration").json["total"] == 8
    patient = client.get("/fhir/Patient").json["entry"][0]["resource"]["id"]
    subjects = {e["resource"]["subject"]["reference"] for e in
                client.get("/fhir/MedicationAdministration", query_string={"_count": 20}).json["entry"]}
    assert subjects == {f"Patient/{patient}"}
