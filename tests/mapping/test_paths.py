"""Element paths in the profile's terms, compiled against snapshots, and put/get on resource JSON."""
from __future__ import annotations

import pytest

from service.conformance.definitions import load
from service.fhirjson import matches_pattern
from service.mapping.paths import PathCompiler, PathError

MONITORING = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-session-monitoring"
ADMINISTRATION = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-administration"


@pytest.fixture(scope="module")
def paths() -> PathCompiler:
    return PathCompiler(load())


def test_a_slice_carries_its_discriminating_pattern(paths: PathCompiler) -> None:
    path = paths.compile(MONITORING, "component:systolic.valueQuantity")
    component, value = path.steps
    assert component.array and component.template == {
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
    assert not value.array and value.name == "valueQuantity"


def test_an_extension_slice_carries_its_url(paths: PathCompiler) -> None:
    path = paths.compile(ADMINISTRATION, "dosage.extension:weightBasedDose.valueQuantity")
    assert [s.name for s in path.steps] == ["dosage", "extension", "valueQuantity"]
    assert path.steps[1].template == {"url": "https://ketamine-fhir.org/fhir/StructureDefinition/weight-based-dose"}


def test_an_extension_is_named_by_its_definition_where_the_profile_does_not_slice(paths: PathCompiler) -> None:
    path = paths.compile("Encounter", "extension(discharged-with-escort).valueBoolean")
    assert path.steps[0].template == {"url": "https://ketamine-fhir.org/fhir/StructureDefinition/discharged-with-escort"}
    with pytest.raises(PathError, match="valueString"):
        paths.compile("Encounter", "extension(discharged-with-escort).valueString")


def test_choices_and_datatypes_resolve_through_their_types(paths: PathCompiler) -> None:
    path = paths.compile("MedicationRequest", "dosageInstruction.timing.repeat.boundsPeriod.start")
    assert [s.array for s in path.steps] == [True, False, False, False, False]


@pytest.mark.parametrize("text", ["colour", "component:nosuchslice.code", "valueBanana", "code.coding.colour"])
def test_unknown_elements_are_refused(paths: PathCompiler, text: str) -> None:
    with pytest.raises(PathError):
        paths.compile(MONITORING, text)


def test_put_builds_slices_and_get_finds_them_again(paths: PathCompiler) -> None:
    resource: dict = {"resourceType": "Observation"}
    systolic = paths.compile(MONITORING, "component:systolic.valueQuantity")
    diastolic = paths.compile(MONITORING, "component:diastolic.valueQuantity")
    systolic.put(resource, {"value": 120})
    diastolic.put(resource, {"value": 80})
    assert [c["code"]["coding"][0]["code"] for c in resource["component"]] == ["8480-6", "8462-4"]
    ucum = {"system": "http://unitsofmeasure.org", "code": "mm[Hg]"}  # the slice's pattern, filled in
    assert systolic.get(resource) == {**ucum, "value": 120} and diastolic.get(resource) == {**ucum, "value": 80}
    assert paths.compile(MONITORING, "component:systolic.valueQuantity").get({"component": []}) is None


def test_put_on_a_repeating_element_appends_without_duplicating_codings(paths: PathCompiler) -> None:
    resource: dict = {}
    coding = paths.compile("AdverseEvent", "seriousness.coding")
    coding.put(resource, {"code": "Serious"})
    coding.put(resource, [{"code": "Serious"}, {"code": "SeriousIsLifeThreatening"}])
    assert resource["seriousness"]["coding"] == [{"code": "Serious"}, {"code": "SeriousIsLifeThreatening"}]
    given = paths.compile("Patient", "name.given")
    given.put(resource, ["Ann", "Ann"])
    assert resource["name"][0]["given"] == ["Ann", "Ann"]


def test_ordered_writes_elements_in_definition_order(paths: PathCompiler) -> None:
    messy = {"valueInteger": 3, "status": "final", "resourceType": "Observation", "code": {"text": "x", "coding": []},
             "id": "a"}
    assert list(paths.ordered(messy, "Observation")) == ["resourceType", "id", "status", "code", "valueInteger"]
    assert list(paths.ordered(messy, "Observation")["code"]) == ["coding", "text"]


@pytest.mark.parametrize("value, pattern, expected", [
    ({"coding": [{"system": "s", "code": "c", "display": "d"}]}, {"coding": [{"system": "s", "code": "c"}]}, True),
    ({"coding": [{"system": "s", "code": "x"}]}, {"coding": [{"system": "s", "code": "c"}]}, False),
    ({"url": "u", "valueCode": "pre"}, {"url": "u"}, True),
    ("a", "a", True),
])
def test_contains_follows_pattern_semantics(value: object, pattern: object, expected: bool) -> None:
    assert matches_pattern(value, pattern) is expected
