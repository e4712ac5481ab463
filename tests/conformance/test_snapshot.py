"""Snapshot generation: the official R4 profiles' snapshots come back from their differentials."""
from __future__ import annotations

import copy

import pytest

from service.conformance.definitions import Definitions, load
from service.conformance.snapshot import SnapshotError, generate, path_of

#: Core profiles whose published snapshot we reproduce element for element. Left out: bp (the
#: publisher writes nested choice slices as `value[x].value`, top-level ones as `value[x]:valueQuantity`)
#: and the cholesterol family (it copies SimpleQuantity's invariants onto an element it did not unfold).
OFFICIAL = ["vitalsigns", "heartrate", "oxygensat", "bodyweight", "resprate", "bmi", "vitalspanel", "triglyceride",
            "lipidprofile", "diagnosticreport-genetics",
            "observation-genetics", "cqf-questionnaire", "shareableplandefinition", "devicemetricobservation"]
COMPARED = ("min", "max", "type", "binding", "slicing", "sliceName", "mustSupport", "fixedUri", "fixedCode",
            "patternCodeableConcept")


@pytest.fixture(scope="module")
def defs() -> Definitions:
    return load()


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_snapshots_are_reproduced(defs: Definitions, name: str) -> None:
    profile = defs.structure(name)
    got, want = generate(profile, defs), profile["snapshot"]["element"]
    assert [e["id"] for e in got] == [e["id"] for e in want]
    for g, w in zip(got, want, strict=True):
        for key in COMPARED:
            assert g.get(key) == w.get(key), f"{g['id']}.{key}"
        rules = lambda e: [(c["key"], c["severity"], c.get("expression")) for c in e.get("constraint", [])]  # noqa: E731
        assert rules(g) == rules(w), f"{g['id']}.constraint"


def _profile(*elements: dict) -> dict:
    return {"url": "https://example.org/StructureDefinition/p", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
            "differential": {"element": [{"id": "Patient", "path": "Patient"}, *elements]}}


def test_constraints_inside_a_datatype_unfold_it(defs: Definitions) -> None:
    got = generate(_profile({"id": "Patient.maritalStatus.text", "path": "Patient.maritalStatus.text", "min": 1}), defs)
    ids = [e["id"] for e in got]
    at = ids.index("Patient.maritalStatus")
    assert ids[at + 1:at + 5] == ["Patient.maritalStatus.id", "Patient.maritalStatus.extension",
                                  "Patient.maritalStatus.coding", "Patient.maritalStatus.text"]
    assert got[ids.index("Patient.maritalStatus.text")]["min"] == 1


def test_added_invariants_carry_their_source(defs: Definitions) -> None:
    rule = {"key": "x-1", "severity": "error", "human": "h", "expression": "true"}
    got = generate(_profile({"id": "Patient.gender", "path": "Patient.gender", "constraint": [rule]}), defs)
    gender = next(e for e in got if e["id"] == "Patient.gender")
    assert gender["constraint"][-1] == {**rule, "source": "https://example.org/StructureDefinition/p"}


@pytest.mark.parametrize("element, message", [
    ({"id": "Patient.gender", "path": "Patient.gender", "max": "2"}, "max 2 is above"),
    ({"id": "Patient.name", "path": "Patient.name", "min": 0, "max": "0"}, None),
    ({"id": "Patient.colour", "path": "Patient.colour", "min": 1}, "not an element"),
    ({"id": "Patient.name:x", "path": "Patient.name", "min": 1}, "is not sliced"),
    ({"id": "Patient.gender", "path": "Patient.sex"}, "disagree"),
    ({"id": "Patient.birthDate", "path": "Patient.birthDate", "type": [{"code": "string"}]}, "not among"),
])
def test_differentials_that_widen_or_miss_are_refused(defs: Definitions, element: dict, message: str | None) -> None:
    if message is None:
        generate(_profile(copy.deepcopy(element)), defs)
        return
    with pytest.raises(SnapshotError, match=message):
        generate(_profile(element), defs)


def test_path_of_drops_slice_names() -> None:
    assert path_of("Observation.component:systolic.code.coding:loinc") == "Observation.component.code.coding"
