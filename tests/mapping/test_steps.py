"""to_bundle runs each role's rules as steps compiled once (service/mapping/steps.py); origins() runs them one by
one (Mapper.traced). Both make the same Bundle, byte for byte, and fail on the same field."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS
from mapping.support import canonical

from service.demo import demo_records
from service.mapping import Mapper
from service.mapping.transforms import MappingError

KINDS = list(RECORDS)


def same(mapper: Mapper, kind: str, record: dict[str, Any]) -> None:
    compiled = json.dumps(mapper.to_bundle(kind, record))
    assert compiled == json.dumps(mapper.traced(kind, record)[0])
    assert json.dumps(mapper.to_bundle(kind, record)) == compiled  # nothing of the record or the specs was changed


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_compiled_steps_make_the_bundle_the_rules_one_by_one_make(mapper: Mapper, kind: str,
                                                                   data: st.DataObject) -> None:
    same(mapper, kind, canonical(kind, data.draw(RECORDS[kind]())))


@pytest.mark.parametrize("kind,record", demo_records(), ids=lambda x: x if isinstance(x, str) else x["external_id"])
def test_compiled_steps_make_the_demo_records_bundles(mapper: Mapper, kind: str, record: dict[str, Any]) -> None:
    same(mapper, kind, canonical(kind, record))


def test_a_value_no_rule_can_carry_names_the_same_field_either_way(mapper: Mapper) -> None:
    record = canonical("administration", next(r for k, r in demo_records() if k == "administration"))
    record["route"] = "by-owl"
    failed = []
    for make in (mapper.to_bundle, lambda kind, rec: mapper.traced(kind, rec)[0]):
        with pytest.raises(MappingError) as caught:
            make("administration", record)
        failed.append((str(caught.value), caught.value.fields))
    assert failed[0] == failed[1] and failed[0][1] == ("route",)


def test_a_reference_rule_gets_the_first_of_a_roles_references_as_a_new_object(mapper: Mapper) -> None:
    # a one-valued Reference rule takes links.reference(role) (no list made): what references(role)[0] is, or None
    from service.mapping.engine import _RecordLinks
    record = canonical("administration", next(r for k, r in demo_records() if k == "administration"))
    spec = mapper.specs["administration"]
    links = _RecordLinks(mapper, spec, record, mapper._instances(spec, record))
    for role in [r.role for r in spec.roles] + ["no-such-role"]:
        first = links.reference(role)
        assert first == (links.references(role) or [None])[0]
        assert first is None or first is not links.reference(role)
