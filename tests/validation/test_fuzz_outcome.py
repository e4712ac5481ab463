"""Every input to the validator ends in an OperationOutcome: resources whose extensions and meta.profile name
definitions of every kind (R4 core profiles and extensions, definitions held only as a differential or broken,
ones not held at all), nested in contained resources and Bundle entries. Sized like tests/hardening
(KFHIR_FUZZ_REQUESTS; `make fuzz` runs the full size)."""
from __future__ import annotations

from functools import cache
from typing import Any

from hardening.fuzzing import share
from hypothesis import given
from hypothesis import strategies as st
from validation.test_fuzz import JSON_VALUES, RESOURCE_TYPES, SCALARS
from validation.test_unresolvable import EXT, differential_only

from service.conformance.definitions import load
from service.fhirjson import operation_outcome
from service.validation.engine import UnknownProfile, Validator

TESTS = 2  # the tests below share the suite's examples


@cache
def validator() -> Validator:
    defs = load()
    held = [differential_only("diff-only", "string"), differential_only("broken", "string", "Extension.nope")]
    return Validator(defs.with_own([*defs.own.values(), *held]))


@cache
def definition_urls() -> list[str]:
    """Every canonical URL the validator might be pointed at: each core StructureDefinition, our own
    conformance resources, the held differentials, and some held by nobody."""
    core = [e["url"] for e in validator().defs.core.index if e.get("resourceType") == "StructureDefinition"]
    return sorted({*core, *validator().defs.own, EXT + "diff-only", EXT + "broken", EXT + "not-held",
                   "http://hl7.org/fhir/ValueSet/administrative-gender", "urn:uuid:1", "", "#x"})


@cache
def usable_profiles() -> list[str]:
    """The StructureDefinitions a caller may force (one that cannot be used is the caller's UnknownProfile)."""
    out = []
    for url in definition_urls():
        try:
            validator().plan(url)
        except UnknownProfile:
            continue
        out.append(url)
    return out


URLS = st.deferred(lambda: st.sampled_from(definition_urls())) | st.text(max_size=20)
EXTENSION = st.fixed_dictionaries({"url": URLS}, optional={
    "valueString": SCALARS, "valueCodeableConcept": JSON_VALUES, "valueReference": JSON_VALUES,
    "extension": st.lists(st.fixed_dictionaries({"url": URLS}, optional={"valueString": SCALARS}), max_size=2)})


@st.composite
def resources(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kind = draw(st.sampled_from(RESOURCE_TYPES))
    out: dict[str, Any] = {"resourceType": kind}
    if draw(st.booleans()):
        out["extension"] = draw(st.lists(EXTENSION, max_size=3))
    if draw(st.booleans()):
        out["modifierExtension"] = draw(st.lists(EXTENSION, max_size=2))
    if draw(st.booleans()):
        out["meta"] = {"profile": draw(st.lists(URLS, max_size=2))}
    if draw(st.booleans()):
        out["_id"] = {"extension": draw(st.lists(EXTENSION, min_size=1, max_size=2))}
    if depth < 1 and draw(st.booleans()):
        nested = draw(resources(depth + 1))
        if kind == "Bundle":
            out["entry"] = [{"fullUrl": draw(st.sampled_from(["urn:uuid:1", "http://x/Patient/1", "x"])),
                             "resource": nested}]
        else:
            out["contained"] = [nested]
    return out


def assert_outcome(resource: Any, profile: str | None = None) -> None:
    outcome = operation_outcome(validator().validate(resource, profile))
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"], outcome
    for issue in outcome["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information"), issue
        assert issue["details"]["text"].strip(), issue


@share(TESTS)
@given(resources())
def test_every_resource_naming_any_definition_ends_in_an_operation_outcome(resource: dict[str, Any]) -> None:
    assert_outcome(resource)


@share(TESTS)
@given(resources(), st.deferred(lambda: st.sampled_from(usable_profiles())))
def test_every_resource_against_any_held_profile_ends_in_an_operation_outcome(resource: dict[str, Any],
                                                                           profile: str) -> None:
    assert_outcome(resource, profile)
