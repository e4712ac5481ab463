"""R4's per-1 (`start.hasValue().not() or end.hasValue().not() or (start <= end)`) on dateTimes of different
precision and UTC offsets, each verdict from the specification text (tests/peers/test_hapi_period_order.py runs the
same cases through the HL7 validator):

* FHIRPath N1 §6.2 (Comparison): "For partial Date, DateTime, and Time values, the comparison is performed by
  comparing the values at each precision, beginning with years, and proceeding to the finest precision specified in
  either input, and respecting timezone offsets. If one value is specified to a different level of precision than
  the other, the result is empty ({ }) [...]. As with equality and equivalence, the second and millisecond precisions
  are considered a single precision using a decimal"; its examples: `@2018-03 < @2018-03-01 // empty ({ })`,
  `@2018-03-01T10:30:00 < @2018-03-01T10:30:00.0 // false`. As in §6.1.1 (Equals), which §6.2 refers to, a value
  that differs at a precision both have decides there ("if the values are different, the comparison stops"), and
  values with offsets compare as instants: `@2017-11-05T01:30:00.0-04:00 < @2017-11-05T01:15:00.0-05:00 // true`.
* R4 ElementDefinition.constraint: "Condition that must evaluate to true". An empty result is not true, so per-1
  fails where `start <= end` is empty, as the HL7 validator has it (FHIRPathEngine.convertToBoolean: empty is false).
  R5 rewrote per-1 with lowBoundary()/highBoundary() because of this; R4's expression is what R4 resources meet.
"""
from __future__ import annotations

from typing import Any

import pytest

from service.conformance.definitions import load
from service.validation.engine import Validator
from service.validation.invariants import Invariants
from service.validation.policy import ValidationPolicy

#: name → (start, end, per-1 holds)
CASES: dict[str, tuple[str, str, bool]] = {
    # offsets: instants (§6.1.1's examples)
    "offsets-spec-example": ("2017-11-05T01:30:00-04:00", "2017-11-05T01:15:00-05:00", True),
    "offsets-spec-example-reversed": ("2017-11-05T01:15:00-05:00", "2017-11-05T01:30:00-04:00", False),
    "offsets-text-before-instant-after": ("2020-01-01T09:00:00-02:00", "2020-01-01T10:00:00Z", False),
    "offsets-text-after-instant-before": ("2026-01-01T13:30:00+05:30", "2026-01-01T08:05:00+00:00", True),
    "offsets-same-instant": ("2020-01-01T10:00:00+02:00", "2020-01-01T08:00:00Z", True),
    # a precision one side lacks, equal before it: empty, so per-1 fails
    "month-and-day-equal": ("2018-03", "2018-03-01", False),
    "year-and-month-equal": ("2018", "2018-01", False),
    "datetime-and-its-date": ("2018-03-01T10:30:00Z", "2018-03-01", False),
    "date-and-a-datetime-that-day": ("2018-03-01", "2018-03-01T00:00:00Z", False),
    "utc-day-equal": ("2020-01-02T01:00:00+05:00", "2020-01-01", False),      # 2020-01-01T20:00Z
    # a difference at a precision both have decides
    "day-after": ("2018-03-02", "2018-03-01T10:00:00Z", False),
    "day-before": ("2018-03-01", "2018-03-02T10:00:00Z", True),
    "month-after": ("2018-04", "2018-03-15", False),
    "year-after": ("2019", "2018-06", False),
    "utc-day-after": ("2020-01-01T23:00:00-05:00", "2020-01-01", False),      # 2020-01-02T04:00Z
    "utc-day-before": ("2020-01-02", "2020-01-02T01:00:00+05:00", False),     # end 2020-01-01T20:00Z
    # seconds and their fraction: one precision, a decimal
    "fraction-zero": ("2018-03-01T10:30:00.000Z", "2018-03-01T10:30:00Z", True),
    "fraction-after": ("2018-03-01T10:30:00.5Z", "2018-03-01T10:30:00Z", False),
    "fraction-before": ("2018-03-01T10:30:00Z", "2018-03-01T10:30:00.25Z", True),
    # same precision
    "same-date": ("2020-01-01", "2020-01-01", True),
    "dates-reversed": ("2020-01-02", "2020-01-01", False),
}


def encounter(name: str) -> dict[str, Any]:
    start, end, _ = CASES[name]
    return {"resourceType": "Encounter", "id": name, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": start, "end": end}}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load(), ValidationPolicy())


def per_1_fails(validator: Validator, resource: dict[str, Any]) -> bool:
    return any("per-1" in f.message for f in validator.validate(resource) if f.severity == "error")


@pytest.mark.parametrize("name", CASES)
def test_per_1_as_the_specification_says(validator: Validator, name: str) -> None:
    assert per_1_fails(validator, encounter(name)) == (not CASES[name][2])


def test_an_empty_invariant_result_fails_and_one_that_is_true_passes() -> None:
    invariants = Invariants()
    period = {"start": "2018-03", "end": "2018-03-01"}
    assert invariants.evaluate("start <= end", period, "Period", period, period) is False
    assert invariants.evaluate("start.exists()", period, "Period", period, period) is True


@pytest.mark.parametrize("expression, node, base, holds", [
    # ref-1 rewritten by the HL7 validator: a Reference with no reference, or `#` (the container), holds
    ("reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id"
     ".trace('ids'))", {"display": "x"}, "Reference", True),
    ("reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id"
     ".trace('ids'))", {"reference": "#nowhere"}, "Reference", False),
    # que-12's human text: "If there are more than one enableWhen, enableBehavior must be specified"
    ("enableWhen.count() > 2 implies enableBehavior.exists()",
     {"linkId": "q", "type": "string", "enableWhen": [{"question": "a", "operator": "exists", "answerBoolean": True}] * 2},
     "Questionnaire.item", False),
])
def test_hl7_rewrites_of_published_r4_expressions(expression: str, node: dict[str, Any], base: str,
                                                  holds: bool) -> None:
    assert Invariants().holds(expression, node, base, node, node) is holds
    assert Invariants().evaluate(expression, node, base, node, node) is holds


def test_a_decimal_probability_is_checked_against_100(validator: Validator) -> None:
    risk = {"resourceType": "RiskAssessment", "id": "r", "status": "final",
            "subject": {"reference": "Patient/p"}, "prediction": [{"probabilityDecimal": 40}]}
    assert not [f for f in validator.validate(risk) if f.severity == "error"]
    risk["prediction"][0]["probabilityDecimal"] = 140
    assert any("ras-2" in f.message for f in validator.validate(risk) if f.severity == "error")
