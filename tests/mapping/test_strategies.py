"""The generators are as wide as the contract: every leaf field of every record kind (DOMAIN.md, the fields added
after v1.0 included) and every value of every enumeration is drawn, so the round-trip property tests that use
them (test_roundtrip here, tests/peers/test_hapi_roundtrip.py against HAPI) meet each."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis.errors import NoSuchExample
from mapping.strategies import RECORDS
from marshmallow import Schema, fields, validate

from service.domain.kinds import KINDS
from service.mapping.coverage import contract_fields

#: examples drawn per kind before searching for what they did not meet (derandomized)
DRAWS = 100
#: how long a search for one value the draws did not meet may look
SEARCH = settings(max_examples=4000, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))  # found is enough: no shrinking


def enumerations(schema: Schema, prefix: str = "") -> dict[str, tuple[Any, ...]]:
    """Each enumerated field (a OneOf validator) of a schema, as leaf path → its values."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, field in schema.fields.items():
        key = f"{prefix}{field.data_key or name}"
        inner = field.inner if isinstance(field, fields.List) else field
        key += "[]" if isinstance(field, fields.List) else ""
        if isinstance(inner, fields.Nested):
            out |= enumerations(inner.schema, f"{key}.")
        for check in inner.validators:
            if isinstance(check, validate.OneOf):
                out[key] = tuple(check.choices)
    return out


def leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every leaf of a record, list items as `[]`."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in leaves(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(value, list):
        return [pair for v in value for pair in leaves(v, f"{prefix}[]")] or []
    return [(prefix, value)]


def seen_in(record: dict[str, Any]) -> set[tuple[str, Any]]:
    return {(path, value if isinstance(value, (str, bool)) else None) for path, value in leaves(record)}


@pytest.mark.parametrize("kind", list(RECORDS))
def test_every_field_and_enumeration_value_is_generated(kind: str) -> None:
    """Drawn widely first; a value not met then is searched for (hypothesis.find): each must be reachable."""
    seen: set[tuple[str, Any]] = set()

    @settings(max_examples=DRAWS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(record=RECORDS[kind]())
    def draw(record: dict[str, Any]) -> None:
        seen.update(seen_in(record))

    draw()
    wanted = {(path, None) for path in contract_fields(kind)} | {
        (path, value) for path, values in enumerations(KINDS[kind].schema()).items() for value in values}
    unreached = []
    for path, value in sorted(wanted - {(p, None) for p, _ in seen} - seen, key=str):
        try:
            found = find(RECORDS[kind](), lambda r, p=path, v=value: any(
                q == p and (v is None or w == v) for q, w in leaves(r)), settings=SEARCH)
            seen.update(seen_in(found))
        except NoSuchExample:
            unreached.append((path, value))
    assert unreached == []
