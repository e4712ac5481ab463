"""R4's bp profile slices Observation.component by value on `code.coding.code` and `code.coding.system`, values
that are fixed only inside each slice's own coding slice (component:SystolicBP.code.coding:SBPCode.code = 8480-6).
R4 ElementDefinition.slicing.discriminator: the instance's values "SHALL completely distinguish which slice the
element in the resource matches based on the allowed values for those elements in each of the slices", so the
allowed values are read through the nested slices; a component matches when any of its codings carries them
(tests/peers/test_hapi_vitals_slicing.py checks the same verdicts against the HL7 validator)."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from service.conformance.definitions import CORE_SD, load
from service.fhirjson import matches_pattern
from service.resources import profiles_dir
from service.validation.engine import Validator

MEAN_BP = {"system": "http://loinc.org", "code": "8478-0"}  # terminology.md: R4 vital-signs value set


def bp(variant: str) -> dict[str, Any]:
    """Our pre-dose blood pressure example claiming R4's bp profile, changed as `variant` says."""
    doc = json.loads((profiles_dir() / "examples" / "Observation-bp-esketamine-session-1-pre.json").read_text())
    doc["meta"] = {"profile": [CORE_SD + "bp"]}
    systolic, diastolic = doc["component"]
    if variant == "extra-coding":
        systolic["code"]["coding"].insert(0, dict(MEAN_BP))
    elif variant == "no-display":
        for c in doc["component"]:
            c["code"]["coding"][0].pop("display")
    elif variant == "reordered":
        doc["component"] = [diastolic, systolic]
    elif variant == "wrong-code":
        diastolic["code"]["coding"] = [dict(MEAN_BP)]
    elif variant == "wrong-system":
        systolic["code"]["coding"][0]["system"] = "http://snomed.info/sct"
    return copy.deepcopy(doc)


#: variant → the slices left unmatched (an error each)
CASES: dict[str, set[str]] = {"as-is": set(), "extra-coding": set(), "no-display": set(), "reordered": set(),
                              "wrong-code": {"DiastolicBP"}, "wrong-system": {"SystolicBP"}}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load())


def slice_errors(findings: Any) -> set[str]:
    return {name for f in findings if f.severity == "error" for name in ("SystolicBP", "DiastolicBP")
            if name in f.message}


@pytest.mark.parametrize("variant", CASES)
def test_bp_components_match_their_slices_through_the_coding_slices(validator: Validator, variant: str) -> None:
    findings = validator.validate(bp(variant))
    assert slice_errors(findings) == CASES[variant], findings
    if not CASES[variant]:
        assert [f for f in findings if f.severity == "error"] == []


def test_a_codeable_concept_pattern_matches_any_coding_that_contains_the_patterns() -> None:
    # R4 ElementDefinition.pattern[x]: each element of a pattern array must (recursively) match at least one
    # element of the instance array; elements the pattern does not name (display) may be anything
    pattern = {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}
    assert matches_pattern({"coding": [MEAN_BP, {"system": "http://loinc.org", "code": "8480-6",
                                                 "display": "Systolic blood pressure"}]}, pattern)
    assert not matches_pattern({"coding": [MEAN_BP]}, pattern)
    assert not matches_pattern({"coding": [{"system": "http://snomed.info/sct", "code": "8480-6"}]}, pattern)
