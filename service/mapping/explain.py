"""A refusal of a record's FHIR form in the record's own terms: which fields made the elements a finding names.

The mapping knows which rule wrote which element (Mapper.origins); a validator finding names an element of the
Bundle (`Bundle.entry[1].resource.code.coding[1]`). The fields behind it are those of the rules that wrote it,
or wrote inside it; for an invariant on a whole resource, those of the rules whose elements its expression
reads (ket-4 reads effectivePeriod: started_at and ended_at). The FHIR path stays with each issue as detail.
"""
from __future__ import annotations

import re
from typing import Any

from service.errors import Issue
from service.fhirjson import Finding
from service.mapping.engine import Mapper, Origin

_ENTRY = re.compile(r"^Bundle\.entry\[(\d+)\]\.resource(?:\.(.*))?$")
_CONSTRAINT = re.compile(r"Constraint failed: ([\w.-]+):")
_STEP = re.compile(r"^([A-Za-z_]\w*)(?:\[(\d+)\])?")


def record_issues(mapper: Mapper, kind: str, record: dict[str, Any], bundle: dict[str, Any],
                  findings: list[Finding]) -> list[Issue]:
    """One issue per record field (and message) behind each error finding, with the finding's FHIR path."""
    origins = mapper.origins(kind, record)
    out: dict[tuple[str, str], Issue] = {}
    for finding in findings:
        if not finding.is_error:
            continue
        for name in _fields(mapper, origins, bundle, finding) or ("$",):
            out.setdefault((name, finding.message), Issue(name, finding.message, fhir_path=finding.expression))
    return list(out.values())


def _fields(mapper: Mapper, origins: dict[str, Origin], bundle: dict[str, Any], finding: Finding) -> tuple[str, ...]:
    match = _ENTRY.match(finding.expression)
    entries = bundle.get("entry") or []
    if match is None or int(match.group(1)) >= len(entries):
        return ()
    entry = entries[int(match.group(1))]
    origin = origins.get(entry.get("fullUrl", ""))
    if origin is None:
        return ()
    at = match.group(2) or ""
    inside = [(leaf, names) for leaf, names in origin.leaves if _within(leaf, at) or _within(at, leaf)]
    key = _CONSTRAINT.search(finding.message)
    if key is not None and len({names for _, names in inside}) > 1:
        expression = _constraint(mapper, origin.structure, key.group(1))
        if expression:
            read = [(leaf, names) for leaf, names in inside
                    if _reads(expression, entry["resource"], at, leaf)]
            inside = read or inside
    return tuple(dict.fromkeys(name for _, names in inside for name in names))


def _within(path: str, ancestor: str) -> bool:
    return not ancestor or path == ancestor or path.startswith((ancestor + ".", ancestor + "["))


def _reads(expression: str, resource: dict[str, Any], at: str, leaf: str) -> bool:
    """Does the invariant's expression read the element this leaf is in (by name, or an extension by URL)?"""
    rest = leaf[len(at):].lstrip(".") if _within(leaf, at) else ""
    step = _STEP.match(rest)
    if step is None:
        return True
    name = step.group(1)
    if name in ("extension", "modifierExtension") and step.group(2) is not None:
        node = _at(resource, at)
        items = node.get(name) if isinstance(node, dict) else None
        url = items[int(step.group(2))].get("url") if isinstance(items, list) else None
        return isinstance(url, str) and url in expression
    # a choice element is read by its stem too: effectivePeriod as effective.ofType(Period)
    stem = re.sub(r"[A-Z]\w*$", "", name) or name
    code = re.sub(r"'[^']*'", "''", expression)  # names, not the words inside string literals (URLs, codes)
    return any(re.search(rf"\b{re.escape(n)}\b", code) for n in {name, stem})


def _at(resource: dict[str, Any], path: str) -> Any:
    node: Any = resource
    for part in filter(None, path.split(".")):
        step = _STEP.match(part)
        if step is None or not isinstance(node, dict):
            return None
        node = node.get(step.group(1))
        if step.group(2) is not None:
            node = node[int(step.group(2))] if isinstance(node, list) and int(step.group(2)) < len(node) else None
    return node


def _constraint(mapper: Mapper, structure: str, key: str) -> str | None:
    for element in mapper.paths.elements(structure).values():
        for constraint in element.get("constraint", []):
            if constraint.get("key") == key:
                return str(constraint.get("expression", ""))
    return None
