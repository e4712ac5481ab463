"""The IG's examples (profiles/examples/): valid ones conform to their profile, each invalid one breaks the rule
the manifest names, and the HAPI FHIR validator (tests/peers/hapi_validator.py) agrees.

profiles/examples/manifest.json lists every example file:
    {"file": "examples/...json", "profile": <canonical> | null, "expect": "valid" | "invalid",
     "rule": RULES, "path": <element path>, "key": <ket-N> | null, "base": <the valid example it was copied from>,
     "note"?: <why the example cannot break its rule alone>}

Paths: `path` names the element that is wrong, FHIRPath style, without array indexes, choice suffixes or slice
names (`MedicationAdministration.dosage.route`, `Observation.component.value.code`; the resource type for a
resource-level invariant). HAPI reports an issue at `location`/`expression`, e.g.
`Observation.component[0].value.ofType(Quantity).code`; we drop `[n]`, `[x]` and `.ofType(T)` from it. It agrees
with the manifest when that normalised location equals `path`, or when it is an ancestor of `path` and the
message names the rest of it: HAPI reports a missing element or an unknown property at the parent
("MedicationAdministration.context: minimum required = 1" at `MedicationAdministration`, "Unrecognized property
'lotNumber'"), a choice element by its JSON property ("The type of element detailQuantity is not known" at
`Goal.target`). For rule=invariant the messageId or the message must also name the key.
"""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
EXAMPLES = PROFILES / "examples"
MANIFEST = EXAMPLES / "manifest.json"
HARNESS = ROOT / "tests" / "peers" / "hapi_validator.py"
CANONICAL = "https://ketamine-fhir.org/fhir/StructureDefinition/"

PROFILE_IDS = ("ketamine-treatment-plan", "ketamine-indication", "ketamine-protocol-order", "ketamine-administration",
               "ketamine-session-monitoring", "ketamine-outcome-score", "ketamine-adverse-event",
               "ketamine-safety-flag", "ketamine-concurrent-medication", "ketamine-treatment-goal",
               "ketamine-concurrent-psychotherapy")
RULES = ("cardinality", "fixed", "pattern", "binding", "invariant", "reference-target", "type", "unknown-element",
         "extension")
#: Rules whose examples are not R4 at all, so fhir.resources must reject them (see test_broken_structure...).
STRUCTURAL = ("type", "unknown-element")
MIN_VALID, MIN_INVALID = 2, 5
#: The conformance resources the HAPI harness loads from an IG folder.
CONFORMANCE_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem")
LITERAL_REFERENCE = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}")


# --- the manifest ------------------------------------------------------------------------------

@cache
def manifest() -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = json.loads(MANIFEST.read_text(encoding="utf-8"))["examples"]
    return examples


def entries(expect: str | None = None) -> list[dict[str, Any]]:
    return [e for e in manifest() if expect is None or e["expect"] == expect]


@cache
def load(file: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((PROFILES / file).read_text(encoding="utf-8"))
    return doc


@cache
def structure(url: str) -> dict[str, Any]:
    path = PROFILES / f"StructureDefinition-{url.removeprefix(CANONICAL)}.json"
    sd: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return sd


def invariant_keys(sd: dict[str, Any]) -> set[str]:
    return {c["key"] for e in sd["differential"]["element"] for c in e.get("constraint", [])}


def used_extensions(sd: dict[str, Any]) -> set[str]:
    return {p for e in sd["differential"]["element"] for t in e.get("type", []) if t.get("code") == "Extension"
            for p in t.get("profile", [])}


def ids(values: list[dict[str, Any]]) -> list[str]:
    return [Path(e["file"]).name for e in values]


def test_manifest_lists_every_example_file_and_nothing_else() -> None:
    on_disk = {p.relative_to(PROFILES).as_posix() for p in EXAMPLES.rglob("*") if p.is_file() and p != MANIFEST}
    listed = [e["file"] for e in manifest()]
    assert len(listed) == len(set(listed)), [f for f, n in Counter(listed).items() if n > 1]
    assert sorted(on_disk - set(listed)) == [], "files in examples/ that the manifest does not list"
    assert sorted(set(listed) - on_disk) == [], "files the manifest lists that do not exist"


@pytest.mark.parametrize("entry", entries(), ids=ids(entries()))
def test_manifest_entry_is_well_formed(entry: dict[str, Any]) -> None:
    file, doc = Path(entry["file"]), load(entry["file"])
    profile = entry["profile"]
    assert profile is None or profile.removeprefix(CANONICAL) in PROFILE_IDS
    assert doc.get("meta", {}).get("profile") == ([profile] if profile else None)
    if entry["expect"] == "valid":
        assert file.parent.as_posix() == "examples"
        assert set(entry) == {"file", "profile", "expect"}
        assert file.name == f"{doc['resourceType']}-{doc['id']}.json"
        return
    assert entry["expect"] == "invalid" and profile, entry
    assert file.parent.as_posix() == "examples/invalid"
    assert file.name.startswith(profile.removeprefix(CANONICAL) + "--")
    assert entry["rule"] in RULES
    assert entry["path"].split(".")[0] == doc["resourceType"]
    assert not re.search(r"\[|\(|:", entry["path"]), "paths carry no indexes, choice suffixes or slice names"
    if entry["rule"] == "invariant":
        sd = structure(profile)
        declared = invariant_keys(sd).union(*(invariant_keys(structure(u)) for u in used_extensions(sd)))
        assert entry["key"] in declared, f"{entry['key']} is not an invariant of {profile} or its extensions"
    else:
        assert entry["key"] is None
    base = load(entry["base"])
    assert next(e for e in manifest() if e["file"] == entry["base"]) == {
        "file": entry["base"], "profile": profile, "expect": "valid"}, "an invalid example copies a valid one"
    assert (doc["resourceType"], doc["id"]) == (base["resourceType"], base["id"]) and doc != base


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def test_valid_examples_reference_each_other_by_relative_literal_references() -> None:
    present = {f"{d['resourceType']}/{d['id']}" for d in map(load, (e["file"] for e in entries("valid")))}
    problems = []
    for entry in entries("valid"):
        for ref in references(load(entry["file"])):
            if not LITERAL_REFERENCE.fullmatch(ref) or ref not in present:
                problems.append(f"{entry['file']}: {ref} is not a relative reference to another example")
    assert not problems, "\n".join(problems)


def test_patients_are_obviously_synthetic() -> None:
    for entry in entries("valid"):
        doc = load(entry["file"])
        if doc["resourceType"] == "Patient":
            assert {n["family"] for n in doc["name"]} == {"Testpatient"}


# --- counts and coverage -----------------------------------------------------------------------

def test_every_profile_has_enough_valid_and_invalid_examples() -> None:
    count = Counter((e["profile"], e["expect"]) for e in manifest())
    for profile in PROFILE_IDS:
        url = CANONICAL + profile
        assert count[url, "valid"] >= MIN_VALID, f"{profile}: {count[url, 'valid']} valid examples"
        assert count[url, "invalid"] >= MIN_INVALID, f"{profile}: {count[url, 'invalid']} invalid examples"


def test_every_rule_kind_and_every_invariant_is_broken_by_some_example() -> None:
    assert {e["rule"] for e in entries("invalid")} == set(RULES)
    declared = set().union(*(invariant_keys(json.loads(p.read_text(encoding="utf-8")))
                             for p in PROFILES.glob("StructureDefinition-*.json")))
    assert declared and all(k.startswith("ket-") for k in declared)
    covered = {e["key"] for e in entries("invalid") if e["rule"] == "invariant"}
    assert sorted(declared - covered) == [], "invariants no invalid example breaks"


# --- fhir.resources (R4B models) ---------------------------------------------------------------

def parse(doc: dict[str, Any]) -> Any:
    return get_fhir_model_class(doc["resourceType"]).model_validate(doc)


PARSEABLE = [e for e in manifest() if e.get("rule") not in STRUCTURAL]


@pytest.mark.parametrize("entry", PARSEABLE, ids=ids(PARSEABLE))
def test_example_parses_with_fhir_resources(entry: dict[str, Any]) -> None:
    parse(load(entry["file"]))


def narrowed_choice(entry: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(the JSON property used, the types the profile allows) when the example fills the choice element at
    `path` with a type the base resource allows but the profile's snapshot does not; else None."""
    *parents, name = entry["path"].split(".")[1:]
    nodes: list[Any] = [load(entry["file"])]
    for part in parents:
        nodes = [c for n in nodes for c in (n.get(part) if isinstance(n.get(part), list) else [n.get(part)])
                 if isinstance(c, dict)]
    element = next((e for e in structure(entry["profile"])["snapshot"]["element"]
                    if e["id"] == entry["path"] + "[x]"), None)
    if element is None:
        return None
    allowed = [t["code"] for t in element["type"]]
    for node in nodes:
        for prop in node:
            suffix = prop.removeprefix(name)
            if prop != suffix and suffix[:1].isupper() and suffix.lower() not in {a.lower() for a in allowed}:
                return prop, allowed
    return None


STRUCTURAL_ENTRIES = [e for e in entries("invalid") if e["rule"] in STRUCTURAL]


@pytest.mark.parametrize("entry", STRUCTURAL_ENTRIES, ids=ids(STRUCTURAL_ENTRIES))
def test_broken_structure_fails_to_parse_with_fhir_resources(entry: dict[str, Any]) -> None:
    """An unknown element, or a value of the wrong JSON/FHIR type, is not R4 at all: the R4B model rejects it.
    The one exception is a choice type the profile narrows (effectiveDateTime where the profile allows only
    Period): base R4 allows it, so the model accepts it, and we prove instead that the profile excludes it."""
    doc = load(entry["file"])
    try:
        parse(doc)
    except ValidationError as exc:
        name = entry["path"].rsplit(".", 1)[-1]
        if entry["rule"] == "unknown-element":  # rejected as an extra property of that name
            assert any(e["type"] == "extra_forbidden" and e["loc"][-1] == name for e in exc.errors()), exc
        else:  # rejected at the element the manifest names (valueInteger for Observation.value)
            assert any(str(part).startswith(name) for e in exc.errors() for part in e["loc"]), exc
        return
    narrowed = narrowed_choice(entry) if entry["rule"] == "type" else None
    assert narrowed, f"{entry['file']} parses with fhir.resources, so it is not a {entry['rule']} error"


# --- the HAPI FHIR validator as the oracle -----------------------------------------------------

def _normalise(path: str) -> str:
    return re.sub(r"\[\d+\]|\[x\]|\.ofType\([^)]*\)", "", path)


def _names(text: str, words: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(words)}(?![\w-])", text) is not None


def _names_choice(text: str, words: str) -> bool:
    """The message names a choice element by its JSON property: `detailQuantity` for `detail`."""
    return re.search(rf"(?<![\w-]){re.escape(words)}[A-Z]\w*(?![\w-])", text) is not None


def at_path(issue: dict[str, Any], path: str) -> bool:
    message = _normalise(re.sub(r"(?<=\w):[A-Za-z][\w-]*", "", issue["message"]))  # slice names
    for where in filter(None, (issue.get("location"), issue.get("expression"))):
        location = _normalise(where)
        if location == path:
            return True
        rest = path[len(location) + 1:]
        if path.startswith(location + ".") and (_names(message, rest) or _names_choice(message, rest)):
            return True
    return False


def names_key(issue: dict[str, Any], key: str) -> bool:
    return _names(issue.get("messageId") or "", key) or _names(issue["message"], key)


@pytest.fixture(scope="module")
def hapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One run of the HAPI validator over every example: file (as in the manifest) → result."""
    assert HARNESS.is_file(), "the HAPI harness tests/peers/hapi_validator.py is missing"
    from peers.hapi_validator import validate

    # The harness parses every *.json of its IG folder as a FHIR resource, and profiles/package.json is not one:
    # hand it the conformance resources of profiles/ (exactly the ones it loads) in a folder of their own.
    ig = tmp_path_factory.mktemp("ig")
    for path in PROFILES.glob("*.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("resourceType") in CONFORMANCE_TYPES:
            shutil.copy(path, ig / path.name)
    files = [e["file"] for e in manifest()]
    report = validate([PROFILES / f for f in files], ig_dir=ig)
    loaded = " ".join(report["harness"]["conformance_resources"])
    missing = [p for p in PROFILE_IDS if f"StructureDefinition-{p}.json" not in loaded]
    assert not missing, f"the harness did not load {missing}"
    return dict(zip(files, report["results"], strict=True))


def errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in result["issues"] if i["severity"] in ("error", "fatal")]


def show(issues: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {i['severity']} {i['messageId']} @ {i['location']}: {i['message'][:300]}" for i in issues)


@pytest.mark.parametrize("entry", entries("valid"), ids=ids(entries("valid")))
def test_hapi_accepts_valid_example(hapi: dict[str, dict[str, Any]], entry: dict[str, Any]) -> None:
    found = errors(hapi[entry["file"]])
    assert not found, f"HAPI rejects {entry['file']}:\n{show(found)}"


@pytest.mark.parametrize("entry", entries("invalid"), ids=ids(entries("invalid")))
def test_hapi_reports_the_broken_rule(hapi: dict[str, dict[str, Any]], entry: dict[str, Any]) -> None:
    found = errors(hapi[entry["file"]])
    assert found, f"HAPI accepts {entry['file']}, which breaks {entry['rule']} at {entry['path']}"
    matching = [i for i in found if at_path(i, entry["path"])]
    if entry["rule"] == "invariant":
        matching = [i for i in matching if names_key(i, entry["key"])]
    assert matching, (f"no HAPI error at {entry['path']}" + (f" naming {entry['key']}" if entry["key"] else "")
                      + f" for {entry['file']}; HAPI reported:\n{show(found)}")
