"""The specification format: what a mapping file must say, and the clear errors when it does not."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.mapping import main_profiles
from service.mapping.spec import Condition, SpecError, folder, load_all, parse

RULE = {"field": "score", "to": "valueInteger", "why": "The total."}


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": "assessment", "version": "1.0.0", "title": "t",
                            "resources": [{"role": "score", "type": "Observation", "rules": [dict(RULE)]}]}
    base.update(changes)
    return base


def test_the_shipped_files_load_with_one_spec_per_kind() -> None:
    specs = load_all()
    assert sorted(specs) == ["administration", "adverse-event", "assessment", "treatment-plan"]
    for kind, loaded in specs.items():
        assert loaded.path == folder() / f"{kind}.yaml"
        assert loaded.version.count(".") == 2
        assert all(rule.why for role in loaded.roles for rule in role.rules), kind


def test_each_kinds_main_resource_and_its_profile_come_from_its_mapping() -> None:
    ours = "https://ketamine-fhir.org/fhir/StructureDefinition/"
    assert main_profiles() == {"CarePlan": ours + "ketamine-treatment-plan",
                               "MedicationAdministration": ours + "ketamine-administration",
                               "AdverseEvent": ours + "ketamine-adverse-event",
                               "Observation": ours + "ketamine-outcome-score"}
    assert set(main_profiles()) == {spec.primary.type for spec in load_all().values()}


def test_person_templates_expand_with_their_record_field() -> None:
    performer = load_all()["administration"].role("performer")
    assert performer.person and performer.type == "Practitioner" and performer.template == "practitioner"
    assert performer.scope == "performer"
    assert [r.field for r in performer.rules] == ["identifier.system", "identifier.value", "name"]


@pytest.mark.parametrize("changes, message", [
    ({"version": "1.0"}, "MAJOR.MINOR.PATCH"),
    ({"colour": "blue"}, "unknown key(s) colour"),
    ({"resources": [{"role": "x", "type": "Observation", "rules": [{"field": "a", "to": "b"}]}]}, "reason (`why`)"),
    ({"resources": [{"role": "x", "type": "Observation", "rules": [{**RULE, "transform": "magic"}]}]},
     "unknown transform 'magic'"),
    ({"resources": [{"role": "x", "type": "Observation", "rules": [{**RULE, "transform": "concept"}]}]},
     "names its `map`"),
    ({"resources": [{"role": "x", "type": "Observation", "rules": [{**RULE, "unit": "mg"}]}]}, "unknown key(s) unit"),
    ({"resources": [{"role": "x", "type": "Observation",
                     "rules": [{"to": "subject", "transform": "reference", "ref": "nobody", "why": "w"}]}]},
     "no role 'nobody'"),
    ({"resources": [{"role": "x", "type": "Observation",
                     "rules": [{"to": "status", "transform": "fixed", "value": "final", "default": "x", "why": "w"}]}]},
     "`default` is for a rule that reads a `field`"),
    ({"resources": [{"role": "x", "type": "Observation",
                     "rules": [{**RULE, "transform": "lookup", "values": {"a": "x", "b": "x"}}]}]},
     "distinct FHIR value"),
    ({"resources": [{"role": "x", "type": "Observation", "rules": [{**RULE, "when": "a ~= b"}]}]},
     "cannot read condition"),
    ({"resources": [{"role": "x", "use": "nobody"}]}, "no template 'nobody'"),
    ({"resources": [{"role": "x", "type": "Observation", "rules": [{**RULE, "field": "$.period.end"}]}]},
     "says `one_way`"),  # a copy of the whole record's field is read back where the record's own rule is
    ({"resources": [{"role": "x", "type": "Observation", "rules": []}, {"role": "x", "type": "Patient", "rules": []}]},
     "role names repeat"),
])
def test_malformed_specifications_are_refused_with_the_place_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        parse(spec(**changes), "test.yaml", {})
    assert str(caught.value).startswith("test.yaml")


def test_a_one_way_lookup_may_map_two_values_to_one() -> None:
    rule = {**RULE, "transform": "lookup", "values": {"a": "x", "b": "x"}, "one_way": "many to one"}
    loaded = parse(spec(resources=[{"role": "x", "type": "Observation", "rules": [rule]}]), "t", {})
    assert not loaded.roles[0].rules[0].reversible


def test_a_second_file_for_the_same_kind_is_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(spec()), encoding="utf-8")
    with pytest.raises(SpecError, match="already mapped"):
        load_all(tmp_path)


@pytest.mark.parametrize("text, scope, expected", [
    ("systolic", {"systolic": 120}, True),
    ("systolic", {"systolic": None}, False),
    ("systolic and diastolic", {"systolic": 120}, False),
    ("systolic and not diastolic", {"systolic": 120}, True),
    ("class != other", {"class": "opioid"}, True),
    ("class != other", {"class": "other"}, False),
    ("present", {"present": False}, False),
    ("present == true", {"present": True}, True),
    ("a or b", {"b": 1}, True),
    ("$.route == intravenous", {}, True),
    ("bp.systolic", {"bp": {"systolic": 120}}, True),  # a dotted name, through lookup
    ("systolic", "120", False),  # a scope that is no object (an item of a list of codes) has no fields
    ("not systolic", ["systolic"], True),
])
def test_conditions(text: str, scope: Any, expected: bool) -> None:
    assert Condition.parse(text, "t").holds(scope, {"route": "intravenous"}) is expected


def test_a_default_is_what_an_absent_field_means_both_ways() -> None:
    """`default`: the contract's meaning of an absent field (BPRS anchoring: absent is 0-6), sent explicitly and
    promised back by the round-trip yardstick."""
    from service.mapping.coverage import carried
    rule = {"field": "anchoring", "to": "method.text", "default": "0-6", "why": "Stated, absent or not."}
    loaded = parse(spec(resources=[{"role": "score", "type": "Observation", "rules": [rule]}]), "t.yaml", {})
    assert loaded.roles[0].rules[0].default == "0-6"
    assert carried(loaded, {"external_id": "a"}) == {"external_id": "a", "anchoring": "0-6"}
    assert carried(loaded, {"external_id": "a", "anchoring": "1-7"})["anchoring"] == "1-7"
