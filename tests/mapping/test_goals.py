"""Each plan goal is a Goal an EHR can read (issue 16 item 6): the scale in `Goal.target.measure`, the cut-off in
`Goal.target.detail[x]`, and when it is due. The expected values are written from ../shared/reference/clinical.md,
not from the mapping's output:

- response is a ≥ 50 % decrease from the baseline score (§6 Response), so a score at or below half the baseline;
- remission is MADRS ≤ 10 (§6, KetECT) and HAM-D17 ≤ 7 (§3 Depression scales, "Remission ≤ 7 (see §6)");
- PHQ-9 remission (< 5) is marked UNCONFIRMED in §6; §6 gives no QIDS-SR16 remission cut-off and neither a
  response nor a remission definition for the C-SSRS ideation scale: those goals carry text, never a number;
- esketamine's induction is weeks 1–4, with benefit evaluated at its end (§2 TRD schedule).

R4 Goal.target.detail[x]: "When a low value is missing, it indicates that the goal is achieved at any focus value at
or below the high value", so a cut-off is a Range with a high value only; `dueDuration` counts from `Goal.start`.
"""
from __future__ import annotations

from typing import Any

import pytest
from factories import esketamine_plan, treatment_plan
from mapping.support import canonical

from service.mapping import Mapper, map_record, read_fhir

SCORE = {"system": "http://unitsofmeasure.org", "code": "{score}"}
PROFILE = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-treatment-goal"


def goals(mapper: Mapper, plan: dict[str, Any]) -> list[dict[str, Any]]:
    bundle = map_record("treatment-plan", canonical("treatment-plan", plan), mapper).bundle
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal"]


def target(mapper: Mapper, measure: str, aim: str, baseline: int | None = None, **plan: Any) -> dict[str, Any]:
    goal = {"measure": measure, "target": aim, **({} if baseline is None else {"baseline": baseline})}
    (only,) = goals(mapper, treatment_plan(goals=[goal], **plan))
    (aimed,) = only["target"]
    return aimed  # type: ignore[no-any-return]


def cut_off(aimed: dict[str, Any]) -> float:
    """The score at or below which the goal is met, as R4 reads a Range with a high value only."""
    assert set(aimed["detailRange"]) == {"high"}, aimed
    high = aimed["detailRange"]["high"]
    assert {k: high[k] for k in ("system", "code")} == SCORE
    return high["value"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("measure, cut", [("madrs", 10), ("hamd17", 7)])
def test_remission_is_a_score_at_or_below_the_instruments_cut_off(mapper: Mapper, measure: str, cut: int) -> None:
    assert cut_off(target(mapper, measure, "remission", baseline=30)) == cut


@pytest.mark.parametrize("measure, baseline, half", [("madrs", 34, 17), ("phq9", 19, 9.5), ("qids-sr16", 18, 9),
                                                     ("hamd17", 25, 12.5)])
def test_response_is_half_the_baseline_or_less(mapper: Mapper, measure: str, baseline: int, half: float) -> None:
    assert cut_off(target(mapper, measure, "response", baseline)) == half


@pytest.mark.parametrize("measure, aim, baseline", [
    ("phq9", "remission", 19),       # "Remission = PHQ-9 <5" … UNCONFIRMED (§6)
    ("qids-sr16", "remission", 18),  # no QIDS-SR16 remission cut-off in clinical.md
    ("cssrs", "remission", 4),       # no C-SSRS cut-off in clinical.md
    ("cssrs", "response", 4),        # §6's response is defined on depression scales, not on C-SSRS ideation
    ("madrs", "response", None),     # response is relative to a baseline the plan does not give
])
def test_an_unconfirmed_or_uncomputable_target_is_text_only(mapper: Mapper, measure: str, aim: str,
                                                            baseline: int | None) -> None:
    aimed = target(mapper, measure, aim, baseline)
    assert not {k for k in aimed if k.startswith("detail")} - {"detailString"}, aimed  # no number invented
    assert "clinical.md §6" in aimed["detailString"]


def test_the_measure_is_loinc_where_terminology_confirms_one(mapper: Mapper) -> None:
    """PHQ-9 total 44261-6 (terminology.md §4a); MADRS has no LOINC code there, so our instrument code."""
    phq9 = target(mapper, "phq9", "response", 19)["measure"]["coding"]
    madrs = target(mapper, "madrs", "response", 34)["measure"]["coding"]
    assert [(c["system"], c["code"]) for c in phq9] == [("http://loinc.org", "44261-6")]
    assert [c["system"] for c in madrs] == ["https://ketamine-fhir.org/fhir/CodeSystem/ketamine-instrument"]


def test_a_goal_is_due_at_the_end_of_the_plans_period(mapper: Mapper) -> None:
    (goal,) = goals(mapper, treatment_plan(goals=[{"measure": "madrs", "target": "remission"}]))
    assert goal["startDate"] == "2026-03-02" and goal["target"][0]["dueDate"] == "2026-03-20"
    assert goal["meta"]["profile"] == [PROFILE]


@pytest.mark.parametrize("sessions, weeks", [(6, 3), (7, 4), (8, 4)])
def test_without_an_end_a_goal_is_due_when_the_planned_sessions_are_given(mapper: Mapper, sessions: int,
                                                                          weeks: int) -> None:
    """Twice a week: 6 sessions take 3 weeks, a 7th falls in week 4."""
    aimed = target(mapper, "madrs", "remission", period={"start": "2026-03-02"}, sessions_planned=sessions,
                   frequency={"count": 2, "period": 1, "period_unit": "wk"})
    assert aimed["dueDuration"] == {"value": weeks, "unit": "wk", "system": "http://unitsofmeasure.org",
                                    "code": "wk"}
    assert "dueDate" not in aimed


def test_esketamine_induction_goals_are_due_at_the_end_of_the_labels_induction(mapper: Mapper) -> None:
    plan = esketamine_plan(period={"start": "2026-03-02"}, sessions_planned=None, frequency=None,
                           goals=[{"measure": "madrs", "target": "response", "baseline": 30}])
    (goal,) = goals(mapper, plan)
    assert goal["startDate"] == "2026-03-02"
    assert goal["target"][0]["dueDuration"] == {"value": 4, "unit": "wk", "system": "http://unitsofmeasure.org",
                                                "code": "wk"}


def test_nothing_to_date_a_goal_by_leaves_it_without_a_due_date(mapper: Mapper) -> None:
    """Racemic ketamine has no standard course length (clinical.md §1): no end and no schedule, no due date."""
    aimed = target(mapper, "madrs", "remission", period={"start": "2026-03-02"}, sessions_planned=None,
                   frequency=None)
    assert not {k for k in aimed if k.startswith("due")}


def test_goals_come_back_with_target_and_baseline(mapper: Mapper) -> None:
    sent = [{"measure": "madrs", "target": "response", "baseline": 34},
            {"measure": "phq9", "target": "remission", "baseline": 19}, {"measure": "cssrs", "target": "response"}]
    plan = canonical("treatment-plan", treatment_plan(goals=sent))
    back = read_fhir(map_record("treatment-plan", plan, mapper).bundle, mapper=mapper)
    assert back.record["goals"] == sent
