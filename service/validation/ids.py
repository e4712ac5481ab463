"""Ids within a resource: an element id used twice, and two contained resources of one container with one id.

The HL7 validator's rules (org.hl7.fhir.validation InstanceValidator): validateElement reports DUPLICATE_ID
("Duplicate id value") for an element whose id another element of the same resource already has, the resource's
own id included; a contained resource, a Bundle entry's or a Parameters' resource starts a scope of its own
(NodeStack.resetIds) in which its own id is not counted; two contained resources sharing an id are
RESOURCE_DUPLICATE_CONTAINED_ID. Both are errors. An object walked twice (against two profiles, or a slice) is
the same element, not a duplicate: objects are told apart by identity.
"""
from __future__ import annotations

from typing import Any

from service.validation.run import Run


def enter(res: dict[str, Any], contained: bool, expr: str, run: Run) -> None:
    """The scope of `res`'s element ids begins; a contained resource's id is checked among its container's."""
    ident = res.get("id")
    if contained and isinstance(ident, str) and run.ids:
        seen = run.ids[-1].setdefault("!" + ident, id(res))
        if seen != id(res):
            run.add("error", "duplicate", expr, f"Duplicate id for contained resource: {ident}.")
    run.ids.append({ident: id(res)} if not run.ids and isinstance(ident, str) else {})


def leave(run: Run) -> None:
    run.ids.pop()


def element(obj: dict[str, Any], ident: str, expr: str, run: Run) -> None:
    """An element (not a resource) with an id: the first with that id in its resource, or a duplicate."""
    if run.ids and run.ids[-1].setdefault(ident, id(obj)) != id(obj):
        run.add("error", "business-rule", expr, f"Duplicate id value '{ident}'.")
