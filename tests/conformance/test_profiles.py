"""Our profile of each resource type, as read from the IG: what the validator defaults to and the server lists."""
from __future__ import annotations

import json
from typing import Any

import pytest

from service.conformance.profiles import CANONICAL, STRUCTURES, Profiles, shipped
from service.resources import profiles_dir

OURS = STRUCTURES


def test_the_canonical_is_the_packages() -> None:
    manifest = json.loads((profiles_dir() / "package.json").read_text(encoding="utf-8"))
    assert manifest["canonical"] == CANONICAL
    assert all(url.startswith(STRUCTURES) for urls in shipped().by_type.values() for url in urls)


def test_every_resource_profile_of_the_ig_is_listed_by_its_type() -> None:
    assert shipped().by_type == {
        "MedicationAdministration": (OURS + "ketamine-administration",),
        "AdverseEvent": (OURS + "ketamine-adverse-event",),
        "Condition": (OURS + "ketamine-indication",),
        "Observation": (OURS + "ketamine-outcome-score", OURS + "ketamine-session-monitoring"),
        "MedicationRequest": (OURS + "ketamine-protocol-order",),
        "DetectedIssue": (OURS + "ketamine-safety-flag",),
        "MedicationStatement": (OURS + "ketamine-concurrent-medication",),
        "Goal": (OURS + "ketamine-treatment-goal",),
        "Procedure": (OURS + "ketamine-concurrent-psychotherapy",),
        "CarePlan": (OURS + "ketamine-treatment-plan",),
    }


@pytest.mark.parametrize("resource_type, profile", [
    ("CarePlan", "ketamine-treatment-plan"), ("Condition", "ketamine-indication"),
    ("MedicationRequest", "ketamine-protocol-order"), ("MedicationAdministration", "ketamine-administration"),
    ("AdverseEvent", "ketamine-adverse-event"), ("DetectedIssue", "ketamine-safety-flag"),
    ("MedicationStatement", "ketamine-concurrent-medication"), ("Goal", "ketamine-treatment-goal"),
    ("Procedure", "ketamine-concurrent-psychotherapy"),
])
def test_a_type_with_one_profile_defaults_to_it(resource_type: str, profile: str) -> None:
    assert shipped().defaults({"resourceType": resource_type}) == [OURS + profile]


def category(*codes: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "category": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": c}]}
        for c in codes]}


@pytest.mark.parametrize("resource, expected", [
    (category("vital-signs"), [OURS + "ketamine-session-monitoring"]),
    (category("survey"), [OURS + "ketamine-outcome-score"]),
    (category("survey", "laboratory"), [OURS + "ketamine-outcome-score"]),
    (category("vital-signs", "survey"), []),  # both: neither is the one
    (category("laboratory"), []),
    ({"resourceType": "Observation"}, []),
    ({"resourceType": "Observation", "category": "survey"}, []),
    ({"resourceType": "Observation", "category": [{"coding": {"code": "survey"}}, "x"]}, []),
])
def test_an_observation_defaults_to_the_profile_whose_category_it_alone_carries(resource: dict[str, Any],
                                                                               expected: list[str]) -> None:
    assert shipped().defaults(resource) == expected


@pytest.mark.parametrize("resource", [{"resourceType": "Patient"}, {"resourceType": "Bundle"}, {}, {"resourceType": 5}])
def test_types_without_a_profile_of_ours_have_no_default(resource: dict[str, Any]) -> None:
    assert shipped().defaults(resource) == []


def test_extensions_and_core_definitions_are_no_profiles_of_ours() -> None:
    extension = {"resourceType": "StructureDefinition", "kind": "complex-type", "derivation": "constraint",
                 "type": "Extension", "url": OURS + "x"}
    base = {"resourceType": "StructureDefinition", "kind": "resource", "derivation": "specialization",
            "type": "Patient", "url": "http://hl7.org/fhir/StructureDefinition/Patient"}
    assert Profiles.of([extension, base]).by_type == {}
