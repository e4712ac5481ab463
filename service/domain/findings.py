"""Clinical findings: what each rule flags, how severe, and where the fact behind it is read (rules as data).

A finding is data that can be real but calls for attention: it is stored with the record and sent to the
EHR as a DetectedIssue (service/mapping/flags.py); it never refuses the record. Every rule that raises one
is a row of CATALOGUE, which also renders the admin console's rules page, so what is listed is what runs.
Sources name the section of ../shared/reference/clinical.md and, after it, the primary source it quotes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.errors import Issue

#: Finding severities, as FHIR DetectedIssue.severity codes them (detectedissue-severity, R4 required binding).
SEVERITIES = ("high", "moderate", "low")
#: https://ketamine-fhir.org/fhir/CodeSystem/ketamine-safety-flag (profiles/): the kind of every flag.
FLAG_SYSTEM = "https://ketamine-fhir.org/fhir/CodeSystem/ketamine-safety-flag"


@dataclass(frozen=True)
class Finding(Issue):
    """One clinical finding: `severity` is high, moderate or low; `code` a ketamine-safety-flag code."""

    code: str = ""
    source: str = ""
    values: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "code": self.code, "source": self.source, "values": self.values}


@dataclass(frozen=True)
class RuleDef:
    name: str
    code: str          # ketamine-safety-flag code
    severity: str      # high, moderate or low
    source: str        # clinical.md section and the primary source it reads
    summary: str       # what the rule flags, for the rules page

    def finding(self, field: str, message: str, **values: Any) -> Finding:
        return Finding(field, message, self.severity, self.name, code=self.code, source=self.source, values=values)


def _graded(code: str, source: str, *, high: tuple[str, str], moderate: tuple[str, str]) -> tuple[RuleDef, ...]:
    """One flag read from one source in two grades: (name, summary) of the high rule and of the moderate one."""
    return (RuleDef(high[0], code, "high", source, high[1]),
            RuleDef(moderate[0], code, "moderate", source, moderate[1]))


_BP_RACEMIC = "clinical.md §3 BP with racemic ketamine; §4 (Swiss ketamine SmPC: resting BP >180/100 mmHg)"
_BP_ESK = "clinical.md §3 Pre-dose BP (esketamine label 'general guide' >140/90 mmHg; J&J Medical Information, PDR)"
_SEDATION = "clinical.md §3 Sedation: MOAA/S (scale; label: 0.3% lost consciousness, MOAA/S 0)"
_SPO2 = "clinical.md §3 HR and SpO2 (sedation adverse-event tool, Trials 2022 table 4)"
_DOSE_IV = "clinical.md §1 IV (Andrade 2017: 0.1–0.75 mg/kg; ASKP3 starting dose up to 1 mg/kg)"
_ANAESTHETIC = "clinical.md §1 (Ketalar monograph: anaesthetic 1–4.5 mg/kg IV, 6.5–13 mg/kg IM; ASKP3: non-anaesthetic)"
_ESK_LABEL = "clinical.md §2 Esketamine (SPRAVATO) label"
_SCREEN = "clinical.md §4 Contraindications and cautions"
_INTERACT = "clinical.md §5 Drug interactions"

CATALOGUE: dict[str, RuleDef] = {r.name: r for r in (
    # blood pressure, every medication and route
    RuleDef("predose-bp-above-180-100", "elevated-predose-blood-pressure", "high", _BP_RACEMIC,
            "Blood pressure before dosing (or at screening) above 180 systolic or 100 diastolic: the level at "
            "which ketamine is contraindicated."),
    RuleDef("esketamine-predose-bp", "elevated-predose-blood-pressure", "moderate", _BP_ESK,
            "Esketamine: blood pressure before dosing (or at screening) above 140/90; weigh the rise against "
            "benefit."),
    RuleDef("session-bp-above-180-110", "elevated-session-blood-pressure", "high",
            "clinical.md §3 BP with racemic ketamine (Del Sant 2020: transient hypertension = SBP >180 and/or "
            "DBP >110)", "Blood pressure during or after dosing above 180 systolic or 110 diastolic."),
    RuleDef("esketamine-bp-rise", "elevated-session-blood-pressure", "moderate",
            "clinical.md §3 BP after dosing (esketamine label: rise ≥40 mmHg systolic and/or ≥25 diastolic "
            "within 1.5 h)", "Esketamine: a rise of 40 systolic or 25 diastolic over the pre-dose reading within "
            "90 minutes of dosing."),
    # breathing and sedation
    *_graded("oxygen-desaturation", _SPO2,
             high=("spo2-sentinel", "SpO2 below 75 %, or below 90 % in readings more than 60 seconds apart: a "
                   "sentinel event."),
             moderate=("spo2-minor", "SpO2 from 75 to 90 % in one reading: a minor event if it lasted under 60 "
                       "seconds.")),
    *_graded("deep-sedation", _SEDATION,
             high=("moaas-unresponsive", "MOAA/S 0: no response to pain (loss of consciousness)."),
             moderate=("moaas-deep", "MOAA/S 1 or 2: responds only to prodding, shaking or pain.")),
    # doses
    RuleDef("iv-dose-range", "dose-outside-range", "moderate", _DOSE_IV,
            "IV ketamine outside 0.1–0.75 mg/kg (up to the anaesthetic range)."),
    RuleDef("anaesthetic-range-dose", "dose-outside-range", "high", _ANAESTHETIC,
            "Ketamine in the anaesthetic range: above 1 mg/kg IV, 6.5 mg/kg or more IM."),
    RuleDef("sc-dose-range", "dose-outside-range", "moderate",
            "clinical.md §1 Subcutaneous (KADS, Loo 2023: 0.5–0.9 mg/kg)", "SC ketamine outside 0.5–0.9 mg/kg."),
    RuleDef("oral-dose-range", "dose-outside-range", "moderate",
            "clinical.md §1 Oral (Andrade 2019: 0.25–7.0 mg/kg or 25–300 mg)",
            "Oral ketamine outside 0.25–7.0 mg/kg (with weight) or 25–300 mg (without)."),
    RuleDef("intranasal-racemic-dose", "dose-outside-range", "low",
            "clinical.md §1 Intranasal racemic (Lapidus 2014: 50 mg)",
            "Intranasal racemic ketamine above 50 mg, the one dose studied."),
    RuleDef("sublingual-dose", "dose-outside-range", "low",
            "clinical.md §1 Sublingual (Lara 2013: 10 mg)", "Sublingual ketamine above 10 mg, the dose studied."),
    RuleDef("dose-weight-missing", "dose-not-verifiable", "moderate", _DOSE_IV,
            "IV, IM or SC ketamine without the patient's weight: the mg/kg dose cannot be checked."),
    RuleDef("esketamine-session-dose", "dose-outside-range", "high", _ESK_LABEL + " (28 mg devices; 56 or 84 mg)",
            "Esketamine session dose above 84 mg or not whole 28 mg devices."),
    RuleDef("esketamine-day1-dose", "dose-outside-range", "moderate", _ESK_LABEL + " TRD schedule (Day 1 is 56 mg)",
            "Esketamine for TRD: first session not 56 mg (28 mg at 65 or older only under non-US labels)."),
    RuleDef("esketamine-frequency", "frequency-outside-label", "moderate",
            _ESK_LABEL + " TRD and MDSI schedules", "Esketamine plan more often than twice weekly in induction or "
            "weekly in maintenance."),
    RuleDef("esketamine-course-frequency", "frequency-outside-label", "moderate",
            _ESK_LABEL + " TRD and MDSI schedules (weeks 1–4 twice weekly; from week 5 at most weekly)",
            "Esketamine: more sessions in one week of the course (counted from the plan's stored sessions) than "
            "the label's schedule for that week."),
    RuleDef("infusion-duration-unusual", "infusion-duration-outside-protocol", "low",
            "clinical.md §1 IV (conventional 40 min; ASKP3 40–60 min)", "IV infusion shorter than 40 or longer "
            "than 60 minutes."),
    RuleDef("infusion-duration-extreme", "infusion-duration-outside-protocol", "moderate",
            "clinical.md §1 IV (Andrade 2017: sessions of 2–100 min reported)", "IV infusion of 2 minutes or less, "
            "or longer than 100 minutes."),
    # esketamine label: who, how long, how they leave
    RuleDef("esketamine-under-18", "age-outside-label", "moderate", _ESK_LABEL + " indications (not approved in "
            "pediatrics)", "Esketamine for a patient under 18."),
    RuleDef("esketamine-monitoring", "insufficient-monitoring", "moderate", _ESK_LABEL + " monitoring; REMS",
            "Esketamine: post-dose monitoring under 120 minutes or its end not recorded."),
    RuleDef("esketamine-left-before-ready", "insufficient-monitoring", "moderate", _ESK_LABEL + " REMS (monitor "
            "until sedation, dissociation and respiratory depression resolve)",
            "Esketamine: monitoring ended before the patient was judged ready to leave."),
    RuleDef("esketamine-bp-rising-at-discharge", "insufficient-monitoring", "moderate", _ESK_LABEL + " monitoring "
            "(discharge if BP is decreasing)", "Esketamine: the last post-dose blood pressure is higher than the "
            "one before it when monitoring ends."),
    RuleDef("esketamine-bp-not-reassessed", "blood-pressure-not-reassessed", "low", _ESK_LABEL + " monitoring "
            "(reassess BP about 40 min after dosing; REMS form)", "Esketamine: no blood pressure 20–60 minutes "
            "after dosing."),
    RuleDef("esketamine-discharge-without-escort", "discharge-without-escort", "moderate", _ESK_LABEL +
            " Driving (someone must drive the patient home)", "Esketamine: discharged without an escort."),
    # interactions and screening
    RuleDef("interaction", "drug-interaction", "moderate", _INTERACT,
            "A CNS depressant (sedation), psychostimulant or MAOI (blood pressure) or theophylline (seizure "
            "threshold) at screening or taken before the session."),
    RuleDef("label-contraindication", "contraindication-present", "high", _SCREEN + " (esketamine label; "
            "'Implications': hard stops)", "Aneurysmal vascular disease, AVM, intracerebral haemorrhage or "
            "hypersensitivity present: a plan is refused unless an override is documented."),
    RuleDef("ketamine-label-contraindication", "contraindication-present", "high", _SCREEN + " (Ketalar: "
            "significant hypertension)", "Racemic ketamine with uncontrolled hypertension."),
    RuleDef("pregnancy-or-breastfeeding", "pregnancy-or-breastfeeding", "high", _SCREEN + " (esketamine: may cause "
            "fetal harm, breastfeeding not recommended; Ketalar: pregnancy not recommended)",
            "Pregnant or breastfeeding at screening."),
    RuleDef("caution", "contraindication-present", "moderate", _SCREEN + " (cautions, typical exclusions)",
            "A caution present at screening (psychosis, SUD, hepatic impairment, …)."),
    # suicide risk
    RuleDef("cssrs-ideation", "suicide-risk", "high", "C-SSRS ideation severity levels 4–5 (intent; plan and "
            "intent), LOINC answer list LL5434-7 (terminology.md §4a)", "C-SSRS suicidal ideation 4 or 5."),
    RuleDef("phq9-item9-positive", "suicide-risk", "high", "clinical.md §3 Depression scales (PHQ-9 item 9 above 0 "
            "is a positive screen; Bauer/NHANES PMC5942185)", "PHQ-9 item 9 answered above 0."),
)}


def rule(name: str) -> RuleDef:
    return CATALOGUE[name]


def findings_of(warnings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clinical findings among a record's stored warnings, most severe first (notes are left out)."""
    found = [w for w in warnings if w.get("code") and w.get("severity") in SEVERITIES]
    return sorted(found, key=lambda w: SEVERITIES.index(w["severity"]))
