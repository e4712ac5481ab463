"""Tiered screening of treatment plans, plan-level label rules, and suicide-risk screens of assessments.

A present label contraindication refuses the plan (422 naming it) unless the plan documents an `override`;
with one it is a high-severity finding that carries the override. Pregnancy and breastfeeding are high,
cautions moderate (clinical.md §4 and its "Implications for rules": hard and soft stops).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from service.domain.findings import Finding, rule
from service.domain.session_rules import infusion, interactions, predose_bp, racemic_dose, suicide_score, under_18
from service.errors import Issue

Record = dict[str, Any]

#: Screening tier of each checklist code (profiles/CodeSystem-ketamine-contraindication.json; clinical.md §4).
#: "hard": the esketamine label contraindications, hard stops for either medication (clinical.md "Implications";
#: aneurysm and hypersensitivity also in the anaesthesia texts and Ketalar for racemic ketamine);
#: "pregnancy": not recommended (esketamine: may cause fetal harm; Ketalar: pregnancy not recommended);
#: every other code is a caution. A test checks the hard tier against the CodeSystem's category property.
HARD_STOPS = ("aneurysmal-vascular-disease", "arteriovenous-malformation", "intracerebral-hemorrhage-history",
              "hypersensitivity")
PREGNANCY_CODES = ("pregnancy", "breastfeeding")
#: Racemic ketamine's own label contraindication: significant hypertension (Ketalar, clinical.md §4).
KETAMINE_LABEL = ("uncontrolled-hypertension",)
#: Esketamine sessions per week at most, by phase: twice weekly in weeks 1–4 (TRD induction, MDSI), weekly in
#: weeks 5–8, weekly or every other week from week 9 (clinical.md §2 TRD and MDSI schedules).
ESKETAMINE_PER_WEEK = {"induction": 2.0, "maintenance": 1.0}
#: Days per FHIR period unit (UCUM), to read a plan's frequency per week.
DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}


def screening(plan: Record) -> Iterator[Issue]:
    found = plan.get("screening") or {}
    checklist = found.get("contraindications") or []
    for i, item in enumerate(checklist):
        if item["present"]:
            yield from _tiered(plan, item, f"screening.contraindications[{i}]")
    listed = {item["code"] for item in checklist if item["present"]}
    for flag in PREGNANCY_CODES:
        answer = found.get("pregnant" if flag == "pregnancy" else flag)
        if answer is True and flag not in listed:
            yield rule("pregnancy-or-breastfeeding").finding(
                f"screening.{'pregnant' if flag == 'pregnancy' else flag}",
                f"{flag} at screening: {plan['medication']} is not recommended", status=flag)
    yield from interactions(found.get("interacting_medications") or [], "screening.interacting_medications")
    bp = found.get("baseline_bp")
    if bp:
        yield from predose_bp((bp["systolic"], bp["diastolic"]), plan["medication"], "screening.baseline_bp")


def _tiered(plan: Record, item: Record, field: str) -> Iterator[Issue]:
    code, override = item["code"], item.get("override")
    values: dict[str, Any] = {"contraindication": code}
    if override:
        values["override"] = {"by": override["by"], "reason": override["reason"], "at": override["at"].isoformat()}
    if code in HARD_STOPS:
        if not override:
            yield Issue(field, f"{code} is a label contraindication of {plan['medication']}: the plan needs a "
                        "documented override (by, reason, at) to go ahead", "error", "label-contraindication")
            return
        yield rule("label-contraindication").finding(field, f"label contraindication {code} present; treatment "
                                                     f"overridden by {override['by'].get('name') or 'a clinician'}",
                                                     **values)
    elif code in PREGNANCY_CODES:
        yield rule("pregnancy-or-breastfeeding").finding(field, f"{code}: {plan['medication']} is not recommended",
                                                         **values)
    elif code in KETAMINE_LABEL and plan["medication"] == "ketamine":
        yield rule("ketamine-label-contraindication").finding(field, f"{code}: a contraindication of racemic "
                                                              "ketamine (Ketalar: significant hypertension)", **values)
    else:
        yield rule("caution").finding(field, f"caution present: {code}", **values)


def plan_dose(plan: Record) -> Iterator[Finding]:
    dose, route = plan["dose"], plan["route"]
    if plan["medication"] != "ketamine":
        return
    per_kg = dose["value"] if dose["unit"] == "mg/kg" else None
    dose_mg = dose["value"] if dose["unit"] == "mg" else None
    yield from racemic_dose(route, "dose.value", per_kg, dose_mg,
                            {"dose": dose["value"], "unit": dose["unit"], "route": route})
    if route == "intravenous" and plan.get("infusion_minutes") is not None:
        yield from infusion(plan["infusion_minutes"], "infusion_minutes")


def esketamine_plan(plan: Record) -> Iterator[Finding]:
    if plan["medication"] != "esketamine":
        return
    start = (plan.get("period") or {}).get("start")
    yield from under_18(plan, start if isinstance(start, date) else date.today())
    frequency, phase = plan.get("frequency"), plan.get("phase")
    if not frequency or phase not in ESKETAMINE_PER_WEEK:
        return
    per_week = frequency["count"] * 7.0 / (frequency["period"] * DAYS[frequency["period_unit"]])
    if per_week > ESKETAMINE_PER_WEEK[phase] + 1e-9:
        yield rule("esketamine-frequency").finding(
            "frequency", f"{per_week:.2g} esketamine sessions a week in {phase}; the label gives at most "
                         f"{ESKETAMINE_PER_WEEK[phase]:g}", per_week=round(per_week, 2), phase=phase)


def plan_findings(plan: Record) -> Iterator[Issue]:
    yield from screening(plan)
    yield from plan_dose(plan)
    yield from esketamine_plan(plan)


def assessment_findings(rec: Record) -> Iterator[Finding]:
    yield from suicide_score(rec["instrument"], rec["score"], "score", rec["at"])
    item9 = rec.get("phq9_item9")
    if rec["instrument"] == "phq9" and item9:
        yield rule("phq9-item9-positive").finding("phq9_item9", f"PHQ-9 item 9 answered {item9} (thoughts of "
                                                  "death or self-harm): a positive suicide-risk screen",
                                                  phq9_item9=item9, at=rec["at"].isoformat())
