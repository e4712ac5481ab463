"""Values._constraints: its runs of guarded rules and the FAST paths it asks itself answer as Invariants.holds."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from service.conformance.definitions import CORE_SD
from service.validation import ours
from service.validation.engine import Validator
from service.validation.invariants import NATIVE, InvariantError
from service.validation.run import Run

LOINC = {"system": "http://loinc.org", "code": "8480-6"}
MEDICATION = {"resourceType": "Medication", "id": "m", "code": {"text": "ketamine"}}
#: members the guards read (contained and its holder, code, comparator, text), each absent, null, empty or odd
VARIANTS: list[dict[str, Any]] = [
    {}, {"contained": [MEDICATION]}, {"contained": [MEDICATION], "medicationReference": {"reference": "#m"}},
    {"contained": None}, {"contained": []}, {"_contained": [{"id": "x"}]}, {"contained": "x"},
    {"contained": [{**MEDICATION, "contained": [MEDICATION]}]},
    {"contained": [{**MEDICATION, "meta": {"versionId": "1", "security": [{"code": "x"}]}}]},
    {"text": None}, {"text": {"status": "generated"}}, {"text": {"div": None}}, {"code": None},
    # the Observation's PLAIN paths (obs-6, obs-7), also where they defer to FHIRPath (NotPlain)
    {"code": {"coding": [LOINC]}, "valueString": "x", "component": [{"code": {"coding": [LOINC]}}]},
    {"code": {"coding": [LOINC]}, "component": [{"code": {"coding": [LOINC]}}]},
    {"valueString": "x", "dataAbsentReason": {"text": "x"}}, {"valueString": "x", "valueInteger": 1},
    {"_valueString": {"id": "v"}}, {"code": {"_coding": [{"id": "c"}]}, "valueString": "x", "component": []},
]


def _by_holds(validator: Validator, node: Any, constraints: Any, base: str, run: Run) -> list[tuple[str, str]]:
    """Every rule through Invariants.holds, one by one: what _constraints answered before its runs."""
    out = []
    for rule in constraints:
        if rule.key in NATIVE:
            continue
        try:
            ok = validator.invariants.holds(rule.expression, node, base, run.resources[-1], run.roots[-1])
        except InvariantError:
            out.append(("information", rule.key))
            continue
        if not ok:
            out.append(("error" if rule.severity == "error" else "warning", rule.key))
    return out


@pytest.mark.parametrize("kind", ["Observation", "MedicationAdministration", "Patient", "Encounter"])
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_a_resource_s_rules_answer_as_holds_answers_each(kind: str, variant: int) -> None:
    validator = ours()
    node = copy.deepcopy({"resourceType": kind, "id": "r", "text": {"status": "generated", "div": "<div>x</div>"}}
                         | VARIANTS[variant])
    constraints = validator.plan(CORE_SD + kind).root.constraints
    run = Run(node, resources=[node], roots=[node])
    validator._constraints(node, constraints, kind, kind, run, kind)
    got = [(f.severity, f.message.split(":")[1].strip()) if f.code == "invariant" else (f.severity, f.message.split()[1])
           for f in run.findings]
    assert got == _by_holds(validator, node, constraints, kind, run)


@pytest.mark.parametrize("quantity", [{"value": 1, "code": "mg"}, {"value": 1, "code": "mg", "system": "x"},
                                      {"value": 1}, {"_code": {"id": "c"}}, {"code": None}, {"comparator": "<"},
                                      {"value": 1, "code": "mg", "comparator": None}])
def test_a_quantity_s_rules_answer_as_holds_answers_each(quantity: dict[str, Any]) -> None:
    validator = ours()
    resource = {"resourceType": "Observation"}
    constraints = validator.plan(CORE_SD + "Quantity").root.constraints
    run = Run(resource, resources=[resource], roots=[resource])
    validator._constraints(quantity, constraints, "Quantity", "Observation.valueQuantity", run, "Quantity")
    got = [(f.severity, f.message.split(":")[1].strip()) for f in run.findings]
    assert got == _by_holds(validator, quantity, constraints, "Quantity", run)
    assert any(rule.key == "qty-3" for rule in constraints)
