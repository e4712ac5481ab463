"""The search parameters the facade supports, as data, and the values a resource is indexed under.

Each parameter names its kind (token, date, reference, string) and the element paths it reads,
following the R4 SearchParameter definitions for these resource types (a choice element like
`effective` reads `effectiveDateTime`, `effectivePeriod` or `effectiveInstant`). Writing a
resource indexes these values; searching compares against them.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, NamedTuple, cast

from service import fhirjson
from service.params import EARLIEST, LATEST
from service.params import date_range as text_range

#: The resource types the facade serves.
TYPES = ("Patient", "Practitioner", "Encounter", "Condition", "CarePlan", "Goal", "MedicationRequest",
         "MedicationAdministration", "MedicationStatement", "Procedure", "Observation", "AdverseEvent",
         "DetectedIssue", "Provenance")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str                    # token | date | reference | string
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference: the resource types it may point at
    description: str = ""
    #: reference: reads only the references at its paths that point at one of `targets` (an R4 expression like
    #: `Provenance.target.where(resolve() is Patient)`), so no other is indexed under it
    only_targets: bool = False
    #: reference: answered from the index rows of this other parameter of its type, those that point at one of
    #: `targets`, and given no rows of its own (`patient`: the `subject` rows naming a Patient, which it held again)
    rows: str = ""

    @property
    def stored(self) -> str:
        """The parameter whose index rows answer this one."""
        return self.rows or self.name


def _p(name: str, kind: str, *paths: str, targets: tuple[str, ...] = (), description: str = "",
       only_targets: bool = False, rows: str = "") -> Param:
    return Param(name, kind, paths, targets, description, only_targets, rows)


IDENTIFIER = _p("identifier", "token", "identifier", description="A business identifier: system|value")
SUBJECT = _p("subject", "reference", "subject", targets=("Patient", "Group"), description="The subject")
#: the `subject` rows that name a Patient (a resource's `patient` and `subject` rows held the same value: migration
#: 0013 drops the old ones)
SUBJECT_PATIENT = _p("patient", "reference", "subject", targets=("Patient",), description="The patient",
                     rows=SUBJECT.name)
STATUS = _p("status", "token", "status", description="The status code")

PARAMS: dict[str, dict[str, Param]] = {
    "Patient": {p.name: p for p in (
        IDENTIFIER, _p("family", "string", "name.family"), _p("given", "string", "name.given"),
        _p("name", "string", "name.family", "name.given", "name.text"), _p("birthdate", "date", "birthDate"),
        _p("gender", "token", "gender"))},
    "Practitioner": {p.name: p for p in (
        IDENTIFIER, _p("name", "string", "name.family", "name.given", "name.text"),
        _p("family", "string", "name.family"))},
    "Encounter": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("date", "date", "period"), _p("class", "token", "class"))},
    "Condition": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, _p("code", "token", "code"), _p("category", "token", "category"),
        _p("clinical-status", "token", "clinicalStatus"), _p("onset-date", "date", "onset"),
        _p("recorded-date", "date", "recordedDate"))},
    "CarePlan": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("category", "token", "category"),
        _p("date", "date", "period"), _p("intent", "token", "intent"))},
    "Goal": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, _p("lifecycle-status", "token", "lifecycleStatus"),
        _p("category", "token", "category"))},
    "MedicationRequest": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("code", "token", "medication"),
        _p("intent", "token", "intent"), _p("authoredon", "date", "authoredOn"))},
    "MedicationAdministration": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("code", "token", "medication"),
        _p("effective-time", "date", "effective"),
        _p("context", "reference", "context", targets=("Encounter", "EpisodeOfCare")),
        _p("request", "reference", "request", targets=("MedicationRequest",)))},
    "MedicationStatement": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("code", "token", "medication"),
        _p("effective", "date", "effective"), _p("category", "token", "category"),
        _p("context", "reference", "context", targets=("Encounter", "EpisodeOfCare")),
        _p("source", "reference", "informationSource",
           targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Organization")))},
    "Procedure": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("code", "token", "code"), _p("date", "date", "performed"),
        _p("category", "token", "category"), _p("encounter", "reference", "encounter", targets=("Encounter",)),
        _p("performer", "reference", "performer.actor",
           targets=("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device")),
        _p("based-on", "reference", "basedOn", targets=("CarePlan", "ServiceRequest")))},
    "Observation": {p.name: p for p in (
        IDENTIFIER, SUBJECT_PATIENT, SUBJECT, STATUS, _p("code", "token", "code"),
        _p("category", "token", "category"), _p("date", "date", "effective"),
        _p("encounter", "reference", "encounter", targets=("Encounter",)),
        _p("part-of", "reference", "partOf", targets=("MedicationAdministration", "Procedure", "Immunization")))},
    "AdverseEvent": {p.name: p for p in (
        IDENTIFIER, SUBJECT, _p("date", "date", "date"), _p("event", "token", "event"),
        _p("category", "token", "category"), _p("seriousness", "token", "seriousness"),
        _p("severity", "token", "severity"), _p("actuality", "token", "actuality"))},
    "DetectedIssue": {p.name: p for p in (
        IDENTIFIER, _p("patient", "reference", "patient", targets=("Patient",)), _p("code", "token", "code"),
        _p("identified", "date", "identified"),
        _p("implicated", "reference", "implicated"))},
    "Provenance": {p.name: p for p in (
        _p("target", "reference", "target"),
        _p("patient", "reference", "target", targets=("Patient",), only_targets=True),
        _p("recorded", "date", "recorded"))},
}
#: Parameters every type has, answered from the resource table itself.
COMMON = {"_id": _p("_id", "token", "id"), "_lastUpdated": _p("_lastUpdated", "date", "meta.lastUpdated")}
#: Not a search parameter: a relative literal reference at a path no reference parameter of its type reads, indexed
#: with that path (IndexValue.path), so that a delete can name what still refers to its resource (facade/references.py),
#: as HAPI's links do. A reference a parameter reads is that parameter's row, its path beside it (migration 0014).
LINK = "_link"
#: Result parameters the facade honours.
RESULT = ("_count", "_offset", "_sort", "_include", "_revinclude", "_format", "_pretty", "_summary", "_total",
          "_elements")


def params_of(resource_type: str) -> dict[str, Param]:
    return {**COMMON, **PARAMS.get(resource_type, {})}


# --- extracting values ---------------------------------------------------------------------

def values_at(resource: dict[str, Any], path: str) -> list[Any]:
    """Every value at a dotted path; a last step `effective` also reads `effectiveDateTime`, …"""
    return _at(resource, _steps(path))


@lru_cache(maxsize=256)
def _steps(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _at(resource: dict[str, Any], steps: tuple[str, ...]) -> list[Any]:
    """values_at of a path split into its steps (a write reads ~70 paths of its resources: each split once)."""
    nodes: list[Any] = [resource]
    last = len(steps) - 1
    for i, step in enumerate(steps):
        found: list[Any] = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            value = node.get(step, _ABSENT)
            if value is not _ABSENT:
                if isinstance(value, list):
                    found.extend(value)
                else:
                    found.append(value)
            elif i == last:
                size = len(step)
                for key, value in node.items():  # a choice element: effective → effectiveDateTime
                    if key.startswith(step) and key[size:size + 1].isupper():
                        found.extend(value if isinstance(value, list) else [value])
        nodes = found
    return nodes


_ABSENT = object()


class IndexValue(NamedTuple):
    """A row's values: a tuple, made ~100 times a clinic record (a frozen dataclass's __init__ cost 3 times as
    much)."""

    param: str
    system: str | None = None
    value: str | None = None
    low: datetime | None = None
    high: datetime | None = None
    #: a relative literal reference's path (`Observation.performer[0].actor`): what refers to a resource (links)
    path: str | None = None


#: IndexValue._make(values) for a tuple of its six fields, without _make's Python frame and length check: a C call
#: (a record's ~100 rows each made a frame)
_make = cast(Callable[[tuple[Any, ...]], IndexValue], partial(tuple.__new__, IndexValue))


def index(resource: dict[str, Any], references: list[tuple[str, str]] | None = None) -> list[IndexValue]:
    """The values `resource` is found by (searched) and its links (`references`: see links), one row for a
    reference that is both (a clinic record held ~22 of its ~98 rows twice): the values other than references, then
    one row per link in document order (what Unit.referrers orders by), a link at a path a reference parameter reads
    being that parameter's row of the same value, then the references no link is (absolute URLs). Every value and
    every link is a row still: `unmerged` gives back both row sets."""
    resource_type = str(resource.get("resourceType", ""))
    # A Provenance's references are its `target` rows already, and what refers to a resource leaves Provenance out
    # (Unit.referrers: it records history, which outlives a delete): its link rows were a second copy nobody read.
    if resource_type == "Provenance":
        return searched(resource)
    at = REFERENCE_PATHS.get(resource_type, {})
    out, waiting = _values(resource, True)
    for path, value in _links(resource, references):
        name = at.get(dotted(path))
        if name is not None and waiting.get((name, value)):
            waiting[name, value] -= 1
        else:
            name = LINK
        out.append(_make((name, None, value, None, None, path)))
    out.extend(_make((name, None, value, None, None, None)) for (name, value), left in waiting.items()
               for _ in range(left))
    return out


def searched(resource: dict[str, Any]) -> list[IndexValue]:
    """The values `resource` is found by, for every parameter of its type."""
    return _values(resource, False)[0]


def _values(resource: dict[str, Any], count: bool) -> tuple[list[IndexValue], dict[tuple[str, str], int]]:
    """searched(), but with `count` the references of the parameters index reads links for (READERS) counted by
    (parameter, value) instead. Each parameter's rows are made here as _index_one makes them (token and date in
    line: a call and a list for each of ~90 values a clinic record cost more than the rows)."""
    out: list[IndexValue] = []
    append = out.append
    waiting: dict[tuple[str, str], int] = {}
    for name, kind, step, steps, counted, param in _reads(str(resource.get("resourceType", "")), count):
        # a path of one step, as most are: _at's answer read at once, unless absent (a choice element: `effective`)
        found = resource.get(step, _ABSENT) if step is not None else _ABSENT
        found = _at(resource, steps) if found is _ABSENT else found if isinstance(found, list) else (found,)
        if counted:
            for value in found:
                target = cut(reference_key(value))  # as _index_one's reference row (no reader is only_targets)
                if target:
                    waiting[name, target] = waiting.get((name, target), 0) + 1
        elif kind == "token":
            for value in found:
                for system, code in tokens(value):
                    append(_make((name, system if system is None or len(system) <= INDEXED else system[:INDEXED],
                                  code if code is None or len(code) <= INDEXED else code[:INDEXED], None, None,
                                  None)))
        elif kind == "date":
            for value in found:
                dates = date_range(value)
                if dates:
                    append(_make((name, None, None, dates[0], dates[1], None)))
        else:
            for value in found:
                out.extend(_index_one(param, value))
    return out, waiting


@lru_cache(maxsize=64)
def _reads(resource_type: str, count: bool = False) -> tuple[tuple[str, str, str | None, tuple[str, ...], bool, Param],
                                                             ...]:
    """(name, kind, the path's one step or None, the path split into steps, counted, parameter) of each path a type's
    parameters read, in their order; not those answered from another parameter's rows. `counted`: with `count`, a
    parameter of READERS (_values)."""
    counted = READERS.get(resource_type, frozenset()) if count else frozenset()
    return tuple((param.name, param.kind, steps[0] if len(steps) == 1 else None, steps, param.name in counted, param)
                 for param in PARAMS.get(resource_type, {}).values() if not param.rows
                 for steps in map(_steps, param.paths))


def links(resource: dict[str, Any], references: list[tuple[str, str]] | None = None) -> list[IndexValue]:
    """The resource's relative literal references (`Type/id`, version dropped) with their paths, as LINK rows;
    absolute URLs point at other servers and contained resources' references are theirs. `references`: what
    `fhirjson.references(resource, resourceType, contained=False)` yields, when the caller has it already."""
    return [IndexValue(LINK, value=value, path=path) for path, value in _links(resource, references)]


def _links(resource: dict[str, Any], references: list[tuple[str, str]] | None) -> Iterator[tuple[str, str]]:
    """(path, `Type/id`) of each link (links)."""
    if references is None:
        references = list(fhirjson.references(resource, str(resource.get("resourceType", "")), contained=False))
    for path, ref in references:
        key = fhirjson.reference_key(ref) if ":" not in ref else None
        if key is not None:
            yield path.removesuffix(".reference")[:INDEXED], "/".join(key)[:INDEXED]  # as cut()


def unmerged(values: list[IndexValue]) -> list[IndexValue]:
    """The rows `index` made as two sets again: each parameter's values (no path), then the links (LINK, path)."""
    return ([v._replace(path=None) for v in values if v.param != LINK]
            + [IndexValue(LINK, value=v.value, path=v.path) for v in values if v.path is not None])


@lru_cache(maxsize=4096)
def dotted(path: str) -> str:
    """A reference's path as a parameter names it: `Procedure.performer[0].actor` -> `performer.actor`."""
    return _POSITIONS.sub("", path.partition(".")[2])


_POSITIONS = re.compile(r"\[\d+\]")


def _reference_paths() -> dict[str, dict[str, str]]:
    """By type, the paths its reference parameters read, each to the one parameter that reads it (a path two read,
    as Provenance's `target` and `patient` do, is neither's; nor is a parameter's that reads some references only)."""
    out: dict[str, dict[str, str]] = {}
    for resource_type, params in PARAMS.items():
        readers: dict[str, list[str]] = {}
        for param in params.values():
            if param.kind == "reference" and not param.rows and not param.only_targets:
                for path in param.paths:
                    readers.setdefault(path, []).append(param.name)
        out[resource_type] = {path: names[0] for path, names in readers.items() if len(names) == 1}
    return out


#: by type, each path a reference parameter reads, to that parameter (index)
REFERENCE_PATHS = _reference_paths()
#: by type, the parameters of REFERENCE_PATHS
READERS = {resource_type: frozenset(paths.values()) for resource_type, paths in REFERENCE_PATHS.items()}


#: characters of a system or value an index row holds (its columns' size: PostgreSQL refuses more). Longer ones are
#: held, and searched for, by their first INDEXED characters, as HAPI truncates its index strings.
INDEXED = 500


def cut(text: str | None) -> str | None:
    """`text` as an index row holds it (INDEXED)."""
    return text[:INDEXED] if text is not None and len(text) > INDEXED else text


def _index_one(param: Param, value: Any) -> list[IndexValue]:
    kind = param.kind
    # rows made by _make, as IndexValue(…) makes them without its Python __new__; cut() in line (~90 calls a record)
    if kind == "token":
        return [_make((param.name, system if system is None or len(system) <= INDEXED else system[:INDEXED],
                       code if code is None or len(code) <= INDEXED else code[:INDEXED], None, None, None))
                for system, code in tokens(value)]
    if kind == "date":
        found = date_range(value)
        return [_make((param.name, None, None, found[0], found[1], None))] if found else []
    if kind == "reference":
        target = reference_key(value)
        if target and (not param.only_targets or target.partition("/")[0] in param.targets):
            return [_make((param.name, None, cut(target), None, None, None))]
        return []
    if kind == "string" and isinstance(value, str):  # as written too, for :exact
        return [IndexValue(param.name, value[:INDEXED], normalise(value)[:INDEXED])]
    return []


def escape(text: str) -> str:
    """A token's system or code as a search value: `\\`, `|`, `,` and `$` escaped (R4 search.html#escaping)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


def system_value(system: str, value: str) -> str:
    """An identifier as a token search value, `system|value`, each part escaped."""
    return f"{escape(system)}|{escape(value)}"


def tokens(value: Any) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a code, Coding, CodeableConcept or Identifier."""
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [p for c in value.get("coding") or [] for p in tokens(c)]
    if "code" in value and isinstance(value["code"], str):
        return [(value.get("system"), value["code"])]
    if "value" in value and isinstance(value["value"], str):  # Identifier
        return [(value.get("system"), value["value"])]
    return []


def reference_key(value: Any) -> str | None:
    """`Type/id` of a literal reference (relative or absolute, version dropped); None otherwise."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    found = fhirjson.reference_key(value["reference"])
    return "/".join(found) if found else None


def normalise(text: str) -> str:
    """Strings match case- and accent-insensitively from the start, as FHIR string search does."""
    import unicodedata

    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c)).casefold()


def date_range(value: Any) -> tuple[datetime, datetime] | None:
    """The instant range a date, dateTime, instant (service/params.py) or Period covers, in naive UTC."""
    if isinstance(value, dict):
        start = date_range(value.get("start")) if value.get("start") else None
        end = date_range(value.get("end")) if value.get("end") else None
        if start is None and end is None:
            return None
        return (start[0] if start else EARLIEST), (end[1] if end else LATEST)
    if not isinstance(value, str):
        return None
    return text_range(value)
