"""The transforms a rule names, each with its forward (record → FHIR) and reverse direction."""
from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from service.fhirjson import matches_pattern
from service.mapping.concepts import ConceptIndex
from service.mapping.spec import Rule, read

UCUM = "http://unitsofmeasure.org"
Json = Any


class MappingError(ValueError):
    """A value a rule cannot carry (a local code with no mapping, a unit that does not match).

    `fields`: the record fields (`vitals[1].phase`) whose value it is, once the engine knows them."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class ForwardLinks(Protocol):
    """What a forward transform may ask of the record being mapped (Mapper.to_bundle)."""

    concepts: ConceptIndex
    record: dict[str, Any]   # the whole record, which `$.` fields read (a goal's rule reading the plan's period)

    def references(self, role: str) -> list[dict[str, Any]]: ...

    def reference(self, role: str) -> dict[str, Any] | None: ...  # the first of references(role)

    def record_reference(self, kind: str, role: str | None, external_id: str) -> dict[str, Any]: ...


class ReverseLinks(Protocol):
    """What a reverse transform may ask of the payload being read (Mapper.to_record)."""

    concepts: ConceptIndex

    def external_id_of(self, kind: str, role: str | None, reference: dict[str, Any]) -> str | None: ...


# --- forward -------------------------------------------------------------------------------

def as_is(rule: Rule, value: Any, links: ForwardLinks) -> Json:
    return value


def _quantity(rule: Rule, value: Any, links: ForwardLinks) -> Json:
    if "unit_field" in rule.params:
        number, unit = value["value"], value[rule.params["unit_field"]]
        display = unit
    else:
        number, unit = value, rule.params["unit"]
        display = rule.params.get("unit_display", unit)
    return {"value": number, "unit": display, "system": UCUM, "code": unit}


def _concept(rule: Rule, value: Any, links: ForwardLinks) -> Json:
    return concept_value(rule, value, links.concepts)


def concept_value(rule: Rule, value: Any, concepts: ConceptIndex) -> Json:
    """A concept rule's value for a local code: the code, its Coding(s) or a CodeableConcept of them."""
    system = concepts.system(rule.params["map"])
    standard, with_local = system.forward(value, rule.params.get("system"))
    shape = rule.params.get("as", "CodeableConcept")
    if shape == "code":
        if standard is None or with_local:
            raise MappingError(f"{rule.params['map']}: {value!r} has no code that can be read back")
        return standard["code"]
    codings = [c for c in (standard, system.local_coding(value) if with_local else None) if c]
    if shape == "Coding":
        return codings if len(codings) > 1 or rule.each else codings[0]
    return {"coding": codings}


def _lookup(rule: Rule, value: Any, links: ForwardLinks) -> Json:
    values = rule.params["values"]
    key = value if value in values else str(value).lower() if isinstance(value, bool) else value
    if key not in values:
        raise MappingError(f"no FHIR value for {value!r} (known: {', '.join(map(str, values))})")
    return values[key]


def _record_reference(rule: Rule, value: Any, links: ForwardLinks) -> Json:
    return links.record_reference(rule.params["kind"], rule.params.get("role"), str(value))


def _minutes_between(rule: Rule, scope: Any, links: ForwardLinks) -> Json:
    start, end = (read(scope, links.record, name) for name in rule.fields)
    if start is None or end is None:
        return None
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return int(seconds // 60) if seconds >= 0 else None


def _ratio(rule: Rule, scope: Any, links: ForwardLinks) -> Json:
    top, bottom = (read(scope, links.record, name) for name in rule.fields)
    if top is None or not bottom:
        return None
    unit = rule.params["unit"]
    return {"value": round(top / bottom, int(rule.params.get("digits", 3))), "unit": unit, "system": UCUM,
            "code": unit}


def _scaled(rule: Rule, scope: Any, links: ForwardLinks) -> Json:
    """A UCUM Quantity of one field's value times `factor` (half a baseline score), unrounded."""
    (value,) = (read(scope, links.record, name) for name in rule.fields)
    if value is None:
        return None
    scaled = value * rule.params["factor"]
    unit = rule.params["unit"]
    return {"value": int(scaled) if float(scaled).is_integer() else scaled, "unit": unit, "system": UCUM,
            "code": unit}


def _course_length(rule: Rule, scope: Any, links: ForwardLinks) -> Json:
    """How long `sessions` take at `count` per `period` `unit`: whole periods until the last session's, as a UCUM
    Duration (7 sessions at 2 a week fall in 4 weeks); None when any of the four is missing."""
    sessions, count, period, unit = (read(scope, links.record, name) for name in rule.fields)
    if not sessions or not count or not period or not unit:
        return None
    length = math.ceil(sessions / count) * period
    return {"value": int(length) if float(length).is_integer() else length, "unit": unit, "system": UCUM,
            "code": unit}


def _template(rule: Rule, scope: Any, links: ForwardLinks) -> Json:
    text: str = rule.params["text"]
    try:
        return text.format_map({k: v for k, v in scope.items() if v is not None})
    except KeyError:
        return None


#: forward of a transform of one field's value (or of each of its items), and of one that reads its scope itself;
#: each makes its value anew, except those in SHARING, which give the record's value or the spec's as it is
FROM_FIELD: dict[str, Callable[[Rule, Any, ForwardLinks], Json]] = {
    "copy": as_is, "date": as_is, "datetime": as_is, "quantity": _quantity, "concept": _concept,
    "lookup": _lookup, "record-reference": _record_reference,
}
SHARING = frozenset({"copy", "date", "datetime", "lookup"})
FROM_SCOPE: dict[str, Callable[[Rule, Any, ForwardLinks], Json]] = {
    "minutes-between": _minutes_between, "ratio": _ratio, "template": _template, "scaled": _scaled,
    "course-length": _course_length,
}


# --- reverse -------------------------------------------------------------------------------

def reverse(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    """The record value for the FHIR value `found` at the rule's target, or None."""
    if found is None:
        return None
    if rule.each:
        items = found if isinstance(found, list) else [found]
        return _reverse_each(rule, items, links) or None
    if isinstance(found, list) and rule.transform not in ("copy", "concept", "lookup"):
        found = found[0] if found else None
    return _REVERSE[rule.transform](rule, found, links)


def _reverse_each(rule: Rule, items: list[Json], links: ReverseLinks) -> list[Json]:
    if rule.transform != "concept":
        return [_REVERSE[rule.transform](rule, item, links) for item in items]
    if rule.params.get("as", "CodeableConcept") == "CodeableConcept":
        # one CodeableConcept per item (an extension each): the code each one means, once
        return list(dict.fromkeys(_r_concept(rule, item, links) for item in items))
    system = links.concepts.system(rule.params["map"])
    local = [i["code"] for i in items if isinstance(i, dict) and i.get("system") == system.url]
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        code = system.back(item.get("system"), item.get("code"))
        if code is not None and code not in out and (item.get("system") == system.url or code not in local):
            out.append(code)
    return out


def _r_copy(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    return found


def _r_datetime(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    if not isinstance(found, str) or "T" not in found:
        raise MappingError(f"{rule.to}: {found!r} is not a date and time; the record needs one with a UTC offset")
    return found


def _r_quantity(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    if not isinstance(found, dict) or "value" not in found:
        raise MappingError(f"{rule.to}: expected a Quantity with a value")
    if found.get("system") != UCUM:
        raise MappingError(f"{rule.to}: the quantity's unit is not UCUM (system {found.get('system')!r})")
    if "unit_field" in rule.params:
        return {"value": found["value"], rule.params["unit_field"]: found.get("code")}
    if found.get("code") != rule.params["unit"]:
        raise MappingError(f"{rule.to}: expected unit {rule.params['unit']!r}, found {found.get('code')!r}")
    return found["value"]


def _r_concept(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    system = links.concepts.system(rule.params["map"])
    shape = rule.params.get("as", "CodeableConcept")
    if shape == "code":
        code = system.back(_standard_system(system.name, rule, links), found)
        if code is None:
            raise MappingError(f"{rule.to}: code {found!r} has no {system.name} equivalent")
        return code
    if shape == "CodeableConcept":
        concepts = found if isinstance(found, list) else [found]  # a repeating element: any of them
        codings = [c for cc in concepts if isinstance(cc, dict) for c in cc.get("coding", [])]
    else:
        codings = found if isinstance(found, list) else [found]
    codings = [c for c in codings if isinstance(c, dict)]
    # the local coding, when it travelled, is the exact answer; standard codes come second
    ordered = sorted(codings, key=lambda c: c.get("system") != system.url)
    for coding in ordered:
        code = system.back(coding.get("system"), coding.get("code"))
        if code is not None:
            return code
    shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "no coding"
    raise MappingError(f"{rule.to}: {shown} has no {system.name} equivalent")


def _standard_system(name: str, rule: Rule, links: ReverseLinks) -> str:
    """For `as: code` targets the system is implied: the one every target of the map shares."""
    systems = {t.system for c in links.concepts.system(name).concepts.values() for t in c.targets}
    return systems.pop() if len(systems) == 1 else ""


def _r_lookup(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    candidates = found if isinstance(found, list) else [found]
    for record_value, fhir_value in rule.params["values"].items():
        # codes decide, displays do not: an EHR may send its own display for the same code
        pattern = codes_only(fhir_value)
        if any(c == fhir_value or (isinstance(c, dict) and matches_pattern(c, pattern)) for c in candidates):
            return _typed(record_value)
    raise MappingError(f"{rule.to}: none of the expected values is present")


def codes_only(value: Json) -> Json:
    """A FHIR value to match by its codes: displays and texts left out."""
    if isinstance(value, dict):
        return {k: codes_only(v) for k, v in value.items() if k not in ("display", "text")}
    if isinstance(value, list):
        return [codes_only(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


def _r_record_reference(rule: Rule, found: Json, links: ReverseLinks) -> Json:
    if not isinstance(found, dict):
        return None
    external_id = links.external_id_of(rule.params["kind"], rule.params.get("role"), found)
    if external_id is None:
        raise MappingError(f"{rule.to}: reference {found.get('reference')!r} does not name a "
                           f"{rule.params['kind']} record (no business identifier)")
    return external_id


_REVERSE: dict[str, Callable[[Rule, Json, ReverseLinks], Json]] = {
    "copy": _r_copy, "date": _r_copy, "datetime": _r_datetime, "quantity": _r_quantity,
    "concept": _r_concept, "lookup": _r_lookup, "record-reference": _r_record_reference,
}
