"""Clinical rules: each case is named for the clinical situation it covers."""
from __future__ import annotations

from typing import Any

import pytest
from factories import (
    FACTORIES,
    PRE,
    RECHECK_40_MIN,
    administration,
    adverse_event,
    assessment,
    bp,
    esketamine_plan,
    esketamine_session,
    score,
    treatment_plan,
)

from service.domain import rules
from service.domain.kinds import KINDS


def findings(kind: str, record: dict[str, Any], ctx: rules.RuleContext = rules.NO_CONTEXT) -> list[tuple[str, str, str]]:
    loaded = KINDS[kind].schema().load(record)
    return [(i.severity, i.rule or "", i.field) for i in rules.check(kind, loaded, ctx)]


def errors(kind: str, record: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [f for f in findings(kind, record) if f[0] == "error"]


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_minimal_records_raise_nothing(kind: str) -> None:
    assert findings(kind, FACTORIES[kind]()) == []


# --- session timing and status --------------------------------------------------------------

def test_session_ending_before_it_started_is_an_error() -> None:
    record = administration(ended_at="2026-03-02T08:59:00-05:00")
    assert findings("administration", record) == [("error", "session-order", "ended_at")]


def test_session_end_compared_across_offsets() -> None:
    # 14:40Z is 09:40-05:00: after the 09:00-05:00 start although the clock reads earlier.
    assert findings("administration", administration(ended_at="2026-03-02T14:40:00Z")) == []


@pytest.mark.parametrize("status", ["stopped", "not-done"])
def test_stopped_or_not_done_session_needs_a_reason(status: str) -> None:
    assert ("error", "status-reason", "status_reason") in findings("administration", administration(status=status))
    assert findings("administration", administration(status=status, status_reason="patient declined")) == []


def test_completed_session_needs_the_dose_given() -> None:
    assert findings("administration", administration(dose_mg=None)) == [("error", "dose-given", "dose_mg")]


# --- doses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dose", [28, 56, 84])
def test_esketamine_whole_devices_up_to_84_mg(dose: int) -> None:
    assert findings("administration", esketamine_session(dose_mg=dose)) == []


@pytest.mark.parametrize("dose", [30, 60, 112, 85, 56.5])
def test_esketamine_session_not_whole_devices_or_above_84_is_flagged_not_refused(dose: float) -> None:
    # a session that happened is recorded and flagged (issue 15); a plan is still refused (below)
    assert findings("administration", esketamine_session(dose_mg=dose)) == [
        ("high", "esketamine-session-dose", "dose_mg")]


def test_esketamine_plan_in_mg_per_kg_is_an_error() -> None:
    plan = esketamine_plan(dose={"value": 0.5, "unit": "mg/kg"})
    assert findings("treatment-plan", plan) == [("error", "esketamine-dose", "dose.unit")]


def test_esketamine_plan_dose_of_70_mg_is_an_error() -> None:
    assert findings("treatment-plan", esketamine_plan(dose={"value": 70, "unit": "mg"})) == [
        ("error", "esketamine-dose", "dose.value")]


@pytest.mark.parametrize("dose_mg, weight", [(7, 70), (35, 70), (52.5, 70)])  # 0.1, 0.5, 0.75 mg/kg
def test_iv_ketamine_within_0_1_to_0_75_mg_per_kg(dose_mg: float, weight: float) -> None:
    assert findings("administration", administration(dose_mg=dose_mg, weight_kg=weight)) == []


@pytest.mark.parametrize("dose_mg, weight", [(6.9, 70), (56, 70), (140, 70)])
def test_iv_ketamine_outside_usual_range_is_flagged(dose_mg: float, weight: float) -> None:
    severity, name = ("high", "anaesthetic-range-dose") if dose_mg / weight > 1 else ("moderate", "iv-dose-range")
    assert findings("administration", administration(dose_mg=dose_mg, weight_kg=weight)) == [
        (severity, name, "dose_mg")]


def test_iv_dose_without_weight_cannot_be_checked() -> None:
    assert findings("administration", administration(dose_mg=140, weight_kg=None)) == [
        ("moderate", "dose-weight-missing", "dose_mg")]


def test_im_ketamine_is_not_held_to_the_iv_range() -> None:
    assert findings("administration", administration(route="intramuscular", dose_mg=140)) == []


def test_a_dose_needs_its_route() -> None:
    assert findings("administration", administration(route=None)) == [("error", "route-given", "route")]


def test_an_iv_dose_needs_the_infusion_end() -> None:
    assert findings("administration", administration(ended_at=None)) == [("error", "infusion-end", "ended_at")]
    assert findings("administration", administration(route="intramuscular", ended_at=None)) == []


def test_a_session_not_done_needs_no_route() -> None:
    record = administration(status="not-done", status_reason="Patient declined", dose_mg=None, route=None)
    assert findings("administration", record) == []


def test_iv_plan_dose_above_range_is_flagged() -> None:
    assert findings("treatment-plan", treatment_plan(dose={"value": 1.0, "unit": "mg/kg"})) == [
        ("moderate", "iv-dose-range", "dose.value")]


# --- esketamine monitoring ------------------------------------------------------------------

@pytest.mark.parametrize("systolic, diastolic", [(141, 80), (130, 91), (165, 100)])
def test_esketamine_predose_bp_above_140_90_is_flagged(systolic: int, diastolic: int) -> None:
    vitals = [bp(PRE, "pre", systolic, diastolic), RECHECK_40_MIN]
    assert findings("administration", esketamine_session(vitals=vitals)) == [
        ("moderate", "esketamine-predose-bp", "vitals[0]")]


def test_esketamine_bp_of_140_90_is_not_elevated() -> None:
    vitals = [bp(PRE, "pre", 140, 90), RECHECK_40_MIN]
    assert findings("administration", esketamine_session(vitals=vitals)) == []


def test_high_bp_after_dosing_is_not_a_predose_warning() -> None:
    vitals = [bp("2026-03-02T09:40:00-05:00", "post", 170, 100)]  # < 180/110
    assert findings("administration", esketamine_session(vitals=vitals)) == []


def test_esketamine_plan_baseline_bp_above_threshold_is_a_warning() -> None:
    plan = esketamine_plan(screening={"baseline_bp": {"systolic": 150, "diastolic": 85}})
    assert findings("treatment-plan", plan) == [("moderate", "esketamine-predose-bp", "screening.baseline_bp")]


def test_esketamine_monitoring_shorter_than_120_minutes_is_a_warning() -> None:
    session = esketamine_session(monitoring_ended_at="2026-03-02T10:59:00-05:00")  # 119 min
    assert findings("administration", session) == [("moderate", "esketamine-monitoring", "monitoring_ended_at")]


def test_esketamine_monitoring_of_exactly_120_minutes_is_enough() -> None:
    assert findings("administration", esketamine_session(monitoring_ended_at="2026-03-02T11:00:00-05:00")) == []


def test_esketamine_monitoring_not_recorded_is_a_warning() -> None:
    assert findings("administration", esketamine_session(monitoring_ended_at=None)) == [
        ("moderate", "esketamine-monitoring", "monitoring_ended_at")]


def test_monitoring_ending_before_dosing_is_an_error() -> None:
    session = esketamine_session(monitoring_ended_at="2026-03-02T08:00:00-05:00")
    assert ("error", "session-order", "monitoring_ended_at") in findings("administration", session)


def test_racemic_ketamine_has_no_120_minute_rule() -> None:
    assert findings("administration", administration(monitoring_ended_at="2026-03-02T09:45:00-05:00")) == []


# --- plan screening -------------------------------------------------------------------------

def test_trd_with_fewer_than_two_trials_is_a_warning() -> None:
    assert findings("treatment-plan", treatment_plan(prior_antidepressant_trials=1)) == [
        ("warning", "trd-trials", "prior_antidepressant_trials")]


def test_two_trials_make_trd() -> None:
    assert findings("treatment-plan", treatment_plan(prior_antidepressant_trials=2)) == []


def test_one_trial_is_fine_for_other_indications() -> None:
    plan = treatment_plan(indication={"code": "mdd-acute-suicidality"}, prior_antidepressant_trials=0)
    assert findings("treatment-plan", plan) == []


def test_present_caution_is_flagged_absent_contraindication_is_not() -> None:
    screening = {"contraindications": [{"code": "psychosis", "present": True},
                                       {"code": "intracerebral-hemorrhage-history", "present": False}]}
    assert findings("treatment-plan", treatment_plan(screening=screening)) == [
        ("moderate", "caution", "screening.contraindications[0]")]


@pytest.mark.parametrize("klass", ["benzodiazepine", "opioid", "cns-depressant", "psychostimulant", "maoi"])
def test_interacting_medication_classes_are_flagged(klass: str) -> None:
    screening = {"interacting_medications": [{"name": "x", "class": klass}]}
    assert findings("treatment-plan", treatment_plan(screening=screening)) == [
        ("moderate", "interaction", "screening.interacting_medications[0]")]


def test_other_medication_class_is_not_an_interaction() -> None:
    screening = {"interacting_medications": [{"name": "sertraline", "class": "other"}]}
    assert findings("treatment-plan", treatment_plan(screening=screening)) == []


def test_plan_period_ending_before_start_is_an_error() -> None:
    plan = treatment_plan(period={"start": "2026-03-02", "end": "2026-03-01"})
    assert findings("treatment-plan", plan) == [("error", "period-order", "period.end")]


# --- adverse events -------------------------------------------------------------------------

def test_serious_event_needs_criteria() -> None:
    assert findings("adverse-event", adverse_event(serious=True)) == [("error", "seriousness", "seriousness_criteria")]
    assert findings("adverse-event", adverse_event(serious=True, seriousness_criteria=["hospitalization"])) == []


def test_criteria_on_a_non_serious_event_is_an_error() -> None:
    record = adverse_event(serious=False, seriousness_criteria=["death"])
    assert findings("adverse-event", record) == [("error", "seriousness", "seriousness_criteria")]


def test_other_term_needs_a_description() -> None:
    assert findings("adverse-event", adverse_event(term="other")) == [("error", "other-term", "description")]
    assert findings("adverse-event", adverse_event(term="other", description="tinnitus")) == []


def _with_session(started_at: str) -> rules.RuleContext:
    stored = {("administration", "clinic-a", "adm-1"): {"started_at": started_at}}
    return rules.RuleContext(lookup=lambda kind, source, ext: stored.get((kind, source, ext)))


def test_onset_before_the_suspected_session_is_an_error() -> None:
    ae = adverse_event(administration_external_id="adm-1", onset_at="2026-03-02T08:00:00-05:00")
    assert findings("adverse-event", ae, _with_session("2026-03-02T09:00:00-05:00")) == [
        ("error", "onset-order", "onset_at")]


def test_onset_after_the_suspected_session_start_is_fine() -> None:
    ae = adverse_event(administration_external_id="adm-1", onset_at="2026-03-02T14:20:00Z")
    assert findings("adverse-event", ae, _with_session("2026-03-02T09:00:00-05:00")) == []


def test_unknown_suspected_session_is_a_warning() -> None:
    ae = adverse_event(administration_external_id="adm-9")
    assert findings("adverse-event", ae, _with_session("2026-03-02T09:00:00-05:00")) == [
        ("warning", "suspect-session", "administration_external_id")]


# --- score ranges ---------------------------------------------------------------------------

@pytest.mark.parametrize("instrument, low, high", [
    ("phq9", 0, 27), ("madrs", 0, 60), ("qids-sr16", 0, 27), ("gad7", 0, 21)])
def test_assessment_scores_within_the_instrument_range(instrument: str, low: int, high: int) -> None:
    for value in (low, high):
        assert findings("assessment", assessment(instrument=instrument, score=value)) == []
    for value in (low - 1, high + 1):
        assert findings("assessment", assessment(instrument=instrument, score=value)) == [
            ("error", "score-range", "score")]


@pytest.mark.parametrize("instrument, high", [("cadss", 92), ("moaas", 5), ("bprs-positive", 24), ("phq9", 27)])
def test_session_scale_scores_within_range(instrument: str, high: int) -> None:
    def scored(value: int) -> dict[str, Any]:
        return administration(scores=[score(instrument, value)])
    assert [f for f in findings("administration", scored(high)) if f[0] == "error"] == []
    assert errors("administration", scored(high + 1)) == [("error", "score-range", "scores[0].value")]
    assert errors("administration", scored(-1)) == [("error", "score-range", "scores[0].value")]


def test_hamd17_total_is_0_to_52() -> None:  # clinical.md §3: 17 items rated 0–4 or 0–2
    assert findings("assessment", assessment(instrument="hamd17", score=52)) == []
    assert findings("assessment", assessment(instrument="hamd17", score=53)) == [("error", "score-range", "score")]
    assert findings("assessment", assessment(instrument="hamd17", score=-1)) == [("error", "score-range", "score")]


def test_cssrs_ideation_severity_is_0_to_5() -> None:
    assert findings("assessment", assessment(instrument="cssrs", score=5)) == [("high", "cssrs-ideation", "score")]
    assert errors("assessment", assessment(instrument="cssrs", score=6)) == [("error", "score-range", "score")]


@pytest.mark.parametrize("measure, top", [("madrs", 60), ("phq9", 27), ("qids-sr16", 27), ("hamd17", 52),
                                          ("cssrs", 5)])
def test_a_goals_baseline_is_a_score_of_its_instrument(measure: str, top: int) -> None:
    """The baseline response and remission are judged against is a score on the goal's scale (the ranges of
    DOMAIN.md's assessment scores, clinical.md §3): one above the scale's top is a data error."""
    goal = {"measure": measure, "target": "response"}
    assert findings("treatment-plan", treatment_plan(goals=[{**goal, "baseline": top}])) == []
    assert findings("treatment-plan", treatment_plan(goals=[goal, {**goal, "baseline": top + 1}])) == [
        ("error", "score-range", "goals[1].baseline")]
