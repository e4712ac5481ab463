"""Clinical scenarios written from ../shared/reference/clinical.md, not from the code's output.

Each row: a record as a clinic would send it → refused (422) naming the record field, or stored with exactly
these safety-flag codes and severities; every flag is then a DetectedIssue of the mapped Bundle that our
validator accepts against ketamine-safety-flag. The section each expectation is read from is in the row's id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from factories import (
    INTRA,
    NPI,
    PATIENT,
    PRE,
    RECHECK_40_MIN,
    administration,
    adverse_event,
    assessment,
    bp,
    esketamine_plan,
    esketamine_session,
    reading,
    score,
    treatment_plan,
    weeks,
)

from service.domain import rules
from service.domain.intake import Intake
from service.errors import Unprocessable
from service.mapping import map_record
from service.validation import default_validator

FLAG = "https://ketamine-fhir.org/fhir/CodeSystem/ketamine-safety-flag"
PROFILE = "https://ketamine-fhir.org/fhir/StructureDefinition/ketamine-safety-flag"
OVERRIDE = {"by": {"identifier": NPI, "name": "Dr. Aya Prescriber"}, "reason": "Aneurysm clipped 2019; cleared by "
            "neurosurgery", "at": "2026-02-27T15:00:00-05:00"}


@dataclass(frozen=True)
class Case:
    kind: str
    record: dict[str, Any]
    refused: str | None = None                              # the record field a 422 names
    flags: frozenset[tuple[str, str]] = frozenset()         # (safety-flag code, severity) stored and sent
    course: tuple[dict[str, Any], ...] = ()                 # the plan's sessions stored before this one


def stored(kind: str, record: dict[str, Any], *flags: tuple[str, str]) -> Case:
    return Case(kind, record, flags=frozenset(flags))


def after(course: list[dict[str, Any]], record: dict[str, Any], *flags: tuple[str, str]) -> Case:
    """A session stored after `course`, the other sessions of its plan."""
    return Case(SESSION, record, flags=frozenset(flags), course=tuple(course))


def esketamine_on(day: str, external_id: str, **changes: Any) -> dict[str, Any]:
    """An esketamine session of plan-1 (which starts Monday 2026-03-02) held on `day` instead, times kept."""
    moved = json.loads(json.dumps(esketamine_session(**changes)).replace("2026-03-02", day))
    return {**moved, "external_id": external_id, "session_number": 3}


def refused(kind: str, record: dict[str, Any], field: str) -> Case:
    return Case(kind, record, refused=field)


SESSION, PLAN, AE, SCORE = "administration", "treatment-plan", "adverse-event", "assessment"
BP_PRE, BP_SESSION = "elevated-predose-blood-pressure", "elevated-session-blood-pressure"
DOSE, SPO2, SEDATION = "dose-outside-range", "oxygen-desaturation", "deep-sedation"
CI, PREG, DRUG, SUICIDE = "contraindication-present", "pregnancy-or-breastfeeding", "drug-interaction", "suicide-risk"
MONITOR, INFUSION = "insufficient-monitoring", "infusion-duration-outside-protocol"
FREQUENCY = ("frequency-outside-label", "moderate")
MONDAY_WEEK_1, THURSDAY_WEEK_1 = esketamine_on("2026-03-02", "esk-a"), esketamine_on("2026-03-05", "esk-b")

CASES: dict[str, Case] = {
    # §1 racemic IV: 0.5 mg/kg over 40 min is the standard session
    "s1-iv-0.5-mg-kg-over-40-min": stored(SESSION, administration()),
    # §3 BP with racemic ketamine: >180/100 contraindicates; Del Sant: >180 and/or >110 is transient hypertension
    "s3-iv-predose-210-125-intra-230-130": stored(SESSION, administration(vitals=[
        bp(PRE, "pre", 210, 125), bp(INTRA, "intra", 230, 130)]), (BP_PRE, "high"), (BP_SESSION, "high")),
    "s3-iv-predose-150-95-no-racemic-guide": stored(SESSION, administration(vitals=[bp(PRE, "pre", 150, 95)])),
    "s3-iv-intra-182-100-transient-hypertension": stored(SESSION, administration(vitals=[
        bp(INTRA, "intra", 182, 100)]), (BP_SESSION, "high")),
    "s3-iv-post-170-112-transient-hypertension": stored(SESSION, administration(vitals=[
        bp("2026-03-02T10:00:00-05:00", "post", 170, 112)]), (BP_SESSION, "high")),
    "s3-iv-intra-178-108-below-both": stored(SESSION, administration(vitals=[bp(INTRA, "intra", 178, 108)])),
    # §3 esketamine pre-dose guide >140/90
    "s3-esketamine-predose-150-85": stored(SESSION, esketamine_session(vitals=[
        bp(PRE, "pre", 150, 85), RECHECK_40_MIN]), (BP_PRE, "moderate")),
    "s3-esketamine-predose-185-95": stored(SESSION, esketamine_session(vitals=[
        bp(PRE, "pre", 185, 95), RECHECK_40_MIN]), (BP_PRE, "high")),
    # §3 esketamine label: a rise of ≥40 systolic within 1.5 h
    "s3-esketamine-rise-of-42-systolic": stored(SESSION, esketamine_session(vitals=[
        bp(PRE, "pre", 120, 80), bp("2026-03-02T09:40:00-05:00", "post", 162, 88)]), (BP_SESSION, "moderate")),
    # §3 SpO2 grading: 75–90 % briefly minor; <75 % or <90 % for >60 s sentinel
    "s3-spo2-82-once": stored(SESSION, administration(vitals=[reading(INTRA, spo2=82)]), (SPO2, "moderate")),
    "s3-spo2-72": stored(SESSION, administration(vitals=[reading(INTRA, spo2=72)]), (SPO2, "high")),
    "s3-spo2-88-then-86-two-minutes-apart": stored(SESSION, administration(vitals=[
        reading("2026-03-02T09:10:00-05:00", spo2=88), reading("2026-03-02T09:12:00-05:00", spo2=86)]),
        (SPO2, "high")),
    "s3-spo2-91": stored(SESSION, administration(vitals=[reading(INTRA, spo2=91)])),
    # §3 MOAA/S: 0 no response to pain; 1–2 prodding only; 4 (lethargic) is the most frequent, mild
    "s3-moaas-0": stored(SESSION, administration(scores=[score("moaas", 0)]), (SEDATION, "high")),
    "s3-moaas-2": stored(SESSION, administration(scores=[score("moaas", 2)]), (SEDATION, "moderate")),
    "s3-moaas-4-mild": stored(SESSION, administration(scores=[score("moaas", 4)])),
    "s3-issue-spo2-82-rr-6-moaas-0": stored(SESSION, administration(
        vitals=[reading(INTRA, spo2=82, respiratory_rate=6)], scores=[score("moaas", 0)]),
        (SPO2, "moderate"), (SEDATION, "high")),
    # §1 doses per route; Ketalar anaesthetic 1–4.5 mg/kg IV, 6.5–13 mg/kg IM
    "s1-iv-71-mg-kg": stored(SESSION, administration(dose_mg=4970, weight_kg=70), (DOSE, "high")),
    "s1-iv-300-mg-without-weight": stored(SESSION, administration(dose_mg=300, weight_kg=None),
                                          ("dose-not-verifiable", "moderate")),
    "s1-iv-0.05-mg-kg": stored(SESSION, administration(dose_mg=3.5, weight_kg=70), (DOSE, "moderate")),
    "s1-iv-0.9-mg-kg-askp-range": stored(SESSION, administration(dose_mg=63, weight_kg=70), (DOSE, "moderate")),
    "s1-im-7-mg-kg": stored(SESSION, administration(route="intramuscular", dose_mg=490, weight_kg=70,
                                                    ended_at=None), (DOSE, "high")),
    "s1-sc-1.2-mg-kg": stored(SESSION, administration(route="subcutaneous", dose_mg=84, weight_kg=70,
                                                      ended_at=None), (DOSE, "moderate")),
    "s1-sc-0.7-mg-kg-kads": stored(SESSION, administration(route="subcutaneous", dose_mg=49, weight_kg=70,
                                                           ended_at=None)),
    "s1-oral-350-mg": stored(SESSION, administration(route="oral", dose_mg=350, weight_kg=None, ended_at=None),
                             (DOSE, "moderate")),
    "s1-oral-2-mg-kg": stored(SESSION, administration(route="oral", dose_mg=140, weight_kg=70, ended_at=None)),
    "s1-intranasal-racemic-100-mg": stored(SESSION, administration(route="intranasal", dose_mg=100,
                                                                   weight_kg=None, ended_at=None), (DOSE, "low")),
    "s1-sublingual-25-mg": stored(SESSION, administration(route="sublingual", dose_mg=25, weight_kg=None,
                                                          ended_at=None), (DOSE, "low")),
    # §1 infusion conventionally 40 min (ASKP3 40–60); 2–100 min reported
    "s1-iv-2-minute-infusion": stored(SESSION, administration(ended_at="2026-03-02T09:02:00-05:00"),
                                      (INFUSION, "moderate")),
    "s1-iv-30-minute-infusion": stored(SESSION, administration(ended_at="2026-03-02T09:30:00-05:00"),
                                       (INFUSION, "low")),
    # §2 esketamine label
    "s2-esketamine-112-mg": stored(SESSION, esketamine_session(dose_mg=112), (DOSE, "high")),
    "s2-esketamine-trd-day-1-84-mg": stored(SESSION, esketamine_session(dose_mg=84), (DOSE, "moderate")),
    "s2-esketamine-trd-day-1-56-mg": stored(SESSION, esketamine_session(dose_mg=56)),
    "s2-esketamine-without-escort": stored(SESSION, esketamine_session(discharged_with_escort=False),
                                           ("discharge-without-escort", "moderate")),
    "s2-esketamine-monitored-90-min": stored(SESSION, esketamine_session(
        monitoring_ended_at="2026-03-02T10:30:00-05:00"), (MONITOR, "moderate")),
    "s2-esketamine-no-bp-at-40-min": stored(SESSION, esketamine_session(vitals=[bp(PRE, "pre", 128, 82)]),
                                            ("blood-pressure-not-reassessed", "low")),
    "s2-esketamine-bp-rising-at-discharge": stored(SESSION, esketamine_session(vitals=[
        bp(PRE, "pre", 128, 82), RECHECK_40_MIN, bp("2026-03-02T11:00:00-05:00", "post", 150, 88)]),
        (MONITOR, "moderate")),
    "s2-esketamine-age-16": stored(SESSION, esketamine_session(patient={**PATIENT, "birth_date": "2010-01-15"}),
                                   ("age-outside-label", "moderate")),
    # §2 TRD schedule, counted over the course (plan-1 starts 2026-03-02): weeks 1–4 twice weekly, weeks 5–8 once
    # weekly, week 9 onward weekly or every 2 weeks; a maintenance plan weekly
    "s2-esketamine-third-session-in-week-1": after([MONDAY_WEEK_1, THURSDAY_WEEK_1],
                                                   esketamine_on("2026-03-06", "esk-c"), FREQUENCY),
    "s2-esketamine-second-session-in-week-1": after([MONDAY_WEEK_1], esketamine_on("2026-03-05", "esk-c")),
    "s2-esketamine-twice-in-week-4": after([esketamine_on("2026-03-23", "esk-a")], esketamine_on("2026-03-26", "esk-c")),
    "s2-esketamine-twice-in-week-6": after([esketamine_on("2026-04-06", "esk-a")], esketamine_on("2026-04-09", "esk-c"),
                                           FREQUENCY),
    "s2-esketamine-weeks-5-and-6-once-each": after([esketamine_on("2026-03-30", "esk-a")],
                                                   esketamine_on("2026-04-09", "esk-c")),
    "s2-esketamine-twice-in-week-10": after([esketamine_on("2026-05-04", "esk-a")],
                                            esketamine_on("2026-05-07", "esk-c"), FREQUENCY),
    "s2-esketamine-not-done-session-not-counted": after(
        [MONDAY_WEEK_1, esketamine_on("2026-03-05", "esk-b", status="not-done", status_reason="BP 190/105")],
        esketamine_on("2026-03-06", "esk-c")),
    "s2-esketamine-resent-session-counted-once": after([MONDAY_WEEK_1, esketamine_on("2026-03-06", "esk-c")],
                                                       esketamine_on("2026-03-06", "esk-c", lot_number="L2")),
    "s2-esketamine-maintenance-plan-twice-in-week-1": after(
        [esketamine_on("2026-03-02", "esk-a", plan_external_id="plan-m")],
        esketamine_on("2026-03-05", "esk-c", plan_external_id="plan-m"), FREQUENCY),
    # §5 interactions asked per session
    "s5-lorazepam-and-methylphenidate-before-session": stored(SESSION, administration(concomitant_medications=[
        {"name": "lorazepam", "class": "benzodiazepine"}, {"name": "methylphenidate", "class": "psychostimulant"}]),
        (DRUG, "moderate")),
    "s5-sertraline-is-no-interaction": stored(SESSION, administration(concomitant_medications=[
        {"name": "sertraline", "class": "other"}])),
    # suicide risk during a session
    "s3-session-cssrs-5": stored(SESSION, administration(scores=[score("cssrs", 5)]), (SUICIDE, "high")),
    # Data plausibility: impossible values are refused, naming the field
    "dp-systolic-900": refused(SESSION, administration(vitals=[bp(INTRA, "intra", 900, 80)]), "vitals[0].systolic"),
    "dp-heart-rate-400": refused(SESSION, administration(vitals=[reading(INTRA, heart_rate=400)]),
                                 "vitals[0].heart_rate"),
    "dp-systolic-60-diastolic-120": refused(SESSION, administration(vitals=[reading(PRE, "pre"),
                                                                           bp(INTRA, "intra", 60, 120)]),
                                            "vitals[1].systolic"),
    "dp-spo2-101": refused(SESSION, administration(vitals=[reading(INTRA, spo2=101)]), "vitals[0].spo2"),
    "dp-born-2099": refused(SCORE, assessment(patient={**PATIENT, "birth_date": "2099-01-01"}),
                            "patient.birth_date"),
    "dp-session-in-1850": refused(SESSION, administration(started_at="1850-03-02T09:00:00-05:00",
                                                          ended_at="1850-03-02T09:40:00-05:00"), "started_at"),
    "dp-three-day-infusion": refused(SESSION, administration(ended_at="2026-03-05T09:00:00-05:00"), "ended_at"),
    "dp-score-next-year": refused(SCORE, assessment(at="2027-12-01T10:00:00+00:00"), "at"),
    "s3-hamd17-75": refused(SCORE, assessment(instrument="hamd17", score=75), "score"),
    "s3-bprs-26-anchored-0-6": refused(SESSION, administration(scores=[score("bprs-positive", 26, anchoring="0-6")]),
                                       "scores[0].value"),
    "s3-bprs-26-anchored-1-7": stored(SESSION, administration(scores=[score("bprs-positive", 26, anchoring="1-7")])),
    "s8-fatal-not-serious": refused(AE, adverse_event(outcome="fatal", serious=False), "serious"),
    "s7-ctcae-4-recorded-mild": refused(AE, adverse_event(ctcae_grade=4, severity="mild", serious=True,
                                                          seriousness_criteria=["life-threatening"]), "ctcae_grade"),
    "s7-ctcae-2-moderate": stored(AE, adverse_event(ctcae_grade=2, severity="moderate")),
    # §4 tiered screening of plans
    "s4-esketamine-aneurysm-without-override": refused(PLAN, esketamine_plan(screening={"contraindications": [
        {"code": "aneurysmal-vascular-disease", "present": True}]}), "screening.contraindications[0]"),
    "s4-esketamine-aneurysm-with-override": stored(PLAN, esketamine_plan(screening={"contraindications": [
        {"code": "aneurysmal-vascular-disease", "present": True, "override": OVERRIDE}]}), (CI, "high")),
    "s4-ketamine-hypersensitivity-without-override": refused(PLAN, treatment_plan(screening={"contraindications": [
        {"code": "psychosis", "present": False}, {"code": "hypersensitivity", "present": True}]}),
        "screening.contraindications[1]"),
    "s4-pregnant": stored(PLAN, esketamine_plan(screening={"pregnant": True}), (PREG, "high")),
    "s4-breastfeeding": stored(PLAN, treatment_plan(screening={"breastfeeding": True}), (PREG, "high")),
    "s4-pregnancy-on-the-checklist": stored(PLAN, esketamine_plan(screening={"contraindications": [
        {"code": "pregnancy", "present": True}], "pregnant": True}), (PREG, "high")),
    "s4-psychosis-caution": stored(PLAN, esketamine_plan(screening={"contraindications": [
        {"code": "psychosis", "present": True}]}), (CI, "moderate")),
    "s4-ketamine-uncontrolled-hypertension": stored(PLAN, treatment_plan(screening={"contraindications": [
        {"code": "uncontrolled-hypertension", "present": True}]}), (CI, "high")),
    "s3-plan-baseline-185-105": stored(PLAN, treatment_plan(screening={"baseline_bp": {"systolic": 185,
                                                                                       "diastolic": 105}}),
                                       (BP_PRE, "high")),
    "s5-plan-lorazepam": stored(PLAN, treatment_plan(screening={"interacting_medications": [
        {"name": "lorazepam", "class": "benzodiazepine"}]}), (DRUG, "moderate")),
    "s1-plan-iv-1.5-mg-kg": stored(PLAN, treatment_plan(dose={"value": 1.5, "unit": "mg/kg"}), (DOSE, "high")),
    "s1-plan-2-minute-infusion": stored(PLAN, treatment_plan(infusion_minutes=2), (INFUSION, "moderate")),
    "s2-esketamine-induction-3-a-week": stored(PLAN, esketamine_plan(frequency=weeks(3)),
                                               ("frequency-outside-label", "moderate")),
    "s2-esketamine-maintenance-twice-weekly": stored(PLAN, esketamine_plan(phase="maintenance", frequency=weeks(2)),
                                                     ("frequency-outside-label", "moderate")),
    "s2-esketamine-maintenance-every-other-week": stored(PLAN, esketamine_plan(phase="maintenance",
                                                                               frequency=weeks(1, 2))),
    # suicide-risk screens
    "s3-phq9-item9-answered-1": stored(SCORE, assessment(score=12, phq9_item9=1), (SUICIDE, "high")),
    "s3-phq9-item9-answered-0": stored(SCORE, assessment(score=12, phq9_item9=0)),
    "cssrs-ideation-4": stored(SCORE, assessment(instrument="cssrs", score=4), (SUICIDE, "high")),
    "cssrs-ideation-3": stored(SCORE, assessment(instrument="cssrs", score=3)),
}

#: The treatment plan the sessions belong to (plan-1 of clinic-a): esketamine for TRD, so Day 1 is 56 mg.
STORED_PLAN = esketamine_plan()
#: A maintenance plan of the same patient (plan-m), weekly.
MAINTENANCE_PLAN = esketamine_plan(external_id="plan-m", phase="maintenance", frequency=weeks(1))


class _Intake(Intake):
    def _lookup(self, kind: str, source: str, external_id: str) -> dict[str, Any] | None:
        plans = {"plan-1": STORED_PLAN, "plan-m": MAINTENANCE_PLAN}
        return plans.get(external_id) if (kind, source) == (PLAN, "clinic-a") else None


def test_at_least_forty_scenarios() -> None:
    assert len(CASES) >= 40
    assert sum(c.refused is not None for c in CASES.values()) >= 10
    assert sum(bool(c.flags) for c in CASES.values()) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_scenario(name: str) -> None:
    case = CASES[name]
    intake = _Intake(None)
    intake.context = rules.RuleContext(lookup=intake._lookup, course=lambda *_: list(case.course))
    if case.refused is not None:
        with pytest.raises(Unprocessable) as info:
            intake.check(case.kind, case.record)
        assert case.refused in [i.field for i in info.value.issues], info.value.issues
        return
    checked = intake.check(case.kind, case.record)
    found = {(w["code"], w["severity"]) for w in checked.warnings if w.get("code")}
    assert found == case.flags, checked.warnings
    mapped = map_record(case.kind, checked.new.content, findings=checked.warnings)
    flags = [e["resource"] for e in mapped.bundle["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    sent = {(c["code"], f.get("severity")) for f in flags for c in f["code"]["coding"] if c["system"] == FLAG}
    assert case.flags <= sent
    for flag in flags:
        assert PROFILE in flag["meta"]["profile"]
        errors = [f for f in default_validator().validate(flag) if f.severity == "error"]
        assert errors == [], errors
        if flag.get("severity") in ("high", "moderate", "low"):
            assert flag["implicated"] and flag["patient"]["reference"]
