"""Duplicate ids (element ids within a resource, contained resources' ids) and example URLs where the HL7 validator
refuses them: each rule fails for the one thing broken and passes without it (the HL7 check cited beside each)."""
from __future__ import annotations

from typing import Any

import pytest

from service.conformance.definitions import load
from service.fhirjson import Finding
from service.validation.engine import Validator
from service.validation.policy import ValidationPolicy

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load())


def errors(validator: Validator, resource: dict[str, Any], **policy: Any) -> list[Finding]:
    return [f for f in validator.validate(resource, policy=ValidationPolicy(**policy) if policy else None)
            if f.severity in ("error", "fatal")]


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "text": NARRATIVE, **extra}


def name(ident: str) -> dict[str, Any]:
    return {"id": ident, "family": "Doe"}


# --- element ids (InstanceValidator.validateElement: DUPLICATE_ID, an error) ---------------------------------------

def test_two_elements_of_a_resource_with_one_id(validator: Validator) -> None:
    assert errors(validator, patient(name=[name("n1"), name("n2")])) == []
    [duplicate] = errors(validator, patient(name=[name("n1"), name("n1")]))
    assert (duplicate.code, duplicate.expression) == ("business-rule", "Patient.name[1]")
    assert duplicate.message == "Duplicate id value 'n1'."


def test_an_element_with_the_resources_own_id_and_a_primitives_id(validator: Validator) -> None:
    """The resource's id is among its ids (the top of the node stack is no reset point); a primitive's `_field`
    holder is an element too."""
    assert [f.expression for f in errors(validator, patient(name=[name("p1")]))] == ["Patient.name[0]"]
    twice = patient(gender="male", _gender={"id": "g"}, name=[name("g")])
    assert [f.message for f in errors(validator, twice)] == ["Duplicate id value 'g'."]


def test_each_contained_or_entry_resource_has_ids_of_its_own(validator: Validator) -> None:
    """NodeStack.resetIds: a contained resource's elements may reuse its container's element ids, and its own id
    is not among them."""
    org = {"resourceType": "Organization", "id": "n1", "name": "x", "alias": ["a"], "_alias": [{"id": "n1"}]}
    with_contained = patient(name=[name("n1")], contained=[org], managingOrganization={"reference": "#n1"})
    assert errors(validator, with_contained) == []
    bundle = {"resourceType": "Bundle", "id": "b", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "resource": patient(name=[name("x")])},
        {"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e1", "resource": {**patient(name=[name("x")]),
                                                                                  "id": "p2"}}]}
    assert errors(validator, bundle) == []


def test_two_contained_resources_with_one_id(validator: Validator) -> None:
    """RESOURCE_DUPLICATE_CONTAINED_ID, an error at the second."""
    def org(ident: str) -> dict[str, Any]:
        return {"resourceType": "Organization", "id": ident, "name": ident}

    good = patient(contained=[org("o1"), org("o2")], managingOrganization={"reference": "#o1"},
                   generalPractitioner=[{"reference": "#o2"}])
    assert errors(validator, good) == []
    bad = patient(contained=[org("o1"), org("o1")], managingOrganization={"reference": "#o1"})
    assert [(f.code, f.expression, f.message) for f in errors(validator, bad)] == [
        ("duplicate", "Patient.contained[1]", "Duplicate id for contained resource: o1.")]


def test_a_profile_walking_an_element_twice_is_no_duplicate(validator: Validator) -> None:
    """An element checked against two profiles (meta.profile and the base, or a slice) is one element."""
    sliced = {"resourceType": "Observation", "id": "bp", "text": NARRATIVE, "status": "final",
              "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
              "category": [{"id": "c1", "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                                    "code": "vital-signs"}]}],
              "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
              "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-01",
              "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    assert not [f for f in errors(validator, sliced) if "Duplicate" in f.message]


# --- example URLs (InstanceValidator.validateReference: TYPE_SPECIFIC_CHECKS_DT_URL_EXAMPLE) ---------------------

def care_plan(canonical: str) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "id": "cp", "text": NARRATIVE, "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/p1"}, "instantiatesCanonical": [canonical]}


@pytest.mark.parametrize("url", ["http://example.org/fhir/PlanDefinition/x", "https://www.example.com/PlanDefinition",
                                 "http://acme.com/fhir/PlanDefinition/1", "urn:oid:2.999.1"])
def test_an_example_url_in_a_canonical_that_does_not_resolve_is_an_error(validator: Validator, url: str) -> None:
    [found] = errors(validator, care_plan(url))
    assert (found.code, found.expression) == ("invalid", "CarePlan.instantiatesCanonical[0]")
    assert found.message == f"Example URLs are not allowed in this context ({url})."
    assert errors(validator, care_plan(url), allow_example_urls=True) == []  # the HL7 CLI's -allow-example-urls


def test_other_urls_and_example_urls_where_they_are_accepted(validator: Validator) -> None:
    assert errors(validator, care_plan("https://ketamine-fhir.org/fhir/PlanDefinition/x")) == []
    assert errors(validator, care_plan("http://example.organisation.test/PlanDefinition/x")) == []  # not the domain
    # uri and url values are not refused (the CLI resolves any uri or url outside hl7.org)
    assert errors(validator, patient(identifier=[{"system": "http://example.org/mrn", "value": "1"}])) == []
    # nor a canonical we hold, whatever its domain
    held = Validator(load().with_own([*load().own.values(), {
        "resourceType": "PlanDefinition", "id": "x", "url": "http://example.org/fhir/PlanDefinition/x",
        "status": "draft"}]))
    assert errors(held, care_plan("http://example.org/fhir/PlanDefinition/x")) == []
