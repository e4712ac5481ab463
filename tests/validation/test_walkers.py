"""The generated walk of each element list (walkers.py) finds what the generic walk finds, in the same order."""
from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validation.corpus import MUTATIONS, mutated, official_sample, walk

from service.conformance.definitions import load
from service.resources import profiles_dir
from service.validation.engine import Validator
from service.validation.invariants import FAST, Invariants
from service.validation.plan import ElementPlan
from service.validation.policy import ValidationPolicy
from service.validation.run import Run

OFFICIAL = Path(__file__).resolve().parents[2] / ".cache" / "hl7.fhir.r4.examples-4.0.1.tgz"
VALID = [json.loads(p.read_text()) for p in sorted((profiles_dir() / "examples").glob("*.json"))
         if p.name != "manifest.json"]
#: every subtree of the valid examples (as JSON text), to put where another belongs: it reaches deeper than noise
PIECES = sorted({json.dumps(node, sort_keys=True) for doc in VALID for _, node in walk(doc)})
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | \
    st.sampled_from(["", "2024-01-01", "Patient/x", "#", "urn:uuid:1", "http://unitsofmeasure.org", "mg"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["id", "url", "extension", "value", "valueString", "_value", "code", "coding", "system",
                     "reference", "colour"]) | st.text(max_size=6), inner, max_size=4), max_leaves=12)


FAST_REF_1 = next(e for e in FAST if e.startswith("reference.startsWith('#')"))
FAST_PER_1 = next(e for e in FAST if e.startswith("start.hasValue()"))


class Generic(Validator):
    """The walk without generated code: every object through _object_generic."""

    def _object(self, obj: dict[str, Any], children: list[ElementPlan], expr: str, run: Run,
                resource: bool = False) -> None:
        self._object_generic(obj, children, expr, run, resource)


@cache
def _pair() -> tuple[Validator, Validator]:
    defs = load()
    return Generic(defs, ValidationPolicy.store()), Validator(defs, ValidationPolicy.store())


class Counted(Validator):
    """The generated walk, counting the objects it hands to the generic one."""

    handed = 0

    def _object_generic(self, obj: dict[str, Any], children: list[ElementPlan], expr: str, run: Run,
                        resource: bool = False) -> None:
        Counted.handed += 1
        super()._object_generic(obj, children, expr, run, resource)


@pytest.fixture(scope="module")
def documents() -> list[Any]:
    """Our examples (valid and invalid) and their mutations, a sample of the official R4 examples and theirs."""
    examples = [p for p in sorted(profiles_dir().glob("examples/**/*.json")) if p.name != "manifest.json"]
    docs = [json.loads(p.read_text()) for p in examples] + [doc for _, doc in mutated(examples)]
    official = [doc for _, doc in official_sample(OFFICIAL, count=40)] if OFFICIAL.exists() else []
    for doc in official[::4]:
        for mutate in MUTATIONS.values():
            changed = copy.deepcopy(doc)
            if mutate(changed) and changed != doc:
                docs.append(changed)
    return docs + official


def _findings(validator: Validator, docs: list[Any], must_support: bool) -> list[str]:
    return [json.dumps([[f.severity, f.code, f.expression, f.message] for f in validator.validate(
        doc, must_support=must_support)]) for doc in docs]


@pytest.mark.parametrize(("policy", "must_support"), [(ValidationPolicy.store(), False), (ValidationPolicy(), False),
                                                      (ValidationPolicy.store(), True)],
                         ids=["store", "hl7", "store-must-support"])
def test_generated_walk_finds_what_the_generic_walk_finds(documents: list[Any], policy: ValidationPolicy,
                                                          must_support: bool) -> None:
    defs = load()
    docs = documents
    expected = _findings(Generic(defs, policy), docs, must_support)
    assert _findings(Validator(defs, policy), docs, must_support) == expected
    assert sum(found != "[]" for found in expected) > len(docs) // 4  # the corpus has findings to agree on


def test_the_generated_walk_keeps_the_common_case_to_itself() -> None:
    """A valid example's objects are walked by generated code; one with an unknown key is handed over."""
    validator = Counted(load(), ValidationPolicy.store())
    example = json.loads((profiles_dir() / "examples" / "MedicationAdministration-iv-session-1.json").read_text())
    Counted.handed = 0
    assert not [f for f in validator.validate(example) if f.severity in ("error", "fatal")]
    assert Counted.handed == 0
    odd = copy.deepcopy(example)
    odd["dosage"]["route"]["colour"] = "blue"
    found = validator.validate(odd)
    assert Counted.handed >= 1
    assert [f.expression for f in found if "colour" in f.message] == ["MedicationAdministration.dosage.route.colour"]


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_walk_agrees_on_examples_with_a_part_replaced(data: st.DataObject) -> None:
    """One element of a valid example replaced by another example's part, a random JSON value, or deleted."""
    doc = copy.deepcopy(data.draw(st.sampled_from(VALID)))
    path = data.draw(st.sampled_from([p for p, _ in walk(doc) if p]))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    how = data.draw(st.sampled_from(["piece", "value", "delete", "unknown"]))
    if how == "piece":
        parent[path[-1]] = json.loads(data.draw(st.sampled_from(PIECES)))
    elif how == "value":
        parent[path[-1]] = data.draw(VALUES)
    elif isinstance(parent, dict) and how == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["_" + str(path[-1])] = data.draw(VALUES)
    generic, generated = _pair()
    assert [(f.severity, f.expression, f.message) for f in generated.validate(doc)] == \
        [(f.severity, f.expression, f.message) for f in generic.validate(doc)]


def test_a_rule_with_a_fast_path_is_answered_by_the_generated_walk_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """invariants.fast_path (ref-1 on every Reference, per-1 on a Period): the generated walk calls it where it
    writes the value's checks out, not Invariants.holds through Values._constraints; its findings are the generic
    walk's."""
    asked: list[str] = []
    real = Invariants.holds

    def holds(self: Invariants, expression: str, *args: Any) -> bool:
        asked.append(expression)
        return real(self, expression, *args)
    monkeypatch.setattr(Invariants, "holds", holds)
    example = json.loads((profiles_dir() / "examples" / "MedicationAdministration-iv-session-1.json").read_text())
    odd = copy.deepcopy(example)
    odd["subject"]["reference"] = "#nowhere"  # ref-1 fails: no contained resource has that id
    odd["effectivePeriod"] = {"start": "2026-03-05T10:00:00-05:00", "end": "2026-03-05T09:00:00-05:00"}  # per-1
    generic, generated = _pair()
    expected = _findings(generic, [example, odd], False)
    asked.clear()
    assert _findings(generated, [example, odd], False) == expected
    assert "ref-1" in expected[1] and "per-1" in expected[1]
    # a choice (effective[x]) goes through _value and _constraints, which asks the FAST path itself: neither is holds'
    assert FAST_REF_1 not in asked and FAST_PER_1 not in asked
