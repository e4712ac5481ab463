"""R4's vitalsigns profiles bind Observation.component.value[x] to ucum-vitals-common as required, whatever the
component's type; the HL7 validator backs that off to extensible for R4's own profiles (org.hl7.fhir.r5
PackageHackerR5: "the R4 profile wrongly applies this value set to all types"), so a component valued in another
unit, or with a code or a string, is a warning there, not an error. A profile of someone else's that states the
binding keeps it required."""
from __future__ import annotations

from typing import Any

import pytest

from service.conformance.definitions import CORE_SD, load
from service.validation.engine import Validator

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
OURS = "https://ketamine-fhir.test/StructureDefinition/strict-vitals"


@pytest.fixture(scope="module")
def validator() -> Validator:
    defs = load()
    strict = {**defs.structure(CORE_SD + "vitalsigns"), "url": OURS, "id": "strict-vitals", "name": "StrictVitals",
              "baseDefinition": CORE_SD + "vitalsigns", "derivation": "constraint"}
    return Validator(defs.with_own([*defs.own.values(), strict]))


def panel(profile: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o", "text": NARRATIVE, "status": "final",
            "meta": {"profile": [profile]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]}, "subject": {"reference": "Patient/p"},
            "effectiveDateTime": "2026-01-01",
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, **value}]}


QUANTITY = {"valueQuantity": {"value": 1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}


@pytest.mark.parametrize("value", [QUANTITY, {"valueString": "regular"}, {"valueCodeableConcept": {"text": "regular"}}])
def test_another_unit_or_type_in_a_vital_signs_component_is_a_warning(validator: Validator,
                                                                       value: dict[str, Any]) -> None:
    findings = [f for f in validator.validate(panel(CORE_SD + "vitalsigns", value))
                if "ucum-vitals-common" in f.message]
    assert [f.severity for f in findings] in ([], ["warning"]), findings
    assert not [f for f in findings if f.severity == "error"]


def test_a_unit_of_the_value_set_says_nothing(validator: Validator) -> None:
    mm_hg = {"valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
    assert [f for f in validator.validate(panel(CORE_SD + "vitalsigns", mm_hg)) if f.severity != "information"] == []


def test_a_profile_not_of_r4_keeps_the_binding_required(validator: Validator) -> None:
    [error] = [f for f in validator.validate(panel(OURS, QUANTITY)) if f.severity == "error"]
    assert error.expression == "Observation.component[0].valueQuantity" and "ucum-vitals-common" in error.message
