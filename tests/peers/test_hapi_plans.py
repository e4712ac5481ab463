"""Treatment plans the HAPI FHIR peer must accept: an indication coded with any ICD-10-CM code of its chapter
(F33.2, the usual code for treatment-resistant depression, is not among the listed ones) and an MDSI plan with
its suicidal-ideation Condition, each with its concurrent antidepressant as a MedicationStatement and its
psychotherapy as a Procedure; a code outside
the chapters is refused there too (ket-19). Goals of every scale and target, with their cut-offs and due dates, are
stored as sent; a target range with a low value is refused there too (ket-24)."""
from __future__ import annotations

import uuid

import requests
from peers.hapi_server import HapiServer
from peers.test_hapi_adverse_events import fhir  # noqa: F401 - the module's FHIR session fixture
from peers.test_hapi_server import bundle_statuses, errors, golden_record

from service.domain import vocabulary as v
from service.mapping import default_mapper, map_record


def test_plans_with_chapter_codes_reach_the_ehr(hapi_server: HapiServer, fhir: requests.Session) -> None:  # noqa: F811
    source = f"plan-peer-{uuid.uuid4()}"
    for code, icd10 in (("trd", "F33.2"), ("mdd", "F32.2"), ("mdd-acute-suicidality", "F33.2"), ("ptsd", "F43.12")):
        plan = golden_record("treatment-plan", source=source, external_id=f"plan-{code}",
                             indication={"code": code, "icd10": icd10})
        bundle = map_record("treatment-plan", plan).bundle
        statuses = bundle_statuses(fhir.post(hapi_server.base_url, json=bundle))
        assert all(s.startswith(("200", "201")) for s in statuses), statuses
        conditions = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"]
        assert len(conditions) == (2 if code == "mdd-acute-suicidality" else 1)
        stored = fhir.get(f"{hapi_server.base_url}/Condition/{conditions[0]['id']}").json()
        assert {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd10} in stored["code"]["coding"]
        (taken,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationStatement"]
        stored = fhir.get(f"{hapi_server.base_url}/MedicationStatement/{taken['id']}").json()  # its antidepressant
        assert stored["medicationCodeableConcept"]["text"] == "sertraline" and stored["status"] == "active"
        (therapy,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Procedure"]
        stored = fhir.get(f"{hapi_server.base_url}/Procedure/{therapy['id']}").json()  # its psychotherapy
        assert stored["code"] == {"text": "CBT"} and stored["status"] == "in-progress"


def test_a_code_outside_the_chapters_is_refused_by_the_ehr_too(hapi_server: HapiServer,
                                                               fhir: requests.Session) -> None:  # noqa: F811
    plan = golden_record("treatment-plan", source=f"plan-peer-{uuid.uuid4()}", indication={"code": "trd",
                                                                                          "icd10": "F33.2"})
    bundle = default_mapper().to_bundle("treatment-plan", plan)
    condition = bundle["entry"][1]["resource"]
    condition["code"]["coding"][-1]["code"] = "F34.1"
    response = fhir.post(hapi_server.base_url, json=bundle)
    assert response.status_code == 422, response.text[:2000]
    assert any("ket-19" in (i.get("diagnostics") or "") for i in errors(response.json()))


def test_goals_of_every_scale_and_target_reach_the_ehr(hapi_server: HapiServer,
                                                       fhir: requests.Session) -> None:  # noqa: F811
    """Every measure and target, with and without a baseline; due at the plan's end, or 4 weeks after the start of
    an esketamine induction without one (a Duration, ket-23)."""
    goals = [{"measure": m, "target": t, **({"baseline": 5} if with_baseline else {})}
             for m in v.GOAL_MEASURES for t in v.GOAL_TARGETS for with_baseline in (True, False)]
    source = f"goal-peer-{uuid.uuid4()}"
    for external_id, changes in (("ended", {}), ("open", {"period": {"start": "2026-04-01"}})):
        plan = golden_record("treatment-plan", source=source, external_id=external_id, goals=goals, **changes)
        if external_id == "open":  # no schedule either: the label's induction
            plan = {k: val for k, val in plan.items() if k not in ("sessions_planned", "frequency")}
        bundle = map_record("treatment-plan", plan).bundle
        statuses = bundle_statuses(fhir.post(hapi_server.base_url, json=bundle))
        assert all(s.startswith(("200", "201")) for s in statuses), statuses
        sent = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal"]
        assert len(sent) == len(goals)
        for goal in sent:
            stored = fhir.get(f"{hapi_server.base_url}/Goal/{goal['id']}").json()
            assert stored["target"] == goal["target"] and stored.get("startDate") == goal["startDate"]
        due = {k for g in sent for k in g["target"][0] if k.startswith("due")}
        assert due == ({"dueDate"} if external_id == "ended" else {"dueDuration"})


def test_a_target_range_with_a_low_value_is_refused_by_the_ehr_too(hapi_server: HapiServer,
                                                                   fhir: requests.Session) -> None:  # noqa: F811
    plan = golden_record("treatment-plan", source=f"goal-peer-{uuid.uuid4()}")
    bundle = default_mapper().to_bundle("treatment-plan", plan)
    (goal, _) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal"]
    goal["target"][0]["detailRange"]["low"] = {"value": 0, "system": "http://unitsofmeasure.org", "code": "{score}"}
    response = fhir.post(hapi_server.base_url, json=bundle)
    assert response.status_code == 422, response.text[:2000]
    assert any("ket-24" in (i.get("diagnostics") or "") for i in errors(response.json()))
