"""FHIRPath navigation over plain JSON for the native invariants: fhirpathpy's answer, or NotPlain when the JSON
is anything else (a `_field` holder, a null, a value of an unexpected JSON type), and fhirpathpy must answer.

A member of a plain object is what fhirpathpy's navigation yields: an array's items, or the one value; a choice
element (`value[x]`) is the one `valueX` property the model names. The native invariants built on these read every
operand fhirpathpy evaluates (it evaluates both sides of `and`, `or` and `implies`), so an input on which fhirpathpy
could fail is deferred rather than answered."""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from fhirpathpy.models import models

_MODEL = models["r4"]


class NotPlain(Exception):
    """The JSON is not plain here: fhirpathpy answers."""


class InvariantError(Exception):
    """The expression could not be evaluated (unsupported function, type error)."""


def of_type(node: dict[str, Any], kind: str) -> None:
    """The resource is of the type whose paths a native invariant navigates (the model's choices depend on it)."""
    if node.get("resourceType") != kind:
        raise NotPlain(kind)


def exists(node: dict[str, Any], key: str) -> bool:
    """`key.exists()`: the value or its `_key` holder is neither null nor [] (exact for any JSON)."""
    value, holder = node.get(key), node.get("_" + key)
    return (value is not None and value != []) or (holder is not None and holder != [])


def objects(node: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The complex elements `node.key`: an object or an array of objects, none of them a resource."""
    if "_" + key in node:
        raise NotPlain(key)
    value = node.get(key)
    if value is None:
        return []
    items = [value] if type(value) is dict else value
    if type(items) is not list:
        raise NotPlain(key)
    for item in items:
        if type(item) is not dict or "resourceType" in item:
            raise NotPlain(key)
    return items


def text(node: dict[str, Any], key: str) -> str | None:
    """The string `node.key`, or None when absent."""
    if "_" + key in node:
        raise NotPlain(key)
    value = node.get(key)
    if value is None or type(value) is str:
        return value
    raise NotPlain(key)


def number(value: Any) -> int | Decimal:
    """A JSON number as fhirpathpy compares it (a float becomes the Decimal of its text); anything else, even
    a boolean, makes fhirpathpy's ordering fail."""
    kind = type(value)
    if kind is int or kind is Decimal:
        return value  # type: ignore[no-any-return]
    if kind is float and math.isfinite(value):
        return Decimal(str(value))
    raise NotPlain("not a number")


def codings(node: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """`key.coding` of a CodeableConcept element (or of several)."""
    return [c for concept in objects(node, key) for c in objects(concept, "coding")]


def coded(codings: list[dict[str, Any]], system: str | None, codes: frozenset[str]) -> bool:
    """`coding.where(system = S and code = C).exists()` (any code of `codes`; system None: `code = C` alone).
    Every coding's system and code are read, as fhirpathpy's where() reads them."""
    found = pairs(codings)
    return any(code in codes for code_system, code in found) if system is None else \
        any((system, code) in found for code in codes)


def pairs(codings: list[dict[str, Any]]) -> set[tuple[str | None, str | None]]:
    """(system, code) of each coding, read as coded() reads them: `coded(codings, S, {C})` is `(S, C) in pairs`."""
    found = set()
    for coding in codings:
        system, code = coding.get("system"), coding.get("code")
        if "_system" in coding or "_code" in coding or system is not None and type(system) is not str \
                or code is not None and type(code) is not str:
            raise NotPlain("coding")
        found.add((system, code))
    return found


class Choice:
    """A choice element `key[x]` at a path of the model: the JSON names of its types (`valueQuantity`)."""

    def __init__(self, path: str) -> None:
        path = _MODEL["pathsDefinedElsewhere"].get(path, path)
        self.key = path.rsplit(".", 1)[1]
        self.types = _MODEL["choiceTypePaths"][path]
        self.names = {self.key + t for t in self.types} | {"_" + self.key + t for t in self.types}

    def of(self, node: dict[str, Any]) -> tuple[str | None, Any]:
        """(type, value) of the one value the node holds, or (None, None) when it holds none."""
        present = self.names.intersection(node)  # the node's names of this element, in one pass over its keys
        if not present:
            return None, None
        found = present.pop()
        if present or found[0] == "_":  # two types given, or a `_field` holder: fhirpathpy answers
            raise NotPlain(found)
        value, kind = node[found], found[len(self.key):]
        if value is None or type(value) is list or (type(value) is dict) is (kind in PRIMITIVES) \
                or type(value) is dict and "resourceType" in value:
            raise NotPlain(found)
        return kind, value


#: the primitive types among the choices: their value is not an object (the complex ones' is)
PRIMITIVES = {"Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant", "Integer",
              "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid"}
_CHOICES: dict[str, Choice | None] = {}


def choice_at(path: str) -> Choice | None:
    """The choice element at `path`, or None when the model has none there (remembered)."""
    if path not in _CHOICES:
        known = _MODEL["pathsDefinedElsewhere"].get(path, path) in _MODEL["choiceTypePaths"]
        _CHOICES[path] = Choice(path) if known else None
    return _CHOICES[path]
