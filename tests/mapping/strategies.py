"""Hypothesis strategies for valid clinic records of each kind: every field and every enumeration value of
DOMAIN.md, the fields added after v1.0 included (contraindication overrides, breastfeeding, BPRS anchoring,
per-session concomitant medications, ready-to-leave time, PHQ-9 item 9, lot number); test_strategies checks
that each is drawn.

Valid means: the record contract (DOMAIN.md, the marshmallow schemas) and the profiles' own
rules (an IV protocol has an infusion time, ket-1; a completed session has a dose, ket-5; an IV
session has an end time, ket-2; scores within their instrument's range, ket-9).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from service.domain import vocabulary as v
from service.domain.plan_rules import HARD_STOPS
from service.domain.plausibility import CTCAE_SEVERITY
from service.domain.rules import BPRS_POSITIVE_RANGES, SCORE_RANGES
from service.resources import profiles_dir

ICD10 = [c["code"] for c in json.loads((profiles_dir() / "ValueSet-ketamine-indications-icd10.json")
                                       .read_text(encoding="utf-8"))["compose"]["include"][0]["concept"]]
#: codes of the indication chapters beyond the listed ones (ket-19): the usual TRD code F33.2 among them
ICD10_CHAPTERS = ["F33.2", "F32.2", "F32.A", "F31.5", "F43.12", "F42.2", "G89.21", "F10.239", "F19.10"]
CONTRAINDICATIONS = [c["code"] for c in json.loads((profiles_dir() / "CodeSystem-ketamine-contraindication.json")
                                                   .read_text(encoding="utf-8"))["concept"]]

# identifiers with the characters that make encoding matter: '/', '%', '|', spaces inside
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._/%|#-]{0,14}[A-Za-z0-9]", fullmatch=True)
names = st.from_regex(r"[A-Z][a-z]{1,10}( [A-Z][a-z]{1,10})?", fullmatch=True)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))])


def instants(start: datetime | None = None, within: timedelta = timedelta(days=400)) -> st.SearchStrategy[str]:
    base = start or datetime(2025, 1, 1, tzinfo=UTC)
    return st.builds(lambda minutes, tz: (base + timedelta(minutes=minutes)).astimezone(tz).isoformat(),
                     st.integers(0, int(within.total_seconds() // 60)), offsets)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def person() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"identifier": st.fixed_dictionaries({
        "system": st.just("http://hl7.org/fhir/sid/us-npi"), "value": st.from_regex(r"999[0-9]{7}", fullmatch=True)})},
        optional={"name": names})


def patient() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"identifier": st.fixed_dictionaries({
            "system": st.sampled_from(["urn:oid:2.16.840.1.113883.19.5", "https://clinic.example/mrn"]), "value": ids})},
        optional={"name": st.fixed_dictionaries({}, optional={"family": names, "given": st.lists(names, min_size=1,
                                                                                                  max_size=3)}),
                  "birth_date": st.dates(datetime(1930, 1, 1).date(), datetime(2008, 1, 1).date()).map(str),
                  "sex": st.sampled_from(v.SEX)})


rxnorm = st.sampled_from(["6470", "36437", "321988", "2555"])  # RxNorm CUIs as digits: the schema checks the form


def medications(klass: bool, code: bool) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A list of named medications; with `klass` their interacting class, with `code` an optional RxNorm code."""
    fields: dict[str, st.SearchStrategy[Any]] = {"name": names}
    if klass:
        fields["class"] = st.sampled_from(v.INTERACTING_CLASSES)
    return st.lists(st.fixed_dictionaries(fields, optional={"rxnorm": rxnorm} if code else {}), max_size=3)


def common() -> dict[str, st.SearchStrategy[Any]]:
    return {"external_id": ids, "source": ids, "patient": patient()}


def _drop_none(record: dict[str, Any]) -> dict[str, Any]:
    return {k: val for k, val in record.items() if val is not None}


@st.composite
def treatment_plans(draw: st.DrawFn) -> dict[str, Any]:
    medication = draw(st.sampled_from(v.MEDICATIONS))
    if medication == "esketamine":
        route, dose = "intranasal", {"value": draw(st.sampled_from([28, 56, 84])), "unit": "mg"}
    else:
        route = draw(st.sampled_from(["intravenous", "intramuscular", "subcutaneous", "oral", "sublingual"]))
        dose = {"value": draw(st.sampled_from([0.25, 0.5, 0.75])), "unit": "mg/kg"}
    start = draw(st.dates(datetime(2025, 1, 1).date(), datetime(2027, 1, 1).date()))
    end = draw(optional(st.integers(0, 120).map(lambda d: str(start + timedelta(days=d)))))
    contraindications = draw(st.lists(st.sampled_from(CONTRAINDICATIONS), unique=True, max_size=4))
    record = {
        **{k: draw(s) for k, s in common().items()},
        "status": draw(st.sampled_from(v.PLAN_STATUS)),
        "indication": _drop_none({"code": draw(st.sampled_from(v.INDICATIONS)),
                                  "icd10": draw(optional(st.sampled_from(ICD10 + ICD10_CHAPTERS)))}),
        "prior_antidepressant_trials": draw(optional(st.integers(0, 8))),
        "medication": medication, "route": route, "dose": dose,
        "infusion_minutes": draw(st.integers(20, 100)) if route in ("intravenous", "subcutaneous") else None,
        "phase": draw(optional(st.sampled_from(v.PHASES))),
        "sessions_planned": draw(optional(st.integers(1, 12))),
        "frequency": draw(optional(st.fixed_dictionaries({"count": st.integers(1, 3), "period": st.sampled_from([1, 2]),
                                                          "period_unit": st.sampled_from(v.PERIOD_UNITS)}))),
        "period": _drop_none({"start": str(start), "end": end}),
        "goals": draw(optional(st.lists(goals(), max_size=3))),
        "concurrent_therapy": draw(optional(st.fixed_dictionaries({"psychotherapy": st.none() | names | st.sampled_from(["CBT", "DBT skills group, weekly"])},
            optional={"antidepressants": st.lists(st.fixed_dictionaries(
                {"name": names}, optional={"rxnorm": st.from_regex(r"[1-9][0-9]{3,6}", fullmatch=True)}),
                max_size=3, unique_by=lambda a: a["name"])}))),
        "screening": draw(optional(st.fixed_dictionaries({}, optional={
            "contraindications": st.just([_screened(draw, c) for c in contraindications]),
            "interacting_medications": medications(True, False),
            "baseline_bp": st.fixed_dictionaries({"systolic": st.integers(90, 170), "diastolic": st.integers(50, 89)}),
            "pregnant": st.sampled_from([True, False, None]),
            "breastfeeding": st.sampled_from([True, False, None])}))),
        "prescriber": draw(optional(person())),
    }
    return _drop_none(record)


def goals() -> st.SearchStrategy[dict[str, Any]]:
    """A goal; its baseline, when given, a score on the goal's own scale (rules.plan_goals)."""
    return st.sampled_from(v.GOAL_MEASURES).flatmap(lambda measure: st.fixed_dictionaries(
        {"measure": st.just(measure), "target": st.sampled_from(v.GOAL_TARGETS)},
        optional={"baseline": st.integers(*SCORE_RANGES[measure])}))


def _screened(draw: st.DrawFn, code: str) -> dict[str, Any]:
    """A checklist item; a present one may carry a clinician's documented override, and a present label
    contraindication always does: intake refuses a hard stop without one (plan_rules.HARD_STOPS)."""
    item: dict[str, Any] = {"code": code, "present": draw(st.booleans())}
    if item["present"] and (code in HARD_STOPS or draw(st.booleans())):
        at = datetime(2026, 1, 1, 9, tzinfo=draw(offsets)) + timedelta(minutes=draw(st.integers(0, 10**5)))
        item["override"] = {"by": draw(person()), "reason": draw(names), "at": at.isoformat()}
    return item


@st.composite
def vitals(draw: st.DrawFn, around: datetime) -> dict[str, Any]:
    measures = draw(st.fixed_dictionaries({}, optional={
        "systolic": st.integers(80, 220), "diastolic": st.integers(40, 130), "heart_rate": st.integers(40, 160),
        "spo2": st.integers(80, 100), "respiratory_rate": st.integers(6, 30)}).filter(bool))
    if "systolic" in measures and "diastolic" in measures:  # plausible data: systolic above diastolic
        measures["diastolic"] = min(measures["diastolic"], measures["systolic"] - 1)
    at = around + timedelta(minutes=draw(st.integers(-30, 180)))
    return {"at": at.astimezone(draw(offsets)).isoformat(), "phase": draw(st.sampled_from(v.VITAL_PHASES)),
            **measures}


@st.composite
def administrations(draw: st.DrawFn) -> dict[str, Any]:
    # times in several UTC offsets: end ≥ start must hold as instants, not as text
    started = (datetime(2026, 1, 1, 8, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 300)))
               ).astimezone(draw(offsets))
    status = draw(st.sampled_from(v.SESSION_STATUS))
    medication = draw(st.sampled_from(v.MEDICATIONS))
    # esketamine by another route than nasal gets the clinic's own code (issue 16): drawn too, less often
    route = draw(st.sampled_from(v.ROUTES)) if medication == "ketamine" or draw(st.integers(0, 4)) == 0 \
        else "intranasal"
    ended = started + timedelta(minutes=draw(st.integers(5, 60)))
    monitoring = ended + timedelta(minutes=draw(st.integers(0, 180)))
    scale = draw(st.sampled_from(v.SESSION_SCALES))
    record = {
        **{k: draw(s) for k, s in common().items()},
        "plan_external_id": draw(optional(ids)),
        "session_number": draw(optional(st.integers(1, 20))),
        "status": status,
        "status_reason": "Blood pressure above the pre-dose limit" if status != "completed" else None,
        "medication": medication, "route": route,
        "dose_mg": draw(st.sampled_from([28.0, 56.0, 84.0])) if medication == "esketamine" else draw(
            st.sampled_from([17.5, 35.0, 52.5])),
        "weight_kg": draw(optional(st.sampled_from([55.0, 70.0, 92.5]))),
        "started_at": started.isoformat(),
        "ended_at": ended.astimezone(draw(offsets)).isoformat() if route == "intravenous" or draw(st.booleans())
        else None,
        "lot_number": draw(optional(ids)),
        "performer": draw(optional(person())),
        "vitals": draw(optional(st.lists(vitals(started), max_size=4))),
        "scores": draw(optional(st.lists(score(scale, ended + timedelta(minutes=5)), max_size=3))),
        "ready_to_leave_at": draw(optional(st.just((ended + (monitoring - ended) / 2).isoformat()))),
        "monitoring_ended_at": draw(optional(st.just(monitoring.isoformat()))),
        "discharged_with_escort": draw(optional(st.booleans())),
        "concomitant_medications": draw(optional(st.lists(st.fixed_dictionaries(
            {"name": names, "class": st.sampled_from(v.INTERACTING_CLASSES)},
            optional={"rxnorm": st.from_regex(r"[1-9][0-9]{3,6}", fullmatch=True)}),
            max_size=3, unique_by=lambda m: m["name"]))),
    }
    if status != "completed" and draw(st.booleans()):
        record["dose_mg"] = None
    return _drop_none(record)


@st.composite
def score(draw: st.DrawFn, scale: str, at: datetime) -> dict[str, Any]:
    """An in-session score; a BPRS+ one may declare its anchoring, which sets its range."""
    anchoring = draw(optional(st.sampled_from(v.BPRS_ANCHORINGS))) if scale == "bprs-positive" else None
    low, high = BPRS_POSITIVE_RANGES[anchoring or "0-6"] if scale == "bprs-positive" else SCORE_RANGES[scale]
    return _drop_none({"instrument": scale, "value": draw(st.integers(low, high or 50)), "at": at.isoformat(),
                       "anchoring": anchoring})


@st.composite
def adverse_events(draw: st.DrawFn) -> dict[str, Any]:
    """Plausible events (intake refuses the rest, service/domain/plausibility.py): a fatal outcome is serious with
    the criterion death; a CTCAE grade agrees with the severity, 4 and 5 are serious, 5 is fatal or unsaid."""
    grade = draw(optional(st.integers(1, 5)))
    outcome = draw(optional(st.sampled_from(v.AE_OUTCOMES if grade != 5 else ("fatal",))))
    serious = outcome == "fatal" or (grade or 0) >= 4 or draw(st.booleans())
    criteria = draw(st.lists(st.sampled_from(v.SERIOUSNESS), unique=True, min_size=1, max_size=3))
    if outcome == "fatal" and "death" not in criteria:
        criteria.append("death")
    term = draw(st.sampled_from(v.AE_TERMS))
    record = {
        **{k: draw(s) for k, s in common().items()},
        "administration_external_id": draw(optional(ids)),
        "onset_at": draw(instants()),
        "term": term,
        "description": "Felt unwell after dosing" if term == "other" else draw(optional(st.just("As observed"))),
        "serious": serious,
        "seriousness_criteria": criteria if serious else None,
        "severity": CTCAE_SEVERITY[grade] if grade is not None else draw(optional(st.sampled_from(v.SEVERITY))),
        "ctcae_grade": grade,
        "outcome": outcome,
        "action_taken": draw(optional(st.sampled_from(v.AE_ACTIONS))),
        "causality": draw(optional(st.sampled_from(v.CAUSALITY))),
        "recorded_by": draw(optional(person())),
    }
    return _drop_none(record)


@st.composite
def assessments(draw: st.DrawFn) -> dict[str, Any]:
    instrument = draw(st.sampled_from(v.ASSESSMENT_INSTRUMENTS))
    total = draw(st.integers(0, SCORE_RANGES[instrument][1] or 52))
    record = {
        **{k: draw(s) for k, s in common().items()},
        "plan_external_id": draw(optional(ids)),
        "instrument": instrument,
        "score": total,
        "phq9_item9": draw(optional(st.integers(0, min(3, total)))) if instrument == "phq9" else None,
        "at": draw(instants()),
    }
    return _drop_none(record)


RECORDS = {"treatment-plan": treatment_plans, "administration": administrations,
           "adverse-event": adverse_events, "assessment": assessments}
