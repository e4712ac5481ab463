"""The benchmark corpus: every valid example, every invalid example and the mutated corpus of
tests/validation/corpus.py, each as the exact JSON text both validators read.

Files are grouped by the profile they target: their own meta.profile (valid and invalid examples), the
meta.profile of the example they were mutated from (mutations: a mutation may have broken meta), else
"<resourceType> (R4 base)"."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peers import corpus_module

BASE_SUFFIX = " (R4 base)"


@dataclass
class Item:
    name: str  # file stem, e.g. MedicationAdministration-iv-session-1--wrong-code
    kind: str  # "valid" | "invalid" | "mutated"
    group: str  # short profile name, or "<resourceType> (R4 base)"
    path: Path  # the file HAPI reads
    text: str  # its content, which we parse
    doc: Any  # json.loads(text), or None when it does not parse


def examples_dir() -> Path:
    from service.resources import profiles_dir
    return profiles_dir() / "examples"


def valid_paths() -> list[Path]:
    return sorted(p for p in examples_dir().glob("*.json") if p.name != "manifest.json")


def invalid_paths() -> list[Path]:
    return sorted((examples_dir() / "invalid").glob("*.json"))


def group_of(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "(not a JSON object)"
    meta = doc.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    if isinstance(profiles, list) and profiles and isinstance(profiles[0], str):
        return profiles[0].rstrip("/").rsplit("/", 1)[-1]
    return f"{doc.get('resourceType', '(no resourceType)')}{BASE_SUFFIX}"


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def build(mutation_dir: Path) -> list[Item]:
    """The whole corpus; mutated resources are written to `mutation_dir` (as the text we parse)."""
    items: list[Item] = []
    for kind, paths in (("valid", valid_paths()), ("invalid", invalid_paths())):
        for path in paths:
            text = path.read_text(encoding="utf-8")
            doc = _parse(text)
            items.append(Item(path.stem, kind, group_of(doc), path, text, doc))
    sources = {p.stem: group_of(_parse(p.read_text(encoding="utf-8"))) for p in valid_paths()}
    for i, (name, doc) in enumerate(corpus_module().mutated(valid_paths())):
        text = json.dumps(doc, indent=2)
        path = mutation_dir / f"{i:04d}-{name}.json"
        path.write_text(text, encoding="utf-8")
        items.append(Item(name, "mutated", sources[name.split("--", 1)[0]], path, text, doc))
    return items


def conformance_dir(target: Path) -> Path:
    """A folder holding only our StructureDefinition, ValueSet and CodeSystem JSON (HAPI's --ig)."""
    from service.resources import profiles_dir
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(profiles_dir().glob("*.json")):
        doc = _parse(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("resourceType") in ("StructureDefinition", "ValueSet", "CodeSystem"):
            shutil.copyfile(path, target / path.name)
    return target
