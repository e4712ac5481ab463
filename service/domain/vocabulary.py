"""The clinic-side enumerations of ../shared/design/DOMAIN.md, in one place for schemas, rules and docs."""
from __future__ import annotations

SEX = ("female", "male", "other", "unknown")
MEDICATIONS = ("ketamine", "esketamine")
ROUTES = ("intravenous", "intramuscular", "subcutaneous", "intranasal", "oral", "sublingual")
PLAN_STATUS = ("draft", "active", "on-hold", "completed", "revoked")
INDICATIONS = (
    "trd", "mdd", "mdd-acute-suicidality", "suicidal-ideation", "bipolar-depression", "ptsd", "ocd",
    "gad", "chronic-pain", "alcohol-use-disorder", "substance-use-disorder",
)
DOSE_UNITS = ("mg/kg", "mg")
PHASES = ("induction", "maintenance")
#: UCUM units of time as FHIR Timing.repeat.periodUnit uses them.
PERIOD_UNITS = ("s", "min", "h", "d", "wk", "mo", "a")
GOAL_MEASURES = ("madrs", "phq9", "qids-sr16", "hamd17", "cssrs")
GOAL_TARGETS = ("response", "remission")
#: Medication classes the screening records; all but "other" interact (../shared/reference/clinical.md §5).
INTERACTING_CLASSES = (
    "benzodiazepine", "non-benzodiazepine-sedative-hypnotic", "opioid", "cns-depressant",
    "psychostimulant", "maoi", "theophylline", "other",
)

SESSION_STATUS = ("completed", "stopped", "not-done")
VITAL_PHASES = ("pre", "intra", "post")
SESSION_SCALES = ("cadss", "moaas", "bprs-positive", "phq9", "madrs", "cssrs")
#: How BPRS items were rated: 0-6 (some ketamine trials) or 1-7 (the original BPRS) (clinical.md §3, BPRS+).
BPRS_ANCHORINGS = ("0-6", "1-7")

AE_TERMS = (
    "nausea", "vomiting", "dizziness", "hypertension", "dissociation", "sedation", "headache",
    "anxiety", "tachycardia", "hallucination", "respiratory-depression", "cystitis", "other",
)
SERIOUSNESS = (
    "death", "life-threatening", "hospitalization", "disability", "congenital-anomaly",
    "important-medical-event",
)
SEVERITY = ("mild", "moderate", "severe")
AE_OUTCOMES = ("resolved", "recovering", "ongoing", "resolved-with-sequelae", "fatal", "unknown")
AE_ACTIONS = ("none", "infusion-slowed", "infusion-paused", "infusion-stopped", "treated")
CAUSALITY = ("certain", "probable", "possible", "unlikely", "unrelated", "unassessable")

ASSESSMENT_INSTRUMENTS = ("phq9", "madrs", "qids-sr16", "hamd17", "cssrs", "gad7")
