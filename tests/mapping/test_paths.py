"""Element paths in the profile's terms, compiled against snapshots, and put/get on resource JSON."""
from __future__ import annotations

import json
import random
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS

from service.conformance.definitions import load
from service.domain.kinds import schema_of
from service.fhirjson import matches_pattern
from service.mapping import Mapper
from service.mapping.paths import PathCompiler, PathError, clone, cloner

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


def sorted_by_definition(paths: PathCompiler, value: Any, structure: str, current: str | None = None) -> Any:
    """What `ordered` must give: every object's properties stably sorted by their element's place in the definition
    (`_x` beside `x`, unknown ones last, in the order given), its children ordered by their own element or type."""
    if isinstance(value, list):
        return [sorted_by_definition(paths, v, structure, current) for v in value]
    if not isinstance(value, dict):
        return value
    placed = []
    for key, child in value.items():
        position, inner, sub = paths._slot(structure, current or next(iter(paths.elements(structure))), key)
        if inner is not None:
            child = sorted_by_definition(paths, child, structure, inner)
        elif sub is not None:
            child = sorted_by_definition(paths, child, sub)
        placed.append((position, key, child))
    return {key: child for _, key, child in sorted(placed, key=lambda p: p[0])}


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    if not isinstance(value, dict):
        return value
    items = list(value.items())
    rng.shuffle(items)
    return {k: shuffled(v, rng) for k, v in items}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), seed=st.integers(0, 2**32))
def test_ordered_gives_the_text_of_a_stable_sort_by_definition_order(paths: PathCompiler, mapper: Mapper,
                                                                     data: st.DataObject, seed: int) -> None:
    """ordered() skips the sort where an object's properties are in order already (most are, as mapped): the text is
    the sort's, for mapped resources as they are and with every object's properties shuffled."""
    kind = data.draw(st.sampled_from(sorted(RECORDS)))
    record = schema_of(kind).dump(schema_of(kind).load(data.draw(RECORDS[kind]())))
    rng = random.Random(seed)  # noqa: S311 - an order to shuffle by, drawn again from the seed
    for entry in mapper.to_bundle(kind, record)["entry"]:
        resource = entry["resource"]
        structure = next(r.structure for r in mapper.specs[kind].roles if r.type == resource["resourceType"] and (
            r.profile is None or r.profile in resource["meta"].get("profile", [])))
        for given_ in (resource, shuffled(resource, rng), {"_status": {"id": "x"}, "unknown": 1, **resource, "_id": {}}):
            assert json.dumps(paths.ordered(given_, structure)) == json.dumps(sorted_by_definition(paths, given_,
                                                                                                   structure))


def test_ordered_reuses_an_order_only_for_the_same_properties_in_the_same_order(paths: PathCompiler) -> None:
    """ordered() keeps, per element, the order it worked out for a set of properties as given (up to SHAPES_KEPT):
    the same properties with other values, in another order, or beyond that many sets still give the sort's text."""
    from service.mapping import paths as module  # noqa: PLC0415 - its bound, read here only

    first = {"valueInteger": 3, "code": {"text": "x", "coding": [{"code": "c", "system": "s"}]}, "status": "final"}
    again = {"valueInteger": 4, "code": "not an object", "status": "amended"}
    turned = {"status": "final", "valueInteger": 3, "code": {"coding": [], "text": "y"}}
    many = [{f"unknown{i}": i, "status": "final", "id": str(i)} for i in range(module.SHAPES_KEPT + 5)]
    for value in (first, again, turned, first, *many, turned):
        assert json.dumps(paths.ordered(value, "Observation")) == json.dumps(sorted_by_definition(paths, value,
                                                                                                  "Observation"))


def test_ordered_gives_an_object_in_order_back_as_it_is_and_never_changes_what_it_is_given(paths: PathCompiler) -> None:
    """An object or array in order all through is not copied; one with anything out of order is a new one (and so is
    each object and array holding it), the given one left as it was."""
    inside = {"coding": [{"system": "s", "code": "c"}], "text": "x"}
    kept = {"resourceType": "Observation", "status": "final", "code": inside, "valueInteger": 3}
    assert paths.ordered(kept, "Observation") is kept and kept["code"] is inside
    messy = {"resourceType": "Observation", "status": "final", "category": [inside, {"text": "y", "coding": []}],
             "code": inside}
    before = json.dumps(messy)
    out = paths.ordered(messy, "Observation")
    assert json.dumps(messy) == before and out is not messy and out["category"] is not messy["category"]
    assert out["code"] is inside and out["category"][0] is inside and list(out["category"][1]) == ["coding", "text"]


def test_ordered_skips_only_what_is_in_order_with_nothing_below_to_order(paths: PathCompiler) -> None:
    """ordered() looks no further into an object whose properties it has met in order with nothing below them to order
    (a Coding): the same properties out of order, nested lists, another kind of mapping, and an object met before
    beside one that is not in order still give the sort's text, the objects in order as they are."""
    coding = {"system": "s", "code": "c"}
    turned = {"code": "c", "system": "s"}
    for _ in range(2):  # the second time from the shapes the first worked out
        value = {"status": "final", "resourceType": "Observation",
                 "code": {"coding": [coding, turned, [coding, turned], OrderedDict(code="d", system="t")], "text": "x"},
                 "category": [{"text": "y", "coding": [coding]}, {"coding": [turned]}]}
        out = paths.ordered(value, "Observation")
        assert json.dumps(out) == json.dumps(sorted_by_definition(paths, value, "Observation"))
        assert out["code"]["coding"][0] is coding and out["code"]["coding"][2][0] is coding
        assert out["category"][1] is not value["category"][1] and list(out["category"][1]["coding"][0]) == [
            "system", "code"]


@pytest.mark.parametrize("value, pattern, expected", [
    ({"coding": [{"system": "s", "code": "c", "display": "d"}]}, {"coding": [{"system": "s", "code": "c"}]}, True),
    ({"coding": [{"system": "s", "code": "x"}]}, {"coding": [{"system": "s", "code": "c"}]}, False),
    ({"url": "u", "valueCode": "pre"}, {"url": "u"}, True),
    ("a", "a", True),
])
def test_contains_follows_pattern_semantics(value: object, pattern: object, expected: bool) -> None:
    assert matches_pattern(value, pattern) is expected


def test_clone_is_an_equal_copy_sharing_no_object_or_array() -> None:
    value = {"a": [{"b": [1, "x", None, {"c": {}}]}, []], "d": {"e": "f", "g": 2.5}, "h": "i",
             "j": OrderedDict(k=[1])}
    copied = clone(value)
    assert json.dumps(copied) == json.dumps(value) and list(copied) == list(value)
    assert type(copied["j"]) is dict and copied["j"] == {"k": [1]}

    def containers(node: Any) -> list[Any]:
        inner = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        return [node, *(c for child in inner for c in containers(child))] if isinstance(node, dict | list) else []

    assert not {id(c) for c in containers(value)} & {id(c) for c in containers(copied)}


def test_a_cloner_makes_what_clone_makes_each_time_anew() -> None:
    value = {"a": [{"b": [1, "x", None, {"c": {}}]}, [], "y"], "d": {"e": "f", "g": 2.5}, "h": "i",
             "j": OrderedDict(k=[1]), "l": {"m": "n"}}
    make = cloner(value)
    first, second = make(), make()
    assert json.dumps(first) == json.dumps(second) == json.dumps(clone(value))
    assert list(first) == list(value) and type(first["j"]) is dict
    assert [cloner(v)() for v in ("s", 1, None, [], {})] == ["s", 1, None, [], {}]

    def containers(node: Any) -> list[Any]:
        inner = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        return [node, *(c for child in inner for c in containers(child))] if isinstance(node, dict | list) else []

    ids = [{id(c) for c in containers(v)} for v in (value, first, second)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
