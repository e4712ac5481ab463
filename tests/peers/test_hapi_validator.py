"""The HAPI FHIR 8.8.0 reference validator harness works as an oracle: it accepts valid R4, reports unknown
elements, missing required elements and our profiles' constraints (differential-only, snapshot generated
offline), and does not fail resources only because SNOMED CT / LOINC / RxNorm cannot be checked offline.

Needs Java 17 and Maven; the first run builds tests/peers/hapi/validator (downloading HAPI from Maven Central
once). Most cases share one JVM run (`oracle`), since each run costs a few seconds of JVM warm-up."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from peers.hapi_validator import HapiValidatorError, errors, validate

PROFILE_URL = "http://example.org/fhir/StructureDefinition/kf-test-patient-birthdate"
OBS_PROFILE_URL = "http://example.org/fhir/StructureDefinition/kf-test-observation-terminology"
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">test</div>'}

# Differential only: the harness (HAPI's snapshot generator) must build the snapshot from R4 Patient.
PATIENT_PROFILE = {
    "resourceType": "StructureDefinition",
    "id": "kf-test-patient-birthdate",
    "url": PROFILE_URL,
    "name": "KfTestPatientBirthDate",
    "status": "draft",
    "fhirVersion": "4.0.1",
    "kind": "resource",
    "abstract": False,
    "type": "Patient",
    "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
    "derivation": "constraint",
    "differential": {"element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]},
}

# Required bindings: one to a ValueSet holding all of LOINC (cannot be checked offline), one to an extensional
# SNOMED CT ValueSet (membership can be checked offline, so a wrong code stays an error).
OBSERVATION_PROFILE = {
    "resourceType": "StructureDefinition",
    "id": "kf-test-observation-terminology",
    "url": OBS_PROFILE_URL,
    "name": "KfTestObservationTerminology",
    "status": "draft",
    "fhirVersion": "4.0.1",
    "kind": "resource",
    "abstract": False,
    "type": "Observation",
    "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
    "derivation": "constraint",
    "differential": {"element": [
        {"id": "Observation.code", "path": "Observation.code",
         "binding": {"strength": "required", "valueSet": "http://example.org/fhir/ValueSet/kf-test-all-loinc"}},
        {"id": "Observation.bodySite", "path": "Observation.bodySite",
         "binding": {"strength": "required", "valueSet": "http://example.org/fhir/ValueSet/kf-test-body-sites"}},
    ]},
}
ALL_LOINC = {
    "resourceType": "ValueSet", "id": "kf-test-all-loinc", "url": "http://example.org/fhir/ValueSet/kf-test-all-loinc",
    "name": "KfTestAllLoinc", "status": "draft", "compose": {"include": [{"system": "http://loinc.org"}]},
}
BODY_SITES = {
    "resourceType": "ValueSet", "id": "kf-test-body-sites", "url": "http://example.org/fhir/ValueSet/kf-test-body-sites",
    "name": "KfTestBodySites", "status": "draft",
    "compose": {"include": [{"system": "http://snomed.info/sct", "concept": [{"code": "368209003"}]}]},
}


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "text": NARRATIVE, "active": True,
            "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female", **extra}


def observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "text": NARRATIVE, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T10:00:00Z",
            "performer": [{"reference": "Practitioner/pr1"}],
            "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                              "code": "/min"}, **extra}


SNOMED_BODY_SITE = {"coding": [{"system": "http://snomed.info/sct", "code": "368209003", "display": "Right arm"}]}

CASES: dict[str, dict[str, Any]] = {
    "valid_patient": patient(birthDate="1980-02-03"),
    "unknown_element": patient(birthDate="1980-02-03", favouriteColour="blue"),
    "observation_missing_status_code": {
        k: v for k, v in observation().items() if k not in ("status", "code")},
    "profiled_no_birthdate": patient(meta={"profile": [PROFILE_URL]}),
    "profiled_with_birthdate": patient(meta={"profile": [PROFILE_URL]}, birthDate="1980-02-03"),
    # Base R4 bindings (Observation.code and .bodySite are example bindings), plus RxNorm in method.
    "observation_loinc_snomed_rxnorm": observation(
        bodySite=SNOMED_BODY_SITE,
        method={"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]}),
    # Required bindings of our own profile to LOINC (whole system) and SNOMED CT (listed codes).
    "required_binding_known_codes": observation(meta={"profile": [OBS_PROFILE_URL]}, bodySite=SNOMED_BODY_SITE),
    "required_binding_wrong_snomed": observation(
        meta={"profile": [OBS_PROFILE_URL]},
        bodySite={"coding": [{"system": "http://snomed.info/sct", "code": "7771000"}]}),
}


def write_json(path: Path, resource: dict[str, Any]) -> Path:
    path.write_text(json.dumps(resource, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def ig_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ig")
    for resource in (PATIENT_PROFILE, OBSERVATION_PROFILE, ALL_LOINC, BODY_SITES):
        write_json(directory / f"{resource['resourceType']}-{resource['id']}.json", resource)
    # Not a conformance resource: the harness must skip it, not fail.
    write_json(directory / "example-patient.json", patient())
    return directory


@pytest.fixture(scope="session")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("cases")
    return {name: write_json(directory / f"{name}.json", resource) for name, resource in CASES.items()}


@pytest.fixture(scope="session")
def oracle(ig_dir: Path, case_files: dict[str, Path]) -> dict[str, Any]:
    """One JVM run over every case."""
    return validate(list(case_files.values()), ig_dir)


def result(oracle: dict[str, Any], case_files: dict[str, Path], name: str) -> dict[str, Any]:
    (found,) = [r for r in oracle["results"] if r["file"] == str(case_files[name])]
    return found


def describe(res: dict[str, Any]) -> str:
    return "\n".join(f"{i['severity']} {i['messageId']} @ {i['location']}: {i['message']}" for i in res["issues"])


def test_report_shape(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    assert [r["file"] for r in oracle["results"]] == [str(p) for p in case_files.values()]
    timing = oracle["timing"]
    assert len(timing["per_file_ms"]) == len(case_files)
    assert timing["warmup_ms"] >= 0 and all(ms >= 0 for ms in timing["per_file_ms"])
    harness = oracle["harness"]
    assert harness["hapi_version"] == "8.8.0"
    assert harness["snapshot_problems"] == []
    assert harness["unknown_code_system_downgrade"] is True
    # Our four conformance resources were loaded; the example Patient in the ig dir was skipped.
    assert len(harness["conformance_resources"]) == 4
    assert not any("example-patient" in c for c in harness["conformance_resources"])
    for res in oracle["results"]:
        for issue in res["issues"]:
            assert issue["severity"] in ("error", "warning", "information", "fatal")
            assert set(issue) >= {"messageId", "location", "expression", "line", "col", "message"}


def test_valid_patient_has_no_errors(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "valid_patient")
    assert res["valid"] is True, describe(res)
    assert errors(res) == []


def test_unknown_element_is_an_error_at_that_element(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "unknown_element")
    assert res["valid"] is False
    # HAPI 8.8.0 reports it at the parent ("Patient") with no messageId; the line/col point into the file.
    (issue,) = [i for i in errors(res) if "favouriteColour" in i["message"]]
    assert issue["message"] == "Unrecognized property 'favouriteColour'"
    assert issue["location"] == "Patient"
    assert issue["line"] is not None and issue["line"] >= 1
    assert len(errors(res)) == 1, describe(res)


def test_observation_missing_required_elements(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "observation_missing_status_code")
    assert res["valid"] is False
    minimum = [i for i in errors(res) if i["messageId"] == "Validation_VAL_Profile_Minimum"]
    assert {i["message"].split(":")[0] for i in minimum} == {"Observation.status", "Observation.code"}, describe(res)


def test_profile_from_differential_requires_birthdate(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "profiled_no_birthdate")
    assert res["valid"] is False
    (issue,) = errors(res)
    assert issue["messageId"] == "Validation_VAL_Profile_Minimum"
    assert issue["message"].startswith("Patient.birthDate: minimum required = 1, but only found 0")
    assert PROFILE_URL in issue["message"]


def test_profile_satisfied_when_birthdate_present(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "profiled_with_birthdate")
    assert res["valid"] is True, describe(res)


def test_unknown_code_systems_are_not_errors(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "observation_loinc_snomed_rxnorm")
    assert res["valid"] is True, describe(res)
    unknown = [i for i in res["issues"] if "CodeSystem is unknown" in i["message"]]
    assert {i["location"] for i in unknown} == {"Observation.code", "Observation.method"}
    assert all(i["severity"] == "warning" for i in unknown)


def test_required_binding_to_unknown_system_is_downgraded(oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "required_binding_known_codes")
    assert res["valid"] is True, describe(res)
    downgraded = [i for i in res["issues"] if i.get("downgradedFrom") == "error"]
    assert downgraded and all(i["severity"] == "warning" for i in downgraded)
    assert {i["location"] for i in downgraded} == {"Observation.code"}


def test_code_outside_extensional_snomed_valueset_stays_an_error(
        oracle: dict[str, Any], case_files: dict[str, Path]) -> None:
    res = result(oracle, case_files, "required_binding_wrong_snomed")
    assert res["valid"] is False
    (issue,) = errors(res)
    assert issue["location"] == "Observation.bodySite"
    assert "7771000" in issue["message"]


def test_strict_mode_keeps_hapi_severities(ig_dir: Path, case_files: dict[str, Path]) -> None:
    report = validate([case_files["required_binding_known_codes"], case_files["valid_patient"]], ig_dir,
                      strict_unknown_code_systems=True)
    strict, plain = report["results"]
    assert strict["valid"] is False
    assert {i["location"] for i in errors(strict)} == {"Observation.code"}
    assert not any("downgradedFrom" in i for i in strict["issues"])
    assert plain["valid"] is True


def test_forced_profile_and_unreadable_files(ig_dir: Path, case_files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "Patient",', encoding="utf-8")
    missing = tmp_path / "missing.json"
    report = validate([case_files["valid_patient"], broken, missing], ig_dir, profile=PROFILE_URL)
    forced, parse_error, not_found = report["results"]
    # valid_patient has a birthDate, so the forced profile passes; without one it would fail (below).
    assert forced["valid"] is True, describe(forced)
    assert [i["messageId"] for i in parse_error["issues"]] == ["HARNESS_EXCEPTION"]
    assert [i["messageId"] for i in not_found["issues"]] == ["HARNESS_READ_ERROR"]
    assert not parse_error["valid"] and not not_found["valid"]

    no_birthdate = write_json(tmp_path / "no_birthdate.json", patient())
    (res,) = validate([no_birthdate], ig_dir, profile=PROFILE_URL)["results"]
    assert [i["messageId"] for i in errors(res)] == ["Validation_VAL_Profile_Minimum"]


def test_unplaceable_differential_fails_loudly(tmp_path: Path, case_files: dict[str, Path]) -> None:
    """HAPI drops snapshot-generation errors and then validates against a profile that constrains nothing;
    the harness refuses instead. Here the differential is out of element order (birthDate precedes gender)."""
    broken = dict(PATIENT_PROFILE, differential={"element": [
        {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
        {"id": "Patient.gender", "path": "Patient.gender", "min": 1},
    ]})
    ig = tmp_path / "ig"
    ig.mkdir()
    write_json(ig / "StructureDefinition-broken.json", broken)
    with pytest.raises(HapiValidatorError, match="snapshot generation problem"):
        validate([case_files["profiled_no_birthdate"]], ig)
    report = validate([case_files["profiled_no_birthdate"]], ig, allow_snapshot_problems=True)
    assert report["harness"]["snapshot_problems"]
    # What plain HAPI would do: the constraint is silently lost.
    assert report["results"][0]["valid"] is True
