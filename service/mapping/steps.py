"""A role's rules compiled once into steps for Mapper.to_bundle, as the validator compiles its walks.

The rules stay data (mappings/); what a rule's transform needs to know of it on each of the ~95 a record maps
(which transform it names, how its field is read, whether its value is copied, where it is put) is asked once, when
the mapper first maps the role. Mapper._build runs the steps for to_bundle and for origins(), which also notes the
leaves each step put.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.mapping.concepts import ConceptError, ConceptIndex
from service.mapping.paths import ElementPath, clone, cloner
from service.mapping.spec import Rule, lookup
from service.mapping.transforms import (
    FROM_FIELD,
    FROM_SCOPE,
    SHARING,
    ForwardLinks,
    MappingError,
    as_is,
    concept_value,
)

Json = Any
#: (scope, record, links, resource): the rule run on one resource being made
Step = Callable[[Any, dict[str, Any], ForwardLinks, dict[str, Any]], None]
_Produce = Callable[[Any, dict[str, Any], ForwardLinks], Json]
_NESTED = (dict, list)


def compiled(rule: Rule, path: ElementPath, concepts: ConceptIndex) -> Step:
    """The step of `rule`, whose compiled target is `path`: its condition, its value (a copy where the value is the
    record's or the spec's, which later rules may write into), put at its path."""
    produce = _producer(rule, concepts)
    put = path.put_each if rule.each else path.put
    if rule.when is None:
        def step(scope: Any, record: dict[str, Any], links: ForwardLinks, resource: dict[str, Any]) -> None:
            value = produce(scope, record, links)
            if value is not None:
                put(resource, value)
        return step
    holds = rule.when.holds

    def step_when(scope: Any, record: dict[str, Any], links: ForwardLinks, resource: dict[str, Any]) -> None:
        if holds(scope, record):
            value = produce(scope, record, links)
            if value is not None:
                put(resource, value)
    return step_when


def _producer(rule: Rule, concepts: ConceptIndex) -> _Produce:
    """The value a rule produces from its scope (or None for nothing), a copy where it is nested, decided once."""
    transform = rule.transform
    if transform == "fixed":
        fixed = rule.params["value"]
        if isinstance(fixed, _NESTED):
            made = cloner(fixed)
            return lambda scope, record, links: made()
        return lambda scope, record, links: fixed
    if transform == "reference":
        return _reference(rule.params["ref"], rule.each)
    if transform in FROM_SCOPE:  # a value made anew (transforms.SHARING)
        derive = FROM_SCOPE[transform]
        return lambda scope, record, links: derive(rule, scope, links)
    return _field(rule, concepts)


def _reference(ref: str, each: bool) -> _Produce:
    # made here: nothing else holds them, so no copy
    if each:
        return lambda scope, record, links: links.references(ref) or None
    return lambda scope, record, links: links.reference(ref)


def _field(rule: Rule, concepts: ConceptIndex) -> _Produce:
    """A transform of the rule's field (or of each of its items)."""
    read, each, make = _reader(rule.field or "", rule.default), rule.each, FROM_FIELD[rule.transform]
    if each:
        def each_item(scope: Any, record: dict[str, Any], links: ForwardLinks) -> Json:
            value = read(scope, record)
            if value is None:
                return None
            out: list[Json] = []
            for item in value:
                produced = make(rule, item, links)
                out.extend(produced if isinstance(produced, list) else [produced])
            return clone(out)
        return each_item
    if make is as_is:  # copy, date, datetime: the record's value as it is
        return lambda scope, record, links: _copied(read(scope, record))
    known = _known(rule, concepts)
    if known is not None:
        def looked_up(scope: Any, record: dict[str, Any], links: ForwardLinks) -> Json:
            value = read(scope, record)
            if value is None:
                return None
            made = known.get(value) if value.__class__ is str else None
            return made() if made is not None else _copied(make(rule, value, links))
        return looked_up
    shared = rule.transform in SHARING  # else a value made anew: nothing to copy

    def made(scope: Any, record: dict[str, Any], links: ForwardLinks) -> Json:
        value = read(scope, record)
        if value is None:
            return None
        value = make(rule, value, links)
        return _copied(value) if shared else value
    return made


def _known(rule: Rule, concepts: ConceptIndex) -> dict[str, Callable[[], Json]] | None:
    """Of a concept or lookup rule, what it makes of each code it knows (a few dozen at most), made once: the value's
    cloner (paths.cloner), by code. Any other value is left to the transform (its error, a boolean's lookup)."""
    if rule.transform == "lookup":
        return {code: cloner(value) for code, value in rule.params["values"].items() if code.__class__ is str}
    if rule.transform != "concept":
        return None
    known = {}
    for code in concepts.system(rule.params["map"]).concepts:
        try:
            known[code] = cloner(concept_value(rule, code, concepts))
        except (MappingError, ConceptError):  # a code it cannot send: the transform says so, each time
            continue
    return known


def _reader(name: str, default: Any) -> Callable[[Any, dict[str, Any]], Any]:
    """spec.read for one field name (`$.period.end` in the whole record, `a.b` or `a` in the rule's scope), an absent
    value (None or []) the rule's default."""
    get: Callable[[Any, dict[str, Any]], Any]
    if name.startswith("$."):
        whole = name[2:]
        get = lambda scope, record: lookup(record, whole)  # noqa: E731
    elif "." in name:
        get = lambda scope, record: lookup(scope, name)  # noqa: E731
    else:
        get = lambda scope, record: scope.get(name) if isinstance(scope, dict) else None  # noqa: E731

    def read(scope: Any, record: dict[str, Any]) -> Any:
        value = get(scope, record)
        return default if value is None or value == [] else value
    return read


def _copied(value: Json) -> Json:
    return clone(value) if isinstance(value, _NESTED) else value
