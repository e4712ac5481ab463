"""Validation plans: a StructureDefinition snapshot compiled once into a tree of element rules."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

VALUE_KEY = re.compile(r"^(fixed|pattern)([A-Z].*)$")


class UnknownProfile(LookupError):
    """A profile URL that no loaded StructureDefinition has (or none whose snapshot could be had)."""


@dataclass(frozen=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()

    @property
    def json_suffix(self) -> str:
        """How a choice element names this type: value[x] + Quantity → valueQuantity."""
        return self.code[0].upper() + self.code[1:]


@dataclass(frozen=True)
class Constraint:
    key: str
    severity: str
    human: str
    expression: str
    source: str | None


@dataclass
class ElementPlan:
    id: str
    path: str
    name: str  # the JSON name stem, `value` for value[x]
    min: int
    max: int | None  # None = unbounded
    is_array: bool
    types: tuple[TypeRef, ...]
    choice: bool
    fixed: tuple[str, Any] | None = None
    pattern: tuple[str, Any] | None = None
    binding: dict[str, Any] | None = None
    constraints: tuple[Constraint, ...] = ()
    slicing: dict[str, Any] | None = None
    slice_name: str | None = None
    content_reference: str | None = None
    must_support: bool = False
    children: list[ElementPlan] = field(default_factory=list)
    slices: list[ElementPlan] = field(default_factory=list)

    def json_names(self) -> dict[str, TypeRef | None]:
        """JSON property names this element may appear under, with the type each implies."""
        if not self.choice:
            return {self.name: self.types[0] if len(self.types) == 1 else None}
        return {self.name + t.json_suffix: t for t in self.types}


@dataclass
class StructurePlan:
    url: str
    type: str
    root: ElementPlan


def compile_structure(sd: dict[str, Any]) -> StructurePlan:
    """Turn a snapshot into a plan: children under parents, slices under the element they slice."""
    elements = sd["snapshot"]["element"]
    nodes: dict[str, ElementPlan] = {}
    root: ElementPlan | None = None
    is_resource = sd.get("kind") == "resource"
    for element in elements:
        node = _element(element, is_resource)
        nodes[node.id] = node
        parent_id, _, last = node.id.rpartition(".")
        if root is None:
            root = node
        elif ":" in last and f"{parent_id}.{last.split(':', 1)[0]}" in nodes:
            nodes[f"{parent_id}.{last.split(':', 1)[0]}"].slices.append(node)
        elif ":" in last:
            # A slice whose unsliced element the snapshot leaves out (R4's familymemberhistory-genetic, catalog):
            # it stands for the element itself, and its children hang under its own id.
            nodes[f"{parent_id}.{last.split(':', 1)[0]}"] = node
            node.slice_name = None
            nodes[parent_id].children.append(node)
        else:
            nodes[parent_id].children.append(node)
    assert root is not None  # noqa: S101 - a snapshot always has its root element
    return StructurePlan(sd["url"], sd["type"], root)


def _element(e: dict[str, Any], is_resource: bool) -> ElementPlan:
    last = e["path"].rsplit(".", 1)[-1]
    choice = last.endswith("[x]")
    base_max = (e.get("base") or {}).get("max", e.get("max", "1"))
    fixed = pattern = None
    for key, value in e.items():
        match = VALUE_KEY.match(key)
        if match and match.group(1) == "fixed":
            fixed = (key, value)
        elif match:
            pattern = (key, value)
    return ElementPlan(
        id=e["id"], path=e["path"], name=last[:-3] if choice else last,
        min=e.get("min", 0), max=None if e.get("max", "*") == "*" else int(e["max"]),
        is_array=base_max != "1" and base_max != "0",
        types=tuple(TypeRef(_type_code(e, t, is_resource), tuple(t.get("profile", [])),
                            tuple(t.get("targetProfile", []))) for t in e.get("type", [])),
        choice=choice, fixed=fixed, pattern=pattern, binding=e.get("binding"),
        constraints=tuple(Constraint(c["key"], c["severity"], c.get("human", ""), c.get("expression", ""),
                                     c.get("source")) for c in e.get("constraint", []) if c.get("expression")),
        slicing=e.get("slicing"), slice_name=e.get("sliceName"),
        content_reference=e.get("contentReference"), must_support=bool(e.get("mustSupport")),
    )


FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def _type_code(element: dict[str, Any], kind: dict[str, Any], is_resource: bool) -> str:
    """R4 snapshots type `id` elements and primitive values as System.String with the FHIR type in an
    extension; a resource's own id is an `id` (R4 §2.6.2) although its snapshot says string."""
    code: str = kind["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        if is_resource and element["path"].count(".") == 1 and element["path"].endswith(".id"):
            return "id"
        for ext in kind.get("extension", []):
            if ext.get("url") == FHIR_TYPE:
                return str(ext["valueUrl"])
    return code
