"""The validator, one check at a time: each case passes when valid and fails for the one thing broken."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from service.conformance.definitions import load
from service.fhirjson import Finding, matches_pattern
from service.resources import profiles_dir
from service.validation import ensure_valid, ours, validate
from service.validation.engine import Validator

EXAMPLES = profiles_dir() / "examples"
OURS = "https://ketamine-fhir.org/fhir/StructureDefinition/"


@pytest.fixture(scope="module")
def validator() -> Validator:
    return ours()


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def errors(validator: Validator, resource: Any, profile: str | None = None) -> list[Finding]:
    return [f for f in validator.validate(resource, profile) if f.severity in ("error", "fatal")]


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}, **extra}


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.json") if p.name != "manifest.json"),
                         ids=lambda p: p.stem)
def test_every_valid_example_has_no_errors(validator: Validator, path: Path) -> None:
    assert errors(validator, json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_every_invalid_example_has_an_error(validator: Validator, path: Path) -> None:
    assert errors(validator, json.loads(path.read_text())) != []


# --- structure --------------------------------------------------------------------------------

@pytest.mark.parametrize("resource, fragment", [
    (patient(colour="red"), "Unknown element 'colour'"),
    (patient(active="yes"), "must be true or false"),
    (patient(birthDate="1980-13-01"), "is not a valid date"),
    (patient(birthDate=""), "must not be empty"),
    (patient(name={"family": "X"}), "must be a JSON array"),
    (patient(gender=["female"]), "single value, not an array"),
    (patient(name=[]), "empty array"),
    (patient(name=[{}]), "empty object"),
    (patient(multipleBirthInteger=1.5), "JSON integer"),
    (patient(multipleBirthBoolean=True, multipleBirthInteger=2), "more than one type"),
    (patient(id="bad id!"), "is not a valid id"),
    ({"resourceType": "Patientt"}, "Unknown or missing resourceType"),
    ({"resourceType": "DomainResource"}, "Unknown or missing resourceType"),
    ([], "must be a JSON object"),
    (patient(deceasedDateTime="2020-01-01T10:00:00"), "is not a valid dateTime"),
    (patient(gender="female "), "is not a valid code"),
])
def test_structure_errors(validator: Validator, resource: Any, fragment: str) -> None:
    assert any(fragment in f.message for f in errors(validator, resource)), errors(validator, resource)


@pytest.mark.parametrize("resource", [
    patient(active=True, birthDate="1980-05", deceasedDateTime="2020-01-01T10:00:00+01:00", multipleBirthInteger=2),
    patient(_birthDate={"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                       "valueDateTime": "1980-05-01T10:00:00Z"}]}),
    patient(name=[{"given": ["A", "B"], "_given": [None, {"id": "g2"}]}]),
])
def test_structurally_valid_resources(validator: Validator, resource: dict[str, Any]) -> None:
    assert errors(validator, resource) == []


def test_expression_carries_indexes(validator: Validator) -> None:
    found = errors(validator, patient(name=[{"family": "A"}, {"family": 1}]))
    assert [f.expression for f in found] == ["Patient.name[1].family"]


# --- cardinality, fixed, pattern --------------------------------------------------------------

def test_cardinality_min_and_max(validator: Validator) -> None:
    session = example("MedicationAdministration-iv-session-3")
    assert errors(validator, session) == []
    del session["context"]
    assert [f.message for f in errors(validator, session)] == [
        "MedicationAdministration.context: minimum required = 1, but only found 0."]


def test_fixed_value(validator: Validator) -> None:
    event = example("AdverseEvent-nausea-esketamine-session-1")
    event["actuality"] = "potential"
    assert any("must be exactly 'actual'" in f.message for f in errors(validator, event))


def test_pattern_value(validator: Validator) -> None:
    score = example("Observation-phq9-alpha-baseline")
    score["category"][0]["coding"][0]["code"] = "exam"
    found = errors(validator, score)
    assert any("slice 'survey' requires at least 1" in f.message for f in found)


def test_pattern_matching_rules() -> None:
    pattern = {"coding": [{"system": "s", "code": "c"}]}
    assert matches_pattern({"coding": [{"system": "x", "code": "y"}, {"system": "s", "code": "c", "display": "d"}],
                            "text": "t"}, pattern)
    assert not matches_pattern({"coding": [{"system": "s", "code": "other"}]}, pattern)


# --- terminology --------------------------------------------------------------------------------

def test_required_binding(validator: Validator) -> None:
    assert any("not in the value set" in f.message for f in errors(validator, patient(gender="woman")))
    assert errors(validator, patient(gender="female")) == []


def test_unknown_code_in_a_known_code_system(validator: Validator) -> None:
    session = example("Observation-heart-rate-iv-session-1-intra")
    session["category"][0]["coding"][0]["code"] = "vital-sign"
    assert any("Unknown code 'vital-sign'" in f.message for f in errors(validator, session))


def test_display_mismatch_is_a_warning(validator: Validator) -> None:
    event = example("AdverseEvent-nausea-esketamine-session-1")
    for coding in event["event"]["coding"]:
        coding["display"] = "Queasy"
    found = validator.validate(event)
    assert not [f for f in found if f.severity == "error"]
    assert any(f.severity == "warning" and "Queasy" in f.message for f in found)


def test_snomed_outside_listed_codes_cannot_pass_a_required_extensional_value_set(validator: Validator) -> None:
    condition = example("Condition-trd-alpha")
    condition["code"]["coding"][0]["code"] = "35489007"  # depressive disorder: real, but not in our value set
    assert any("not in the value set" in f.message for f in errors(validator, condition))


# --- slicing ---------------------------------------------------------------------------------

def test_slice_minimum_and_closed_slicing(validator: Validator) -> None:
    bp = example("Observation-bp-esketamine-session-1-pre")
    bp["component"] = [c for c in bp["component"] if c["code"]["coding"][0]["code"] != "8462-4"]
    assert any("ket-6" in f.message for f in errors(validator, bp))


# --- invariants ------------------------------------------------------------------------------

def test_period_ending_before_start_breaks_ket_4(validator: Validator) -> None:
    session = example("MedicationAdministration-iv-session-3")
    session["effectivePeriod"]["end"] = "2026-03-01T00:00:00-05:00"
    assert any("ket-4:" in f.message for f in errors(validator, session))


def test_iv_session_without_rate_or_end_breaks_ket_2(validator: Validator) -> None:
    session = example("MedicationAdministration-iv-session-3")
    session["dosage"].pop("rateQuantity", None)
    session["dosage"].pop("rateRatio", None)
    session["effectivePeriod"].pop("end")
    assert any("ket-2:" in f.message for f in errors(validator, session))


def test_base_invariant_per_1(validator: Validator) -> None:
    found = errors(validator, patient(name=[{"family": "A", "period": {"start": "2020-02-01", "end": "2020-01-01"}}]))
    assert any("per-1" in f.message for f in found)


def test_native_ext_1_agrees_with_its_fhirpath(validator: Validator) -> None:
    both = {"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}
    neither = {"url": "http://example.org/x"}
    for ext, broken in ((both, True), (neither, True), ({"url": "http://example.org/x", "valueString": "a"}, False)):
        native = any("ext-1" in f.message for f in errors(validator, patient(extension=[ext])))
        fhirpath = not validator.invariants.holds("extension.exists() != value.exists()", ext, "Extension", ext, ext)
        assert native == fhirpath == broken


# --- references and extensions ---------------------------------------------------------------

@pytest.mark.parametrize("reference, fragment", [
    ("Group/1", "The type 'Group' is not valid"), ("#missing", "Contained resource #missing"),
])
def test_reference_checks(validator: Validator, reference: str, fragment: str) -> None:
    event = example("AdverseEvent-nausea-esketamine-session-1")
    event["subject"] = {"reference": reference}
    assert any(fragment in f.message for f in errors(validator, event))


@pytest.mark.parametrize("reference, fragment", [
    ("Patient", "is not a valid reference"), ("Foo/1", "Foo in 'Foo/1' is not a resource type"),
])
def test_malformed_references_are_warnings_as_in_hapi(validator: Validator, reference: str, fragment: str) -> None:
    event = example("AdverseEvent-nausea-esketamine-session-1")
    event["subject"] = {"reference": reference}
    found = validator.validate(event)
    assert [f.severity for f in found if fragment in f.message] == ["warning"]


@pytest.mark.parametrize("unit, ok", [("mg", True), ("mm[Hg]", True), ("mg/kg/h", True), ("mEq", False), ("ea", False)])
def test_ucum_units(validator: Validator, unit: str, ok: bool) -> None:
    score = example("Observation-heart-rate-iv-session-1-intra")
    score["valueQuantity"]["code"] = unit
    assert any("is not valid UCUM" in f.message for f in errors(validator, score)) is not ok


def test_relative_canonical_is_an_error(validator: Validator) -> None:
    questionnaire = {"resourceType": "Questionnaire", "status": "active", "derivedFrom": ["Questionnaire/x"]}
    assert any("must be absolute" in f.message for f in errors(validator, questionnaire))


def test_narrative_links_must_resolve(validator: Validator) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><a href="#a">A</a><a name="b"/></div>'
    found = errors(validator, patient(text={"status": "generated", "div": div}))
    assert [f.message for f in found] == ["Hyperlink '#a' in the narrative does not resolve."]


def test_contained_reference_resolves(validator: Validator) -> None:
    event = example("AdverseEvent-nausea-esketamine-session-1")
    event["contained"] = [{"resourceType": "Patient", "id": "p"}]
    event["subject"] = {"reference": "#p"}
    assert errors(validator, event) == []


def test_extension_out_of_context(validator: Validator) -> None:
    resource = patient(extension=[{"url": OURS + "discharged-with-escort", "valueBoolean": True}])
    assert any("is not allowed on Patient" in f.message for f in errors(validator, resource))


def test_known_extension_checked_against_its_definition(validator: Validator) -> None:
    encounter = example("Encounter-iv-session-3")
    encounter["extension"] = [{"url": OURS + "discharged-with-escort", "valueString": "yes"}]
    assert any("valueString" in f.message for f in errors(validator, encounter))


# --- profiles and bundles --------------------------------------------------------------------

def test_unknown_profile_is_an_error_under_the_store_policy(validator: Validator) -> None:
    resource = patient(meta={"profile": ["https://example.org/StructureDefinition/nope"]})
    assert any("could not be found" in f.message for f in errors(validator, resource))


def test_resources_without_meta_profile_get_our_profile_by_default() -> None:
    session = example("MedicationAdministration-iv-session-3")
    del session["meta"]
    del session["context"]
    assert errors(ours(), session) != []
    assert errors(Validator(load()), session) == []


def test_bundle_entries_are_validated_and_urn_uuid_references_resolved(validator: Validator) -> None:
    session = copy.deepcopy(example("MedicationAdministration-iv-session-3"))
    session["subject"] = {"reference": "urn:uuid:9c3f0b7e-1111-4a2b-8c3d-000000000001"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:9c3f0b7e-1111-4a2b-8c3d-000000000001", "resource": {"resourceType": "Group", "id": "g",
                                                                                   "type": "person", "actual": True}},
        {"fullUrl": "urn:uuid:9c3f0b7e-1111-4a2b-8c3d-000000000002", "resource": session}]}
    found = errors(validator, bundle)
    assert any("The type 'Group' is not valid" in f.message for f in found)
    assert all(f.expression.startswith("Bundle.entry[1].resource") for f in found)


# --- entry points ------------------------------------------------------------------------------

def test_validate_returns_an_operation_outcome() -> None:
    outcome = validate(example("Patient-demo-alpha"))
    assert outcome["resourceType"] == "OperationOutcome"
    assert all(i["severity"] != "error" for i in outcome["issue"])


def test_ensure_valid_raises_with_every_error() -> None:
    from service.errors import Unprocessable

    session = example("MedicationAdministration-iv-session-3")
    del session["context"]
    with pytest.raises(Unprocessable) as info:
        ensure_valid(session)
    assert [i.field for i in info.value.issues] == ["MedicationAdministration.context"]


def test_bundle_full_url_must_name_the_resource(validator: Validator) -> None:
    entry = {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient()}
    assert errors(validator, {"resourceType": "Bundle", "type": "collection", "entry": [entry]}) == []
    entry["fullUrl"] = "http://example.org/fhir/Patient/p2"
    found = errors(validator, {"resourceType": "Bundle", "type": "collection", "entry": [entry]})
    assert [f.expression for f in found] == ["Bundle.entry[0].fullUrl"]


def test_transaction_entries_need_a_request(validator: Validator) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "resource": patient()}]}
    assert any("bdl-3" in f.message for f in errors(validator, bundle))
    bundle["entry"][0]["request"] = {"method": "POST", "url": "Patient"}
    assert errors(validator, bundle) == []


def test_absent_must_support_elements_are_reported_only_on_request(validator: Validator) -> None:
    session = example("MedicationAdministration-iv-session-1")
    del session["dosage"]["rateQuantity"]
    plain = validator.validate(session)
    asked = validator.validate(session, must_support=True)
    extra = [f for f in asked if f not in plain]
    assert all(f.severity == "information" and "mustSupport" in f.message for f in extra)
    assert "MedicationAdministration.statusReason" in {f.expression for f in extra}
    assert "MedicationAdministration.dosage.rate[x]" in {f.expression for f in extra}
    assert not any("mustSupport" in f.message for f in plain)


def test_a_missing_required_must_support_element_is_an_error_not_also_information(validator: Validator) -> None:
    session = example("MedicationAdministration-iv-session-1")
    del session["context"]
    found = validator.validate(session, must_support=True)
    assert [f.severity for f in found if f.expression == "MedicationAdministration.context"] == ["error"]
