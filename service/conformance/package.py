"""FHIR NPM packages (tgz, `package/` layout) and folders of conformance resources, read lazily."""
from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Resource = dict[str, Any]
CONFORMANCE_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap", "ImplementationGuide")


@dataclass
class Package:
    """Resources by file name; each JSON document is parsed the first time it is asked for."""

    manifest: dict[str, Any]
    raw: dict[str, bytes]
    index: list[dict[str, Any]]
    _parsed: dict[str, Resource] = field(default_factory=dict)

    @classmethod
    def from_tgz(cls, path: Path) -> Package:
        raw: dict[str, bytes] = {}
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.startswith("package/") and member.name.endswith(".json"):
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        raw[member.name.removeprefix("package/")] = extracted.read()
        manifest = json.loads(raw.pop("package.json"))
        index = json.loads(raw.pop(".index.json", b'{"files": []}'))["files"]
        return cls(manifest, raw, index or _index(raw))

    def get(self, filename: str) -> Resource:
        if filename not in self._parsed:
            self._parsed[filename] = json.loads(self.raw[filename])
        return self._parsed[filename]

    def resources(self, resource_type: str | None = None) -> Iterator[Resource]:
        for entry in self.index:
            if resource_type is None or entry["resourceType"] == resource_type:
                yield self.get(entry["filename"])

    def by_url(self) -> dict[str, str]:
        """Canonical URL → file name, for every resource that has one."""
        return {e["url"]: e["filename"] for e in self.index if e.get("url")}


def _index(raw: dict[str, bytes]) -> list[dict[str, Any]]:
    out = []
    for name, data in raw.items():
        doc = json.loads(data)
        out.append({"filename": name, "resourceType": doc.get("resourceType"), "id": doc.get("id"),
                    "url": doc.get("url"), "type": doc.get("type")})
    return out


def read_folder(folder: Path) -> list[Resource]:
    """The conformance resources directly in `folder` (not its subfolders), sorted by file name."""
    out = []
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"{path.name} is not a JSON object")
        if doc.get("resourceType") in CONFORMANCE_TYPES:
            out.append(doc)
    return out
