"""What an EHR posts through the facade comes back into the clinic record whole: a contraindication's documented
override (the flag's mitigation, found from the plan's supportingInfo), the screening's pregnancy status and
a session's concomitant medications (contained MedicationStatements the session refers to), a plan's concurrent
antidepressants and psychotherapy."""
from __future__ import annotations

from typing import Any

from facade.test_server import golden_bundle, golden_record, post, the_plan
from flask.testing import FlaskClient

OVERRIDE = {"by": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"},
                   "name": "Dr. Aya Prescriber"},
            "reason": "Blood pressure controlled on two agents since January", "at": "2026-02-27T15:00:00-05:00"}


def read_back(client: FlaskClient, kind: str) -> dict[str, Any]:
    (item,) = client.get(f"/api/v1/{kind}").json["items"]
    return item["record"]  # type: ignore[no-any-return]


def test_a_plan_posted_as_fhir_keeps_its_override_and_pregnancy_status(client: FlaskClient) -> None:
    screening = golden_record("treatment-plan")["screening"]
    screening["contraindications"][1]["override"] = OVERRIDE
    sent = post(client, "/fhir", golden_bundle("treatment-plan", screening={**screening, "pregnant": True}))
    assert sent.status_code == 200, sent.json
    back = read_back(client, "treatment-plans")["screening"]
    assert back["contraindications"] == [{"code": "uncontrolled-hypertension", "present": True,
                                          "override": OVERRIDE}]  # absent findings raise no flag: not sent
    assert back["pregnant"] is True


def test_a_session_posted_as_fhir_keeps_its_concomitant_medications(client: FlaskClient) -> None:
    the_plan(client)
    taken = [{"name": "lorazepam", "class": "benzodiazepine", "rxnorm": "6470"},
             {"name": "sertraline", "class": "other"}]
    sent = post(client, "/fhir", golden_bundle("administration", concomitant_medications=taken))
    assert sent.status_code == 200, sent.json
    assert read_back(client, "administrations")["concomitant_medications"] == taken


def test_a_plan_posted_as_fhir_keeps_its_concurrent_antidepressants(client: FlaskClient) -> None:
    """MedicationStatements the plan's supportingInfo names come back as concurrent_therapy.antidepressants; they are
    stored, searchable by patient, and the CapabilityStatement says MedicationStatement is served with our profile."""
    antidepressants = [{"name": "sertraline", "rxnorm": "36437"}, {"name": "bupropion XL"}]
    sent = post(client, "/fhir", golden_bundle("treatment-plan", concurrent_therapy={"psychotherapy": None,
                                                                                      "antidepressants": antidepressants}))
    assert sent.status_code == 200, sent.json
    assert read_back(client, "treatment-plans")["concurrent_therapy"] == {"antidepressants": antidepressants}
    found = client.get("/fhir/MedicationStatement?patient.identifier=urn:oid:2.16.840.1.113883.19.5|MRN-1002"
                       "&status=active&_sort=_id").json
    assert sorted(e["resource"]["medicationCodeableConcept"]["text"] for e in found["entry"]) == [
        "bupropion XL", "sertraline"]
    (served,) = [r for r in client.get("/fhir/metadata").json["rest"][0]["resource"]
                 if r["type"] == "MedicationStatement"]
    assert "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-concurrent-medication" in \
        served["supportedProfile"]
    assert {"patient", "code", "status", "effective"} <= {p["name"] for p in served["searchParam"]}


def test_a_plan_posted_as_fhir_keeps_its_concurrent_psychotherapy(client: FlaskClient) -> None:
    """The Procedure the plan's supportingInfo names comes back as concurrent_therapy.psychotherapy; it is stored,
    searchable by patient, and the CapabilityStatement says Procedure is served with our profile."""
    therapy = {"psychotherapy": "CBT, weekly", "antidepressants": [{"name": "sertraline", "rxnorm": "36437"}]}
    sent = post(client, "/fhir", golden_bundle("treatment-plan", concurrent_therapy=therapy))
    assert sent.status_code == 200, sent.json
    assert read_back(client, "treatment-plans")["concurrent_therapy"] == therapy
    found = client.get("/fhir/Procedure?patient.identifier=urn:oid:2.16.840.1.113883.19.5|MRN-1002"
                       "&status=in-progress").json
    assert [e["resource"]["code"] for e in found["entry"]] == [{"text": "CBT, weekly"}]
    (served,) = [r for r in client.get("/fhir/metadata").json["rest"][0]["resource"] if r["type"] == "Procedure"]
    assert "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-concurrent-psychotherapy" in \
        served["supportedProfile"]
    assert {"patient", "code", "status", "date"} <= {p["name"] for p in served["searchParam"]}
