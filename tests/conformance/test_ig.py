"""The implementation guide: snapshots current, base definitions R4, package in FHIR NPM layout."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from cli.support import kfhir

from service.conformance.definitions import core_package, load
from service.conformance.ig import build, pack, stale
from service.resources import profiles_dir

CANONICAL = "https://ketamine-fhir.org/fhir/"


def test_committed_snapshots_and_guide_are_current() -> None:
    assert stale(profiles_dir()) == [], "run `ketamine-fhir profiles build` and commit the result"


def test_a_changed_differential_makes_the_snapshot_stale(tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    shutil.copytree(profiles_dir(), folder, ignore=shutil.ignore_patterns("core"))
    path = folder / "StructureDefinition-ketamine-indication.json"
    profile = json.loads(path.read_text())
    profile["differential"]["element"].append({"id": "Condition.onset[x]", "path": "Condition.onset[x]", "min": 1})
    path.write_text(json.dumps(profile, indent=2))
    assert stale(folder) == [path]
    result = kfhir("profiles", "check", "--dir", folder)
    assert result.returncode == 1 and "StructureDefinition-ketamine-indication.json" in result.stdout
    assert build(folder) == [path]
    onset = next(e for e in json.loads(path.read_text())["snapshot"]["element"] if e["id"] == "Condition.onset[x]")
    assert onset["min"] == 1 and stale(folder) == []


def test_base_definitions_are_r4_4_0_1() -> None:
    core = core_package()
    assert core.manifest["fhirVersions"] == ["4.0.1"]
    structures = list(core.resources("StructureDefinition"))
    assert len(structures) > 600
    assert {sd["fhirVersion"] for sd in structures} == {"4.0.1"}


@pytest.fixture(scope="module")
def structures() -> list[dict]:
    return [r for r in load().own.values() if r["resourceType"] == "StructureDefinition"]


def test_every_profile_is_an_r4_constraint_with_differential_and_snapshot(structures: list[dict]) -> None:
    assert len(structures) >= 14
    for sd in structures:
        assert sd["url"] == CANONICAL + "StructureDefinition/" + sd["id"]
        assert (sd["fhirVersion"], sd["derivation"]) == ("4.0.1", "constraint")
        assert sd["differential"]["element"] and sd["snapshot"]["element"]
        assert sd["snapshot"]["element"][0]["id"] == sd["type"]


def test_each_element_appears_once_in_a_differential(structures: list[dict]) -> None:
    """HAPI merges repeated element ids, but stricter readers (fhircraft) reject the profile: say it once."""
    for sd in structures:
        ids = [e["id"] for e in sd["differential"]["element"]]
        assert len(ids) == len(set(ids)), (sd["id"], [i for i in ids if ids.count(i) > 1])


def test_every_invariant_has_a_key_text_and_fhirpath(structures: list[dict]) -> None:
    keys = []
    for sd in structures:
        for element in sd["differential"]["element"]:
            for rule in element.get("constraint", []):
                assert rule["key"].startswith("ket-") and rule["human"] and rule["expression"]
                keys.append(rule["key"])
    assert len(keys) == len(set(keys)) >= 10


def test_package_has_the_fhir_npm_layout(tmp_path: Path) -> None:
    result = kfhir("profiles", "package", "--dist", tmp_path)
    assert result.returncode == 0, result.stderr
    target = Path(result.stdout.strip())
    assert target == tmp_path / "ketamine-fhir.ig-0.1.0.tgz"
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
        index = json.load(tar.extractfile("package/.index.json"))  # type: ignore[arg-type]
    assert manifest["fhirVersions"] == ["4.0.1"] and manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    assert {f"package/{e['filename']}" for e in index["files"]} <= names
    assert "package/StructureDefinition-ketamine-administration.json" in names
    assert "package/ImplementationGuide-ketamine-fhir.json" in names
    assert all(not n.startswith("package/core") for n in names)


def test_pack_is_reproducible(tmp_path: Path) -> None:
    first = pack(profiles_dir(), tmp_path / "a").read_bytes()
    second = pack(profiles_dir(), tmp_path / "b").read_bytes()
    assert tarfile.is_tarfile(tmp_path / "a" / "ketamine-fhir.ig-0.1.0.tgz")
    assert len(first) == len(second)


def test_every_binding_and_profile_reference_resolves(structures: list[dict]) -> None:
    defs = load()
    missing = set()
    for sd in structures:
        for element in sd["differential"]["element"]:
            canonicals = [element.get("binding", {}).get("valueSet")]
            for kind in element.get("type", []):
                canonicals += kind.get("profile", []) + kind.get("targetProfile", [])
            missing |= {(sd["id"], c) for c in canonicals if c and defs.resolve(c) is None}
    assert missing == set()
