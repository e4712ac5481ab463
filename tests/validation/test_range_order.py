"""rng-2 (R4 Range: `low.empty() or high.empty() or (low <= high)`): two bounds in the same unit are ordered, as the
HL7 validator orders them (tests/peers/test_hapi_range_order.py runs the same cases through it); bounds in different
units stay "could not be evaluated", since we do not convert UCUM units.

FHIRPath N1 §4.1.8 (Quantity): "Implementations shall support comparison and arithmetic operations on quantities with
units where the units are the same" and "may return empty ({ }) for calculations involving quantities with units
where the units are different". The native path's agreement with fhirpathpy wherever fhirpathpy can answer is in
test_native_invariants.py."""
from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from service.conformance.definitions import load
from service.validation import core_invariants as core
from service.validation.engine import Validator
from service.validation.ig_invariants import UCUM

MG = {"system": UCUM, "code": "mg", "unit": "mg"}
G = {"system": UCUM, "code": "g", "unit": "g"}
#: name: (low, high, verdict): "fails" (an error), "holds" (no finding) or "unevaluated" (an informational finding)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "coded-greater": ({"value": 5, **MG}, {"value": 2, **MG}, "fails"),
    "coded-greater-other-unit-text": ({"value": 2.5, **MG}, {"value": 2.25, **MG, "unit": "milligram"}, "fails"),
    "text-unit-greater": ({"value": 3, "unit": "tablets"}, {"value": 1, "unit": "tablets"}, "fails"),
    "no-unit-greater": ({"value": 1}, {"value": 0}, "fails"),
    "coded-less": ({"value": 2, **MG}, {"value": 5, **MG}, "holds"),
    "coded-equal": ({"value": 2, **MG}, {"value": 2.0, **MG}, "holds"),
    "text-unit-less": ({"value": 1, "unit": "tablets"}, {"value": 3, "unit": "tablets"}, "holds"),
    "no-unit-equal": ({"value": 0}, {"value": 0}, "holds"),
    "mg-g": ({"value": 5, **MG}, {"value": 2, **G}, "unevaluated"),  # 5 mg <= 2 g needs UCUM conversion
    "coded-uncoded": ({"value": 1, **MG}, {"value": 2, "unit": "mg"}, "unevaluated"),
    "text-units-differ": ({"value": 1, "unit": "tablets"}, {"value": 3, "unit": "capsules"}, "unevaluated"),
    "one-unit": ({"value": 1, "unit": "mg"}, {"value": 2}, "unevaluated"),
}
FINDINGS = {
    "fails": [("error", "invariant", "Observation.valueRange",
               "Constraint failed: rng-2: 'If present, low SHALL have a lower value than high'")],
    "holds": [],
    "unevaluated": [("information", "informational", "Observation.valueRange",
                     f"Invariant rng-2 could not be evaluated: {core.UNORDERED}")],
}


def observation(name: str) -> dict[str, Any]:
    """An R4 Observation (no ketamine profile) whose value is the case's Range."""
    low, high, _ = CASES[name]
    return {"resourceType": "Observation", "id": name, "status": "final", "code": {"text": "dose range"},
            "valueRange": {"low": low, "high": high}}


@cache
def validator() -> Validator:
    return Validator(load())


@pytest.mark.parametrize("name", sorted(CASES))
def test_rng_2_orders_bounds_in_the_same_unit_and_no_others(name: str) -> None:
    found = [(f.severity, f.code, f.expression, f.message) for f in validator().validate(observation(name))
             if "rng-2" in f.message]
    assert found == FINDINGS[CASES[name][2]]
