"""What a mapping covers: every record field mapped or listed as unmapped, and what comes back.

`fields(kind)` lists the record contract's leaf fields from the marshmallow schema (../shared/design/DOMAIN.md),
`uncovered(spec)` those no rule reads and no `unmapped` entry explains, and `carried(spec,
record)` the part of a record the reversible rules promise to bring back — the yardstick of the
round-trip tests, derived from the specification rather than written beside it.
"""
from __future__ import annotations

import copy
from typing import Any

from marshmallow import Schema, fields

from service.domain.kinds import KINDS
from service.mapping.spec import Role, Spec, branch, field_path, lookup, put

#: Fields that name the record itself; they become the business identifier, not an element.
IDENTITY = ("external_id", "source")


def leaf_fields(schema: Schema, prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, field in schema.fields.items():
        key = f"{prefix}{field.data_key or name}"
        inner = field.inner if isinstance(field, fields.List) else field
        suffix = "[]" if isinstance(field, fields.List) else ""
        if isinstance(inner, fields.Nested):
            nested = inner.schema
            out.extend(leaf_fields(nested, f"{key}{suffix}."))
        else:
            out.append(key + suffix)
    return out


def contract_fields(kind: str) -> list[str]:
    return [f for f in leaf_fields(KINDS[kind].schema()) if f not in IDENTITY]


def role_base(role: Role) -> str:
    if role.for_each:
        return role.for_each + "[]."
    return role.scope + "." if role.scope else ""


def mapped_fields(spec: Spec) -> dict[str, list[str]]:
    """Record field (contract notation) → the FHIR targets rules write it to."""
    out: dict[str, list[str]] = {}
    for role in spec.roles:
        base = role_base(role)
        for rule in role.rules:
            for name in ([rule.field] if rule.field else []) + list(rule.fields):
                out.setdefault(field_path(base, name), []).append(f"{role.type}.{rule.to}")
    return out


def uncovered(spec: Spec) -> list[str]:
    """Contract fields that are neither mapped nor listed as unmapped (with their reason)."""
    mapped = mapped_fields(spec)
    excused = [u.field for u in spec.unmapped]
    missing = []
    for name in contract_fields(spec.kind):
        plain = name.replace("[]", "")
        if any(_covers(m.replace("[]", ""), plain) for m in mapped):
            continue
        if any(_covers(e.replace("[]", ""), plain) for e in excused):
            continue
        missing.append(name)
    return missing


def _covers(declared: str, field: str) -> bool:
    """`name.given` covers `name.given`; `concurrent_therapy` covers everything beneath it."""
    return field == declared or field.startswith(declared + ".")


def carried(spec: Spec, record: dict[str, Any]) -> dict[str, Any]:
    """The part of `record` the reversible rules bring back from FHIR."""
    out: dict[str, Any] = {name: record[name] for name in IDENTITY if name in record}
    lists: dict[str, dict[int, dict[str, Any]]] = {}
    for role in spec.roles:
        if role.for_each:
            items = lookup(record, role.for_each) or []
            for index, item in enumerate(items):
                if role.when is not None and not role.when.holds(item, record):
                    continue
                target = lists.setdefault(role.for_each, {}).setdefault(index, {})
                _carry(role, item, record, target)
            continue
        scope = lookup(record, role.scope) if role.scope else record
        if scope is None or (role.when is not None and not role.when.holds(scope, record)):
            continue
        target = branch(out, role.scope) if role.scope else out
        _carry(role, scope, record, target)
    for name, by_index in lists.items():
        if by_index:
            put(out, name, [by_index[i] for i in sorted(by_index)])
    return out


def _carry(role: Role, scope: Any, record: dict[str, Any], target: dict[str, Any]) -> None:
    # a one-way rule whose element a reversible rule of the role reads (`one_way: Read back by the rule above`)
    read_back = {(r.field, r.to) for r in role.rules if r.reversible}
    for rule in role.rules:
        if rule.field is None or not (rule.reversible or (rule.one_way and (rule.field, rule.to) in read_back)):
            continue
        if rule.when is not None and not rule.when.holds(scope, record):
            continue
        value = lookup(scope, rule.field)
        if value is None or value == []:
            if rule.default is None:
                continue
            value = rule.default  # sent for an absent field, so it comes back
        put(target, rule.field, copy.deepcopy(value))
