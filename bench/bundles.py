"""The contenders' corpus: single resources and collection Bundles of 10, 100 and 1,000 entries,
written once to one folder so that every contender reads the same files.

Singles are every valid IG example (each profile, plus the Patient, Practitioner and Encounter they refer to)
and every invalid one. A Bundle cycles through the valid examples (the demo patients' records); copy k of an
example gets the id `<id>-k` and the fullUrl base/Type/id-k. References keep pointing at the original ids,
outside the Bundle: resolved inside it, HAPI checks each target against its target profile, and offline it
cannot (ICD-10-CM is unknown to it, so every Condition "matches no profile") - an artefact of the harness,
not a difference between validators. So every entry is checked as the single resource is."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.corpus import invalid_paths, valid_paths

SIZES = (10, 100, 1000)
BASE = "https://ketamine-fhir.org/fhir"


@dataclass
class File:
    name: str  # e.g. "MedicationAdministration-iv-session-1", "bundle-100"
    kind: str  # "valid" | "invalid" | "bundle"
    entries: int  # resources in the file: 1 for a single resource
    path: str  # absolute path of the JSON file every contender reads
    profile: str | None  # meta.profile[0] of a single resource, when it declares one

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _profile(doc: Any) -> str | None:
    meta = doc.get("meta") if isinstance(doc, dict) else None
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return profiles[0] if isinstance(profiles, list) and profiles and isinstance(profiles[0], str) else None



def bundle(examples: list[dict[str, Any]], entries: int) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for i in range(entries):
        copy, source = divmod(i, len(examples))
        resource = dict(examples[source], id=f"{examples[source]['id']}-{copy}")
        out.append({"fullUrl": f"{BASE}/{resource['resourceType']}/{resource['id']}", "resource": resource})
    return {"resourceType": "Bundle", "id": f"bench-{entries}", "type": "collection",
            "timestamp": "2026-03-05T12:00:00-05:00", "entry": out}


def build(folder: Path, sizes: tuple[int, ...] = SIZES) -> list[File]:
    """Writes the corpus to `folder`; returns its files, singles first, then Bundles by size."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[File] = []
    examples = []
    for kind, paths in (("valid", valid_paths()), ("invalid", invalid_paths())):
        for path in paths:
            doc = _load(path)
            if kind == "valid":
                examples.append(doc)
            files.append(File(path.stem, kind, 1, str(path.resolve()), _profile(doc)))
    for size in sizes:
        target = folder / f"bundle-{size}.json"
        target.write_text(json.dumps(bundle(examples, size), indent=1), encoding="utf-8")
        files.append(File(target.stem, "bundle", size, str(target.resolve()), None))
    return files
