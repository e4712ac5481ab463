"""A record field mapped to a FHIR integer type is bounded by that type (R4 datatypes.html#primitive: integer is
32-bit signed, positiveInt 1.., unsignedInt 0..): the largest value the type holds is mapped and validated without
a FHIR error, one more is refused at the record's own field, before mapping (it used to pass the schema and the
rules and fail only the validation of the mapped Bundle)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from factories import administration, treatment_plan
from flask.testing import FlaskClient

from service.app.runtime import Runtime
from service.domain.fields import FHIR_INT_MAX
from service.errors import Unprocessable

PLAN_WITH_GOAL = treatment_plan(goals=[{"measure": "madrs", "target": "response", "baseline": 30}])
#: (kind, record, where the field sits, its path in a problem, the FHIR element it maps to)
FIELDS: list[tuple[str, Callable[[], dict[str, Any]], tuple[Any, ...], str]] = [
    ("administration", administration, ("session_number",), "session_number"),  # sessionNumber.valuePositiveInt
    ("treatment-plan", treatment_plan, ("sessions_planned",), "sessions_planned"),  # Timing.repeat.count
    ("treatment-plan", treatment_plan, ("frequency", "count"), "frequency.count"),  # Timing.repeat.frequency
    ("treatment-plan", treatment_plan, ("prior_antidepressant_trials",), "prior_antidepressant_trials"),  # integer
    ("treatment-plan", lambda: copy.deepcopy(PLAN_WITH_GOAL), ("goals", 0, "baseline"), "goals[0].baseline"),
]


def _with(record: dict[str, Any], where: tuple[Any, ...], value: int) -> dict[str, Any]:
    node: Any = record
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return record


@pytest.mark.parametrize(("kind", "make", "where", "path"), FIELDS, ids=[f[3] for f in FIELDS])
def test_the_largest_value_of_the_fhir_type_maps_and_validates(runtime: Runtime, kind: str,
                                                               make: Callable[[], dict[str, Any]],
                                                               where: tuple[Any, ...], path: str) -> None:
    try:
        checked = runtime.intake.check(kind, _with(make(), where, FHIR_INT_MAX))
    except Unprocessable as exc:  # a clinical rule may refuse such a count; the FHIR form must not
        assert "break the profiles" not in exc.detail, exc.issues
        assert path in {issue.field for issue in exc.issues}
        return
    assert checked.mapped is not None


@pytest.mark.parametrize(("kind", "make", "where", "path"), FIELDS, ids=[f[3] for f in FIELDS])
def test_one_more_is_refused_at_the_field(runtime: Runtime, kind: str, make: Callable[[], dict[str, Any]],
                                          where: tuple[Any, ...], path: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        runtime.intake.check(kind, _with(make(), where, FHIR_INT_MAX + 1))
    assert refused.value.detail == f"The {kind} record is not valid."  # the schema's, not the profiles'
    assert [issue.field for issue in refused.value.issues] == [path]
    assert str(FHIR_INT_MAX) in refused.value.issues[0].message


def test_the_domain_api_names_the_field_in_its_problem(client: FlaskClient) -> None:
    answer = client.post("/api/v1/administrations", json=administration(session_number=3_000_000_000))
    assert answer.status_code == 422 and answer.mimetype == "application/problem+json"
    assert [e["field"] for e in answer.json["errors"]] == ["session_number"]
