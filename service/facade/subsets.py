"""_summary and _elements (search.html#summary, #elements): resources cut down to what the client asked for.

A cut resource is marked with the SUBSETTED tag, as R4 asks, so nobody mistakes it for the whole. `true`
keeps the elements R4 marks isSummary; `text` the narrative and the mandatory elements; `data` all but the
narrative; `_elements` the elements named and the mandatory ones (servers SHOULD keep those).
"""
from __future__ import annotations

from functools import cache
from typing import Any

from service.conformance.definitions import CORE_SD, Definitions, core_package

#: search.html#summary: the tag a subsetted resource carries
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
#: kept in every cut: what says what the resource is
ALWAYS = frozenset({"resourceType", "id", "meta"})


def subset(resource: dict[str, Any], summary: str | None, elements: list[str]) -> dict[str, Any]:
    """`resource` as `_summary` (true, text, data; None or false: whole) and `_elements` ask for it."""
    kind = str(resource.get("resourceType"))
    keep: set[str] | frozenset[str]
    if elements:
        keep = ALWAYS | mandatory(kind) | set(elements)
    elif summary == "true":
        keep = ALWAYS | summary_elements(kind)
    elif summary == "text":
        keep = ALWAYS | mandatory(kind) | {"text"}
    elif summary == "data":
        keep = set(resource) - {"text"}
    else:
        return resource
    cut = {k: v for k, v in resource.items() if _base(k, resource) in keep}
    if cut == resource:
        return resource
    meta = dict(cut.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    return {**cut, "meta": meta}


def _base(key: str, resource: dict[str, Any]) -> str:
    """The element a JSON key belongs to: `_status` → status; a choice `valueQuantity` → value."""
    name = key[1:] if key.startswith("_") and key != "_" else key
    for stem in _choices(str(resource.get("resourceType"))):
        if name.startswith(stem) and name[len(stem):len(stem) + 1].isupper():
            return stem
    return name


@cache
def _elements_of(kind: str) -> list[dict[str, Any]]:
    """The top-level element definitions of the R4 resource type `kind` (its core snapshot)."""
    sd = Definitions(core_package(), []).structure(CORE_SD + kind)
    return [e for e in (sd.get("snapshot") or {}).get("element") or [] if e.get("path", "").count(".") == 1]


@cache
def summary_elements(kind: str) -> frozenset[str]:
    return frozenset(_name(e) for e in _elements_of(kind) if e.get("isSummary"))


@cache
def mandatory(kind: str) -> frozenset[str]:
    return frozenset(_name(e) for e in _elements_of(kind) if int(e.get("min") or 0) >= 1)


@cache
def _choices(kind: str) -> tuple[str, ...]:
    return tuple(_name(e) for e in _elements_of(kind) if e["path"].endswith("[x]"))


def _name(element: dict[str, Any]) -> str:
    return str(element["path"]).split(".", 1)[1].removesuffix("[x]")
