"""The HAPI FHIR 8.8.0 JPA peer (tests/peers/hapi/server) behaves as the EHR our exchange code talks to:
R4 capabilities with transactions, our mapping engine's transaction Bundles accepted (with our IG's profiles
enforced and unknown SNOMED/LOINC/RxNorm codes only warned about), invalid resources refused with an
OperationOutcome, conditional create without duplicates, search by identifier, versioned update with If-Match,
paging with next links, and _history.

Needs Java 17 and Maven; the first run builds tests/peers/hapi/server (downloading HAPI from Maven Central once).
All tests share one server (session fixture), so each test uses identifiers of its own."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from peers.hapi_server import HapiServer

from service.domain.kinds import KINDS
from service.mapping import default_mapper

GOLDEN = Path(__file__).resolve().parents[1] / "mapping" / "golden"
FHIR_JSON = "application/fhir+json"
OUTCOME_SCORE = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-outcome-score"
TEST_SYSTEM = "https://ketamine-fhir.org/fhir/test/hapi-peer"
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">test</div>'}


@pytest.fixture(scope="session")
def fhir(hapi_server: HapiServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
        yield session


def url(server: HapiServer, path: str = "") -> str:
    return f"{server.base_url}/{path}" if path else server.base_url


def golden_record(kind: str, **overrides: Any) -> dict[str, Any]:
    """A golden record in the canonical form the intake stores (loaded and dumped by the domain schema)."""
    record = json.loads((GOLDEN / f"{kind}.record.json").read_text(encoding="utf-8"))
    record.pop("_scenario", None)
    record.update(overrides)
    schema = KINDS[kind].schema()
    dumped: dict[str, Any] = schema.dump(schema.load(record))
    return dumped


def errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    assert outcome["resourceType"] == "OperationOutcome", outcome
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def bundle_statuses(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text[:4000]
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "transaction-response"
    return [entry["response"]["status"] for entry in body["entry"]]


def search(fhir: requests.Session, server: HapiServer, path: str, **params: Any) -> dict[str, Any]:
    response = fhir.get(url(server, path), params=params)
    assert response.status_code == 200, response.text[:2000]
    result: dict[str, Any] = response.json()
    return result


def new_patient(fhir: requests.Session, server: HapiServer, value: str) -> str:
    patient = {"resourceType": "Patient", "text": NARRATIVE, "identifier": [{"system": TEST_SYSTEM, "value": value}],
               "name": [{"family": "Peer", "given": ["Test"]}], "gender": "female", "birthDate": "1980-01-01"}
    response = fhir.post(url(server, "Patient"), json=patient)
    assert response.status_code == 201, response.text[:2000]
    patient_id: str = response.json()["id"]
    return patient_id


# ---------------------------------------------------------------------------------------------- tests

def test_capability_statement_is_r4_with_transactions(hapi_server: HapiServer,
                                                      fhir: requests.Session) -> None:
    metadata = fhir.get(url(hapi_server, "metadata")).json()
    assert metadata["resourceType"] == "CapabilityStatement"
    assert metadata["fhirVersion"] == "4.0.1"
    assert metadata["software"]["name"] == "HAPI FHIR Server"
    assert metadata["software"]["version"] == "8.8.0"
    rest = metadata["rest"][0]
    system = {i["code"] for i in rest["interaction"]}
    assert {"transaction", "history-system"} <= system
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"read", "vread", "update", "create", "search-type", "history-instance"} <= \
        {i["code"] for i in patient["interaction"]}
    assert patient["conditionalCreate"] is True
    assert patient["conditionalUpdate"] is True
    assert patient["versioning"] == "versioned-update"


def test_mapping_engine_transaction_bundles_are_accepted(hapi_server: HapiServer,
                                                         fhir: requests.Session) -> None:
    mapper = default_mapper()
    assessment = golden_record("assessment")
    # The assessment's Observation.basedOn is CarePlan/<uuid of plan-7>: HAPI enforces referential integrity,
    # so the treatment plan (same patient) goes first, as a real push would.
    patient = json.loads((GOLDEN / "assessment.record.json").read_text(encoding="utf-8"))["patient"]
    plan = golden_record("treatment-plan", external_id=assessment["plan_external_id"], patient=patient)
    plan_bundle = mapper.to_bundle("treatment-plan", plan)
    assessment_bundle = mapper.to_bundle("assessment", assessment)

    statuses = bundle_statuses(fhir.post(url(hapi_server), json=plan_bundle))
    assert len(statuses) == len(plan_bundle["entry"])
    assert all(s.startswith(("200", "201")) for s in statuses), statuses

    response = fhir.post(url(hapi_server), json=assessment_bundle)
    statuses = bundle_statuses(response)
    assert statuses[0].startswith("201"), statuses  # the Observation, created with our deterministic id
    # The Patient entry is a conditional create: it matches the plan's Patient instead of duplicating it.
    assert statuses[1].startswith("200"), statuses

    # Read back: the Observation as mapped, its CarePlan and its Patient resolved on the server.
    observation = assessment_bundle["entry"][0]["resource"]
    stored = fhir.get(url(hapi_server, f"Observation/{observation['id']}")).json()
    assert stored["meta"]["profile"] == [OUTCOME_SCORE]
    assert stored["valueInteger"] == observation["valueInteger"]
    assert stored["code"] == observation["code"]
    assert stored["basedOn"][0]["reference"] == observation["basedOn"][0]["reference"]
    assert stored["subject"]["reference"].startswith("Patient/")
    identifier = assessment_bundle["entry"][1]["resource"]["identifier"][0]
    patients = search(fhir, hapi_server, "Patient", identifier=f"{identifier['system']}|{identifier['value']}")
    assert patients["total"] == 1
    assert stored["subject"]["reference"] == f"Patient/{patients['entry'][0]['resource']['id']}"

    # Re-pushing the same Bundle changes nothing: still one Observation for the record's identifier.
    bundle_statuses(fhir.post(url(hapi_server), json=assessment_bundle))
    ident = observation["identifier"][0]
    found = search(fhir, hapi_server, "Observation", identifier=f"{ident['system']}|{ident['value']}")
    assert found["total"] == 1


def test_invalid_resource_is_refused_with_an_operation_outcome(hapi_server: HapiServer,
                                                               fhir: requests.Session) -> None:
    bogus = {"resourceType": "Observation", "text": NARRATIVE, "status": "bogus", "code": {"text": "x"},
             "identifier": [{"system": TEST_SYSTEM, "value": f"bogus-{uuid.uuid4()}"}]}
    response = fhir.post(url(hapi_server, "Observation"), json=bogus)
    assert response.status_code in (400, 422), response.text[:2000]
    problems = errors(response.json())
    assert any("bogus" in (i.get("diagnostics") or "") for i in problems), problems
    found = search(fhir, hapi_server, "Observation", identifier=f"{TEST_SYSTEM}|{bogus['identifier'][0]['value']}")
    assert found["total"] == 0


def test_our_profiles_are_enforced_and_unknown_code_systems_only_warned(hapi_server: HapiServer,
                                                                        fhir: requests.Session) -> None:
    patient_id = new_patient(fhir, hapi_server, f"profile-{uuid.uuid4()}")
    score: dict[str, Any] = {
        "resourceType": "Observation", "meta": {"profile": [OUTCOME_SCORE]}, "text": NARRATIVE,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6",
                             "display": "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"}]},
        "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": "2026-03-20T10:00:00-05:00",
        "valueInteger": 9,
    }
    # Valid R4, but our outcome-score profile requires a category (survey): refused.
    response = fhir.post(url(hapi_server, "Observation"), json=score)
    assert response.status_code == 422, response.text[:2000]
    problems = errors(response.json())
    assert any("category" in (i.get("diagnostics") or "") for i in problems), problems

    # With the category it is accepted, although LOINC cannot be checked offline (a warning, not an error).
    score["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "survey", "display": "Survey"}]}]
    response = fhir.post(url(hapi_server, "Observation"), json=score)
    assert response.status_code == 201, response.text[:4000]

    # $validate (what a read-back check would use) applies the same profiles and the same downgrade.
    stored = fhir.get(response.headers["Location"].split("/_history")[0]).json()
    validated = fhir.post(url(hapi_server, "Observation/$validate"), json=stored)
    assert validated.status_code == 200, validated.text[:4000]
    issues = validated.json()["issue"]
    assert not errors(validated.json()), issues
    assert any("loinc" in (i.get("diagnostics") or "").lower() and i["severity"] == "warning" for i in issues), issues
    del stored["category"]
    refused = fhir.post(url(hapi_server, "Observation/$validate"), json=stored)
    # 422: request validation refuses the $validate body before the operation runs ($validate itself: 412).
    assert refused.status_code in (412, 422), refused.text[:2000]
    assert any("category" in (i.get("diagnostics") or "") for i in errors(refused.json()))


def test_conditional_create_does_not_duplicate(hapi_server: HapiServer,
                                               fhir: requests.Session) -> None:
    value = f"cond-{uuid.uuid4()}"
    patient = {"resourceType": "Patient", "text": NARRATIVE, "identifier": [{"system": TEST_SYSTEM, "value": value}],
               "name": [{"family": "Conditional"}], "gender": "male"}
    headers = {"If-None-Exist": f"identifier={TEST_SYSTEM}|{value}"}
    first = fhir.post(url(hapi_server, "Patient"), json=patient, headers=headers)
    assert first.status_code == 201, first.text[:2000]
    second = fhir.post(url(hapi_server, "Patient"), json=patient, headers=headers)
    assert second.status_code == 200, second.text[:2000]
    assert second.headers["Location"].split("/_history")[0] == first.headers["Location"].split("/_history")[0]

    found = search(fhir, hapi_server, "Patient", identifier=f"{TEST_SYSTEM}|{value}")
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["identifier"][0]["value"] == value


def test_versioned_update_with_if_match_and_history(hapi_server: HapiServer,
                                                    fhir: requests.Session) -> None:
    patient_id = new_patient(fhir, hapi_server, f"version-{uuid.uuid4()}")
    current = fhir.get(url(hapi_server, f"Patient/{patient_id}")).json()
    assert current["meta"]["versionId"] == "1"
    current["gender"] = "other"
    updated = fhir.put(url(hapi_server, f"Patient/{patient_id}"), json=current, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text[:2000]
    assert updated.json()["meta"]["versionId"] == "2"
    # A stale version is a conflict (HAPI answers 409; FHIR R4 says 412: clients must treat both alike).
    stale = fhir.put(url(hapi_server, f"Patient/{patient_id}"), json=current, headers={"If-Match": 'W/"1"'})
    assert stale.status_code in (409, 412), stale.text[:2000]
    errors(stale.json())
    # The same inside a transaction (ifMatch on the entry's request): HAPI 8.8 checks it there too.
    current = fhir.get(url(hapi_server, f"Patient/{patient_id}")).json()
    current["gender"] = "unknown"
    entry = {"fullUrl": url(hapi_server, f"Patient/{patient_id}"), "resource": current,
             "request": {"method": "PUT", "url": f"Patient/{patient_id}", "ifMatch": 'W/"1"'}}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    stale = fhir.post(url(hapi_server), json=transaction)
    assert stale.status_code in (409, 412), stale.text[:2000]
    entry["request"]["ifMatch"] = 'W/"2"'
    assert bundle_statuses(fhir.post(url(hapi_server), json=transaction)) == ["200 OK"]

    history = search(fhir, hapi_server, f"Patient/{patient_id}/_history")
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    assert fhir.get(url(hapi_server, f"Patient/{patient_id}/_history/1")).json()["gender"] == "female"
    assert fhir.get(url(hapi_server, f"Patient/{patient_id}/_history/2")).json()["gender"] == "other"


def test_conditional_update_creates_then_updates(hapi_server: HapiServer,
                                                 fhir: requests.Session) -> None:
    value = f"condupd-{uuid.uuid4()}"
    patient = {"resourceType": "Patient", "text": NARRATIVE, "identifier": [{"system": TEST_SYSTEM, "value": value}],
               "gender": "female"}
    target = url(hapi_server, f"Patient?identifier={TEST_SYSTEM}|{value}")
    created = fhir.put(target, json=patient)
    assert created.status_code == 201, created.text[:2000]
    patient["gender"] = "male"
    updated = fhir.put(target, json=patient)
    assert updated.status_code == 200, updated.text[:2000]
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"


def test_search_pages_with_next_links(hapi_server: HapiServer, fhir: requests.Session) -> None:
    family = f"Paging{uuid.uuid4().hex[:12]}"
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "text": NARRATIVE, "name": [{"family": family, "given": [str(i)]}],
                      "identifier": [{"system": TEST_SYSTEM, "value": f"{family}-{i}"}]}}
        for i in range(7)]}
    assert bundle_statuses(fhir.post(url(hapi_server), json=transaction)) == ["201 Created"] * 7

    page = search(fhir, hapi_server, "Patient", family=family, _count=3)
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += [e["resource"]["identifier"][0]["value"] for e in page.get("entry", [])]
        next_link = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
        if next_link is None:
            break
        assert next_link.startswith(f"http://127.0.0.1:{hapi_server.port}/fhir"), next_link
        response = fhir.get(next_link)
        assert response.status_code == 200, response.text[:2000]
        page = response.json()
    assert pages == 3
    assert sorted(seen) == sorted(f"{family}-{i}" for i in range(7))


def test_reference_to_a_missing_resource_is_refused(hapi_server: HapiServer,
                                                    fhir: requests.Session) -> None:
    observation = {"resourceType": "Observation", "text": NARRATIVE, "status": "final", "code": {"text": "x"},
                   "subject": {"reference": f"Patient/{uuid.uuid4()}"}, "effectiveDateTime": "2026-01-01",
                   "valueString": "x"}
    response = fhir.post(url(hapi_server, "Observation"), json=observation)
    assert response.status_code in (400, 404, 422), response.text[:2000]
    assert errors(response.json())
