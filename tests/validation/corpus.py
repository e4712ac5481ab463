"""Corpora for the agreement test: the official R4 examples, an R4 IG's examples (IPS), mutations of both
and of ours, and our own examples."""
from __future__ import annotations

import copy
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Resource = dict[str, Any]
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of `node` and everything under it, parents first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, (*path, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def _first(doc: Resource, test: Callable[[tuple[Any, ...], Any], bool]) -> tuple[Any, ...] | None:
    return next((p for p, v in walk(doc) if p and test(p, v)), None)


def _replace_first(test: Callable[[tuple[Any, ...], Any], bool], value: Any) -> Callable[[Resource], bool]:
    def mutate(doc: Resource) -> bool:
        path = _first(doc, test)
        if path is None:
            return False
        _set(doc, path, copy.deepcopy(value))
        return True
    return mutate


def _drop_key(key: str) -> Callable[[Resource], bool]:
    def mutate(doc: Resource) -> bool:
        return doc.pop(key, None) is not None
    return mutate


def _add(key: str, value: Any) -> Callable[[Resource], bool]:
    def mutate(doc: Resource) -> bool:
        doc[key] = copy.deepcopy(value)
        return True
    return mutate


def _is_code_of_coding(p: tuple[Any, ...], v: Any) -> bool:
    return p[-1] == "code" and isinstance(v, str) and len(p) >= 2 and "coding" in p


MUTATIONS: dict[str, Callable[[Resource], bool]] = {
    "wrong-code": _replace_first(_is_code_of_coding, "not-a-real-code"),
    "wrong-system": _replace_first(lambda p, v: p[-1] == "system" and "coding" in p, "http://example.org/unknown-system"),
    "wrong-unit": _replace_first(lambda p, v: p[-1] == "code" and "coding" not in p and isinstance(v, str)
                                 and v in ("mg", "mm[Hg]", "/min", "%", "mg/kg", "mL/h", "kg"), "g"),
    "bad-date": _replace_first(lambda p, v: isinstance(v, str) and bool(DATE.match(v)), "2026-02-30"),
    "bad-datetime-hour": _replace_first(lambda p, v: isinstance(v, str) and "T" in v and bool(DATE.match(v)),
                                        "2026-03-02T25:00:00Z"),
    "reference-no-id": _replace_first(lambda p, v: p[-1] == "reference", "Patient/"),
    "reference-unknown-type": _replace_first(lambda p, v: p[-1] == "reference", "Unknowntype/1"),
    "reference-wrong-type": _replace_first(lambda p, v: p[-1] == "reference", "Device/x1"),
    "unknown-element": _add("colour", "red"),
    "unknown-nested": _replace_first(lambda p, v: len(p) == 1 and isinstance(v, dict) and p[0] != "meta",
                                     {"colour": "red"}),
    "string-for-object": _replace_first(lambda p, v: len(p) == 1 and isinstance(v, dict), "text"),
    "object-for-string": _replace_first(lambda p, v: len(p) == 1 and isinstance(v, str) and p[0] not in
                                        ("resourceType", "id"), {"value": "x"}),
    "number-for-string": _replace_first(lambda p, v: len(p) >= 2 and isinstance(v, str) and p[-1] == "display", 42),
    "empty-string": _replace_first(lambda p, v: isinstance(v, str) and p[-1] in ("display", "text", "family"), ""),
    "array-as-single": _replace_first(lambda p, v: len(p) == 1 and isinstance(v, list) and v, None),
    "extension-without-value": _add("extension", [{"url": "http://example.org/fhir/StructureDefinition/x"}]),
    "extension-value-and-children": _add("extension", [{"url": "http://example.org/fhir/StructureDefinition/x",
                                                        "valueString": "a",
                                                        "extension": [{"url": "y", "valueString": "b"}]}]),
    "drop-status": _drop_key("status"),
    "drop-subject": _drop_key("subject"),
    "drop-code": _drop_key("code"),
    "bad-id": _add("id", "has spaces!"),
    # Changes that keep the resource valid: both validators must still accept it.
    "keep-add-language": _add("language", "en"),
    "keep-drop-text": _drop_key("text"),
    "keep-add-implicit-rules-free-note": _replace_first(lambda p, v: p == ("id",), "renamed-1"),
}


def _array_as_single(doc: Resource) -> bool:
    path = _first(doc, lambda p, v: len(p) == 1 and isinstance(v, list) and bool(v) and p[0] not in ("contained",))
    if path is None:
        return False
    _set(doc, path, doc[path[0]][0])
    return True


MUTATIONS["array-as-single"] = _array_as_single


def mutated(examples: list[Path]) -> Iterator[tuple[str, Resource]]:
    """(name, resource) for every mutation that applies to every example, in a stable order."""
    for path in examples:
        base = json.loads(path.read_text())
        for name, mutate in MUTATIONS.items():
            doc = copy.deepcopy(base)
            if mutate(doc) and doc != base:
                yield f"{path.stem}--{name}", doc


def official_sample(tgz: Path, count: int = 300, max_bytes: int = 60_000) -> Iterator[tuple[str, Resource]]:
    """Every n-th resource of the official R4 examples (sorted by name, small files only).

    StructureDefinitions are left out: validating one makes HAPI 8.8.0 regenerate its snapshot, which
    fails offline with "Unable to resolve package id hl7.fhir.r4.core#null", an error about the
    harness's setting, not about the resource."""
    with tarfile.open(tgz) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".json")
                          and "/package.json" not in m.name and ".index" not in m.name and m.size <= max_bytes
                          and not Path(m.name).name.startswith("StructureDefinition-")),
                         key=lambda m: m.name)
        step = max(1, len(members) // count)
        for member in members[::step][:count]:
            extracted = tar.extractfile(member)
            if extracted is None:
                continue
            doc = json.loads(extracted.read())
            if isinstance(doc, dict) and "resourceType" in doc:
                yield Path(member.name).stem, doc


#: What of the official package is left out, and why (the agreement test's docstring repeats it):
#: StructureDefinitions are R4 itself, the definitions both validators judge by; validating one makes HAPI 8.8.0
#: regenerate its snapshot, which fails offline ("Unable to resolve package id hl7.fhir.r4.core#null"), an error
#: about the harness, not the resource. Files over 1 MB are the specification's own definition Bundles and its
#: largest code systems (17 files): minutes each in either validator, nothing the rest does not exercise.
OFFICIAL_MAX_BYTES = 1_000_000


def official_all(tgz: Path) -> Iterator[tuple[str, Resource]]:
    """Every official R4 example but the StructureDefinitions and the files over 1 MB (see above)."""
    with tarfile.open(tgz) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = Path(member.name).name
            if not member.isfile() or not name.endswith(".json") or name == "package.json" or name.startswith(".") \
                    or name.startswith("StructureDefinition-") or member.size > OFFICIAL_MAX_BYTES:
                continue
            extracted = tar.extractfile(member)
            doc = json.loads(extracted.read()) if extracted else None
            if isinstance(doc, dict) and "resourceType" in doc:
                yield Path(member.name).stem, doc


def package_examples(tgz: Path) -> Iterator[tuple[str, Resource]]:
    """The examples an IG package ships (package/example/*.json)."""
    with tarfile.open(tgz) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.startswith("package/example/") and member.name.endswith(".json"):
                extracted = tar.extractfile(member)
                doc = json.loads(extracted.read()) if extracted else None
                if isinstance(doc, dict) and "resourceType" in doc:
                    yield Path(member.name).stem, doc


def mutated_docs(docs: list[tuple[str, Resource]], every: int = 1) -> Iterator[tuple[str, Resource]]:
    """Every mutation that applies, of every `every`-th document."""
    for name, base in docs[::every]:
        for label, mutate in MUTATIONS.items():
            doc = copy.deepcopy(base)
            if mutate(doc) and doc != base:
                yield f"{name}--{label}", doc
