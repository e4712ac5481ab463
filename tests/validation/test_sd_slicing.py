"""A StructureDefinition's own slicing checked as the HL7 validator checks it (StructureDefinitionValidator:
SD_PATH_NO_SLICING where the base allows one value only, SD_PATH_NOT_VALID for a discriminator path that reaches
nothing from the sliced element's types). R4's 466 core definitions with slicing, the 655 of the R4 examples
package and IPS 2.0.0's 32 pass (checked when this was written)."""
from __future__ import annotations

from typing import Any

import pytest

from service.conformance.definitions import CORE_SD, load
from service.fhirjson import Finding
from service.validation.engine import Validator

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load())


def profile(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "StructureDefinition", "id": "p", "text": NARRATIVE,
            "url": "https://ketamine-fhir.test/StructureDefinition/p", "name": "P", "status": "draft",
            "kind": "resource", "abstract": False, "type": "Observation", "fhirVersion": "4.0.1",
            "baseDefinition": CORE_SD + "Observation", "derivation": "constraint",
            "differential": {"element": [{"id": "Observation", "path": "Observation"}, *elements]}}


def sliced(path: str, discriminator: str, types: list[str] | None = None) -> dict[str, Any]:
    return {"id": path, "path": path, **({"type": [{"code": t} for t in types]} if types else {}),
            "slicing": {"discriminator": [{"type": "value", "path": discriminator}], "rules": "open"}}


def slicing_errors(validator: Validator, sd: dict[str, Any]) -> list[Finding]:
    return [f for f in validator.validate(sd) if f.severity == "error" and ("discriminator" in f.message
                                                                            or "Slicing" in f.message)]


@pytest.mark.parametrize("path, discriminator, types", [
    ("Observation.component", "code", ["BackboneElement"]),
    ("Observation.component", "code.coding.system", ["BackboneElement"]),
    ("Observation.component", "value.ofType(Quantity).code", ["BackboneElement"]),
    ("Observation.category", "coding.code", ["CodeableConcept"]),
    ("Observation.extension", "url", ["Extension"]),
    ("Observation.extension", "extension('http://x.test/e').value", ["Extension"]),
    ("Observation.value[x]", "$this", ["Quantity", "string"]),
    ("Observation.hasMember", "resolve().code", ["Reference"]),
    ("Observation.component", "nonsense", None),  # no types declared: not checked (as the HL7 validator)
])
def test_discriminator_paths_that_apply(validator: Validator, path: str, discriminator: str,
                                        types: list[str] | None) -> None:
    assert slicing_errors(validator, profile(sliced(path, discriminator, types))) == []


@pytest.mark.parametrize("path, discriminator, types", [
    ("Observation.component", "cod", ["BackboneElement"]),
    ("Observation.component", "code.coding.sytem", ["BackboneElement"]),
    ("Observation.category", "code", ["CodeableConcept"]),
    ("Observation.extension", "uri", ["Extension"]),
])
def test_a_discriminator_path_that_reaches_nothing_is_an_error(validator: Validator, path: str,
                                                                discriminator: str, types: list[str]) -> None:
    [error] = slicing_errors(validator, profile(sliced(path, discriminator, types)))
    assert error.expression == "StructureDefinition.differential.element[1].slicing.discriminator[0]"
    assert error.message == (f"The discriminator path '{discriminator}' does not appear to be valid for the element "
                             f"that is being sliced '{path}'.")


def test_slicing_an_element_of_one_value_is_an_error(validator: Validator) -> None:
    [error] = slicing_errors(validator, profile(sliced("Observation.status", "$this", ["code"])))
    assert (error.expression, error.message) == ("StructureDefinition.differential.element[1]",
                                                  "Slicing is not allowed at 'Observation.status'.")
    assert slicing_errors(validator, profile(sliced("Observation.identifier", "system", ["Identifier"]))) == []
