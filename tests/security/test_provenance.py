"""Provenance on every resource version received from a client or mapped from a clinic record, written in
the same transaction, naming the client (and the record)."""
from __future__ import annotations

import json
from typing import Any

import pytest
from factories import PATIENT, administration
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.app.runtime import Runtime
from service.facade.provenances import provenance_rows
from service.search.parameters import index
from service.security.audit import RECORD_ID
from service.security.provenance import provenance
from service.store.batch import index_rows
from service.store.models import ResourceRow, SearchIndexRow
from service.validation import default_validator

FHIR = "application/fhir+json"


def provenances(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["kfhir"].resources.unit() as unit:
        return [r.content for r in unit.history("Provenance", None, None, 10_000, 0)[0]]


def of(app: Flask, target: str) -> list[dict[str, Any]]:
    return [p for p in provenances(app) if p["target"][0]["reference"] == target]


def test_a_resource_received_through_the_facade_gets_one_provenance_per_version(
        app: Flask, client: FlaskClient) -> None:
    made = client.post("/fhir/Patient", data=json.dumps({"resourceType": "Patient", "gender": "female"}),
                       content_type=FHIR).get_json()
    client.put(f"/fhir/Patient/{made['id']}", data=json.dumps(made | {"gender": "male"}), content_type=FHIR)
    [first] = of(app, f"Patient/{made['id']}/_history/1")
    [second] = of(app, f"Patient/{made['id']}/_history/2")
    assert first["activity"]["coding"][0]["code"] == "CREATE" and second["activity"]["coding"][0]["code"] == "UPDATE"
    author, custodian = first["agent"]
    assert author["type"]["coding"][0]["code"] == "author" and author["who"]["display"] == "tests"
    assert custodian["type"]["coding"][0]["code"] == "custodian"
    assert "entity" not in first
    found = client.get("/fhir/Provenance", query_string={"target": f"Patient/{made['id']}"}).get_json()
    assert found["total"] == 2
    for resource in (first, second):
        assert [f for f in default_validator().validate(resource) if f.severity in ("error", "fatal")] == []


def test_every_resource_mapped_from_a_record_names_the_record(app: Flask, client: FlaskClient) -> None:
    record = client.post("/api/v1/administrations", json=administration()).get_json()
    written = [p for p in provenances(app) if p.get("entity")]
    assert written, "the record's resources have no Provenance"
    with app.extensions["kfhir"].resources.unit() as unit:
        resources, _ = unit.history(None, None, None, 10_000, 0)
    mapped = {f"{r.resource_type}/{r.id}/_history/{r.version}" for r in resources if r.resource_type != "Provenance"}
    targets = [t["reference"] for p in written for t in p["target"]]
    assert sorted(targets) == sorted(mapped)  # each version named once
    assert len(written) == 1 and written[0]["activity"]["coding"][0]["code"] == "CREATE"  # one for the record
    for p in written:
        assert p["entity"] == [{"role": "source", "what": {"identifier": {"system": RECORD_ID, "value": record["id"]},
                                                           "display": "clinic record"}}]
        assert [a["type"]["coding"][0]["code"] for a in p["agent"]] == ["author", "assembler"]


def test_a_provenance_posted_by_a_client_gets_none_of_its_own(app: Flask, client: FlaskClient) -> None:
    made = client.post("/fhir/Patient", data=json.dumps({"resourceType": "Patient"}), content_type=FHIR).get_json()
    theirs = {"resourceType": "Provenance", "target": [{"reference": f"Patient/{made['id']}"}],
              "recorded": "2026-03-02T09:00:00Z", "agent": [{"who": {"display": "EHR"}}]}
    assert client.post("/fhir/Provenance", data=json.dumps(theirs), content_type=FHIR).status_code == 201
    assert len(provenances(app)) == 2  # ours for the Patient, and theirs


def test_without_a_client_the_server_is_the_only_agent(runtime: Runtime) -> None:
    stored = runtime.fhir.create("Patient", {"resourceType": "Patient"}).resource
    with runtime.resources.unit() as unit:
        [ours] = [r.content for r in unit.history("Provenance", None, None, 10, 0)[0]]
    assert ours["target"] == [{"reference": f"Patient/{stored.id}/_history/1"}]
    assert [a["type"]["coding"][0]["code"] for a in ours["agent"]] == ["custodian"]


def test_a_transaction_gets_one_provenance_for_what_it_created_and_one_for_what_it_updated(
        app: Flask, client: FlaskClient) -> None:
    """One per write, not one per version: a Bundle of 1,000 entries wrote 1,000 Provenances."""
    made = client.post("/fhir/Patient", data=json.dumps({"resourceType": "Patient"}), content_type=FHIR).get_json()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b6a3f54-5b3c-4b4e-9d0a-1f0c1d2e3f40", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:0b6a3f54-5b3c-4b4e-9d0a-1f0c1d2e3f41", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": made["id"], "gender": "other"},
         "request": {"method": "PUT", "url": f"Patient/{made['id']}"}}]}
    answer = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    versions = [e["response"]["location"].split("/fhir/")[-1] for e in answer.get_json()["entry"]]
    ours = [p for p in provenances(app) if p["target"][0]["reference"] != f"Patient/{made['id']}/_history/1"]
    by_activity = {p["activity"]["coding"][0]["code"]: [t["reference"] for t in p["target"]] for p in ours}
    assert len(ours) == 2
    assert sorted(by_activity["CREATE"]) == sorted(versions[:2]) and by_activity["UPDATE"] == [versions[2]]
    found = client.get("/fhir/Provenance", query_string={"target": versions[1].split("/_history/")[0]}).get_json()
    assert found["total"] == 1
    for resource in ours:
        assert [f for f in default_validator().validate(resource) if f.severity in ("error", "fatal")] == []


def test_a_records_provenance_is_found_by_each_parameter_the_capability_statement_declares_for_it(
        app: Flask, client: FlaskClient) -> None:
    """Its `patient` index holds its Patient target only (R4: target.where(resolve() is Patient)); every declared
    parameter still finds it."""
    client.post("/api/v1/administrations", json=administration())
    [written] = [p for p in provenances(app) if p.get("entity")]
    declared = {r["type"]: [p["name"] for p in r["searchParam"]]
                for r in client.get("/fhir/metadata").get_json()["rest"][0]["resource"]}["Provenance"]
    assert sorted(declared) == ["_id", "_lastUpdated", "patient", "recorded", "target"]
    targets = [t["reference"].split("/_history/")[0] for t in written["target"]]
    [patient] = [t for t in targets if t.startswith("Patient/")]

    def ids(**query: str) -> list[str]:
        bundle = client.get("/fhir/Provenance", query_string=query | {"_count": "100"}).get_json()
        return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]

    for target in targets:
        assert written["id"] in ids(target=target), target
    assert written["id"] in ids(patient=patient)
    assert written["id"] in ids(patient=patient.removeprefix("Patient/"))
    mrn = PATIENT["identifier"]
    assert written["id"] in ids(**{"patient.identifier": f"{mrn['system']}|{mrn['value']}"})
    assert written["id"] in ids(recorded=written["recorded"])
    assert written["id"] in ids(_id=written["id"])
    assert written["id"] in ids(_lastUpdated="ge2000-01-01")
    revincluded = client.get("/fhir/Patient", query_string={"_id": patient.removeprefix("Patient/"),
                                                             "_revinclude": "Provenance:patient"}).get_json()
    assert written["id"] in [e["resource"]["id"] for e in revincluded["entry"] if e["search"]["mode"] == "include"]
    other = next(t for t in targets if not t.startswith("Patient/"))
    assert written["id"] not in ids(patient=other)  # not a Patient: the patient parameter never pointed there


@pytest.mark.parametrize("targets", [
    ["Patient/p1/_history/1"],
    ["MedicationAdministration/a-1/_history/3", "Patient/p.1/_history/2", "Observation/o1/_history/1",
     "Patient/p2/_history/12"],
    ["Practitioner/nurse/_history/10", "CarePlan/plan-x/_history/1"]])
@pytest.mark.parametrize("recorded", ["2026-03-02T09:00:00.123Z", "2026-12-31T23:59:59.000Z"])
def test_a_provenances_index_rows_are_made_from_its_targets_as_index_makes_them(targets: list[str],
                                                                                  recorded: str) -> None:
    content = provenance(targets, True, recorded, ("https://issuer", "ehr"), "rec-1")
    assert provenance_rows(targets, recorded) == index_rows("Provenance", index(content))


@pytest.mark.parametrize("target", ["patient/p1/_history/1", "Patient/_history/1", "Patient/p1/x/_history/1",
                                    "https://ehr/fhir/Patient/p1/_history/1", "Patient/"])
def test_a_target_not_named_as_a_write_names_it_is_indexed_by_index(target: str) -> None:
    assert provenance_rows([target], "2026-03-02T09:00:00.123Z") is None


@pytest.mark.both_backends
def test_a_records_provenance_is_stored_with_the_index_rows_index_makes_of_it(app: Flask, client: FlaskClient) -> None:
    client.post("/api/v1/administrations", json=administration())
    [written] = [p for p in provenances(app) if p.get("entity")]
    i, r = SearchIndexRow, ResourceRow
    with app.extensions["kfhir"].engine.connect() as c:
        stored = [tuple(row) for row in c.execute(
            select(i.resource_type, i.param, i.system, i.value, i.low, i.high, i.path)
            .join(r, r.pk == i.resource_pk).where(r.resource_type == "Provenance", r.id == written["id"])
            .order_by(i.pk))]
    assert len(stored) > 3 and stored == index_rows("Provenance", index(written))
