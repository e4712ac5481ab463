"""A mapping specification for review: its rules grouped by resource, and a worked example."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.demo import demo_records
from service.domain.intake import Intake
from service.mapping import default_mapper
from service.mapping.review import Row, rows
from service.mapping.spec import Spec


@dataclass(frozen=True)
class Group:
    resource: str
    rows: list[Row]


@dataclass(frozen=True)
class Example:
    record: str     # JSON text of the record (its canonical form, as stored)
    bundle: str     # JSON text of the transaction Bundle it maps to


def specs() -> list[Spec]:
    return list(default_mapper().specs.values())


def spec(kind: str) -> Spec | None:
    return default_mapper().specs.get(kind)


def groups(spec: Spec) -> list[Group]:
    """The rules in specification order, one group per produced resource (role)."""
    out: list[Group] = []
    for row in rows(spec, default_mapper().concepts):
        if not out or out[-1].resource != row.resource:
            out.append(Group(row.resource, []))
        out[-1].rows.append(row)
    return out


def example(kind: str) -> Example | None:
    """The first demo record of `kind` and the Bundle the engine makes of it (demo data, never test data)."""
    record = next((payload for k, payload in demo_records() if k == kind), None)
    if record is None:
        return None
    content = Intake(None).check(kind, record).new.content
    bundle = default_mapper().to_bundle(kind, content)
    return Example(_pretty(content), _pretty(bundle))


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)
