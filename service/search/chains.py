"""Chained (`subject:Patient.identifier=…`, `patient.name=…`) and reverse chained (`_has:Observation:patient:code=…`)
search parameters, and `_revinclude`, read from their names (search.html#chaining, #has): the reference parameter,
and at its other end each (type, parameter, modifier) the value is for; query.py makes them criteria.

One level: the parameter at the other end is an ordinary one of its type (no chain of chains).
"""
from __future__ import annotations

from service.params import bad
from service.search.parameters import TYPES, Param, params_of

#: (the type at the other end of the reference, its parameter, the modifier)
Ends = list[tuple[str, Param, str | None]]


def chained(resource_type: str, raw_name: str) -> tuple[Param, Ends]:
    """`ref[:Type].param[:modifier]=value`: resources whose reference `ref` points at a `Type` (given, or each
    type `ref` may point at that has `param`) matching `param[:modifier]=value`."""
    head, _, tail = raw_name.partition(".")
    ref_name, _, given = head.partition(":")
    reference = _reference(resource_type, ref_name, raw_name)
    if given and reference.rows and given not in reference.targets:  # it reads another parameter's rows
        raise bad(raw_name, f"{ref_name} refers to {' or '.join(reference.targets)} only")
    inner_name, _, modifier = tail.partition(":")
    if "." in tail or not inner_name:
        raise bad(raw_name, "one level of chaining is supported (e.g. subject:Patient.identifier)")
    targets = [given] if given else [t for t in reference.targets or TYPES if t in TYPES and inner_name in params_of(t)]
    ends: Ends = []
    for target in targets:
        inner = params_of(target).get(inner_name) if target in TYPES else None
        if inner is None:
            raise bad(raw_name, f"{target} has no search parameter {inner_name!r}")
        ends.append((target, inner, modifier or None))
    if not ends:
        raise bad(raw_name, f"no type {ref_name} may point at has a search parameter {inner_name!r}; "
                            f"name the type ({ref_name}:Type.{inner_name})")
    return reference, ends


def reverse(resource_type: str, raw_name: str) -> tuple[Param, Ends]:
    """`_has:Type:ref:param[:modifier]=value`: resources some `Type` refers to through its `ref`, that `Type`
    matching `param=value`."""
    parts = raw_name.split(":")
    if len(parts) not in (4, 5) or parts[3] == "_has":
        raise bad(raw_name, "expected _has:Type:reference:parameter=value (one level)")
    source, ref_name, inner_name = parts[1], parts[2], parts[3]
    if source not in TYPES:
        raise bad(raw_name, f"this server does not serve {source!r}")
    reference = _reference(source, ref_name, raw_name)
    if reference.targets and resource_type not in reference.targets:
        raise bad(raw_name, f"{source}.{ref_name} does not point at {resource_type}")
    inner = params_of(source).get(inner_name)
    if inner is None:
        raise bad(raw_name, f"{source} has no search parameter {inner_name!r}")
    return reference, [(source, inner, parts[4] if len(parts) == 5 else None)]


def revinclude(raw: str, resource_type: str) -> tuple[str, str, str | None]:
    """`_revinclude=Type:ref[:Target]`: the `Type` resources whose `ref` points at a match."""
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] not in TYPES:
        raise bad("_revinclude", f"expected Type:parameter[:{resource_type}] of a type this server serves, not {raw!r}")
    reference = _reference(parts[0], parts[1], "_revinclude")
    target = parts[2] if len(parts) == 3 else None
    if target not in (None, resource_type) or reference.targets and resource_type not in reference.targets:
        raise bad("_revinclude", f"{parts[0]}.{parts[1]} does not point at {resource_type}")
    return parts[0], parts[1], target


def _reference(resource_type: str, name: str, where: str) -> Param:
    param = params_of(resource_type).get(name)
    if param is None or param.kind != "reference":
        raise bad(where, f"{name!r} is not a reference parameter of {resource_type}")
    return param
