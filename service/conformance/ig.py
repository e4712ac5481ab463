"""The implementation guide in profiles/: rebuild snapshots, check them, pack the FHIR NPM package."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from service.conformance.definitions import Definitions, core_package
from service.conformance.package import CONFORMANCE_TYPES, Resource
from service.conformance.snapshot import with_snapshot


def dump(resource: Resource) -> str:
    """The one JSON layout of files in profiles/: two-space indent, UTF-8, newline at the end."""
    return json.dumps(resource, indent=2, ensure_ascii=False) + "\n"


def conformance_files(folder: Path) -> dict[Path, Resource]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("resourceType") in CONFORMANCE_TYPES:
            out[path] = doc
    return out


IG_ID = "ketamine-fhir"


def rebuilt(folder: Path) -> dict[Path, str]:
    """The generated files of `folder` as they should read: every StructureDefinition with a fresh
    snapshot, and the ImplementationGuide listing every resource and example."""
    files = {p: d for p, d in conformance_files(folder).items() if d["resourceType"] != "ImplementationGuide"}
    defs = Definitions(core_package(), list(files.values()))
    out = {path: dump(with_snapshot(doc, defs)) for path, doc in files.items()
           if doc["resourceType"] == "StructureDefinition"}
    out[folder / f"ImplementationGuide-{IG_ID}.json"] = dump(implementation_guide(folder, files))
    return out


def implementation_guide(folder: Path, files: dict[Path, Resource]) -> Resource:
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    resources = [{"reference": {"reference": f"{d['resourceType']}/{d['id']}"}, "name": d.get("title", d["id"]),
                  "exampleBoolean": False} for d in files.values()]
    for path in sorted((folder / "examples").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        profiles = doc.get("meta", {}).get("profile", [])
        if "resourceType" in doc and path.name != "manifest.json":
            example: dict[str, Any] = {"reference": {"reference": f"{doc['resourceType']}/{doc.get('id', path.stem)}"},
                                       "name": path.stem}
            example.update({"exampleCanonical": profiles[0]} if profiles else {"exampleBoolean": True})
            resources.append(example)
    return {
        "resourceType": "ImplementationGuide", "id": IG_ID,
        "url": f"{manifest['canonical']}/ImplementationGuide/{IG_ID}",
        "version": manifest["version"], "name": "KetamineTherapyIG", "title": manifest["title"], "status": "active",
        "experimental": False, "date": "2026-11-28", "publisher": manifest["author"],
        "description": manifest["description"], "packageId": manifest["name"], "license": manifest["license"],
        "fhirVersion": manifest["fhirVersions"], "definition": {"resource": resources},
    }


def build(folder: Path) -> list[Path]:
    """Rewrite the snapshots that changed; returns the files written."""
    written = []
    for path, text in rebuilt(folder).items():
        if _text(path) != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale(folder: Path) -> list[Path]:
    """Generated files whose committed text differs from what `build` would write."""
    return [path for path, text in rebuilt(folder).items() if _text(path) != text]


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def pack(folder: Path, dist: Path) -> Path:
    """Write dist/<name>-<version>.tgz in FHIR NPM layout: package/package.json, package/*.json,
    package/.index.json, and the examples under package/example/."""
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    entries: dict[str, bytes] = {"package/package.json": json.dumps(manifest, indent=2).encode()}
    index: list[dict[str, Any]] = []
    for path, doc in conformance_files(folder).items():
        entries[f"package/{path.name}"] = path.read_bytes()
        index.append(_index_entry(path.name, doc))
    for path in sorted((folder / "examples").glob("*.json")):  # examples/invalid/ stays out
        doc = json.loads(path.read_text(encoding="utf-8"))
        if "resourceType" in doc and path.name != "manifest.json":
            entries[f"package/example/{path.name}"] = path.read_bytes()
    entries["package/.index.json"] = json.dumps({"index-version": 1, "files": index}, indent=2).encode()
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{manifest['name']}-{manifest['version']}.tgz"
    with tarfile.open(target, "w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return target


def _index_entry(filename: str, doc: Resource) -> dict[str, Any]:
    entry = {"filename": filename, "resourceType": doc["resourceType"], "id": doc["id"], "url": doc.get("url"),
             "version": doc.get("version")}
    if doc["resourceType"] == "StructureDefinition":
        entry.update(kind=doc.get("kind"), type=doc.get("type"))
    return entry
