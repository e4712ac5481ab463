"""Compiled FHIRPath (fhirpath_compiled) gives fhirpathpy's verdict on every constraint the corpus meets.

The corpus: our examples (valid and invalid), their mutations, a sample of the official R4 examples and
their mutations, plus every recorded element with each of its properties dropped in turn and with its
first array halved or doubled, so that each constraint meets both verdicts. A compiled evaluation that
raises is handed back to fhirpathpy by the validator; the test counts those, and they must stay rare."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy.models import models
from hypothesis import given, settings
from hypothesis import strategies as st
from validation.corpus import mutated, official_sample

from service.conformance.definitions import load
from service.resources import profiles_dir
from service.validation import ours
from service.validation.fhirpath_compiled import compile_expression, verdict
from service.validation.invariants import FAST, OPTIONS, InvariantError, Invariants, evaluated

OFFICIAL = Path(__file__).resolve().parents[2] / ".cache" / "hl7.fhir.r4.examples-4.0.1.tgz"
Call = tuple[str, Any, str, Any, Any]  # expression, node, base, %resource, %rootResource
PER_EXPRESSION = 150


def _corpus() -> list[Any]:
    examples = [p for p in sorted(profiles_dir().glob("examples/**/*.json")) if p.name != "manifest.json"]
    docs = [json.loads(p.read_text()) for p in examples] + [doc for _, doc in mutated(examples)]
    official = [doc for _, doc in official_sample(OFFICIAL, count=300)]
    return docs + official + [doc for _, doc in _mutations_of(official[::15])]


def _mutations_of(docs: list[Any]) -> Iterator[tuple[str, Any]]:
    """The corpus mutations applied to resources in memory (mutated() reads files)."""
    from validation.corpus import MUTATIONS

    for doc in docs:
        for name, mutate in MUTATIONS.items():
            changed = copy.deepcopy(doc)
            if mutate(changed) and changed != doc:
                yield name, changed


def _recorded(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """The invariant evaluations the validator asks for on the corpus: each distinct input once, at most
    PER_EXPRESSION per expression (fhirpathpy takes about a millisecond for each)."""
    validator = ours()
    calls: dict[str, Call] = {}
    original = validator.invariants.holds

    def record(expression: str, node: Any, base: str, resource: Any, root: Any) -> bool:
        key = json.dumps([expression, base, node, resource if "%resource" in expression else None,
                          root if "%rootResource" in expression else None], sort_keys=True, default=str)
        calls.setdefault(key, (expression, node, base, resource, root))
        return original(expression, node, base, resource, root)

    monkeypatch.setattr(validator.invariants, "holds", record)
    # _constraints answers guards, FAST and PLAIN paths itself: every rule through holds here, to be recorded
    monkeypatch.setattr("service.validation.values.FAST", {})
    monkeypatch.setattr("service.validation.values.PLAIN", {})
    monkeypatch.setattr("service.validation.values.GUARDS", {})
    for doc in _corpus():
        validator.validate(doc)
    by_expression: dict[str, list[Call]] = {}
    for call in calls.values():
        by_expression.setdefault(call[0], []).append(call)
    return [c for group in by_expression.values() for c in group[:: max(1, len(group) // PER_EXPRESSION)]]


def _variants(node: Any) -> Iterator[Any]:
    """`node` with one property dropped, and with its first array halved or doubled."""
    if not isinstance(node, dict):
        return
    for key in node:
        yield {k: v for k, v in node.items() if k != key}
    array = next((k for k, v in node.items() if isinstance(v, list) and v), None)
    if array is not None:
        yield {**node, array: node[array][: len(node[array]) // 2]}
        yield {**node, array: node[array] + node[array]}


def _fhirpathpy(invariants: Invariants, call: Call) -> bool | str:
    try:
        return invariants.evaluate(*call)
    except InvariantError:
        return "error"


def test_compiled_constraints_give_fhirpathpys_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _recorded(monkeypatch)
    calls += [(e, variant, b, r, root) for e, node, b, r, root in calls[::3] for variant in _variants(node)]
    reference, compiled = Invariants(), {}
    disagreements, deferred, verdicts = [], 0, {True: set(), False: set()}  # type: ignore[var-annotated]
    for call in calls:
        expression, node, base, resource, root = call
        native = compiled.setdefault(expression, compile_expression(evaluated(expression), models["r4"], OPTIONS))
        if native is None:
            continue
        try:
            answer: bool | str = native.holds(node, base, {"resource": resource, "rootResource": root})
        except Exception:  # noqa: BLE001 - the validator hands these to fhirpathpy
            deferred += 1
            continue
        expected = _fhirpathpy(reference, call)
        if answer != expected:
            disagreements.append(f"{expression!r} on {base} {json.dumps(node)[:300]}: compiled {answer}, "
                                 f"fhirpathpy {expected}")
        verdicts[bool(answer)].add(expression)
    assert not disagreements, "\n".join(disagreements[:20])
    checked = len(calls) - deferred
    assert checked > 4_000 and deferred < 0.05 * len(calls), (checked, deferred)
    assert len(verdicts[True]) >= 100 and len(verdicts[False]) >= 30, {k: len(v) for k, v in verdicts.items()}


def test_core_and_profile_constraints_mostly_compile() -> None:
    """Every R4 core and IG constraint expression; the few left to fhirpathpy are named here, so that a
    new one shows up in review."""
    defs = load()
    expressions = set()
    structures = [defs.core.get(e["filename"]) for e in defs.core.index if e.get("resourceType") == "StructureDefinition"]
    for sd in structures + [r for r in defs.own.values() if r.get("resourceType") == "StructureDefinition"]:
        for element in (sd or {}).get("snapshot", {}).get("element", []):
            expressions |= {c["expression"] for c in element.get("constraint", []) if c.get("expression")}
    left = {e for e in expressions if compile_expression(evaluated(e), models["r4"], OPTIONS) is None}
    assert len(expressions) > 200
    assert {e.split(" ", 1)[0] for e in left - set(FAST)} <= {"Appointment.cancelationReason.exists()",
                                                               "onBehalfOf.exists()", "(%resource.kind",
                                                               "($this"}, left


def test_compiled_and_fhirpathpy_agree_on_three_valued_logic() -> None:
    cases = {"a.exists() and b.exists()": [{}, {"a": 1}, {"a": 1, "b": 2}],
             "(a = 'x') implies (b = 'y')": [{}, {"a": "x"}, {"a": "x", "b": "y"}, {"a": "z", "b": "q"}],
             "(a = 'x') or (b = 'y')": [{}, {"a": "x"}, {"b": "q"}, {"a": ["x", "x"]}],
             "a.where(b = 'c').count() > 1": [{"a": [{"b": "c"}, {"b": "c"}]}, {"a": [{"b": "c"}]}],
             "a.all($this = 'x')": [{"a": ["x", "x"]}, {"a": ["x", "y"]}, {}],
             "a.all($this != 'x')": [{"a": [{"b": "x"}]}, {"a": [{"b": "x"}, "x"]}]}
    reference = Invariants()
    for expression, nodes in cases.items():
        native = compile_expression(expression, models["r4"], OPTIONS)
        assert native is not None
        for node in nodes:
            answer = verdict(native.evaluate(node, "Element", {"resource": node, "rootResource": node}))
            assert answer == reference.evaluate(expression, node, "Element", node, node), (expression, node)


MOMENTS = st.one_of(
    st.builds(lambda d: f"2026-03-{d:02d}", st.integers(1, 3)),
    st.builds(lambda d, h, m, tz: f"2026-03-{d:02d}T{h:02d}:{m:02d}:00{tz}", st.integers(1, 3), st.integers(0, 23),
              st.sampled_from([0, 30]), st.sampled_from(["Z", "+00:00", "-05:00", "+05:30", "", ".5Z"])),
    st.sampled_from(["2026-03", "2026", "2026-13-01T10:00:00Z", "2026-02-30", "2026-02-30T10:00:00Z"]))


@settings(max_examples=300, deadline=None)
@given(start=MOMENTS, end=MOMENTS, op=st.sampled_from(["<", "<=", ">", ">="]))
def test_temporal_ordering_gives_fhirpathpys_answer(start: str, end: str, op: str) -> None:
    expression = f"start.empty() or end.empty() or (start {op} end)"
    native = compile_expression(expression, models["r4"], OPTIONS)
    assert native is not None
    node = {"start": start, "end": end}
    try:
        answer: bool | str = native.holds(node, "Period", {})
    except Exception:  # noqa: BLE001 - handed to fhirpathpy by the validator
        return
    assert answer == _fhirpathpy(Invariants(), (expression, node, "Period", node, node)), (start, op, end)
