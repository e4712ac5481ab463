"""to_bundle runs each role's rules as steps compiled once (service/mapping/steps.py); origins() runs them one by
one (Mapper.traced). Both make the same Bundle, byte for byte, and fail on the same field."""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS
from mapping.support import canonical

from service.demo import demo_records
from service.mapping import Mapper
from service.mapping.concepts import ConceptError
from service.mapping.engine import _if_none_exist
from service.mapping.steps import _known
from service.mapping.transforms import FROM_FIELD, MappingError
from service.search.parameters import escape

KINDS = list(RECORDS)


def same(mapper: Mapper, kind: str, record: dict[str, Any]) -> None:
    bundle = mapper.to_bundle(kind, record)
    compiled = json.dumps(bundle)
    assert compiled == json.dumps(mapper.traced(kind, record)[0])
    assert json.dumps(mapper.to_bundle(kind, record)) == compiled  # nothing of the record or the specs was changed
    # the Bundle is written into later (flags, a stale entry withdrawn): it holds each object and array once, and
    # none of the record's or the specs' (steps copy only what is not made anew: a record's value, a fixed one)
    made = containers(bundle)
    assert len(made) == len(set(made))
    assert not set(made) & set(containers(record) + containers([s.roles for s in mapper.specs.values()]))


def containers(node: Any) -> list[int]:
    """id() of every dict and list in a JSON value (or in the specs' rules: their params)."""
    if isinstance(node, tuple | list):
        inner = [c for child in node for c in containers(child)]
        return inner if isinstance(node, tuple) else [id(node), *inner]
    if isinstance(node, dict):
        return [id(node), *(c for child in node.values() for c in containers(child))]
    if hasattr(node, "rules"):  # a Role
        return [c for rule in node.rules for c in containers(rule.params)]
    return []


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


def test_a_concept_or_lookup_rule_makes_of_each_code_what_its_transform_makes(mapper: Mapper) -> None:
    # steps._known: what such a rule makes of each code it knows, made once; any other value goes to the transform
    links = SimpleNamespace(concepts=mapper.concepts)
    for rule in (rule for spec in mapper.specs.values() for role in spec.roles for rule in role.rules
                 if rule.transform in ("concept", "lookup")):
        known = _known(rule, mapper.concepts)
        assert known is not None
        codes = [str(v).lower() if isinstance(v, bool) else str(v) for v in rule.params.get("values", ())]
        codes.append("no-such-code")  # a str, as the steps look one up (a value of another type: the transform)
        if rule.transform == "concept":
            codes += list(mapper.concepts.system(rule.params["map"]).concepts)
        for code in codes:
            try:
                expected = FROM_FIELD[rule.transform](rule, code, links)  # type: ignore[arg-type]
            except (MappingError, ConceptError):
                assert code not in known
                continue
            assert json.dumps(known[code]()) == json.dumps(expected), (rule.to, code)


@settings(max_examples=300, deadline=None)
@given(system=st.text(max_size=12), value=st.text(max_size=12))
def test_a_persons_conditional_create_encodes_its_token_as_one_string(system: str, value: str) -> None:
    # _if_none_exist encodes the system once (quote maps byte by byte): the text of quoting the whole token
    token = quote(f"{escape(system)}|{escape(value)}", safe="")
    assert _if_none_exist({"system": system, "value": value}) == "identifier=" + token
