"""`ketamine-fhir validate` on real files, in-process (tests/cli/support.py; the exit statuses of the console
script as a process: tests/cli/test_console_script.py).

Exit status: 0 no errors, 1 some error (or fatal), 2 a usage error (bad path, unknown --profile, bad --ig).
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cli.support import Done, kfhir
from validation import global_cases

from service.conformance.definitions import load
from service.conformance.snapshot import with_snapshot
from service.fhirjson import ISSUE_COL, ISSUE_LINE
from service.resources import profiles_dir

PROFILES = profiles_dir()
EXAMPLES = PROFILES / "examples"
INVALID = EXAMPLES / "invalid"
OURS = "https://ketamine-fhir.org/fhir/StructureDefinition/"
ADMINISTRATION = OURS + "ketamine-administration"
PATIENT_EXAMPLE = EXAMPLES / "Patient-demo-alpha.json"
ADMINISTRATION_EXAMPLE = EXAMPLES / "MedicationAdministration-iv-session-1.json"
#: The extra profile the --ig tests load: a Patient must state its birth date.
DATED_PATIENT = "https://example.org/fhir/StructureDefinition/dated-patient"


def validate(*args: str | Path, cwd: Path | None = None) -> Done:
    return kfhir("validate", *args, cwd=cwd)


def assert_no_traceback(result: Done) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def outcome(result: Done) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def manifest_entry(name: str) -> dict[str, Any]:
    entries = json.loads((EXAMPLES / "manifest.json").read_text(encoding="utf-8"))["examples"]
    found: dict[str, Any] = next(e for e in entries if e["file"] == f"examples/invalid/{name}")
    return found


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def patient(birth_date: str | None = None, profile: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"resourceType": "Patient", "id": "fuzzy", "name": [{"family": "Test", "given": ["Ig"]}]}
    if profile:
        doc["meta"] = {"profile": [profile]}
    if birth_date:
        doc["birthDate"] = birth_date
    return doc


@cache
def dated_patient_profile() -> dict[str, Any]:
    """A tiny Patient profile (birthDate 1..1) with a differential and a generated snapshot."""
    sd: dict[str, Any] = {
        "resourceType": "StructureDefinition", "id": "dated-patient", "url": DATED_PATIENT, "version": "0.0.1",
        "name": "DatedPatient", "title": "Dated patient", "status": "draft", "fhirVersion": "4.0.1",
        "kind": "resource", "abstract": False, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
        "differential": {"element": [
            {"id": "Patient", "path": "Patient"},
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
        ]},
    }
    full: dict[str, Any] = with_snapshot(sd, load().with_own([sd]))
    return full


def tgz(files: dict[str, bytes]) -> bytes:
    """The same bytes on every call (a gzip header holds its time; a test's parameters must be the same in every
    pytest-xdist worker's collection)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed, tarfile.open(fileobj=packed, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def ig_folder(root: Path) -> Path:
    folder = root / "ig"
    write(folder / "StructureDefinition-dated-patient.json", dated_patient_profile())
    return folder


def birth_date_missing(findings: list[dict[str, Any]]) -> bool:
    return any(i["severity"] == "error" and i["expression"] == ["Patient.birthDate"]
               and "minimum required = 1" in i["details"]["text"] for i in findings)


# --- single files -------------------------------------------------------------------------------

def test_a_valid_file_exits_0_and_says_valid() -> None:
    result = validate(PATIENT_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"{PATIENT_EXAMPLE}: valid"), result.stdout
    assert "INVALID" not in result.stdout
    assert_no_traceback(result)


def test_a_nul_character_in_a_string_is_a_fatal_issue_not_a_crash(tmp_path: Path) -> None:
    """FHIR strings hold no character below U+0020 but tab/CR/LF; the parser refuses U+0000 (a store could not
    hold it), and the command reports that as the file's finding (the hardening fuzzer found the crash)."""
    path = tmp_path / "nul.json"
    path.write_text('{"resourceType": "Patient", "name": [{"family": "Do\\u0000e"}]}', encoding="utf-8")
    result = validate(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "fatal" in result.stdout and "NUL" in result.stdout
    assert_no_traceback(result)


def test_every_valid_example_exits_0() -> None:
    """README: `ketamine-fhir validate profiles/examples/*-*.json` exits 0."""
    paths = sorted(EXAMPLES.glob("*-*.json"))
    assert EXAMPLES / "manifest.json" not in paths
    result = validate(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    headers = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split(": ", 1)[0] for h in headers] == [str(p) for p in paths]
    assert all(": valid (0 errors" in h for h in headers), result.stdout


@pytest.mark.parametrize("name, expression, rule", [
    # cardinality: reported at the missing element
    ("ketamine-administration--no-route.json", "MedicationAdministration.dosage.route", "minimum required = 1"),
    # an invariant of the profile: reported at the resource, naming its key
    ("ketamine-administration--completed-without-dose.json", "MedicationAdministration", "ket-5"),
    ("ketamine-outcome-score--phq9-above-27.json", "Observation", "ket-9"),
    # a reference whose declared type (Reference.type) the element does not allow
    ("ketamine-administration--context-patient.json", "MedicationAdministration.context.type",
     "must be Encounter"),
    # a required binding
    ("ketamine-protocol-order--dose-unit-not-in-value-set.json",
     "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.code", "required binding"),
    # an element the profile does not define
    ("ketamine-indication--unknown-icd10.json", "Condition.icd10", "Unknown element 'icd10'"),
])
def test_an_invalid_example_exits_1_naming_the_expression_and_the_rule(name: str, expression: str, rule: str) -> None:
    path = INVALID / name
    result = validate(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].startswith(f"{path}: INVALID"), result.stdout
    error_lines = [line.strip() for line in result.stdout.splitlines()[1:] if line.strip().startswith("error")]
    assert any(line.split(None, 1)[1].startswith(f"{expression}: ") and rule in line for line in error_lines), \
        result.stdout
    entry = manifest_entry(name)
    if entry["key"]:
        assert any(entry["key"] in line for line in error_lines)
    assert_no_traceback(result)


def test_every_invalid_example_exits_1() -> None:
    paths = sorted(INVALID.glob("*.json"))
    result = validate("--format", "json", *paths)
    assert result.returncode == 1, result.stderr
    bundle = outcome(result)
    assert len(bundle["entry"]) == len(paths)
    for path, entry in zip(paths, bundle["entry"], strict=True):
        assert any(i["severity"] == "error" for i in entry["resource"]["issue"]), path.name


# --- directories and several files ------------------------------------------------------------

def test_a_directory_gives_one_result_per_json_file_recursively(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    chosen = [PATIENT_EXAMPLE, ADMINISTRATION_EXAMPLE, INVALID / "ketamine-administration--no-route.json"]
    (folder / "nested").mkdir(parents=True)
    shutil.copy(chosen[0], folder / chosen[0].name)
    shutil.copy(chosen[1], folder / chosen[1].name)
    shutil.copy(chosen[2], folder / "nested" / chosen[2].name)
    (folder / "README.md").write_text("not JSON, not validated\n", encoding="utf-8")
    result = validate(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    headers = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert sorted(headers) == sorted([
        f"{folder / chosen[0].name}: valid (0 errors, 1 other)",
        f"{folder / chosen[1].name}: valid (0 errors, 1 other)",
        f"{folder / 'nested' / chosen[2].name}: INVALID (1 errors, 1 other)",
    ]), result.stdout


def test_a_directory_of_valid_files_exits_0(tmp_path: Path) -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.name != "manifest.json":
            shutil.copy(path, tmp_path / path.name)
    result = validate("--format", "json", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = outcome(result)
    assert len(bundle["entry"]) == len(list(tmp_path.glob("*.json")))


# --- JSON output ------------------------------------------------------------------------------

def test_json_for_one_file_is_one_operation_outcome_with_full_issues() -> None:
    result = validate("--format", "json", INVALID / "ketamine-administration--no-route.json")
    assert result.returncode == 1, result.stderr
    doc = outcome(result)
    assert doc["resourceType"] == "OperationOutcome"
    assert doc["issue"], doc
    for issue in doc["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert isinstance(issue["code"], str) and issue["code"]
        assert isinstance(issue["details"]["text"], str) and issue["details"]["text"]
        assert isinstance(issue["expression"], list) and all(isinstance(e, str) for e in issue["expression"])
    route = [i for i in doc["issue"] if i["severity"] == "error"]
    assert route == [{"severity": "error", "code": "required",
                      "details": {"text": "MedicationAdministration.dosage.route: minimum required = 1, "
                                          "but only found 0."},
                      "expression": ["MedicationAdministration.dosage.route"],
                      # the missing route is placed where its parent, dosage, starts (as HAPI places it)
                      "extension": [{"url": ISSUE_LINE, "valueInteger": 55}, {"url": ISSUE_COL, "valueInteger": 13}],
                      "location": ["MedicationAdministration.dosage.route", "Line[55] Col[13]"]}]


def test_json_for_a_valid_file_is_an_operation_outcome_without_errors() -> None:
    result = validate("--format", "json", PATIENT_EXAMPLE)
    assert result.returncode == 0, result.stderr
    doc = outcome(result)
    assert doc["resourceType"] == "OperationOutcome"
    assert doc["issue"] and all(i["severity"] not in ("error", "fatal") for i in doc["issue"])


def test_json_for_several_files_is_a_bundle_of_outcomes_in_input_order() -> None:
    # deliberately not in sorted order: the output follows the command line
    paths = [INVALID / "ketamine-administration--no-route.json", PATIENT_EXAMPLE,
             INVALID / "ketamine-administration--completed-without-dose.json", ADMINISTRATION_EXAMPLE]
    result = validate("--format", "json", *paths)
    assert result.returncode == 1, result.stderr
    bundle = outcome(result)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert [e["fullUrl"] for e in bundle["entry"]] == [p.resolve().as_uri() for p in paths]
    assert all(e["resource"]["resourceType"] == "OperationOutcome" for e in bundle["entry"])
    has_error = [any(i["severity"] == "error" for i in e["resource"]["issue"]) for e in bundle["entry"]]
    assert has_error == [True, False, True, False]
    no_route, _, no_dose, _ = (e["resource"]["issue"] for e in bundle["entry"])
    assert any(i["expression"] == ["MedicationAdministration.dosage.route"] for i in no_route)
    assert any("ket-5" in i["details"]["text"] for i in no_dose)


def test_json_and_text_agree_on_the_findings() -> None:
    path = INVALID / "ketamine-administration--completed-without-dose.json"
    text, as_json = validate(path), validate("--format", "json", path)
    assert text.returncode == as_json.returncode == 1
    lines = [line.strip() for line in text.stdout.splitlines()[1:]]
    issues = outcome(as_json)["issue"]
    assert len(lines) == len(issues)
    for line, issue in zip(lines, issues, strict=True):
        severity, rest = line.split(None, 1)
        assert severity == issue["severity"]
        position = f" [line {issue['extension'][0]['valueInteger']}, col {issue['extension'][1]['valueInteger']}]"
        assert rest == f"{issue['expression'][0]}: {issue['details']['text']}{position}"


# --- --profile --------------------------------------------------------------------------------

def test_profile_forces_the_profile_a_patient_is_judged_by() -> None:
    result = validate("--profile", ADMINISTRATION, PATIENT_EXAMPLE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is for MedicationAdministration, not Patient" in result.stdout
    assert_no_traceback(result)


def test_profile_forced_on_a_resource_of_its_type_still_checks_it() -> None:
    assert validate("--profile", ADMINISTRATION, ADMINISTRATION_EXAMPLE).returncode == 0
    no_route = INVALID / "ketamine-administration--no-route.json"
    assert validate("--profile", ADMINISTRATION, no_route).returncode == 1


def test_profile_replaces_the_declared_profile() -> None:
    """A resource that meets its declared profile is judged by the forced one instead."""
    doc = json.loads(ADMINISTRATION_EXAMPLE.read_text(encoding="utf-8"))
    assert doc["meta"]["profile"] == [ADMINISTRATION]
    result = validate("--format", "json", "--profile", OURS + "ketamine-adverse-event", ADMINISTRATION_EXAMPLE)
    assert result.returncode == 1
    assert any("is for AdverseEvent, not MedicationAdministration" in i["details"]["text"]
               for i in outcome(result)["issue"])


def test_an_unknown_profile_is_a_usage_error() -> None:
    result = validate("--profile", "https://example.org/fhir/StructureDefinition/nothing-here", PATIENT_EXAMPLE)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown profile" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


def test_a_profile_url_that_is_not_a_structure_definition_is_a_usage_error() -> None:
    result = validate("--profile", "https://ketamine-fhir.org/fhir/ValueSet/ketamine-routes", PATIENT_EXAMPLE)
    assert_no_traceback(result)
    assert result.returncode == 2, result.stdout + result.stderr


# --- --ig ---------------------------------------------------------------------------------------

def test_ig_folder_adds_a_profile_that_only_applies_when_loaded(tmp_path: Path) -> None:
    folder = ig_folder(tmp_path)
    undated = write(tmp_path / "undated.json", patient())
    dated = write(tmp_path / "dated.json", patient(birth_date="1984-06-15"))
    # without the IG the profile does not exist: the patient is fine and the profile a usage error
    assert validate(undated).returncode == 0
    without = validate("--profile", DATED_PATIENT, undated)
    assert without.returncode == 2 and "unknown profile" in without.stderr
    # with it: a birth date is required
    result = validate("--format", "json", "--ig", folder, "--profile", DATED_PATIENT, undated)
    assert result.returncode == 1, result.stdout + result.stderr
    assert birth_date_missing(outcome(result)["issue"]), result.stdout
    assert validate("--ig", folder, "--profile", DATED_PATIENT, dated).returncode == 0
    # the IG alone changes nothing for a resource that does not ask for its profile
    assert validate("--ig", folder, undated).returncode == 0


def test_ig_folder_profile_declared_in_meta_profile(tmp_path: Path) -> None:
    folder = ig_folder(tmp_path)
    undated = write(tmp_path / "undated.json", patient(profile=DATED_PATIENT))
    dated = write(tmp_path / "dated.json", patient(birth_date="1984-06-15", profile=DATED_PATIENT))
    with_ig = validate("--format", "json", "--ig", folder, undated)
    assert with_ig.returncode == 1, with_ig.stdout + with_ig.stderr
    assert birth_date_missing(outcome(with_ig)["issue"])
    assert validate("--ig", folder, dated).returncode == 0
    # without the IG the declared profile is unknown: a warning (as the HL7 validator), not the birth date error;
    # its example.org URL, resolving nowhere, is an error as in the HL7 CLI unless -allow-example-urls
    refused = validate("--format", "json", dated)
    assert refused.returncode == 1
    assert [i["expression"] for i in outcome(refused)["issue"] if i["severity"] == "error"] == [
        ["Patient.meta.profile[0]"]]
    without = validate("--format", "json", "--allow-example-urls", dated)
    assert without.returncode == 0
    issues = outcome(without)["issue"]
    assert not birth_date_missing(issues)
    assert any(i["expression"] == ["Patient.meta.profile"] and DATED_PATIENT in i["details"]["text"]
               and i["severity"] == "warning" for i in issues)
    strict = validate("--unknown-profile", "error", "--allow-example-urls", dated)
    assert strict.returncode == 1 and DATED_PATIENT in strict.stdout


def test_ig_single_structure_definition_file(tmp_path: Path) -> None:
    sd = write(tmp_path / "dated-patient.json", dated_patient_profile())
    undated = write(tmp_path / "undated.json", patient(profile=DATED_PATIENT))
    result = validate("--format", "json", "--ig", sd, undated)
    assert result.returncode == 1, result.stdout + result.stderr
    assert birth_date_missing(outcome(result)["issue"])


def test_ig_folder_ignores_files_that_are_not_conformance_resources(tmp_path: Path) -> None:
    folder = ig_folder(tmp_path)
    shutil.copy(PATIENT_EXAMPLE, folder / PATIENT_EXAMPLE.name)
    undated = write(tmp_path / "undated.json", patient(profile=DATED_PATIENT))
    result = validate("--ig", folder, undated)
    assert result.returncode == 1 and "Patient.birthDate" in result.stdout, result.stdout + result.stderr


def test_ig_package_made_by_profiles_package(tmp_path: Path) -> None:
    """The shipped guide as a .tgz: loading it again changes no verdict."""
    dist = tmp_path / "dist"
    made = kfhir("profiles", "package", "--dist", dist)
    assert made.returncode == 0, made.stderr
    tgz = Path(made.stdout.strip())
    assert tgz.suffix == ".tgz" and tgz.exists()
    result = validate("--format", "json", "--ig", tgz, ADMINISTRATION_EXAMPLE,
                      INVALID / "ketamine-administration--no-route.json")
    assert result.returncode == 1, result.stderr
    first, second = (e["resource"]["issue"] for e in outcome(result)["entry"])
    assert not any(i["severity"] == "error" for i in first)
    assert any(i["expression"] == ["MedicationAdministration.dosage.route"] for i in second)


def test_ig_package_of_an_own_guide_adds_its_profile(tmp_path: Path) -> None:
    """A package built by `profiles package --dir` from another guide's folder brings that guide's profiles."""
    guide = tmp_path / "guide"
    manifest = json.loads((PROFILES / "package.json").read_text(encoding="utf-8"))
    write(guide / "package.json", manifest | {"name": "example.dated", "version": "0.0.1",
                                              "canonical": "https://example.org/fhir"})
    write(guide / "StructureDefinition-dated-patient.json", dated_patient_profile())
    (guide / "examples").mkdir()
    made = kfhir("profiles", "package", "--dir", guide, "--dist", tmp_path / "dist")
    assert made.returncode == 0, made.stderr
    tgz = Path(made.stdout.strip())
    assert tgz.name == "example.dated-0.0.1.tgz"
    undated = write(tmp_path / "undated.json", patient(profile=DATED_PATIENT))
    dated = write(tmp_path / "dated.json", patient(birth_date="2001-02-03", profile=DATED_PATIENT))
    result = validate("--format", "json", "--ig", tgz, undated)
    assert result.returncode == 1, result.stdout + result.stderr
    assert birth_date_missing(outcome(result)["issue"])
    assert validate("--ig", tgz, dated).returncode == 0
    # our own profiles are still there beside it
    assert validate("--ig", tgz, INVALID / "ketamine-administration--no-route.json").returncode == 1


def _judged(result: Done, files: dict[str, Path]) -> dict[str, list[str]]:
    """file name → the expressions of its errors, from `validate --format json` over `files` (in that order)."""
    doc = outcome(result)
    outcomes = [doc] if doc["resourceType"] == "OperationOutcome" else [e["resource"] for e in doc["entry"]]
    return {name: [x for i in o["issue"] if i["severity"] == "error" for x in i.get("expression", [])]
            for name, o in zip(files, outcomes, strict=True)}


def test_a_guides_global_profiles_hold_resources_of_their_type_to_them(tmp_path: Path) -> None:
    """Plan-Net 1.2.0 as published (tests/validation/global_cases.py): without a guide declaring its profiles global
    its examples, meta.profile removed, are judged by R4 alone; with one, by Plan-Net's profile of their type."""
    files = {name: write(tmp_path / f"{name}.json", doc) for name, (_, doc, _) in global_cases.cases().items()}
    plain = validate("--format", "json", "--ig", global_cases.package(), *files.values())
    assert plain.returncode == 0, plain.stdout
    guide = write(tmp_path / "guide" / "ImplementationGuide-plan-net-global.json", global_cases.global_guide())
    for loaded in (guide, guide.parent):  # the guide as a file, and in a folder
        judged = _judged(validate("--format", "json", "--ig", global_cases.package(), "--ig", loaded,
                                  *files.values()), files)
        for name, (kind, _, accepted) in global_cases.cases().items():
            required = global_cases.TYPES[kind][1]
            assert judged[name] == ([] if accepted else [f"{kind}.{required}"]), name


def test_a_packages_own_guide_makes_no_profile_global(tmp_path: Path) -> None:
    """As the HL7 validator CLI: the ImplementationGuide inside a package loaded with --ig is not one whose global
    profiles apply (IgLoader lists only guides loaded as files or folders)."""
    with tarfile.open(global_cases.package(), "r:gz") as tar:
        raw = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    guide_name = "package/ImplementationGuide-hl7.fhir.us.davinci-pdex-plan-net.json"
    guide = json.loads(raw[guide_name]) | {"global": global_cases.global_guide()["global"]}
    package = tmp_path / "plan-net-with-global.tgz"
    package.write_bytes(tgz({**raw, guide_name: json.dumps(guide).encode()}))
    files = {name: write(tmp_path / f"{name}.json", doc) for name, (_, doc, _) in global_cases.cases().items()}
    result = validate("--format", "json", "--ig", package, *files.values())
    assert result.returncode == 0, result.stdout
    loose = write(tmp_path / "ImplementationGuide-loose.json", guide)  # the same guide as a file: it applies
    assert validate("--ig", package, "--ig", loose, files["Location-without-status"]).returncode == 1


def test_ig_that_is_not_a_conformance_resource_is_a_usage_error() -> None:
    result = validate("--ig", PATIENT_EXAMPLE, PATIENT_EXAMPLE)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a conformance resource" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


@pytest.mark.parametrize("name, content", [
    ("broken.json", b'{"resourceType": "StructureDefinition",'),
    ("latin1.json", b'{"resourceType": "ValueSet", "name": "\xe9"}'),
    ("empty.tgz", tgz({"package/other.json": b"{}"})),  # no package/package.json
    ("fake.tgz", b"this is not a gzip file"),
    ("list.json", b"[1, 2, 3]"),
    ("string.json", b'"StructureDefinition"'),
    ("folder/list.json", b"[]"),
    ("folder/broken.json", b"{"),
])
def test_ig_that_cannot_be_read_is_a_usage_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    ig = path.parent if name.startswith("folder/") else path
    result = validate("--ig", ig, PATIENT_EXAMPLE)
    assert_no_traceback(result)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(ig) in result.stderr


def test_a_missing_ig_is_a_usage_error(tmp_path: Path) -> None:
    result = validate("--ig", tmp_path / "nowhere.tgz", PATIENT_EXAMPLE)
    assert result.returncode == 2
    assert_no_traceback(result)


# --- bad input files ----------------------------------------------------------------------------

@pytest.mark.parametrize("content, fragment", [
    (b'{"resourceType": "Patient",', "Malformed JSON"),
    (b"", "empty"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"resourceType": "Patient", "id": "a", "id": "b"}', "repeats the key"),
    (b'{"resourceType": "Patient", "multipleBirthInteger": NaN}', "NaN"),
    (b"[" * 100 + b"]" * 100, "nested more than"),
])
def test_a_malformed_json_file_exits_1_with_a_fatal_issue_and_no_traceback(
        tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    result = validate("--format", "json", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    doc = outcome(result)
    assert doc["resourceType"] == "OperationOutcome"
    fatal = [i for i in doc["issue"] if i["severity"] == "fatal"]
    assert len(fatal) == 1 and fragment in fatal[0]["details"]["text"], doc
    assert fatal[0]["expression"] == ["$this"]
    text = validate(path)
    assert text.returncode == 1 and f"{path}: INVALID" in text.stdout and "fatal" in text.stdout
    assert_no_traceback(text)


def test_a_malformed_file_among_good_ones_does_not_stop_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    result = validate("--format", "json", PATIENT_EXAMPLE, bad, ADMINISTRATION_EXAMPLE)
    assert result.returncode == 1
    severities = [{i["severity"] for i in e["resource"]["issue"]} for e in outcome(result)["entry"]]
    assert ["fatal" in s for s in severities] == [False, True, False]


@pytest.mark.parametrize("doc", [[], "Patient", 42, None, {"resourceType": "Nope"}, {}], ids=repr)
def test_json_that_is_not_a_resource_exits_1(tmp_path: Path, doc: Any) -> None:
    path = write(tmp_path / "odd.json", doc)
    result = validate(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)


def test_a_nonexistent_path_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    result = validate(PATIENT_EXAMPLE, missing)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not exist" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


def test_no_path_is_a_usage_error() -> None:
    result = validate()
    assert result.returncode == 2
    assert_no_traceback(result)


def test_an_unknown_format_is_a_usage_error() -> None:
    result = validate("--format", "xml", PATIENT_EXAMPLE)
    assert result.returncode == 2
    assert_no_traceback(result)


def test_validating_does_not_change_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    shutil.copy(ADMINISTRATION_EXAMPLE, path)
    before = path.read_bytes()
    assert validate(path).returncode == 0
    assert path.read_bytes() == before


def test_a_folder_without_json_files_is_a_usage_error(tmp_path: Path) -> None:
    result = validate(tmp_path)
    assert result.returncode == 2 and "no .json files" in result.stderr


def test_issues_carry_the_line_and_column_of_their_element(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "resourceType": "Patient",\n  "birthDate": "1980-13-01"\n}\n')
    text = validate(broken)
    assert text.returncode == 1 and "Patient.birthDate: " in text.stdout and "[line 3, col 16]" in text.stdout
    issue = json.loads(validate(broken, "--format", "json").stdout)["issue"][0]
    assert issue["location"] == ["Patient.birthDate", "Line[3] Col[16]"]


def test_must_support_reporting_is_opt_in() -> None:
    plain = validate(ADMINISTRATION_EXAMPLE)
    assert plain.returncode == 0 and "mustSupport" not in plain.stdout
    asked = validate(ADMINISTRATION_EXAMPLE, "--must-support")
    assert asked.returncode == 0  # information only: still valid
    assert "information MedicationAdministration.statusReason: " in asked.stdout and "mustSupport" in asked.stdout


# --- the policy: the HL7 validator's defaults, each a flag -----------------------------------------

UNHELD_EXTENSION = "http://example.org/fhir/StructureDefinition/unheld"


def test_the_readme_command_validates_every_example_skips_the_manifest_and_fails_on_the_counter_examples() -> None:
    """README: `ketamine-fhir validate profiles/examples/` judges the examples (valid) and invalid/ (each
    INVALID): exit 1; manifest.json, met while walking the folder, is no resource and is skipped."""
    result = validate(EXAMPLES)
    assert result.returncode == 1, result.stdout + result.stderr
    headers = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in result.stdout.splitlines()
               if not line.startswith(" ")}
    assert headers.pop(str(EXAMPLES / "manifest.json")) == "skipped (not a FHIR resource)"
    for path in EXAMPLES.glob("*.json"):
        if path.name != "manifest.json":
            assert headers[str(path)].startswith("valid"), path
    assert all(headers[str(p)].startswith("INVALID") for p in INVALID.glob("*.json"))
    assert_no_traceback(result)


def test_a_named_file_that_is_no_resource_is_still_judged() -> None:
    result = validate(EXAMPLES / "manifest.json")
    assert result.returncode == 1 and "INVALID" in result.stdout, result.stdout


def test_an_ordinary_r4_condition_is_not_judged_as_a_ketamine_indication(tmp_path: Path) -> None:
    condition = write(tmp_path / "c.json", {
        "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": {"text": "Asthma"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Asthma</div>"}})
    assert validate(condition).returncode == 0
    assert validate("--our-profiles", condition).returncode == 1


def test_a_reference_to_a_type_not_allowed_and_not_here_fails_only_when_asked(tmp_path: Path) -> None:
    """R4's own Observation-clinical-gender names an Encounter as performer: the HL7 CLI checks only a target it
    resolves unless -assume-valid-rest-references."""
    observation = write(tmp_path / "o.json", {
        "resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
        "performer": [{"reference": "Encounter/e1"}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}})
    assert validate(observation).returncode == 0
    assert validate("--assume-valid-rest-references", observation).returncode == 1


@pytest.mark.parametrize("flags, code, severity", [
    ((), 1, "error"),
    (("--unknown-extension", "warning"), 0, "warning"),
    (("--allow-extension-domain", "http://example.org/fhir/"), 0, None),
    (("--allow-any-extensions",), 0, "information"),
])
def test_an_unheld_extension_by_flag(tmp_path: Path, flags: tuple[str, ...], code: int, severity: str | None) -> None:
    path = write(tmp_path / "p.json", {
        "resourceType": "Patient", "id": "p1", "extension": [{"url": UNHELD_EXTENSION, "valueString": "x"}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}})
    result = validate("--format", "json", *flags, path)
    assert result.returncode == code, result.stdout + result.stderr
    found = [i["severity"] for i in outcome(result)["issue"] if "Unknown extension" in i["details"]["text"]]
    assert found == ([severity] if severity else [])
