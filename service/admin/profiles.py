"""Our StructureDefinitions for review: element tables from the snapshot, invariants, examples with their
validation outcome, and the IG as a FHIR NPM package."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from service.conformance.ig import pack
from service.fhirjson import Finding
from service.resources import profiles_dir
from service.validation import default_validator

CORE = "http://hl7.org/fhir/"


@dataclass(frozen=True)
class Binding:
    strength: str
    value_set: str
    codes: list[str]            # `system|code "display"` when the value set is ours and lists its codes


@dataclass(frozen=True)
class Element:
    id: str
    path: str
    cardinality: str
    types: list[str]
    binding: Binding | None
    fixed: list[str]            # `fixedUri: "http://…"`, `patternCodeableConcept: {…}`
    must_support: bool
    constrained: bool           # the profile's differential says something about this element
    short: str


@dataclass(frozen=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    path: str
    ours: bool


@dataclass(frozen=True)
class ExampleResult:
    file: str                   # `examples/…json`, relative to profiles/
    expect: str                 # valid | invalid
    errors: int
    warnings: int
    findings: list[Finding]

    @property
    def as_expected(self) -> bool:
        return (self.errors == 0) == (self.expect == "valid")


def structure_definitions() -> list[dict[str, Any]]:
    """Our StructureDefinitions: profiles of resources first, then extensions and types, each by title."""
    found = [r for r in default_validator().defs.own.values() if r.get("resourceType") == "StructureDefinition"]
    return sorted(found, key=lambda r: (r.get("type") == "Extension", r.get("title") or r["id"]))


def structure_definition(sd_id: str) -> dict[str, Any] | None:
    return next((r for r in structure_definitions() if r.get("id") == sd_id), None)


def elements(sd: dict[str, Any]) -> list[Element]:
    constrained = {e["id"] for e in sd.get("differential", {}).get("element", [])}
    return [_element(e, e["id"] in constrained) for e in sd.get("snapshot", {}).get("element", [])]


def _element(e: dict[str, Any], constrained: bool) -> Element:
    fixed = [f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in e.items() if k.startswith(("fixed", "pattern"))]
    cardinality = f"{e.get('min', '?')}..{e.get('max', '?')}"
    return Element(e["id"], e["path"], cardinality, [_type(t) for t in e.get("type", [])],
                   _binding(e.get("binding")), fixed, bool(e.get("mustSupport")), constrained, e.get("short", ""))


FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def _type(t: dict[str, Any]) -> str:
    """`Reference(Patient | Group)`, `CodeableConcept`; an `id`'s FHIRPath System.String shows as its FHIR type."""
    named = [e.get("valueUrl") for e in t.get("extension", []) if e.get("url") == FHIR_TYPE]
    code = str(named[0] if named and named[0] else t.get("code", "")).rsplit("/", 1)[-1]
    targets = [p.rsplit("/", 1)[-1] for p in t.get("targetProfile", []) + t.get("profile", [])]
    return f"{code}({' | '.join(targets)})" if targets else code


def _binding(binding: dict[str, Any] | None) -> Binding | None:
    if not binding:
        return None
    url = binding.get("valueSet", "")
    return Binding(binding.get("strength", "?"), url, value_set_codes(url))


def value_set_codes(url: str) -> list[str]:
    """The codes one of our ValueSets lists by enumeration (core value sets are not expanded here)."""
    vs = default_validator().defs.own.get(url.split("|", 1)[0])
    if not vs or vs.get("resourceType") != "ValueSet":
        return []
    out = []
    for include in vs.get("compose", {}).get("include", []):
        for concept in include.get("concept", []):
            display = f' "{concept["display"]}"' if concept.get("display") else ""
            out.append(f"{include.get('system', '?')}|{concept['code']}{display}")
    return out


def invariants(sd: dict[str, Any]) -> list[Invariant]:
    """Every invariant once (by key), the profile's own first."""
    seen: dict[str, Invariant] = {}
    for e in sd.get("snapshot", {}).get("element", []):
        for c in e.get("constraint", []):
            if c["key"] not in seen:
                ours = not str(c.get("source", "")).startswith(CORE)
                seen[c["key"]] = Invariant(c["key"], c.get("severity", "?"), c.get("human", ""),
                                           c.get("expression", ""), e["path"], ours)
    return sorted(seen.values(), key=lambda i: (not i.ours, i.key))


@cache
def manifest() -> list[dict[str, Any]]:
    doc = json.loads((profiles_dir() / "examples" / "manifest.json").read_text(encoding="utf-8"))
    examples: list[dict[str, Any]] = doc["examples"]
    return examples


def example_entry(file: str) -> dict[str, Any] | None:
    """A manifest entry by its file name; only these may be read (no path from a request reaches the disk)."""
    return next((e for e in manifest() if e["file"] == file), None)


def example_document(entry: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((profiles_dir() / entry["file"]).read_text(encoding="utf-8"))
    return doc


def examples_of(sd: dict[str, Any]) -> list[ExampleResult]:
    """The examples judged by this profile (named in the manifest or in their meta.profile), validated now."""
    out = []
    for entry in manifest():
        doc = example_document(entry)
        profile = entry.get("profile") or next(iter(doc.get("meta", {}).get("profile", [])), None)
        if profile and profile.split("|", 1)[0] == sd["url"]:
            out.append(validate_example(entry, doc))
    return out


def validate_example(entry: dict[str, Any], doc: dict[str, Any]) -> ExampleResult:
    findings = default_validator().validate(doc, entry.get("profile"))
    errors = sum(f.severity in ("error", "fatal") for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    return ExampleResult(entry["file"], entry.get("expect", "valid"), errors, warnings, findings)


def ig_package() -> tuple[str, bytes]:
    """The IG as a FHIR NPM package: its file name and the .tgz bytes."""
    with tempfile.TemporaryDirectory(prefix="kfhir-ig-") as tmp:
        target = pack(profiles_dir(), Path(tmp))
        return target.name, target.read_bytes()
