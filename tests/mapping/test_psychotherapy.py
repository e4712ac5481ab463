"""Concurrent psychotherapy reaches the EHR as R4 models it: a Procedure, which R4 scopes to "counseling" and, "for
long-running procedures such as psychotherapy", summary information about overall progress (R4 Procedure, Scope
and Usage). The clinic sends free text and terminology.md confirms no psychotherapy code, so the Procedure carries
the text only (`code.text`), never a code; status `in-progress` (R4 event-status: "the event is currently
occurring"), the patient as subject, and the plan refers to it from CarePlan.supportingInfo, as to its
antidepressants."""
from __future__ import annotations

from typing import Any

from factories import treatment_plan
from mapping.support import canonical

from service.mapping import Mapper, map_record, read_fhir

PROFILE = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-concurrent-psychotherapy"


def mapped(mapper: Mapper, psychotherapy: str | None) -> list[dict[str, Any]]:
    """The Bundle's resources, each with its entry's fullUrl as `_at`."""
    plan = canonical("treatment-plan", treatment_plan(concurrent_therapy={"psychotherapy": psychotherapy}))
    return [{**e["resource"], "_at": e["fullUrl"]} for e in map_record("treatment-plan", plan, mapper).bundle["entry"]]


def test_psychotherapy_is_an_in_progress_procedure_with_the_clinics_text_only(mapper: Mapper) -> None:
    resources = mapped(mapper, "CBT, weekly, with Dr. Okafor")
    (procedure,) = [r for r in resources if r["resourceType"] == "Procedure"]
    (plan,) = [r for r in resources if r["resourceType"] == "CarePlan"]
    (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
    assert procedure["meta"]["profile"] == [PROFILE]
    assert procedure["status"] == "in-progress"
    assert procedure["code"] == {"text": "CBT, weekly, with Dr. Okafor"}  # no coding: none is confirmed
    assert procedure["subject"] == {"reference": patient["_at"]}
    assert {"reference": procedure["_at"]} in plan["supportingInfo"]


def test_no_psychotherapy_no_procedure(mapper: Mapper) -> None:
    assert not [r for r in mapped(mapper, None) if r["resourceType"] == "Procedure"]


def test_psychotherapy_comes_back_from_fhir(mapper: Mapper) -> None:
    plan = canonical("treatment-plan", treatment_plan(concurrent_therapy={
        "psychotherapy": "DBT skills group", "antidepressants": [{"name": "sertraline"}]}))
    back = read_fhir(map_record("treatment-plan", plan, mapper).bundle, mapper=mapper)
    assert back.record["concurrent_therapy"] == {"psychotherapy": "DBT skills group",
                                                 "antidepressants": [{"name": "sertraline"}]}
