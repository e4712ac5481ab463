"""A StructureDefinition's own slicing: sliced where its base allows, by discriminator paths that can apply.

The HL7 validator's StructureDefinitionValidator (org.hl7.fhir.validation, validateElementDefinition), for each
element with `slicing`, in the snapshot and the differential:
- SD_PATH_NO_SLICING, an error, "Slicing is not allowed at '{path}'": the element of the base type at that path
  has max 1 and is no choice (canSlice);
- SD_PATH_NOT_VALID, an error, "The discriminator path '{0}' does not appear to be valid for the element that is
  being sliced '{1}'": the path, type-checked from the element's declared types (FHIRPath checkOnTypes), reaches
  nothing. Only an element that declares its types is checked (a differential often does not).
The paths here are walked element by element through the types' definitions (and the profile's own elements for
a backbone); a function this walk does not know (anything but $this, resolve(), extension(url), ofType(), as())
leaves the path unchecked rather than wrongly refused.
"""
from __future__ import annotations

import re
from typing import Any

from service.conformance.definitions import CORE_SD, Definitions
from service.validation.run import Run

_SEGMENTS = re.compile(r"(?:[^.(]|\([^)]*\))+")
_CALL = re.compile(r"^(\w+)\((.*)\)$")
#: Types whose children a profile states itself, under the element's path.
_BACKBONE = {"BackboneElement", "Element"}
Types = list[tuple[str, str | None]]  # (type code, the path of a backbone in the profile, else None)


def check_slicing(sd: dict[str, Any], expr: str, run: Run, defs: Definitions) -> None:
    for part in ("snapshot", "differential"):
        elements = (sd.get(part) or {}).get("element") if isinstance(sd.get(part), dict) else None
        if not isinstance(elements, list):
            continue
        own = [e for e in elements if isinstance(e, dict) and isinstance(e.get("path"), str)]
        for i, element in enumerate(elements):
            if isinstance(element, dict) and isinstance(element.get("slicing"), dict) \
                    and isinstance(element.get("path"), str):
                _check(element, own, f"{expr}.{part}.element[{i}]", run, defs)


def _check(element: dict[str, Any], own: list[dict[str, Any]], where: str, run: Run, defs: Definitions) -> None:
    path = element["path"]
    base = _base_element(path, defs)
    if base is not None and base.get("max") == "1" and not path.endswith("[x]"):
        run.add("error", "not-found", where, f"Slicing is not allowed at '{path}'.")
    types: Types = [(t["code"], path if t["code"] in _BACKBONE else None) for t in element.get("type") or []
                    if isinstance(t, dict) and isinstance(t.get("code"), str)]
    if base is None or not types:
        return
    for j, discriminator in enumerate(element["slicing"].get("discriminator") or []):
        text = discriminator.get("path") if isinstance(discriminator, dict) else None
        if isinstance(text, str) and _reaches(text, types, own, defs) is False:
            run.add("error", "invalid", f"{where}.slicing.discriminator[{j}]",
                    f"The discriminator path '{text}' does not appear to be valid for the element that is being "
                    f"sliced '{path}'.")


def _base_element(path: str, defs: Definitions) -> dict[str, Any] | None:
    """The element at `path` in the definition of the type that starts it (Observation.component → R4 Observation)."""
    sd = defs.resolve(CORE_SD + path.split(".", 1)[0])
    snapshot = (sd or {}).get("snapshot") or {}
    return next((e for e in snapshot.get("element") or [] if e.get("path") == path), None)


def _reaches(text: str, types: Types, own: list[dict[str, Any]], defs: Definitions) -> bool | None:
    """True: the path reaches an element from one of `types`; False: from none; None: it uses what is not walked."""
    for segment in _SEGMENTS.findall(text.strip()):
        segment = segment.strip()
        call = _CALL.match(segment)
        if segment == "$this":
            continue
        if call and call.group(1) == "resolve":
            return True
        if call and call.group(1) in ("extension", "modifierExtension"):
            types = [("Extension", None)]
        elif call and call.group(1) in ("ofType", "as"):
            wanted = call.group(2).strip().removeprefix("FHIR.")
            types = [(code, backbone) for code, backbone in types if code == wanted] or \
                ([(wanted, None)] if any(code in ("Resource", "DomainResource") for code, _ in types) else [])
        elif call:
            return None
        else:
            types = [t for current in types for t in _children(current, segment, own, defs)]
        if not types:
            return False
    return True


def _children(current: tuple[str, str | None], name: str, own: list[dict[str, Any]], defs: Definitions) -> Types:
    """The types of the element `name` (or `name[x]`) under a value of type `code` (a backbone: under its path)."""
    code, backbone = current
    wanted = (f"{backbone or code}.{name}", f"{backbone or code}.{name}[x]")
    elements = [e for e in own if e["path"] in wanted] if backbone is not None else []
    if not elements:  # the profile does not restate it: the definition of the type that starts the path
        elements = [e for e in _elements((backbone or code).split(".", 1)[0], defs) if e.get("path") in wanted]
    out: Types = []
    for e in elements:
        for t in e.get("type") or []:
            kind = t.get("code") if isinstance(t, dict) else None
            if isinstance(kind, str):
                out.append((kind, e["path"] if kind in _BACKBONE else None))
        if e.get("contentReference"):
            out.append(("BackboneElement", str(e["contentReference"]).split("#", 1)[-1]))
    return out


def _elements(code: str, defs: Definitions) -> list[dict[str, Any]]:
    if code.startswith("http://hl7.org/fhirpath/"):
        return []
    sd = defs.resolve(code if ":" in code else CORE_SD + code)
    return list(((sd or {}).get("snapshot") or {}).get("element") or [])
