"""A mapping specification for review: its rules grouped by resource, and a worked example."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from service.admin.jsonview import View, lines
from service.conformance.definitions import load
from service.demo import demo_records
from service.domain.intake import Intake
from service.mapping import Mapper, default_mapper
from service.mapping.review import Row, rows
from service.mapping.spec import Spec


@dataclass(frozen=True)
class Group:
    resource: str
    rows: list[Row]
    first: int          # rows before this group: its rules are numbered from first + 1


@dataclass(frozen=True)
class Example:
    record: str                 # JSON text of the record (its canonical form, as stored)
    bundle: View                # the transaction Bundle it maps to, by line; flagged: line → `R3 R4`
    produced: list[list[str]]   # per rule, in the order of the rules table: the elements it wrote


def specs() -> list[Spec]:
    return list(default_mapper().specs.values())


def spec(kind: str) -> Spec | None:
    return default_mapper().specs.get(kind)


def groups(spec: Spec) -> list[Group]:
    """The rules in specification order, one group per produced resource (role)."""
    out: list[Group] = []
    for number, row in enumerate(rows(spec, default_mapper().concepts)):
        if not out or out[-1].resource != row.resource:
            out.append(Group(row.resource, [], number))
        out[-1].rows.append(row)
    return out


@cache
def example(kind: str) -> Example | None:
    """The first demo record of `kind` (demo data, never test data), the Bundle the engine makes of it,
    and which elements each rule wrote."""
    record = next((payload for k, payload in demo_records() if k == kind), None)
    if record is None:
        return None
    content = Intake(None).check(kind, record).new.content
    bundle = default_mapper().to_bundle(kind, content)
    produced = trace(kind, content, bundle)
    marks: dict[str, str] = {}
    for number, paths in enumerate(produced, start=1):
        for path in paths:
            marks[path] = f"{marks[path]} R{number}" if path in marks else f"R{number}"
    shown = lines(bundle, "Bundle")
    anchors = [next(iter(paths), None) for paths in produced]
    return Example(_pretty(content), View(shown, anchors, marks), produced)


def trace(kind: str, record: dict[str, Any], bundle: dict[str, Any]) -> list[list[str]]:
    """Per rule: the Bundle elements it wrote, found by mapping the record again without that rule.

    Done on a private Mapper, so the one that serves requests is never changed.
    """
    mapper = default_mapper()
    private = Mapper(dict(mapper.specs), load())
    spec = mapper.specs[kind]
    out: list[list[str]] = []
    for r, role in enumerate(spec.roles):
        for k in range(len(role.rules)):
            roles = list(spec.roles)
            roles[r] = dataclasses.replace(role, rules=role.rules[:k] + role.rules[k + 1:])
            private.specs[kind] = dataclasses.replace(spec, roles=tuple(roles))
            found: list[str] = []
            _differences(bundle, private.to_bundle(kind, record), "Bundle", found)
            out.append(found)
    return out


def _differences(full: Any, reduced: Any, path: str, out: list[str]) -> None:
    """The paths of `full` that `reduced` lacks or holds otherwise (list items matched by value)."""
    if isinstance(full, dict) and isinstance(reduced, dict):
        for key, value in full.items():
            if key in reduced:
                _differences(value, reduced[key], f"{path}.{key}", out)
            else:
                out.append(f"{path}.{key}")
    elif isinstance(full, list) and isinstance(reduced, list):
        if len(full) == len(reduced):
            for i, (a, b) in enumerate(zip(full, reduced, strict=True)):
                _differences(a, b, f"{path}[{i}]", out)
        else:
            out += [f"{path}[{i}]" for i, item in enumerate(full) if item not in reduced]
    elif full != reduced:
        out.append(path)


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)
