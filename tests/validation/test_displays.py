"""Wrong displays offline, decided by the HL7 validator's defaults and R4's text (README, "Wrong displays"):

* a display that is not one of its code's in a code system held completely: the HL7 validator's error
  (org.hl7.fhir.r5 ValueSetValidator.dispWarning(): ERROR unless the CLI's -display-issues-are-warnings), the policy's
  display_issues (`--display-issues`, `display-issues` in $validate, KFHIR_VALIDATION_DISPLAY_ISSUES);
* a LOINC, SNOMED CT or CVX display known offline only from a value set's list: R4 ValueSet.compose.include.concept
  .display is "the text to display to the user for this concept in the context of this valueset", not the code
  system's, so a difference is a warning whatever the setting (the HL7 validator without a server says nothing).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli.support import kfhir

from service.conformance.definitions import load
from service.resources import profiles_dir
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOCAL = "https://example.org/fhir/CodeSystem/colours"


def encounter(display: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": "e", "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB", "display": display}}


def colour_observation(display: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"coding": [{"system": LOCAL, "code": "red", "display": display}]}}


@pytest.fixture(scope="module")
def validator() -> Validator:
    colours = {"resourceType": "CodeSystem", "id": "colours", "url": LOCAL, "status": "active",
               "content": "complete", "concept": [{"code": "red", "display": "Red",
                                                   "designation": [{"language": "fr", "value": "Rouge"}]}]}
    defs = load()
    return Validator(defs.with_own([*defs.own.values(), colours]), ValidationPolicy())


def displays(validator: Validator, resource: dict[str, Any], **policy: Any) -> list[tuple[str, str]]:
    return [(f.severity, f.expression) for f in validator.validate(resource, policy=ValidationPolicy(**policy))
            if "isplay" in f.message]


def test_a_wrong_display_of_a_code_system_held_completely_is_an_error(validator: Validator) -> None:
    assert displays(validator, encounter("Ambulant")) == [("error", "Encounter.class.display")]
    assert displays(validator, colour_observation("Blue")) == [("error", "Observation.code.coding[0].display")]


@pytest.mark.parametrize("display", ["ambulatory", "AMBULATORY"])
def test_the_code_systems_display_in_any_case_is_right(validator: Validator, display: str) -> None:
    assert displays(validator, encounter(display)) == []


def test_a_designation_is_a_display_too(validator: Validator) -> None:
    assert displays(validator, colour_observation("rouge")) == []


@pytest.mark.parametrize("setting, expected", [("warning", [("warning", "Encounter.class.display")]),
                                               ("information", [("information", "Encounter.class.display")]),
                                               ("ignore", [])])
def test_the_setting_changes_its_severity(validator: Validator, setting: str, expected: list[Any]) -> None:
    assert displays(validator, encounter("Ambulant"), display_issues=setting) == expected


def test_the_facade_keeps_a_wrong_display_with_a_warning(validator: Validator) -> None:
    found = [(f.severity, f.expression) for f in validator.validate(encounter("Ambulant"),
                                                                    policy=ValidationPolicy.store())
             if "isplay" in f.message]
    assert found == [("warning", "Encounter.class.display")]


def score_with_loinc_display(display: str) -> dict[str, Any]:
    score: dict[str, Any] = json.loads((profiles_dir() / "examples" / "Observation-phq9-alpha-baseline.json")
                                       .read_text(encoding="utf-8"))
    [loinc] = [c for c in score["code"]["coding"] if c["system"] == "http://loinc.org"]
    loinc["display"] = display
    return score


@pytest.mark.parametrize("setting", ["error", "warning"])
def test_a_loinc_display_known_only_from_a_value_set_is_a_warning_whatever_the_setting(validator: Validator,
                                                                                        setting: str) -> None:
    assert displays(validator, score_with_loinc_display("Totally wrong"), display_issues=setting) == [
        ("warning", "Observation.code")]


def test_validate_exits_1_by_default_and_0_with_display_issues_warning(tmp_path: Path) -> None:
    path = tmp_path / "encounter.json"
    path.write_text(json.dumps(encounter("Ambulant")), encoding="utf-8")
    strict = kfhir("validate", path)
    assert strict.returncode == 1 and "Wrong display 'Ambulant'" in strict.stdout, strict.stdout
    lenient = kfhir("validate", "--display-issues", "warning", path)
    assert lenient.returncode == 0 and "Wrong display 'Ambulant'" in lenient.stdout, lenient.stdout
