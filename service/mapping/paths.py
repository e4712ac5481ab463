"""FHIR element paths in a profile's own terms, compiled against its snapshot.

A mapping rule names its target the way the profile does: `extension:monitoringMinutes.valueInteger`,
`component:systolic.valueQuantity`, `dosage.route`. Compiling such a path against the snapshot
tells, for every step, whether the JSON holds an array there and, for a slice, what an item of
that slice must contain (an extension's `url`, the pattern on a discriminating `code`). With that
one compiled path both directions work: `put` builds the element, `get` finds it again.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from service.conformance.definitions import Definitions
from service.conformance.profiles import STRUCTURES
from service.conformance.snapshot import with_snapshot
from service.validation.patterns import pattern_test

Json = Any
_VALUE_KEY = re.compile(r"^(fixed|pattern)([A-Z]\w*)$")
_BY_URL = re.compile(r"^(extension|modifierExtension)\((.+)\)$")


class PathError(ValueError):
    """A mapping names an element its profile does not have."""


@dataclass(frozen=True)
class Step:
    name: str                     # the JSON property (`valueQuantity`, `component`)
    array: bool                   # the property holds a JSON array
    template: dict[str, Any] | None  # what an item of the named slice must contain
    #: fhirjson.matches_pattern(item, template) made once: put() looks for the slice's item (~25 times a record)
    holds: Callable[[Any], bool] | None = field(init=False, repr=False, compare=False)
    #: a new item of the slice: the template cloned (cloner)
    fresh: Callable[[], dict[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "holds", None if self.template is None else pattern_test(self.template))
        object.__setattr__(self, "fresh", dict if not self.template else cloner(self.template))


@dataclass(frozen=True)
class ElementPath:
    text: str
    steps: tuple[Step, ...]
    #: the steps down to the last one's parent: put() runs ~200 times a record
    _head: tuple[Step, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_head", self.steps[:-1])

    def put(self, resource: dict[str, Any], value: Json) -> None:
        """Set the element to `value`; at a repeating last step, append (a list extends)."""
        node = resource
        for step in self._head:
            node = _descend(node, step)
        last = self.steps[-1]
        if not last.array:
            if isinstance(value, dict) and isinstance(node.get(last.name), dict):
                _merge(node[last.name], value)  # two rules fill one element (event coding + text)
            else:
                node[last.name] = value
            return
        items = node.setdefault(last.name, [])
        for item in value if isinstance(value, list) else [value]:
            if last.template is not None and isinstance(item, dict):
                item = _merge(last.fresh(), item)
            if not (isinstance(item, dict) and item in items):  # the same coding produced twice is one coding
                items.append(item)

    def get(self, resource: dict[str, Any]) -> Json:
        """The element's value (a list at a repeating last step), or None when absent."""
        node: Json = resource
        for step in self.steps[:-1]:
            node = _find(node, step)
            if node is None:
                return None
        last = self.steps[-1]
        found = node.get(last.name) if isinstance(node, dict) else None
        holds = last.holds
        if last.array and isinstance(found, list) and holds is not None:
            found = [item for item in found if holds(item)] or None
        return found

    def put_each(self, resource: dict[str, Any], values: list[Json]) -> None:
        """Each value in an item of its own at the path's last repeating step: one extension per criterion."""
        split = self._last_repeat()
        if split is None or split == len(self.steps) - 1:
            self.put(resource, values)
            return
        head, tail = ElementPath(self.text, self.steps[:split + 1]), ElementPath(self.text, self.steps[split + 1:])
        for value in values:
            item: dict[str, Any] = {}
            tail.put(item, value)
            head.put(resource, item)

    def get_each(self, resource: dict[str, Any]) -> Json:
        """What put_each wrote: the value in every item at the last repeating step (a list), or None."""
        split = self._last_repeat()
        if split is None or split == len(self.steps) - 1:
            return self.get(resource)
        head, tail = ElementPath(self.text, self.steps[:split + 1]), ElementPath(self.text, self.steps[split + 1:])
        items = head.get(resource)
        found = [tail.get(item) for item in items if isinstance(item, dict)] if isinstance(items, list) else []
        return [value for value in found if value is not None] or None

    def _last_repeat(self) -> int | None:
        repeating = [i for i, step in enumerate(self.steps) if step.array]
        return repeating[-1] if repeating else None

    @property
    def leaf_template(self) -> dict[str, Any] | None:
        return self.steps[-1].template


def _descend(node: dict[str, Any], step: Step) -> dict[str, Any]:
    if not step.array:
        child = node.setdefault(step.name, {})
        return child  # type: ignore[no-any-return]
    items: list[dict[str, Any]] = node.setdefault(step.name, [])
    holds = step.holds
    for item in items:
        if holds is None or holds(item):
            return item
    created = step.fresh()
    items.append(created)
    return created


def _find(node: Json, step: Step) -> Json:
    if not isinstance(node, dict) or step.name not in node:
        return None
    child = node[step.name]
    if not step.array:
        return child
    holds = step.holds
    for item in child if isinstance(child, list) else []:
        if holds is None or holds(item):
            return item
    return None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = clone(value) if isinstance(value, _NESTED) else value
    return base


def clone(value: Json) -> Json:
    """A copy of JSON data (dicts, lists, scalars): what deepcopy does, without its bookkeeping (a scalar member is
    kept without a call of its own: most are)."""
    if value.__class__ is dict:
        out = value.copy()  # the scalars as they are, in their order; objects and arrays replaced by copies
        for key, member in value.items():
            if member.__class__ is not str and isinstance(member, _NESTED):
                out[key] = clone(member)
        return out
    if isinstance(value, dict):  # another mapping: a plain dict of it
        return {k: clone(v) if isinstance(v, _NESTED) else v for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) if isinstance(v, _NESTED) else v for v in value]
    return value


def cloner(value: Json) -> Callable[[], Json]:
    """clone(value) as a function of nothing, for a value that is never changed (a fixed value of the specs, a
    slice's template): its structure read once; an object or array of scalars copied by its own copy()."""
    if value.__class__ is dict:
        nested: tuple[tuple[Any, Callable[[], Json]], ...] = tuple(
            (key, cloner(member)) for key, member in value.items() if isinstance(member, _NESTED))
    elif value.__class__ is list:
        nested = tuple((i, cloner(member)) for i, member in enumerate(value) if isinstance(member, _NESTED))
    elif isinstance(value, _NESTED):
        return lambda: clone(value)  # another mapping or sequence: clone() makes it a dict or list
    else:
        return lambda: value
    if not nested:
        return value.copy  # type: ignore[no-any-return]

    def made() -> Json:
        out = value.copy()
        for key, make in nested:
            out[key] = make()
        return out
    return made


_NESTED = (dict, list)
#: how ordered() writes an object: (property, element id to order its object by, or the type to order it by), in order
Plan = tuple[tuple[str, str | None, str | None], ...]
#: of a set of properties (PathCompiler._shape): its plan; whether in order; what ordered() walks, (property, the shapes
#: where its child is ordered, that structure and element id; _UNORDERED, None, None for a child not ordered), of an
#: object in order its children to order, else every property in order; and whether in order with no child to order
Shape = tuple[Plan, bool, tuple[tuple[str, dict[tuple[str, ...], Any], str | None, str | None], ...], bool]
_UNORDERED: dict[tuple[str, ...], Any] = {}  # the shapes of a child not ordered (its structure None): never read
#: sets of properties whose order PathCompiler.ordered keeps, per element (a mapped object's come in a few)
SHAPES_KEPT = 64


class PathCompiler:
    """Compile element paths against profiles (or core types), caching snapshots per URL."""

    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self._compile = cache(self._compile_uncached)
        #: (structure, element id or None for its root) → property → _slot's answer (_plan)
        self._slots: dict[tuple[str, str | None], dict[str, tuple[int, str | None, str | None]]] = {}
        #: (structure, element id or None) → an object's keys, in their order → _plan's answer, whether the keys are
        #: in its order already, and (property, structure, element id) of each child it orders (ordered)
        self._shapes: dict[tuple[str, str | None], dict[tuple[str, ...], Shape]] = {}

    def compile(self, structure: str, text: str) -> ElementPath:
        return self._compile(structure, text)

    @cache  # noqa: B019 - one compiler per process; snapshots are immutable
    def elements(self, structure: str) -> dict[str, dict[str, Any]]:
        sd = self.defs.structure(structure)
        if "snapshot" not in sd:
            sd = with_snapshot(sd, self.defs)
        return {e["id"]: e for e in sd["snapshot"]["element"]}

    def _compile_uncached(self, structure: str, text: str) -> ElementPath:
        elements = self.elements(structure)
        root = next(iter(elements))
        steps: list[Step] = []
        current, table, chosen = root, elements, ""
        for segment in _segments(text):
            by_url = _BY_URL.match(segment)
            if by_url:
                # an extension the profile does not slice for: name it by its definition
                prop, url = by_url.group(1), by_url.group(2)
                url = url if "/" in url else STRUCTURES + url
                steps.append(Step(prop, True, {"url": url}))
                table = self.elements(url)
                current = next(iter(table))
                continue
            name, _, slice_name = segment.partition(":")
            found = _child(table, current, name)
            if found is None:
                # below a datatype or an extension slice: continue in the type's own definition
                table, current = self._type_table(table[current], chosen, text)
                found = _child(table, current, name)
            if found is None:
                raise PathError(f"{structure}: {text!r}: no element {name!r} under {current}")
            element_id, prop = found
            element = table[element_id]
            chosen = prop[len(element_id.rsplit(".", 1)[-1]) - 3:] if element_id.endswith("[x]") else ""
            template = None
            if slice_name:
                element_id = f"{element_id}:{slice_name}"
                if element_id not in table:
                    raise PathError(f"{structure}: {text!r}: no slice {slice_name!r} on {found[0]}")
                element = table[element_id]
                template = self._slice_template(table, element_id)
            steps.append(Step(prop, _repeats(element), template))
            current = element_id
        return ElementPath(text, tuple(steps))

    @cache  # noqa: B019
    def _layout(self, structure: str) -> tuple[dict[str, int], frozenset[str]]:
        """Element positions (snapshot order) and the ids that have children in this table."""
        table = self.elements(structure)
        positions = {element_id: i for i, element_id in enumerate(table)}
        parents = frozenset(element_id.rsplit(".", 1)[0] for element_id in table if "." in element_id)
        return positions, parents

    def ordered(self, value: Json, structure: str, current: str | None = None) -> Json:
        """`value` with its properties in the definition's element order, as FHIR JSON is written. An object or array
        already in that order all through is given back as it is, not copied; any other is a new one."""
        if isinstance(value, list):
            return self._items(value, self._shapes_at(structure, current), structure, current)
        if not isinstance(value, dict):
            return value
        return self._object(value, self._shapes_at(structure, current), structure, current)

    def _shapes_at(self, structure: str, current: str | None) -> dict[tuple[str, ...], Shape]:
        shapes = self._shapes.get((structure, current))
        if shapes is None:
            shapes = self._shapes[structure, current] = {}
        return shapes

    def _object(self, value: dict[str, Any], shapes: dict[tuple[str, ...], Shape], structure: str,
                current: str | None) -> dict[str, Any]:
        # this runs for the objects of every mapped resource (~140 a record), whose properties come in few sets, each
        # mostly in order already: per set of properties (its keys, in their order), the order to write them in and
        # what each child is ordered by, worked out once
        keys = tuple(value)
        shape = shapes.get(keys)
        if shape is None:
            shape = self._shape(shapes, structure, current, keys)
        kept, walk = shape[1], shape[2]
        # in order: only the children that may be out of order are walked (and of those not the objects in order with
        # nothing below them to order, a Coding, a Reference: most), the object copied at the first that changes;
        # else every property, in order, into a new object
        out = value if kept else {}
        for key, at_shapes, by, at in walk:
            child = made = value[key]
            if by is not None:
                if child.__class__ is dict:
                    inner = at_shapes.get(tuple(child))
                    if inner is None or not inner[3]:
                        made = self._object(child, at_shapes, by, at)
                elif child.__class__ is list:
                    made = self._items(child, at_shapes, by, at)
                elif isinstance(child, _NESTED):
                    made = self.ordered(child, by, at)
            if not kept:
                out[key] = made
            elif made is not child:
                if out is value:
                    out = value.copy()
                out[key] = made
        return out

    def _items(self, value: list[Any], shapes: dict[tuple[str, ...], Shape], structure: str,
               current: str | None) -> list[Any]:
        items = value  # copied at the first item that changes
        for i, item in enumerate(value):
            made = item
            if item.__class__ is dict:
                inner = shapes.get(tuple(item))
                if inner is None or not inner[3]:
                    made = self._object(item, shapes, structure, current)
            elif isinstance(item, _NESTED):
                made = self.ordered(item, structure, current)
            if made is not item:
                items = value.copy() if items is value else items
                items[i] = made
        return items

    def _shape(self, shapes: dict[tuple[str, ...], Shape], structure: str, current: str | None,
               keys: tuple[str, ...]) -> Shape:
        """How ordered() writes an object of these keys here (its Shape), kept up to SHAPES_KEPT sets of keys per
        element."""
        plan = self._plan(structure, current, keys)
        kept = tuple(key for key, _, _ in plan) == keys
        walk = tuple((key, _UNORDERED if by is None else self._shapes_at(by, at), by, at)
                     for key, by, at in _children(structure, plan, every=not kept))
        shape = (plan, kept, walk, kept and not walk)
        if len(shapes) < SHAPES_KEPT:
            shapes[keys] = shape
        return shape

    def _plan(self, structure: str, current: str | None, keys: tuple[str, ...]) -> Plan:
        """(property, element id to order its object by, or the type to order it by) of each of `keys`, stably sorted
        by their elements' places in the definition (unknown ones last)."""
        slots = self._slots.get((structure, current))
        if slots is None:
            slots = self._slots[structure, current] = {}
        placed = []
        for key in keys:
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = self._slot(structure, current or next(iter(self.elements(structure))), key)
            placed.append((slot[0], key, slot[1], slot[2]))
        return tuple((key, inner, sub) for _, key, inner, sub in sorted(placed, key=lambda p: p[0]))

    @cache  # noqa: B019
    def _slot(self, structure: str, current: str, key: str) -> tuple[int, str | None, str | None]:
        """(position, element id to order its children by, or the type to order them by) of one property."""
        table = self.elements(structure)
        positions, parents = self._layout(structure)
        found = _child(table, current, key.lstrip("_")) if key != "resourceType" else None
        if found is None:
            return (-1 if key == "resourceType" else len(positions)), None, None
        element_id = found[0]
        if element_id in parents:
            return positions[element_id], element_id, None
        return positions[element_id], None, _type_of(table[element_id], found[1])

    def _type_table(self, element: dict[str, Any], chosen: str,
                    text: str) -> tuple[dict[str, dict[str, Any]], str]:
        types = element.get("type") or []
        if chosen:
            types = [t for t in types if t["code"][:1].upper() + t["code"][1:] == chosen]
        if len(types) != 1:
            raise PathError(f"{text!r}: {element['id']} has {len(types)} types; name one with value[x] → valueX")
        kind = types[0]
        table = self.elements(kind["profile"][0] if kind.get("profile") else kind["code"])
        return table, next(iter(table))

    def _slice_template(self, table: dict[str, dict[str, Any]], slice_id: str) -> dict[str, Any] | None:
        element = table[slice_id]
        profiles = [p for t in element.get("type", []) for p in t.get("profile", [])]
        if element["path"].endswith(".extension") or element["path"].endswith(".modifierExtension"):
            return {"url": profiles[0]} if profiles else None
        template: dict[str, Any] = {}
        for key, value in element.items():
            if _VALUE_KEY.match(key):
                template.update(copy.deepcopy(value))
        prefix = slice_id + "."
        for child_id, child in table.items():
            rest = child_id[len(prefix):] if child_id.startswith(prefix) else None
            if rest is None or "." in rest or ":" in rest:
                continue
            for key, value in child.items():
                match = _VALUE_KEY.match(key)
                if match:
                    prop = rest[:-3] + match.group(2) if rest.endswith("[x]") else rest
                    template[prop] = copy.deepcopy(value)
        return template or None


def _children(structure: str, plan: Plan, every: bool) -> list[tuple[str, str | None, str | None]]:
    """(property, structure, element id) that ordered() orders each child of `plan` by, for those it orders; `every`:
    each property of the plan, those it does not order with (property, None, None)."""
    out: list[tuple[str, str | None, str | None]] = []
    for key, inner, sub in plan:
        if inner is not None:
            out.append((key, structure, inner))
        elif sub is not None:
            out.append((key, sub, None))
        elif every:
            out.append((key, None, None))
    return out


def _segments(text: str) -> list[str]:
    """Split on dots outside parentheses (extension URLs contain dots)."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "." and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _child(table: dict[str, dict[str, Any]], parent: str, name: str) -> tuple[str, str] | None:
    """The element id of property `name` under `parent` (a choice `valueQuantity` → `value[x]`)."""
    direct = f"{parent}.{name}"
    if direct in table:
        return direct, name
    for element_id, element in table.items():
        if not element_id.startswith(parent + ".") or not element_id.endswith("[x]"):
            continue
        stem = element_id[len(parent) + 1:-3]
        if "." in stem or ":" in stem or not name.startswith(stem):
            continue
        suffix = name[len(stem):]
        if any(t["code"][:1].upper() + t["code"][1:] == suffix for t in element.get("type", [])):
            return element_id, name
    return None


def _type_of(element: dict[str, Any], prop: str) -> str | None:
    """The definition to order a complex child by: its profile, else its type (choice: by suffix)."""
    for kind in element.get("type", []):
        code = kind["code"]
        if len(element["type"]) > 1 and not prop.endswith(code[:1].upper() + code[1:]):
            continue
        if code[:1].islower() or code in ("Element", "BackboneElement", "Resource"):
            return None
        return str(kind["profile"][0]) if kind.get("profile") else str(code)
    return None


def _repeats(element: dict[str, Any]) -> bool:
    maximum = (element.get("base") or {}).get("max", element.get("max", "1"))
    return bool(maximum != "1")
