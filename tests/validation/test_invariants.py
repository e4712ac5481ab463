"""Native fast paths give exactly the FHIRPath answer; System types and trace() behave."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation.corpus import official_sample

from service.conformance.definitions import load
from service.resources import profiles_dir
from service.validation.engine import Validator
from service.validation.invariants import FAST, InvariantError, Invariants, fhir_types

OFFICIAL = Path(__file__).resolve().parents[2] / ".cache" / "hl7.fhir.r4.examples-4.0.1.tgz"


def test_every_fast_path_matches_a_base_invariant() -> None:
    defs = load()
    expressions = {c.get("expression") for name in ("DomainResource", "Reference", "Quantity", "SimpleQuantity", "Period")
                   for e in defs.structure(name)["snapshot"]["element"] for c in e.get("constraint", [])}
    assert set(FAST) <= expressions


def test_fast_paths_agree_with_fhirpath_on_real_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = Validator(load())
    checked: dict[str, int] = {}

    def both(expression: str, node: Any, base: str, resource: Any, root: Any) -> bool:
        try:
            slow = validator.invariants.evaluate(expression, node, base, resource, root)
        except InvariantError:  # fhirpathpy cannot evaluate dom-3 with contained resources: nothing to compare
            return original(expression, node, base, resource, root)
        fast = FAST.get(expression)
        if fast is not None and (answer := fast(node, root)) is not None:
            assert answer == slow, (expression, node)
            checked[expression] = checked.get(expression, 0) + 1
        return slow

    original = validator.invariants.holds
    monkeypatch.setattr(validator.invariants, "holds", both)
    monkeypatch.setattr("service.validation.values.FAST", {})  # _constraints asks them itself: through holds here
    docs = [json.loads(p.read_text()) for p in sorted(profiles_dir().glob("examples/**/*.json")) if p.name != "manifest.json"]
    docs += [doc for _, doc in official_sample(OFFICIAL, count=150)]
    for doc in docs:
        validator.validate(doc)
    assert len(checked) >= 6, checked  # most fast paths met real data, not just generated nodes


nodes = st.fixed_dictionaries({}, optional={
    "code": st.sampled_from(["mg", "kg"]), "system": st.just("http://unitsofmeasure.org"),
    "comparator": st.sampled_from(["<", ">"]), "reference": st.sampled_from(["#a", "#b", "Patient/1", "#"]),
    "start": st.sampled_from(["2020-01-01", "2020-01-02", "2020-01-01T10:00:00Z", "2020-01-01T10:00:00-05:00",
                              "2020-01-01T10:00:00", "2020-01-01T10:00:00.5Z"]),
    "end": st.sampled_from(["2020-01-01", "2019-12-31", "2020-01-01T09:00:00Z", "2020-01-01T10:00:00-05:00",
                            "2020-01-01T11:00:00-05:00", "2020-01-01T09:30:00", "2020-01-01T10:00:00.5Z"]),
    "text": st.sampled_from([{"div": "<div/>"}, {"status": "generated"}]),
    "contained": st.lists(st.fixed_dictionaries({"resourceType": st.just("Patient"), "id": st.sampled_from(["a", "c"])},
                                                optional={"meta": st.sampled_from([{"versionId": "1"}, {"security": [{"code": "x"}]}])}),
                          max_size=2)})


@settings(max_examples=150, deadline=None)
@given(node=nodes)
def test_fast_paths_agree_with_fhirpath_on_generated_nodes(node: dict[str, Any]) -> None:
    invariants = Invariants()
    for expression, fast in FAST.items():
        answer = fast(node, node)
        try:
            slow = invariants.evaluate(expression, node, "Element", node, node)
        except InvariantError:  # dom-3 with contained resources is beyond fhirpathpy; tested directly below
            continue
        if answer is not None:
            assert answer == slow, expression


def test_system_type_names_are_read_as_fhir_types() -> None:
    assert fhir_types("answer is Boolean and x as System.String") == "answer is boolean and x as string"
    rule = "operator = 'exists' implies (answer is Boolean)"
    invariants = Invariants()
    assert invariants.holds(rule, {"operator": "exists", "answerBoolean": True}, "Questionnaire.item.enableWhen", {}, {})
    assert not invariants.holds(rule, {"operator": "exists", "answerString": "x"}, "Questionnaire.item.enableWhen", {}, {})


def test_dom_3_contained_resources_must_be_referenced() -> None:
    dom_3 = next(e for e in FAST if e.startswith("contained.where"))
    referenced = {"contained": [{"resourceType": "Practitioner", "id": "a"}], "generalPractitioner": [{"reference": "#a"}]}
    orphan = {"contained": [{"resourceType": "Practitioner", "id": "a"}]}
    back = {"contained": [{"resourceType": "Provenance", "id": "a", "target": [{"reference": "#"}]}]}
    assert FAST[dom_3](referenced, referenced) is True
    assert FAST[dom_3](orphan, orphan) is False
    assert FAST[dom_3](back, back) is True
    # the first referenced found does not end the search for the second; one referenced from another counts
    two = {"contained": [{"resourceType": "Practitioner", "id": "a"}, {"resourceType": "Practitioner", "id": "b"}],
           "generalPractitioner": [{"reference": "#a"}]}
    assert FAST[dom_3](two, two) is False
    assert FAST[dom_3](two | {"note": [{"text": "#b"}]}, two) is True
    inner = {"contained": [{"resourceType": "Practitioner", "id": "a", "x": {"reference": "#b"}},
                           {"resourceType": "Practitioner", "id": "b"}], "generalPractitioner": [{"reference": "#a"}]}
    assert FAST[dom_3](inner, inner) is True
    odd = {"contained": [{"resourceType": "Practitioner", "id": 1}, {"resourceType": "Practitioner", "id": "a"}],
           "y": "#a"}
    assert FAST[dom_3](odd, odd) is True  # an id that is no text is not asked for


def test_an_input_the_compiled_form_cannot_evaluate_is_reported_as_fhirpathpy_reports_it() -> None:
    invariants = Invariants()
    rule = "value.empty() or value >= 0"  # ket-8: a string value cannot be ordered against 0
    assert invariants.native(rule) is not None
    assert invariants.holds(rule, {"valueInteger": 3}, "Extension", {}, {}) is True
    assert invariants.holds(rule, {"valueInteger": -3}, "Extension", {}, {}) is False
    with pytest.raises(InvariantError, match="did not match type"):
        invariants.holds(rule, {"valueString": "x"}, "Extension", {}, {})
