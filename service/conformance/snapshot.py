"""Snapshot generation: a profile's differential applied to its base definition's snapshot.

Covers what constraint profiles need: narrowing cardinality, types, bindings, fixed/pattern
values, added invariants, slicing with new slices (copied from the sliced element), and
constraints inside complex datatypes (the datatype's elements are unfolded under the element).
"""
from __future__ import annotations

import copy
import re
from typing import Any

from service.conformance.definitions import Definitions
from service.conformance.package import Resource

Element = dict[str, Any]
#: Keys that describe where an element sits, not what it constrains.
POSITION = {"id", "path"}
VALUE_KEY = re.compile(r"^(fixed|pattern)[A-Z]")


class SnapshotError(ValueError):
    """The differential cannot be applied to the base (unknown element, widened cardinality, …)."""


def generate(profile: Resource, defs: Definitions) -> list[Element]:
    """The complete snapshot element list of `profile`, built from its base and differential."""
    base = defs.structure(profile["baseDefinition"])
    base_elements = base["snapshot"]["element"] if "snapshot" in base else generate(base, defs)
    work = _Working([copy.deepcopy(e) for e in base_elements], defs, profile["url"])
    for diff in profile["differential"]["element"]:
        work.apply(diff)
    return work.elements


def with_snapshot(profile: Resource, defs: Definitions) -> Resource:
    """`profile` with its snapshot regenerated (key order: snapshot after differential)."""
    out = {k: v for k, v in profile.items() if k != "snapshot"}
    out["snapshot"] = {"element": generate(profile, defs)}
    return out


def path_of(element_id: str) -> str:
    """`Observation.component:systolic.code` → `Observation.component.code`."""
    return ".".join(part.split(":", 1)[0] for part in _segments(element_id))


def _segments(element_id: str) -> list[str]:
    return element_id.split(".")


class _Working:
    def __init__(self, elements: list[Element], defs: Definitions, source: str) -> None:
        self.elements = elements
        self.defs = defs
        self.source = source
        self._renamed: dict[str, list[dict[str, Any]]] = {}

    def apply(self, diff: Element) -> None:
        element_id = diff.get("id") or diff["path"]
        if path_of(element_id) != diff["path"]:
            raise SnapshotError(f"{element_id}: id and path {diff['path']!r} disagree")
        element_id = self._choice_ids(element_id)
        _merge(self.elements[self.ensure(element_id)], diff, self.source, element_id)

    def _choice_ids(self, element_id: str) -> str:
        """R4 writes a choice narrowed to one type by its type name (`valueQuantity`); the snapshot
        holds it as the type slice `value[x]:valueQuantity`."""
        done: list[str] = []
        for segment in _segments(element_id):
            if done and ":" not in segment and self.find(".".join([*done, segment])) is None:
                parent = ".".join(done)
                self.ensure(parent)
                for element in self._children(parent):
                    stem = element["id"].rsplit(".", 1)[-1]
                    narrowed = _choice_type(element, stem[:-3], segment) if stem.endswith("[x]") else None
                    if narrowed is not None:
                        self._narrow_choice(element, narrowed)
                        segment = f"{stem}:{segment}"
                        break
            done.append(segment)
        return ".".join(done)

    def _narrow_choice(self, choice: Element, kind: dict[str, Any]) -> None:
        """Naming a choice by one type allows that type (and any other so named) only."""
        renamed = self._renamed.setdefault(choice["id"], [])
        if kind["code"] not in [k["code"] for k in renamed]:
            renamed.append(kind)
        choice["type"] = copy.deepcopy(renamed)

    def _children(self, parent_id: str) -> list[Element]:
        depth = parent_id.count(".") + 1
        return [e for e in self.elements if e["id"].startswith(parent_id + ".") and e["id"].count(".") == depth]

    # --- finding and creating elements ----------------------------------------------------

    def find(self, element_id: str) -> int | None:
        return next((i for i, e in enumerate(self.elements) if e["id"] == element_id), None)

    def ensure(self, element_id: str) -> int:
        found = self.find(element_id)
        if found is not None:
            return found
        parent_id, _, last = element_id.rpartition(".")
        if not parent_id:
            raise SnapshotError(f"{element_id}: not an element of the base definition")
        if ":" in last:
            return self._add_slice(parent_id, *last.split(":", 1))
        self._unfold(self.ensure(parent_id))
        found = self.find(element_id)
        if found is None:
            raise SnapshotError(f"{element_id}: not an element of the base definition")
        return found

    def _family_end(self, element_id: str) -> int:
        """Index after the element, its descendants and its slices with their descendants."""
        last = self.ensure(element_id)
        for i in range(last + 1, len(self.elements)):
            other = self.elements[i]["id"]
            if other.startswith((element_id + ".", element_id + ":")):
                last = i
        return last + 1

    def _add_slice(self, parent_id: str, name: str, slice_name: str) -> int:
        sliced_id = f"{parent_id}.{name}"
        start = self.ensure(sliced_id)
        sliced = self.elements[start]
        narrowed = _choice_type(sliced, name[:-3], slice_name) if name.endswith("[x]") else None
        if narrowed is not None and "slicing" not in sliced:
            sliced["slicing"] = {"discriminator": [{"type": "type", "path": "$this"}], "ordered": False,
                                 "rules": "closed"}
        if "slicing" not in sliced and sliced["path"].endswith(("extension", "modifierExtension")):
            sliced["slicing"] = {"discriminator": [{"type": "value", "path": "url"}], "ordered": False,
                                 "rules": "open"}
        if "slicing" not in sliced:
            raise SnapshotError(f"{sliced_id}:{slice_name}: {sliced_id} is not sliced (add slicing to it first)")
        template = [self.elements[start]] + [e for e in self.elements[start + 1:]
                                             if e["id"].startswith(sliced_id + ".")]
        new_id = f"{sliced_id}:{slice_name}"
        copies = []
        for element in template:
            clone = copy.deepcopy(element)
            clone["id"] = new_id + element["id"][len(sliced_id):]
            copies.append(clone)
        copies[0].pop("slicing", None)
        copies[0]["sliceName"] = slice_name
        copies[0]["min"] = 0  # each slice states its own lower bound
        if narrowed is not None:
            copies[0]["type"] = [narrowed]
        at = self._family_end(sliced_id)
        self.elements[at:at] = copies
        return at

    def _unfold(self, index: int) -> None:
        """Insert the children of a complex-typed element from its datatype's snapshot."""
        element = self.elements[index]
        if index + 1 < len(self.elements) and self.elements[index + 1]["id"].startswith(element["id"] + "."):
            return  # already has its children
        types = element.get("type", [])
        if len(types) != 1:
            raise SnapshotError(f"{element['id']}: constrain children only of an element with one type")
        kind = types[0]
        datatype = self.defs.structure(kind["profile"][0] if kind.get("profile") else kind["code"])
        root = datatype["type"]
        if kind.get("profile"):  # as the IG publisher does: a profiled type's invariants join the element's
            present = {c["key"] for c in element.get("constraint", [])}
            added = [c for c in datatype["snapshot"]["element"][0].get("constraint", []) if c["key"] not in present]
            element.setdefault("constraint", []).extend(copy.deepcopy(added))
        children = []
        for child in datatype["snapshot"]["element"][1:]:
            clone = copy.deepcopy(child)
            clone["id"] = element["id"] + child["id"][len(root):]
            clone["path"] = element["path"] + child["path"][len(root):]
            children.append(clone)
        self.elements[index + 1:index + 1] = children


def _choice_type(element: Element, stem: str, name: str) -> dict[str, Any] | None:
    """The type of choice element `stem[x]` that `name` (like `valueQuantity`) names, if any."""
    for kind in element.get("type", []):
        if name == stem + kind["code"][0].upper() + kind["code"][1:]:
            found: dict[str, Any] = copy.deepcopy(kind)
            return found
    return None


def _merge(target: Element, diff: Element, source: str, where: str) -> None:
    for key, value in diff.items():
        if key in POSITION:
            continue
        if key == "min" and value < target.get("min", 0):
            raise SnapshotError(f"{where}: min {value} is below the base's {target.get('min')}")
        if key == "max" and _cardinality(value) > _cardinality(target.get("max", "*")):
            raise SnapshotError(f"{where}: max {value} is above the base's {target.get('max')}")
        if key == "type":
            allowed = {t["code"] for t in target.get("type", [])}
            unknown = {t["code"] for t in value} - allowed
            if allowed and unknown:
                raise SnapshotError(f"{where}: type {sorted(unknown)} is not among the base's {sorted(allowed)}")
        if key == "constraint":
            _add_constraints(target, value, source)
        elif VALUE_KEY.match(key):
            for old in [k for k in target if VALUE_KEY.match(k)]:
                del target[old]
            target[key] = copy.deepcopy(value)
        elif key in ("condition", "mapping", "alias"):
            target[key] = target.get(key, []) + [v for v in copy.deepcopy(value) if v not in target.get(key, [])]
        else:
            target[key] = copy.deepcopy(value)


def _add_constraints(target: Element, constraints: list[dict[str, Any]], source: str) -> None:
    existing = target.setdefault("constraint", [])
    for constraint in constraints:
        added = {**copy.deepcopy(constraint), "source": constraint.get("source", source)}
        keys = [c["key"] for c in existing]
        if added["key"] in keys:
            existing[keys.index(added["key"])] = added
        else:
            existing.append(added)


def _cardinality(value: str | int) -> float:
    return float("inf") if value == "*" else int(value)
