"""Line and column of each element in JSON text, keyed by the FHIRPath the findings use.

Computed only for an input that has findings: the clean path never scans the text twice."""
from __future__ import annotations

import bisect
import dataclasses
import re

from service.fhirjson import Finding

TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')
STEP = re.compile(r"(\.[^.\[]+|\[\d+\])$")


def positions(text: str, root: str) -> dict[str, tuple[int, int]]:
    """FHIRPath (`Patient.name[0].given[1]`) → (line, column), both from 1, where the value starts."""
    lines = [0] + [m.end() for m in re.finditer(r"\n", text)]
    found: dict[str, tuple[int, int]] = {}
    stack: list[tuple[str, str, int]] = []  # (path, "{" or "[", next array index)
    key: str | None = None
    for match in TOKEN.finditer(text):
        lexeme, at = match.group(), match.start()
        if lexeme in {",", ":", "}", "]"}:
            if lexeme in {"}", "]"}:
                stack.pop()
            continue
        if stack and stack[-1][1] == "{" and key is None:
            key = _unquote(lexeme)  # a property name; its value follows the colon
            continue
        path = _path_of(stack, key, root)
        key = None
        line = bisect.bisect_right(lines, at)
        found.setdefault(path, (line, at - lines[line - 1] + 1))
        if lexeme in {"{", "["}:
            stack.append((path, lexeme, 0))
    return found


def _path_of(stack: list[tuple[str, str, int]], key: str | None, root: str) -> str:
    """The path of the value starting now; an array item takes the next index."""
    if not stack:
        return root
    path, kind, index = stack[-1]
    if kind == "[":
        stack[-1] = (path, kind, index + 1)
        return f"{path}[{index}]"
    return f"{path}.{key}"


def _unquote(lexeme: str) -> str:
    return lexeme[1:-1] if lexeme.startswith('"') else lexeme


def root_name(resource: object) -> str:
    """The first step of the findings' paths, as the validator names it."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return kind if isinstance(kind, str) and kind.isidentifier() else "Resource"


def locate(findings: list[Finding], text: str, root: str) -> list[Finding]:
    """The findings with line and column of their element, or of its nearest ancestor present in the text
    (a missing element is reported where its parent is, as the HL7 validator does)."""
    if not findings:
        return findings
    where = positions(text, root)
    return [dataclasses.replace(f, line=pos[0], column=pos[1]) if (pos := _nearest(where, f.expression)) else f
            for f in findings]


def _nearest(where: dict[str, tuple[int, int]], expression: str) -> tuple[int, int] | None:
    path = expression.replace("[x]", "")
    while path:
        if path in where:
            return where[path]
        shorter = STEP.sub("", path)
        if shorter == path:
            return None
        path = shorter
    return None
