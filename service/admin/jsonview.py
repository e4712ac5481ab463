"""JSON shown line by line, each line named by its FHIRPath (`Bundle.entry[0].resource.status`), so a
validation issue can link to, and highlight, the element it is about."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from service.fhirjson import SEVERITY_ORDER, Finding


@dataclass(frozen=True)
class Line:
    depth: int
    text: str           # `"status": "completed",` or `"dosage": {` or `]`
    path: str           # the FHIRPath of the element the line opens or holds; "" on closing lines


@dataclass(frozen=True)
class View:
    """A document by line, and per finding the line it links to; flagged: line path → worst severity there."""

    lines: list[Line]
    anchors: list[str | None]
    flagged: dict[str, str] = field(default_factory=dict)


def annotate(doc: Any, findings: list[Finding]) -> View:
    """Lay out `doc` and point every finding at its element (or its nearest shown ancestor)."""
    shown = lines(doc, root_name(doc))
    paths = {line.path for line in shown if line.path}
    view = View(shown, [anchor(f.expression, paths) for f in findings])
    for finding, target in zip(findings, view.anchors, strict=True):
        worst = view.flagged.get(target or "", "information")
        if target and SEVERITY_ORDER.get(finding.severity, 9) <= SEVERITY_ORDER[worst]:
            view.flagged[target] = finding.severity
    return view


def lines(doc: Any, root: str) -> list[Line]:
    out: list[Line] = []
    _walk(doc, root, "", 0, "", out)
    return out


def _walk(value: Any, path: str, label: str, depth: int, comma: str, out: list[Line]) -> None:
    if isinstance(value, dict) and value:
        out.append(Line(depth, label + "{", path))
        for i, (key, item) in enumerate(value.items()):
            _walk(item, f"{path}.{key}", json.dumps(key) + ": ", depth + 1, "," if i < len(value) - 1 else "", out)
        out.append(Line(depth, "}" + comma, ""))
    elif isinstance(value, list) and value:
        out.append(Line(depth, label + "[", path))
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", "", depth + 1, "," if i < len(value) - 1 else "", out)
        out.append(Line(depth, "]" + comma, ""))
    else:
        out.append(Line(depth, label + json.dumps(value, ensure_ascii=False) + comma, path))


def anchor(expression: str, paths: set[str]) -> str | None:
    """The line an issue's FHIRPath points at: itself, else its nearest shown ancestor."""
    current = expression
    while current:
        if current in paths:
            return current
        cut = max(current.rfind("."), current.rfind("["))
        current = current[:cut] if cut > 0 else ""
    return None


def root_name(doc: Any) -> str:
    kind = doc.get("resourceType") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) and kind.isidentifier() else "$this"
