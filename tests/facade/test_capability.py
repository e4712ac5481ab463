"""The CapabilityStatement walked: every interaction and search parameter it advertises is tried, and does what
it says; what it leaves out (patch) is refused."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.search.parameters import index, params_of
from service.validation import default_validator

FHIR = "application/fhir+json"
PATIENT = {"reference": "Patient/walk-p"}
#: codes: terminology.md (SNOMED 38341003 hypertension, 422587007 nausea; LOINC 8867-4 heart rate), the R4 examples
#: (v3-ActCode DRG in DetectedIssue-ddi, adverse-event-category product-use-error in AdverseEvent-example, SNOMED
#: 80146002 in Procedure-example and 386053000 in Procedure-physical-therapy), R4's
#: own code systems, ours (ketamine-protocol-phase), and the two medications cited in test_policy.py
SNOMED, LOINC, RXNORM = "http://snomed.info/sct", "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"


def coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


#: one valid R4 resource of each type the facade serves (held to its R4 base: none claims our profiles)
SAMPLES: dict[str, dict[str, Any]] = {
    "Patient": {"identifier": [{"system": "https://clinic.example/mrn", "value": "W-1"}], "gender": "female",
                "birthDate": "1980-02-03", "name": [{"family": "Walker", "given": ["Wren"], "text": "Wren Walker"}]},
    "Practitioner": {"identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"}],
                     "name": [{"family": "Osei", "text": "Dr Osei"}]},
    "Encounter": {"identifier": [{"value": "E-1"}], "status": "finished", "subject": PATIENT,
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                  "period": {"start": "2026-03-02T09:00:00Z", "end": "2026-03-02T11:00:00Z"}},
    "Condition": {"identifier": [{"value": "C-1"}], "subject": PATIENT, "code": coded(SNOMED, "38341003"),
                  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                            "code": "problem-list-item"}]}],
                  "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                 "code": "active"}]},
                  "onsetDateTime": "2025-01-01", "recordedDate": "2026-03-02"},
    "CarePlan": {"identifier": [{"value": "CP-1"}], "status": "active", "intent": "plan", "subject": PATIENT,
                 "category": [coded("https://ketamine-fhir.org/fhir/CodeSystem/ketamine-protocol-phase", "induction")],
                 "period": {"start": "2026-03-01"}},
    "Goal": {"identifier": [{"value": "G-1"}], "lifecycleStatus": "active", "description": {"text": "feel better"},
             "subject": PATIENT, "category": [coded(TERMINOLOGY + "goal-category", "behavioral")]},
    "MedicationRequest": {"identifier": [{"value": "MR-1"}], "status": "active", "intent": "order",
                          "medicationCodeableConcept": coded(RXNORM, "312941"), "subject": PATIENT,
                          "authoredOn": "2026-03-02"},
    "MedicationAdministration": {"identifier": [{"value": "MA-1"}], "status": "completed",
                                 "medicationCodeableConcept": coded(RXNORM, "104894"), "subject": PATIENT,
                                 "effectiveDateTime": "2026-03-02T10:00:00Z",
                                 "context": {"reference": "Encounter/walk-e"},
                                 "request": {"reference": "MedicationRequest/walk-mr"}},
    "MedicationStatement": {"identifier": [{"value": "MS-1"}], "status": "active",
                            "medicationCodeableConcept": {**coded("http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                  "6130"), "text": "ketamine"}, "subject": PATIENT,
                            "category": coded(TERMINOLOGY + "medication-statement-category", "community"),
                            "effectiveDateTime": "2026-03-02", "context": {"reference": "Encounter/walk-e"},
                            "informationSource": {"reference": "Practitioner/walk-pr"}},
    "Procedure": {"identifier": [{"value": "PR-1"}], "status": "completed",
                  "code": {**coded(SNOMED, "80146002"), "text": "Appendectomy"}, "subject": PATIENT,
                  "category": coded(SNOMED, "386053000"), "performedDateTime": "2026-03-02",
                  "encounter": {"reference": "Encounter/walk-e"},
                  "performer": [{"actor": {"reference": "Practitioner/walk-pr"}}],
                  "basedOn": [{"reference": "CarePlan/walk-careplan"}]},
    "Observation": {"identifier": [{"value": "O-1"}], "status": "final", "code": coded(LOINC, "8867-4"),
                    "subject": PATIENT, "category": [coded(TERMINOLOGY + "observation-category", "vital-signs")], "effectiveDateTime": "2026-03-02T10:00:00Z",
                    "encounter": {"reference": "Encounter/walk-e"},
                    "partOf": [{"reference": "MedicationAdministration/walk-ma"}]},
    "AdverseEvent": {"identifier": {"value": "AE-1"}, "actuality": "actual", "subject": PATIENT,
                     "date": "2026-03-02T10:30:00Z", "event": coded(SNOMED, "422587007"),
                     "category": [coded(TERMINOLOGY + "adverse-event-category", "product-use-error")],
                     "seriousness": coded(TERMINOLOGY + "adverse-event-seriousness", "Non-serious"),
                     "severity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                                              "code": "mild"}]}},
    "DetectedIssue": {"identifier": [{"value": "DI-1"}], "status": "final", "patient": PATIENT,
                      "code": coded(TERMINOLOGY + "v3-ActCode", "DRG"), "identifiedDateTime": "2026-03-02",
                      "implicated": [{"reference": "MedicationRequest/walk-mr"}]},
    "Provenance": {"target": [PATIENT], "recorded": "2026-03-02T10:00:00Z",
                   "agent": [{"who": {"reference": "Practitioner/walk-pr"}}]},
}
IDS = {"Patient": "walk-p", "Practitioner": "walk-pr", "Encounter": "walk-e", "MedicationRequest": "walk-mr",
       "MedicationAdministration": "walk-ma"}


def put(client: FlaskClient, resource: dict[str, Any]) -> Any:
    return client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", data=json.dumps(resource),
                      content_type=FHIR)


@pytest.fixture
def statement(client: FlaskClient) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/fhir/metadata").json
    return found


@pytest.fixture
def held(client: FlaskClient) -> dict[str, dict[str, Any]]:
    """The samples, stored in an order their references can resolve."""
    out = {}
    for kind, body in SAMPLES.items():
        resource = {"resourceType": kind, "id": IDS.get(kind, f"walk-{kind.lower()}"), **body}
        answer = put(client, resource)
        assert answer.status_code == 201, (kind, answer.json)
        out[kind] = answer.json
    return out


def test_the_statement_is_valid_and_lists_every_type_served(statement: dict[str, Any]) -> None:
    findings = default_validator().validate(statement)
    assert [f for f in findings if f.is_error] == []
    rest = statement["rest"][0]
    served = {r["type"] for r in rest["resource"]}
    assert set(SAMPLES) | {"AuditEvent", "StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap",
                           "ImplementationGuide"} == served
    assert statement["implementationGuide"] == ["https://ketamine-fhir.org/fhir/ImplementationGuide/ketamine-fhir"]
    for entry in rest["resource"]:
        assert f"http://hl7.org/fhir/StructureDefinition/{entry['type']}" in entry["supportedProfile"]
    administration = next(r for r in rest["resource"] if r["type"] == "MedicationAdministration")
    assert administration["supportedProfile"][0] == \
        "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-administration"
    assert "patch" not in {i["code"] for r in rest["resource"] for i in r["interaction"]}


def test_the_samples_are_valid_r4() -> None:
    for kind, body in SAMPLES.items():
        resource = {"resourceType": kind, **body}
        errors = [f for f in default_validator().validate(resource, f"http://hl7.org/fhir/StructureDefinition/{kind}")
                  if f.is_error]
        assert errors == [], kind


def test_every_interaction_advertised_answers(client: FlaskClient, statement: dict[str, Any],
                                              held: dict[str, dict[str, Any]]) -> None:
    for entry in statement["rest"][0]["resource"]:
        kind = entry["type"]
        codes = [i["code"] for i in entry["interaction"]]
        target = _one_of(client, kind, held)
        for code in codes:
            status = _try(client, kind, code, target)
            assert status < 300, (kind, code, status)
        refused = client.patch(f"/fhir/{kind}/{target['id']}").status_code  # not advertised: refused
        assert refused == (403 if kind == "AuditEvent" else 405)  # nobody may write the audit trail at all
    for code in [i["code"] for i in statement["rest"][0]["interaction"]]:
        if code == "history-system":
            assert client.get("/fhir/_history").status_code == 200
        else:
            bundle = {"resourceType": "Bundle", "type": code, "entry": [
                {"request": {"method": "GET", "url": "Patient/walk-p"}}]}
            assert client.post("/fhir", data=json.dumps(bundle), content_type=FHIR).status_code == 200, code
    operation = client.post("/fhir/Patient/$validate", data=json.dumps(held["Patient"]), content_type=FHIR)
    assert operation.status_code == 200


def test_every_search_parameter_advertised_finds_what_it_says(client: FlaskClient, statement: dict[str, Any],
                                                              held: dict[str, dict[str, Any]]) -> None:
    tried = 0
    for entry in statement["rest"][0]["resource"]:
        kind = entry["type"]
        target = _one_of(client, kind, held)
        values = _values(kind, target)
        for param in entry["searchParam"]:
            name = param["name"]
            assert name in values, f"{kind}?{name}: the sample has no value to search it by"
            answer = client.get(f"/fhir/{kind}", query_string={name: values[name]})
            assert answer.status_code == 200, (kind, name, answer.json)
            found = [e["resource"]["id"] for e in answer.json.get("entry", []) if e["search"]["mode"] == "match"]
            assert target["id"] in found, (kind, name, values[name])
            tried += 1
        for include in entry.get("searchInclude", []) + entry.get("searchRevInclude", []):
            key = "_include" if include.startswith(f"{kind}:") and include in entry.get("searchInclude", []) \
                else "_revinclude"
            answer = client.get(f"/fhir/{kind}", query_string={"_id": target["id"], key: include})
            assert answer.status_code == 200, (kind, key, include, answer.json)
    assert tried > 60


def _one_of(client: FlaskClient, kind: str, held: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A resource of `kind` the server holds: a sample, an audit event, one of our conformance resources."""
    if kind in held:
        return held[kind]
    first: dict[str, Any] = client.get(f"/fhir/{kind}").json["entry"][0]["resource"]
    return first


def _values(kind: str, resource: dict[str, Any]) -> dict[str, str]:
    """A value of each search parameter `resource` holds, as a search would give it."""
    values = {"_id": resource["id"]}
    if "url" in resource:
        values["url"] = resource["url"]
    if kind == "AuditEvent":
        recorded = resource["recorded"]
        return values | {"date": f"ge{recorded[:10]}", "agent": _audit_agent(resource),
                         "entity-type": resource["entity"][0]["type"]["code"] if resource.get("entity") else "",
                         "action": resource["action"]}
    if "meta" in resource:
        values["_lastUpdated"] = f"ge{resource['meta']['lastUpdated'][:10]}"
    for v in index(resource):
        if v.param.startswith("_") or v.param in values:
            continue
        if v.low is not None:
            values[v.param] = f"ge{(v.low - timedelta(seconds=1)).isoformat()}Z"
        elif v.system and "/" in str(v.system) and ":" in str(v.system):  # a token with its system
            values[v.param] = f"{v.system}|{v.value}"
        else:
            values[v.param] = str(v.value if v.param not in ("family", "given", "name") else v.system)
    for name, param in params_of(kind).items():  # answered from another's rows (`patient`: the subject's)
        if param.rows and str(values.get(param.rows, "")).partition("/")[0] in param.targets:
            values.setdefault(name, values[param.rows])
    return values


def _audit_agent(event: dict[str, Any]) -> str:
    for agent in event.get("agent") or []:
        if agent.get("requestor"):
            who = agent.get("who") or {}
            return str((who.get("identifier") or {}).get("value") or who.get("display") or "")
    return ""


def _try(client: FlaskClient, kind: str, code: str, target: dict[str, Any]) -> int:
    """The status of interaction `code` on `target` (a fresh copy for writes, so the walk can go on)."""
    path = f"/fhir/{kind}/{target['id']}"
    copy = {k: v for k, v in target.items() if k not in ("id", "meta")}
    if code == "create":
        return int(client.post(f"/fhir/{kind}", data=json.dumps(copy), content_type=FHIR).status_code)
    if code == "update":
        return int(put(client, target).status_code)
    if code == "delete":
        made = client.post(f"/fhir/{kind}", data=json.dumps(copy), content_type=FHIR).json
        return int(client.delete(f"/fhir/{kind}/{made['id']}").status_code)
    gets = {"read": path, "vread": f"{path}/_history/1", "history-instance": f"{path}/_history",
            "history-type": f"/fhir/{kind}/_history", "search-type": f"/fhir/{kind}"}
    return int(client.get(gets[code]).status_code)
