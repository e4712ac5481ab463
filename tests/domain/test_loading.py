"""loading.loaded is schema.load: the same record for valid input, marshmallow's own errors for everything else."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS
from marshmallow import Schema, ValidationError, fields, post_load, validate

from service.domain.kinds import schema_of
from service.domain.loading import _plan, loaded

#: values of every JSON type, and the edge of each check a field makes (whitespace, lengths, NaN, overflow, bounds)
ODD: list[Any] = [None, "", " ", "x", " x", "x ", "ZZZ", "2026-03-02", "2026-02-30", "20260302",
                  "2026-03-02T09:00:00", "2026-03-02T09:00:00Z", "2026-03-02T09:00:00.5+05:30", "2026-03-02 09:00+01",
                  "a" * 201, "a" * 5000, 0, -1, 1, 3, 101, 2**31 - 1, 2**31, 10**400, 0.0, 1.5, -0.5, float("nan"),
                  float("inf"), True, False, [], [None], ["x"], [{}], {}, {"x": 1}]


def outcome(load: Any) -> tuple[str, str]:
    """What a load gives, told apart by type, key order and every value's type (repr), or its error."""
    try:
        return "loaded", repr(load())
    except ValidationError as exc:
        return "error", repr((exc.messages, exc.valid_data))


def same(schema: Schema, record: Any) -> None:
    assert outcome(lambda: loaded(schema, record)) == outcome(lambda: schema.load(copy.deepcopy(record)))


def paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member and item of a record, as a path of keys and indexes."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in [(*at, key), *paths(value, (*at, key))]]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in [(*at, i), *paths(value, (*at, i))]]
    return []


def changed(record: dict[str, Any], path: tuple[Any, ...], value: Any = ..., drop: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(record)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    if drop:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


drawn = st.sampled_from(sorted(RECORDS)).flatmap(lambda kind: st.tuples(st.just(kind), RECORDS[kind]()))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn)
def test_a_valid_record_is_loaded_by_the_plan_as_marshmallow_loads_it(kind_record: tuple[str, dict[str, Any]]) -> None:
    kind, record = kind_record
    schema = schema_of(kind)
    plan = _plan(schema)
    assert plan is not None
    assert repr(plan(copy.deepcopy(record))) == repr(schema.load(record))  # the plan's own answer, no fallback
    same(schema, record)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn, st.data())
def test_every_member_changed_or_dropped_loads_or_fails_as_marshmallow_says(
        kind_record: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
    kind, record = kind_record
    schema = schema_of(kind)
    for path in paths(record):
        same(schema, changed(record, path, drop=True))
        for value in data.draw(st.lists(st.sampled_from(ODD), min_size=3, max_size=6, unique_by=repr)):
            same(schema, changed(record, path, value))
        if isinstance(path[-1], str):
            same(schema, changed(record, (*path[:-1], "unknown"), 1))
    same(schema, record | {"unknown": None})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(drawn)
def test_every_value_of_every_enumeration_loads_as_marshmallow_loads_it(kind_record: tuple[str, dict[str, Any]]) -> None:
    """Each OneOf's choices, and values it lacks, at its field in a record drawn valid."""
    kind, record = kind_record
    schema = schema_of(kind)
    for path in paths(record):
        field = _field_at(schema, path)
        checks = [v for v in (field.validators if field is not None else []) if isinstance(v, validate.OneOf)]
        for check in checks:
            for value in [*check.choices, "not-one-of-them", check.choices[0].upper()]:
                same(schema, changed(record, path, value))


def _field_at(schema: Schema, path: tuple[Any, ...]) -> fields.Field[Any] | None:
    field: Any = None
    for step in path:
        if isinstance(step, int):
            field = field.inner if isinstance(field, fields.List) else None
            continue
        owner = schema if field is None else field.schema if isinstance(field, fields.Nested) else None
        if owner is None:
            return None
        field = next((f for name, f in owner.load_fields.items() if (f.data_key or name) == step), None)
        if field is None:
            return None
    return field


@pytest.mark.parametrize("payload", [[], "record", None, 1])
def test_a_payload_not_an_object_gets_marshmallow_s_error(payload: Any) -> None:
    same(schema_of("assessment"), payload)


def test_a_schema_the_plan_does_not_know_is_loaded_by_marshmallow() -> None:
    class Hooked(Schema):
        name = fields.String()

        @post_load
        def upper(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return {"name": data["name"].upper()}

    schema = Hooked()
    assert _plan(schema) is None
    assert loaded(schema, {"name": "x"}) == {"name": "X"}
