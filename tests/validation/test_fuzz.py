"""The validator on hostile input: whatever JSON it is given it returns findings, never an exception.

Property-based (hypothesis): (a) arbitrary JSON values, with and without a real resourceType, (b) every valid
example with one leaf or subtree replaced by an arbitrary JSON value (or by a piece of another example, which
reaches deeper into the profiles than random noise does), (c) every valid example with keys deleted at any depth.
Each finding must be well formed (known severity, a message, an expression rooted at the resource type or `$this`)
and validating the same input twice must give the same findings.
"""
from __future__ import annotations

import copy
import json
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validation.corpus import walk

from service.fhirjson import Finding
from service.resources import profiles_dir
from service.validation import ours
from service.validation.engine import Validator

EXAMPLES_DIR = profiles_dir() / "examples"
VALID = sorted(p for p in EXAMPLES_DIR.glob("*.json") if p.name != "manifest.json")
INVALID = sorted((EXAMPLES_DIR / "invalid").glob("*.json"))
SEVERITIES = {"fatal", "error", "warning", "information"}
RESOURCE_TYPES = ["Patient", "Observation", "MedicationAdministration", "MedicationRequest", "CarePlan", "Condition",
                  "AdverseEvent", "DetectedIssue", "Encounter", "Practitioner", "Bundle", "OperationOutcome"]
#: Element names our resources use, so that random objects sometimes hit real elements and get walked deeper.
FHIR_KEYS = ["resourceType", "id", "meta", "profile", "text", "status", "div", "extension", "modifierExtension", "url",
             "valueInteger", "valueQuantity", "valueString", "valueCodeableConcept", "value", "code", "coding",
             "system", "display", "subject", "reference", "context", "category", "component", "effectivePeriod",
             "effectiveDateTime", "start", "end", "dosage", "dose", "rate", "rateRatio", "route", "contained",
             "entry", "resource", "fullUrl", "partOf", "_status", "_birthDate", "birthDate", "name", "given",
             "_given", "unit", "numerator", "denominator", "suspectEntity", "instance", "causality", "seriousness",
             "dosageInstruction", "doseAndRate", "doseQuantity", "timing", "activity", "addresses", "period",
             "performer", "actor", "patient", "implicated", "severity", "identified", "identifiedDateTime"]
#: Modest by default so the file runs in seconds; KFHIR_FUZZ_EXAMPLES=5000 for a long hunt.
SETTINGS = settings(deadline=None, max_examples=int(os.environ.get("KFHIR_FUZZ_EXAMPLES", "300")),
                    suppress_health_check=[HealthCheck.too_slow])


@cache
def validator() -> Validator:
    return ours()


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def example(path: Path) -> Any:
    """A fresh copy each time: the mutations below edit it in place."""
    return json.loads(_read(path))


@cache
def _pieces() -> list[Any]:
    """Every subtree of every example (valid and invalid), as JSON text so each use gets its own copy."""
    seen: dict[str, None] = {}
    for path in VALID + INVALID:
        for _, node in walk(json.loads(_read(path))):
            seen.setdefault(json.dumps(node, sort_keys=True), None)
    return list(seen)


def replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return doc


# --- strategies -------------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text()
           | st.sampled_from(["", " ", "2024-01-01", "2024-01-01T10:00:00Z", "Patient/x", "#", "urn:uuid:1",
                              "http://unitsofmeasure.org", "mg", "completed", "<div>x</div>", "\x00", "ä\u2028"]))
KEYS = st.sampled_from(FHIR_KEYS) | st.text(max_size=12)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=25,
)


@cache
def element_names(kind: str) -> list[str]:
    """The JSON names of the top-level elements of `kind` (a choice element under each of its types)."""
    names = []
    for element in validator().defs.structure(kind)["snapshot"]["element"]:
        parts = element["path"].split(".")
        if len(parts) != 2:
            continue
        if parts[1].endswith("[x]"):
            stem = parts[1].removesuffix("[x]")
            names += [stem + t["code"][0].upper() + t["code"][1:] for t in element.get("type", [])]
        else:
            names.append(parts[1])
    return names


@st.composite
def resources(draw: st.DrawFn) -> Any:
    """An object with a real resourceType and random content, keyed mostly by the type's own element names so the
    walk goes past the first unknown element (sometimes with a nested resource of a real type)."""
    def body(kind: str, max_size: int) -> dict[str, Any]:
        keys = st.sampled_from(element_names(kind)) | KEYS
        out = draw(st.dictionaries(keys, SCALARS | JSON_VALUES, max_size=max_size))
        out["resourceType"] = kind
        return out

    outer = body(draw(st.sampled_from(RESOURCE_TYPES)), 6)
    if draw(st.booleans()):
        nested = body(draw(st.sampled_from(RESOURCE_TYPES)), 4)
        if outer["resourceType"] == "Bundle" and draw(st.booleans()):
            full_url = draw(st.sampled_from(["http://x/Patient/1", "urn:uuid:1", "Patient/1", ""]))
            outer["entry"] = [{"fullUrl": full_url, "resource": nested}]
        else:
            outer["contained"] = [nested]
    return outer


def replacements() -> st.SearchStrategy[Any]:
    return JSON_VALUES | st.sampled_from(_pieces()).map(json.loads)


@st.composite
def examples_with_one_node_replaced(draw: st.DrawFn) -> Any:
    path_ = draw(st.sampled_from(VALID), label="example")
    doc = example(path_)
    paths = [p for p, _ in walk(doc) if p]
    depth = draw(st.integers(1, max(len(p) for p in paths)), label="depth")  # shallow nodes as often as deep ones
    where = draw(st.sampled_from([p for p in paths if len(p) == depth] or paths), label="replaced at")
    return replace(doc, where, draw(replacements(), label="by"))


@st.composite
def examples_with_keys_deleted(draw: st.DrawFn) -> Any:
    doc = example(draw(st.sampled_from(VALID), label="example"))
    keyed = [p for p, _ in walk(doc) if p and isinstance(p[-1], str)]
    for where in draw(st.lists(st.sampled_from(keyed), min_size=1, max_size=6, unique=True), label="deleted"):
        parent: Any = doc
        try:
            for step in where[:-1]:
                parent = parent[step]
        except (KeyError, IndexError):
            continue  # an ancestor was deleted already
        parent.pop(where[-1], None)
    return doc


# --- the properties ---------------------------------------------------------------------------

def expected_root(resource: Any) -> str | None:
    """The resource type the expressions should start with (None: the input is not an object of a known type)."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if isinstance(kind, str) and validator().is_resource_type(kind):
        return str(resource["resourceType"])
    return None


def unrooted(expression: str, resource: Any) -> bool:
    """Where a finding about something that is no resource of a known type may point: the input itself, or the
    type it claims to be when that is a string."""
    claimed = resource.get("resourceType") if isinstance(resource, dict) else None
    return expression.startswith("$this") or expression == "Resource" or (
        isinstance(claimed, str) and (expression == claimed or expression.startswith((f"{claimed}.", f"{claimed}["))))


def check(resource: Any) -> list[Finding]:
    """Validate (it must not raise), check each finding is well formed and that a second run agrees."""
    before = json.dumps(resource, sort_keys=True)
    findings = validator().validate(resource)
    assert json.dumps(resource, sort_keys=True) == before, "the validator changed its input"
    root = expected_root(resource)
    for f in findings:
        assert isinstance(f, Finding)
        assert f.severity in SEVERITIES, f
        assert isinstance(f.code, str) and f.code, f
        assert isinstance(f.message, str) and f.message.strip(), f
        assert isinstance(f.expression, str), f
        if root is None:
            assert unrooted(f.expression, resource), f
        else:
            assert (f.expression == root or f.expression.startswith((f"{root}.", f"{root}[", "$this"))), f
    again = validator().validate(copy.deepcopy(resource))
    assert again == findings, "validating the same input twice gave different findings"
    return findings



@SETTINGS
@given(JSON_VALUES)
def test_arbitrary_json_never_raises(value: Any) -> None:
    findings = check(value)
    if not isinstance(value, dict):
        assert [(f.severity, f.expression) for f in findings] == [("fatal", "$this")]


@SETTINGS
@given(st.dictionaries(KEYS, JSON_VALUES, max_size=6), JSON_VALUES)
def test_arbitrary_resource_type_value_never_raises(body: dict[str, Any], kind: Any) -> None:
    """resourceType itself is untrusted: null, a number, a list, an object or an unknown name."""
    body["resourceType"] = kind
    findings = check(body)
    if not (isinstance(kind, str) and validator().is_resource_type(kind)):
        assert any(f.severity in ("error", "fatal") for f in findings)


@SETTINGS
@given(resources())
def test_arbitrary_content_with_a_real_resource_type_never_raises(resource: dict[str, Any]) -> None:
    check(resource)


@SETTINGS
@given(resources(), st.sampled_from(sorted(
    "https://ketamine-fhir.org/fhir/StructureDefinition/" + p for p in (
        "ketamine-treatment-plan", "ketamine-indication", "ketamine-protocol-order", "ketamine-administration",
        "ketamine-session-monitoring", "ketamine-outcome-score", "ketamine-adverse-event", "ketamine-safety-flag"))))
def test_arbitrary_content_against_a_forced_profile_never_raises(resource: dict[str, Any], profile: str) -> None:
    findings = validator().validate(resource, profile)
    assert all(f.severity in SEVERITIES and f.message and isinstance(f.expression, str) for f in findings)
    assert validator().validate(copy.deepcopy(resource), profile) == findings


@SETTINGS
@given(examples_with_one_node_replaced())
def test_example_with_one_node_replaced_never_raises(resource: Any) -> None:
    check(resource)


@SETTINGS
@given(examples_with_keys_deleted())
def test_example_with_keys_deleted_never_raises(resource: Any) -> None:
    check(resource)


# --- fixed cases: the edges hypothesis found or that are cheap to pin down --------------------

@pytest.mark.parametrize("resource", [
    # (a resourceType that is not a string: test_a_resource_type_that_is_not_a_known_type_name_... below)
    # _profiles_of iterated Observation.category and category.coding whatever they were (TypeError)
    {"resourceType": "Observation", "category": True},
    {"resourceType": "Observation", "category": 5},
    {"resourceType": "Observation", "category": [{"coding": 5}]},
    {"resourceType": "Patient", "contained": [{"resourceType": "Observation", "category": True}]},
    # _full_urls iterated Bundle.entry whatever it was (TypeError)
    {"resourceType": "Bundle", "type": "collection", "entry": True},
    {"resourceType": "Bundle", "type": "collection", "entry": 1},
    {"resourceType": "Bundle", "type": "collection",
     "entry": [{"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Bundle", "type": "collection", "entry": 1}}]},
], ids=lambda r: json.dumps(r, separators=(",", ":")))
def test_crashes_hypothesis_found(resource: dict[str, Any]) -> None:
    """Minimal inputs that made Validator.validate raise: each must give an error finding instead."""
    findings = check(resource)
    assert any(f.severity in ("error", "fatal") for f in findings), findings


def test_an_invariant_that_cannot_be_evaluated_is_reported_the_same_every_time() -> None:
    """dom-3 cannot be evaluated by fhirpathpy once there are contained resources; its message used to embed
    `<ResourceNode object at 0x...>`, so two runs disagreed."""
    resource = {"resourceType": "Patient", "contained": [{"resourceType": "Practitioner", "id": "a"}],
                "generalPractitioner": [{"reference": "#a"}]}
    assert validator().validate(resource) == validator().validate(copy.deepcopy(resource))


@pytest.mark.parametrize("kind", [None, 5, 1.5, True, [], ["Patient"], {}, {"a": 1}, "", "Foo", "patient"],
                         ids=repr)
def test_a_resource_type_that_is_not_a_known_type_name_is_an_error_not_an_exception(kind: Any) -> None:
    """The raw resourceType used to become the expression of its finding: for a list or an object the
    de-duplication in validate() raised TypeError (unhashable), for null or a number the expression was no string."""
    findings = check({"resourceType": kind, "id": "x"})
    assert any(f.severity == "error" and "resourceType" in f.message for f in findings), findings


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_valid_example_twice_gives_the_same_findings(path: Path) -> None:
    check(example(path))


@pytest.mark.parametrize("value", [None, 0, -1, 2**80, math.pi, "", "x", [], [{}], {}, {"resourceType": "Patient"},
                                   {"resourceType": "Bundle", "entry": [None, {}, {"resource": []}]}], ids=repr)
def test_small_values(value: Any) -> None:
    check(value)
