"""The reference harness runs at the HL7 validator CLI's defaults (ValidateMain.configureAsHl7Defaults): an
extension it holds no definition of is an error (a hint with --allow-any-extensions, nothing for an allowed
domain), a meta.profile it does not hold is a warning, and a display that is none of its code's in a code system
it holds completely is an error (a warning with --display-issues-are-warnings), compared as the HL7 core compares:
ignoring case."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from peers.hapi_validator import validate

NARRATIVE = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}
UNHELD = "http://example.org/fhir/StructureDefinition/unheld"
#: Observation.category's display of observation-category#vital-signs (R4: "Vital Signs")
DISPLAYS = {"right": "Vital Signs", "case": "VITAL SIGNS", "wrong": "Totally wrong"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hl7-defaults")
    docs = {
        "extension": {"resourceType": "Patient", "id": "p1", "text": NARRATIVE,
                      "extension": [{"url": UNHELD, "valueString": "x"}]},
        "profile": {"resourceType": "Patient", "id": "p2", "text": NARRATIVE,
                    "meta": {"profile": ["http://example.org/fhir/StructureDefinition/unheld-profile"]}},
    }
    for name, display in DISPLAYS.items():
        docs[f"display-{name}"] = {
            "resourceType": "Observation", "id": f"d-{name}", "text": NARRATIVE, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs", "display": display}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Not LOINC's display"}]},
            "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2020-01-01", "performer": [
                {"reference": "Practitioner/1"}], "valueQuantity": {"value": 60, "unit": "/min",
                                                                    "system": "http://unitsofmeasure.org", "code": "/min"}}
    # ISO 3166-1's own English short name, which HAPI's country table does not give: HAPI's tables are no CodeSystem
    # the HL7 CLI holds (it asks the terminology server), so their displays are not judged offline
    docs["display-country"] = {"resourceType": "Patient", "id": "d-country", "text": NARRATIVE, "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-nationality", "extension": [
            {"url": "code", "valueCodeableConcept": {"coding": [
                {"system": "urn:iso:std:iso:3166", "code": "US", "display": "United States of America"}]}}]}]}
    for name, doc in docs.items():
        (folder / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    return {name: folder / f"{name}.json" for name in docs}


def severities(result: dict[str, Any], fragment: str) -> set[str]:
    return {i["severity"] for i in result["issues"] if fragment in i["message"]}


def test_defaults(files: dict[str, Path]) -> None:
    extension, profile = validate([files["extension"], files["profile"]], None)["results"]
    assert severities(extension, UNHELD) == {"error"}
    assert severities(profile, "unheld-profile") == {"warning"}, profile["issues"]
    assert not [i for i in profile["issues"] if i["severity"] == "error"]


def test_allowed_extensions(files: dict[str, Path]) -> None:
    (any_allowed,) = validate([files["extension"]], None, extra_args=["--allow-any-extensions"])["results"]
    assert severities(any_allowed, UNHELD) == {"information"}
    (domain,) = validate([files["extension"]], None, extra_args=["--extension-domain", "http://example.org/fhir/"])[
        "results"]
    assert not [i for i in domain["issues"] if i["severity"] == "error"]


def display_findings(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["severity"], i["location"]) for i in result["issues"] if "Display" in i["message"]}


def test_displays(files: dict[str, Path]) -> None:
    right, case, wrong, country = validate([*(files[f"display-{n}"] for n in DISPLAYS), files["display-country"]],
                                           None)["results"]
    assert display_findings(country) == set(), country["issues"]
    assert display_findings(right) == display_findings(case) == set(), (right["issues"], case["issues"])
    assert ("error", "Observation.category[0]") in display_findings(wrong), wrong["issues"]
    assert {sev for sev, where in display_findings(wrong) if where == "Observation.code"} <= {"warning", "information"}
    (warned,) = validate([files["display-wrong"]], None, extra_args=["--display-issues-are-warnings"])["results"]
    assert display_findings(warned) == {("warning", "Observation.category[0]")}, warned["issues"]
