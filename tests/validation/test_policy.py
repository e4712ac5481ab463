"""The validation policy: the HL7 validator's defaults, each changeable, and the FHIR facade's store policy."""
from __future__ import annotations

from typing import Any

import pytest

from service.conformance.definitions import CORE_SD, load
from service.conformance.package import Resource
from service.fhirjson import Finding
from service.validation import ours
from service.validation.engine import Validator
from service.validation.policy import ANY, PolicyError, ValidationPolicy, domains
from service.validation.run import Run

OURS = "https://ketamine-fhir.org/fhir/StructureDefinition/"
UNHELD = "http://example.org/fhir/StructureDefinition/unheld"
NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return ours(policy=ValidationPolicy())


def about(findings: list[Finding], fragment: str) -> list[str]:
    return [f.severity for f in findings if fragment in f.message]


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "text": NARRATIVE, **extra}


def with_extension(url: str = UNHELD) -> dict[str, Any]:
    return patient(extension=[{"url": url, "valueString": "x"}])


def test_the_default_is_the_hl7_validators() -> None:
    assert ValidationPolicy() == ValidationPolicy(unknown_profile="warning", unknown_extension="error",
                                                  extension_domains=(), our_profiles=False, global_profiles=True)


def test_an_unknown_profile_is_a_warning_and_the_base_is_still_checked(validator: Validator) -> None:
    findings = validator.validate(patient(meta={"profile": ["http://example.org/nope"]}, gender="none"))
    assert about(findings, "'http://example.org/nope' has not been checked") == ["warning"]
    assert any(f.severity == "error" and "gender" in f.expression for f in findings)  # R4's own binding


def test_an_unknown_profile_is_an_error_when_the_policy_says(validator: Validator) -> None:
    findings = validator.validate(patient(meta={"profile": ["http://example.org/nope"]}),
                                  policy=ValidationPolicy(unknown_profile="error"))
    assert about(findings, "has not been checked") == ["error"]


def test_an_unknown_extension_is_an_error(validator: Validator) -> None:
    assert about(validator.validate(with_extension()), "Unknown extension") == ["error"]


@pytest.mark.parametrize("allowed, expected", [
    (("http://example.org/fhir/",), []),            # its domain is allowed: nothing to say
    (("http://example.org/other/",), ["error"]),    # another domain
    ((ANY,), ["information"]),                       # any allowed: a hint, as -allow-any-extensions
])
def test_an_allowed_extension_domain(validator: Validator, allowed: tuple[str, ...], expected: list[str]) -> None:
    policy = ValidationPolicy(extension_domains=allowed)
    assert about(validator.validate(with_extension(), policy=policy), "Unknown extension") == expected


def test_unknown_extension_severity_is_a_setting(validator: Validator) -> None:
    policy = ValidationPolicy(unknown_extension="warning")
    assert about(validator.validate(with_extension(), policy=policy), "Unknown extension") == ["warning"]
    ignore = ValidationPolicy(unknown_extension="ignore")
    assert about(validator.validate(with_extension(), policy=ignore), "Unknown extension") == []


def test_no_ketamine_profile_is_applied_to_a_resource_that_claims_none(validator: Validator) -> None:
    """An ordinary R4 Condition is no ketamine indication unless it says so (or the user asks)."""
    condition = {"resourceType": "Condition", "id": "c1", "text": NARRATIVE, "subject": {"reference": "Patient/p1"},
                 "code": {"text": "Asthma"}}
    assert [f for f in validator.validate(condition) if f.severity == "error"] == []
    ketamine = validator.validate(condition, policy=ValidationPolicy(our_profiles=True))
    assert any(f.severity == "error" for f in ketamine)
    claimed = {**condition, "meta": {"profile": [OURS + "ketamine-indication"]}}
    assert any(f.severity == "error" for f in validator.validate(claimed))


def test_the_store_policy_keeps_the_facades_behaviour() -> None:
    store = ValidationPolicy.store()
    assert (store.unknown_profile, store.unknown_extension, store.our_profiles) == ("error", "warning", True)
    assert ours().policy == store


def global_ig(kind: str, profile: str) -> Resource:
    return {"resourceType": "ImplementationGuide", "url": "http://example.org/fhir/ImplementationGuide/g",
            "name": "G", "status": "draft", "packageId": "example.g", "fhirVersion": ["4.0.1"],
            "global": [{"type": kind, "profile": profile}]}


def test_an_implementation_guides_global_profile_applies_to_its_type() -> None:
    defs = load()
    validator = Validator(defs.with_own([*defs.own.values(), global_ig("Observation", CORE_SD + "vitalsigns")]))
    observation = {"resourceType": "Observation", "id": "o1", "text": NARRATIVE, "status": "final",
                   "code": {"text": "x"}}
    assert any("vitalsigns" in f.message or "vs-" in f.message or "category" in f.expression
               for f in validator.validate(observation) if f.severity == "error")
    assert [f for f in validator.validate(observation, policy=ValidationPolicy(global_profiles=False))
            if f.severity == "error"] == []
    assert [f for f in Validator(defs).validate(observation) if f.severity == "error"] == []


def test_a_resources_profiles_are_its_declared_texts_then_its_types_global_ones_not_repeated() -> None:
    defs = load()
    validator = Validator(defs.with_own([*defs.own.values(), global_ig("Observation", CORE_SD + "vitalsigns")]))
    run = Run({}, policy=ValidationPolicy())
    declared = {"resourceType": "Observation", "meta": {"profile": [CORE_SD + "bp", 7, None, CORE_SD + "vitalsigns"]}}
    assert validator._profiles_of(declared, run) == [CORE_SD + "bp", CORE_SD + "vitalsigns"]
    assert validator._profiles_of({"resourceType": "Observation", "meta": {"profile": [CORE_SD + "bp"]}}, run) == [
        CORE_SD + "bp", CORE_SD + "vitalsigns"]
    assert validator._profiles_of({"resourceType": "Observation", "meta": {"profile": "x"}}, run) == [
        CORE_SD + "vitalsigns"]
    assert validator._profiles_of({"resourceType": "Patient", "meta": []}, run) == []
    run.policy = ValidationPolicy(global_profiles=False)
    assert validator._profiles_of({"resourceType": "Observation"}, run) == []


@pytest.mark.parametrize("changes", [{"unknown_profile": "fatal"}, {"unknown_extension": "loud"},
                                     {"extension_domains": "http://x"}])
def test_a_policy_value_out_of_range_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        ValidationPolicy(**changes)


def test_extension_domains_from_a_setting() -> None:
    assert domains("http://a/, http://b/  *") == ("http://a/", "http://b/", "*")
    assert domains(["http://a/"]) == ("http://a/",)


def test_a_policy_hashes_as_its_fields_say_worked_out_once() -> None:
    """A policy is part of every memo key (coded.py, slicing.py): equal policies hash equal, whichever way they
    were made, and the hash is worked out when the policy is made, not on each look-up."""
    store = ValidationPolicy.store()
    assert hash(store) == hash(ValidationPolicy.store()) == hash(ValidationPolicy().replace(
        unknown_profile="error", unknown_extension="warning", our_profiles=True, allow_example_urls=True,
        display_issues="warning", assume_valid_rest_references=True))
    assert hash(store) != hash(ValidationPolicy()) and store != ValidationPolicy()
    assert {store: 1}[ValidationPolicy.store()] == 1
    assert vars(store)["_hash"] == hash(store) and "_hash" not in repr(store)
