"""Minimal valid records of each kind; a test changes one field at a time with `with_`."""
from __future__ import annotations

import copy
from typing import Any

PATIENT = {"identifier": {"system": "https://clinic.example/mrn", "value": "MRN-001"},
           "name": {"family": "Testpatient", "given": ["Zulu"]}, "birth_date": "1980-05-17", "sex": "female"}
NPI = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"}


def treatment_plan(**changes: Any) -> dict[str, Any]:
    return with_({
        "external_id": "plan-1", "source": "clinic-a", "patient": PATIENT, "status": "active",
        "indication": {"code": "trd"}, "prior_antidepressant_trials": 3, "medication": "ketamine",
        "route": "intravenous", "dose": {"value": 0.5, "unit": "mg/kg"}, "infusion_minutes": 40,
        "phase": "induction", "sessions_planned": 6, "frequency": {"count": 2, "period": 1, "period_unit": "wk"},
        "period": {"start": "2026-03-02", "end": "2026-03-20"},
    }, **changes)


def esketamine_plan(**changes: Any) -> dict[str, Any]:
    return treatment_plan(**{"medication": "esketamine", "route": "intranasal", "dose": {"value": 56, "unit": "mg"},
                             "infusion_minutes": None, **changes})


def administration(**changes: Any) -> dict[str, Any]:
    return with_({
        "external_id": "adm-1", "source": "clinic-a", "patient": PATIENT, "plan_external_id": "plan-1",
        "session_number": 1, "status": "completed", "medication": "ketamine", "route": "intravenous",
        "dose_mg": 35, "weight_kg": 70, "started_at": "2026-03-02T09:00:00-05:00",
        "ended_at": "2026-03-02T09:40:00-05:00",
    }, **changes)


def esketamine_session(**changes: Any) -> dict[str, Any]:
    return administration(**{
        "external_id": "esk-1", "medication": "esketamine", "route": "intranasal", "dose_mg": 56,
        "weight_kg": None, "ended_at": "2026-03-02T09:10:00-05:00",
        "monitoring_ended_at": "2026-03-02T11:05:00-05:00",
        "vitals": [{"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 128, "diastolic": 82},
                   RECHECK_40_MIN],
        **changes})


#: The esketamine label's reassessment about 40 minutes after dosing (clinical.md §2 Monitoring).
RECHECK_40_MIN = {"at": "2026-03-02T09:40:00-05:00", "phase": "post", "systolic": 134, "diastolic": 84}


def adverse_event(**changes: Any) -> dict[str, Any]:
    return with_({
        "external_id": "ae-1", "source": "clinic-a", "patient": PATIENT, "onset_at": "2026-03-02T09:20:00-05:00",
        "term": "nausea", "serious": False, "severity": "mild", "outcome": "resolved", "causality": "possible",
    }, **changes)


def assessment(**changes: Any) -> dict[str, Any]:
    return with_({"external_id": "asmt-1", "source": "clinic-a", "patient": PATIENT, "instrument": "phq9",
                  "score": 18, "at": "2026-03-01T10:00:00+00:00"}, **changes)


# --- parts of a record: readings, scores, a weekly frequency -----------------------------------------

#: Before dosing and during the session of administration() (which starts at 09:00-05:00).
PRE = "2026-03-02T08:50:00-05:00"
INTRA = "2026-03-02T09:20:00-05:00"


def bp(at: str, phase: str, systolic: int, diastolic: int, **more: int) -> dict[str, Any]:
    return {"at": at, "phase": phase, "systolic": systolic, "diastolic": diastolic, **more}


def reading(at: str, phase: str = "intra", **measures: int) -> dict[str, Any]:
    return {"at": at, "phase": phase, **measures}


def score(instrument: str, value: int, at: str = INTRA, **more: Any) -> dict[str, Any]:
    return {"instrument": instrument, "value": value, "at": at, **more}


def weeks(count: int, period: int = 1) -> dict[str, Any]:
    return {"count": count, "period": period, "period_unit": "wk"}


FACTORIES = {"treatment-plan": treatment_plan, "administration": administration,
             "adverse-event": adverse_event, "assessment": assessment}


def with_(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `record` with `changes`; a change to None removes the field."""
    out = copy.deepcopy(record)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out
