"""Definitions the validator cannot use as they are (held without a snapshot, broken, or not held at all):
each ends in findings, never in an exception (the UnknownProfile that escaped validation/engine.py)."""
from __future__ import annotations

from typing import Any

import pytest

from service.conformance.definitions import CORE_SD, load
from service.fhirjson import Finding
from service.validation.engine import Validator

EXT = "http://example.org/fhir/StructureDefinition/"


def differential_only(name: str, value_type: str, element: str = "Extension.value[x]") -> dict[str, Any]:
    """An extension definition as many packages ship it: a differential, no snapshot."""
    return {"resourceType": "StructureDefinition", "url": EXT + name, "name": name, "status": "draft",
            "kind": "complex-type", "abstract": False, "type": "Extension", "derivation": "constraint",
            "baseDefinition": CORE_SD + "Extension", "context": [{"type": "element", "expression": "Patient"}],
            "differential": {"element": [{"id": element, "path": element, "type": [{"code": value_type}]}]}}


@pytest.fixture(scope="module")
def validator() -> Validator:
    defs = load()
    broken = differential_only("broken", "string", "Extension.noSuchElement")
    broken_base = {**differential_only("broken-base", "string"), "baseDefinition": EXT + "not-held"}
    return Validator(defs.with_own([*defs.own.values(), differential_only("diff-only", "string"), broken,
                                    broken_base]))


def patient_with(url: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "extension": [{"url": url, **(value or {"valueString": "x"})}]}


def messages(findings: list[Finding], severity: str) -> list[str]:
    return [f.message for f in findings if f.severity == severity]


def test_an_extension_held_only_as_a_differential_is_checked_against_its_generated_snapshot(
        validator: Validator) -> None:
    assert messages(validator.validate(patient_with(EXT + "diff-only")), "error") == []
    wrong = validator.validate(patient_with(EXT + "diff-only", valueInteger=1))
    assert any("valueInteger" in m for m in messages(wrong, "error")), wrong


@pytest.mark.parametrize("name", ["broken", "broken-base", "not-held"])
def test_an_extension_whose_definition_cannot_be_used_is_a_finding_not_an_exception(
        validator: Validator, name: str) -> None:
    findings = validator.validate(patient_with(EXT + name))
    assert any(f"Unknown extension {EXT}{name}" in f.message for f in findings), findings


@pytest.mark.parametrize("url", [CORE_SD + "familymemberhistory-genetic", CORE_SD + "catalog"])
def test_core_profiles_whose_snapshot_slices_an_element_it_leaves_out_compile(validator: Validator,
                                                                              url: str) -> None:
    """R4's own snapshots of these two profiles hold `FamilyMemberHistory.relationship:Relationship` without
    `FamilyMemberHistory.relationship` (KeyError in compile_structure)."""
    kind = validator.defs.structure(url)["type"]
    findings = validator.validate({"resourceType": kind, "meta": {"profile": [url]}})
    assert any(f.severity == "error" for f in findings)  # required elements are missing: checked, not skipped
