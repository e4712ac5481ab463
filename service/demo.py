"""Deterministic synthetic clinic records (obviously fake patients) for demos and smoke tests."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

Record = dict[str, Any]
Pair = tuple[str, Record]

SOURCE = "demo-clinic"
MRN_SYSTEM = "https://demo.ketamine-fhir.example/mrn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
CLINIC_TZ = timezone(timedelta(hours=-5))  # a fixed offset, so no DST surprises
BASE = datetime(2026, 3, 2, 9, 0, tzinfo=CLINIC_TZ)  # Monday; every date below derives from it

# Synthetic NPIs: Luhn-valid under the NPI "80840" prefix, but starting with 9, so never issued.
PRESCRIBER = {"identifier": {"system": NPI_SYSTEM, "value": "9990000017"}, "name": "Dr. Demo Prescriber"}
NURSE = {"identifier": {"system": NPI_SYSTEM, "value": "9990000025"}, "name": "Demo Nurse Monitor"}
RECORDER = {"identifier": {"system": NPI_SYSTEM, "value": "9990000033"}, "name": "Dr. Demo Reporter"}
SERTRALINE = {"name": "sertraline", "rxnorm": "36437"}
CONTRAINDICATIONS = ("aneurysmal-vascular-disease", "intracerebral-hemorrhage-history", "hypersensitivity")
CTCAE_GRADE = {"mild": 1, "moderate": 2, "severe": 3}
IV_MINUTES = 40
IV_MONITOR_MINUTES = 100  # 40 min infusion + 60 min recovery
ESK_MONITOR_MINUTES = 125  # the esketamine label requires at least 120 min


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _at(record: Record, key: str = "started_at") -> datetime:
    return datetime.fromisoformat(record[key])


def _session_start(first: datetime, number: int) -> datetime:
    """Twice weekly: sessions 1, 3, 5 on the first weekday, 2, 4, 6 three days later."""
    return first + timedelta(days=7 * ((number - 1) // 2) + 3 * ((number - 1) % 2))


def _patient(number: int, given: str, birth_date: str, sex: str) -> Record:
    return {
        "identifier": {"system": MRN_SYSTEM, "value": f"DEMO-{number:04d}"},
        "name": {"family": "Testpatient", "given": [given]},
        "birth_date": birth_date,
        "sex": sex,
    }


def _base(external_id: str, patient: Record) -> Record:
    return {"external_id": external_id, "source": SOURCE, "patient": patient}


def _plan(external_id: str, patient: Record, first: datetime, **fields: Any) -> Record:
    """A twice-weekly plan; `fields` supplies the clinical choices, defaults cover the rest."""
    sessions = fields["sessions_planned"]
    end = first.date() + timedelta(days=7 * ((sessions + 1) // 2) - 1)
    systolic, diastolic = fields.pop("baseline_bp")
    plan = _base(external_id, patient) | {
        "status": "active",
        "phase": "induction",
        "frequency": {"count": 2, "period": 1, "period_unit": "wk"},
        "period": {"start": first.date().isoformat(), "end": end.isoformat()},
        "concurrent_therapy": {"psychotherapy": fields.pop("psychotherapy", None),
                               "antidepressants": fields.pop("antidepressants", [SERTRALINE])},
        "screening": {
            "contraindications": [{"code": code, "present": False} for code in CONTRAINDICATIONS],
            "baseline_bp": {"systolic": systolic, "diastolic": diastolic},
            "pregnant": False if patient["sex"] == "female" else None,
            "interacting_medications": [],
        },
        "prescriber": PRESCRIBER,
    }
    return plan | fields


def _goals(measure: str, baseline: int, *targets: str) -> list[Record]:
    return [{"measure": measure, "target": target, "baseline": baseline} for target in targets]


def _vital(at: datetime, phase: str, bp: tuple[int, int], heart_rate: int) -> Record:
    systolic, diastolic = bp
    return {"at": _iso(at), "phase": phase, "systolic": systolic, "diastolic": diastolic,
            "heart_rate": heart_rate, "spo2": 98 if phase == "pre" else 97, "respiratory_rate": 14}


def _session(plan: Record, number: int, start: datetime, dose_mg: float, *, minutes: int,
             monitor_minutes: int, bp: tuple[tuple[int, int], ...], cadss: int, moaas: int,
             weight_kg: float | None = None, status_reason: str | None = None) -> Record:
    """One session: BP pre-dose, at 40 min and at discharge; CADSS and MOAA/S at 40 min."""
    ended, monitored = start + timedelta(minutes=minutes), start + timedelta(minutes=monitor_minutes)
    peak_at = start + timedelta(minutes=40)
    session = _base(f"{plan['external_id'].replace('plan', 'adm')}-{number:02d}", plan["patient"]) | {
        "plan_external_id": plan["external_id"],
        "session_number": number,
        "status": "stopped" if status_reason else "completed",
        "medication": plan["medication"],
        "route": plan["route"],
        "dose_mg": dose_mg,
        "started_at": _iso(start),
        "ended_at": _iso(ended),
        "lot_number": "DEMO-KET-2601" if plan["medication"] == "ketamine" else "DEMO-ESK-2602",
        "performer": NURSE,
        "vitals": [
            _vital(start - timedelta(minutes=10), "pre", bp[0], 72 + number),
            _vital(peak_at, "intra" if peak_at <= ended else "post", bp[1], 84 + number),
            _vital(monitored - timedelta(minutes=5), "post", bp[2], 74 + number),
        ],
        "scores": [
            {"instrument": "cadss", "value": cadss, "at": _iso(peak_at)},
            {"instrument": "moaas", "value": moaas, "at": _iso(peak_at)},
            {"instrument": "moaas", "value": 5, "at": _iso(monitored - timedelta(minutes=5))},
        ],
        "monitoring_ended_at": _iso(monitored),
        "discharged_with_escort": True,
    }
    if weight_kg is not None:
        session["weight_kg"] = weight_kg
    if status_reason:
        session["status_reason"] = status_reason
    return session


def _iv_session(plan: Record, number: int, start: datetime, weight_kg: float, **kw: Any) -> Record:
    """Racemic ketamine 0.5 mg/kg over 40 min (or fewer `minutes` when stopped early)."""
    minutes = kw.pop("minutes", IV_MINUTES)
    dose = round(plan["dose"]["value"] * weight_kg * minutes / IV_MINUTES, 1)
    return _session(plan, number, start, dose, minutes=minutes, monitor_minutes=IV_MONITOR_MINUTES,
                    weight_kg=weight_kg, **kw)


def _spray_session(plan: Record, number: int, start: datetime, dose_mg: int, **kw: Any) -> Record:
    """Esketamine: one 28 mg device every 5 min, then at least 2 h of monitoring."""
    devices = dose_mg // 28
    return _session(plan, number, start, dose_mg, minutes=5 * (devices - 1),
                    monitor_minutes=ESK_MONITOR_MINUTES, **kw)


def _adverse_event(adm: Record, seq: int, onset_minutes: int, term: str, severity: str,
                   action: str, description: str) -> Record:
    external_id = f"{adm['external_id'].replace('adm', 'ae')}-{seq:02d}"
    return _base(external_id, adm["patient"]) | {
        "administration_external_id": adm["external_id"],
        "onset_at": _iso(_at(adm) + timedelta(minutes=onset_minutes)),
        "term": term,
        "description": description,
        "serious": False,
        "seriousness_criteria": [],
        "severity": severity,
        "ctcae_grade": CTCAE_GRADE[severity],
        "outcome": "resolved",
        "action_taken": action,
        "causality": "probable",
        "recorded_by": RECORDER,
    }


def _assessments(plan: Record, instrument: str, when: list[datetime], scores: tuple[int, ...]) -> list[Pair]:
    prefix = plan["external_id"].replace("plan", "asmt")
    return [("assessment", _base(f"{prefix}-{instrument}-{i:02d}", plan["patient"]) | {
        "plan_external_id": plan["external_id"], "instrument": instrument, "score": score, "at": _iso(at),
    }) for i, (at, score) in enumerate(zip(when, scores, strict=True), start=1)]


def _iv_trd_induction() -> list[Pair]:
    """DEMO-0001: IV racemic ketamine, six sessions over three weeks, MADRS response."""
    first, weight = BASE, 70.0
    plan = _plan("demo-plan-001", _patient(1, "Alpha", "1984-05-14", "female"), first,
                 indication={"code": "trd", "icd10": "F33.1"}, prior_antidepressant_trials=3,
                 medication="ketamine", route="intravenous", dose={"value": 0.5, "unit": "mg/kg"},
                 infusion_minutes=IV_MINUTES, sessions_planned=6, baseline_bp=(122, 78),
                 goals=_goals("madrs", 32, "response", "remission"), psychotherapy="CBT")
    sessions = [_iv_session(plan, n, _session_start(first, n), weight,
                            bp=((124 - n, 78), (140 - 2 * n, 88 - n), (122, 76)),
                            cadss=max(20 - 3 * n, 4), moaas=4 if n <= 2 else 5) for n in range(1, 7)]
    when = [first - timedelta(hours=1), _at(sessions[2]) - timedelta(hours=1),
            _at(sessions[-1]) + timedelta(days=1)]
    return [("treatment-plan", plan), *(("administration", s) for s in sessions),
            *_assessments(plan, "madrs", when, (32, 21, 13))]


def _esketamine_trd() -> list[Pair]:
    """DEMO-0002: esketamine TRD induction, 56 mg then 84 mg; one transient BP rise."""
    first = BASE + timedelta(days=1, hours=1)  # Tuesdays and Fridays, 10:00
    plan = _plan("demo-plan-002", _patient(2, "Bravo", "1971-09-03", "male"), first,
                 indication={"code": "trd", "icd10": "F33.1"}, prior_antidepressant_trials=2,
                 medication="esketamine", route="intranasal", dose={"value": 56, "unit": "mg"},
                 sessions_planned=8, baseline_bp=(130, 82), goals=_goals("madrs", 30, "response"))
    doses, pre_bp = (56, 84, 84, 84), ((132, 84), (136, 86), (128, 82), (130, 80))
    peak_bp = ((144, 88), (168, 98), (142, 86), (140, 86))
    sessions = [_spray_session(plan, n, _session_start(first, n), doses[n - 1],
                               bp=(pre_bp[n - 1], peak_bp[n - 1], (134, 84)),
                               cadss=12 - 2 * n, moaas=4) for n in range(1, 5)]
    bp_rise = _adverse_event(sessions[1], 1, 35, "hypertension", "mild", "none",
                             "Transient BP rise to 168/98 at 40 min; back to 134/84 before discharge.")
    when = [first - timedelta(hours=1), _session_start(first, 5) - timedelta(hours=1)]
    return [("treatment-plan", plan), *(("administration", s) for s in sessions),
            ("adverse-event", bp_rise), *_assessments(plan, "madrs", when, (30, 22))]


def _esketamine_suicidality() -> list[Pair]:
    """DEMO-0003: MDSI schedule, esketamine 84 mg twice weekly with an oral antidepressant."""
    first = BASE + timedelta(hours=4)  # Mondays and Thursdays, 13:00
    plan = _plan("demo-plan-003", _patient(3, "Charlie", "1990-11-21", "female"), first,
                 indication={"code": "mdd-acute-suicidality", "icd10": "F33.1"},
                 prior_antidepressant_trials=1, medication="esketamine", route="intranasal",
                 dose={"value": 84, "unit": "mg"}, sessions_planned=8, baseline_bp=(118, 74),
                 goals=_goals("madrs", 38, "response") + _goals("cssrs", 4, "response"),
                 psychotherapy="CBT")
    sessions = [_spray_session(plan, n, _session_start(first, n), 84,
                               bp=((120, 76), (134, 84), (122, 78)), cadss=14 - 2 * n, moaas=4)
                for n in range(1, 5)]
    nausea = _adverse_event(sessions[0], 1, 20, "nausea", "mild", "treated",
                            "Nausea 20 min after the third device; ondansetron given, settled by 60 min.")
    when = [first - timedelta(hours=1), _at(sessions[1]) + timedelta(hours=3),
            _at(sessions[3]) + timedelta(hours=3)]
    return [("treatment-plan", plan), *(("administration", s) for s in sessions),
            ("adverse-event", nausea), *_assessments(plan, "cssrs", when, (4, 2, 1)),
            *_assessments(plan, "madrs", when, (38, 27, 19))]


def _iv_with_anxiety() -> list[Pair]:
    """DEMO-0004: IV ketamine, third infusion stopped early for dissociation; PHQ-9 and GAD-7."""
    first, weight = BASE + timedelta(days=8, hours=-0.5), 88.0  # Tuesdays and Fridays, 08:30
    plan = _plan("demo-plan-004", _patient(4, "Delta", "1979-02-08", "male"), first,
                 indication={"code": "trd", "icd10": "F33.1"}, prior_antidepressant_trials=2,
                 medication="ketamine", route="intravenous", dose={"value": 0.5, "unit": "mg/kg"},
                 infusion_minutes=IV_MINUTES, sessions_planned=6, baseline_bp=(128, 82),
                 goals=_goals("phq9", 19, "response"), antidepressants=[{"name": "escitalopram"}])
    common: dict[str, Any] = {"bp": ((128, 82), (142, 90), (126, 80)), "moaas": 4}
    sessions = [_iv_session(plan, 1, first, weight, cadss=16, **common),
                _iv_session(plan, 2, _session_start(first, 2), weight, cadss=14, **common),
                _iv_session(plan, 3, _session_start(first, 3), weight, cadss=31, minutes=25,
                            status_reason="Stopped at 25 min at patient request (distressing dissociation).",
                            **common)]
    dissociation = _adverse_event(sessions[2], 1, 20, "dissociation", "moderate", "infusion-stopped",
                                  "Distressing depersonalisation; infusion stopped, resolved within 45 min.")
    when = [first - timedelta(hours=1), _at(sessions[2]) + timedelta(days=3)]
    return [("treatment-plan", plan), *(("administration", s) for s in sessions),
            ("adverse-event", dissociation), *_assessments(plan, "phq9", when, (19, 12)),
            *_assessments(plan, "gad7", when, (15, 10))]


def _iv_qids() -> list[Pair]:
    """DEMO-0005: IV ketamine twice weekly for three weeks (ELEKT-D style), two sessions so far."""
    first, weight = BASE + timedelta(days=14, hours=2), 82.4  # Mondays and Thursdays, 11:00
    plan = _plan("demo-plan-005", _patient(5, "Echo", "1962-07-30", "female"), first,
                 indication={"code": "trd", "icd10": "F33.1"}, prior_antidepressant_trials=4,
                 medication="ketamine", route="intravenous", dose={"value": 0.5, "unit": "mg/kg"},
                 infusion_minutes=IV_MINUTES, sessions_planned=6, baseline_bp=(134, 84),
                 goals=_goals("qids-sr16", 18, "response"))
    sessions = [_iv_session(plan, n, _session_start(first, n), weight,
                            bp=((134, 84), (150, 92), (132, 82)), cadss=10, moaas=5) for n in (1, 2)]
    when = [first - timedelta(hours=1), _at(sessions[1]) + timedelta(days=1)]
    return [("treatment-plan", plan), *(("administration", s) for s in sessions),
            *_assessments(plan, "qids-sr16", when, (18, 13))]


def demo_records() -> list[tuple[str, dict[str, Any]]]:
    """All demo records as (kind, payload), plans before sessions before adverse events."""
    builders = (_iv_trd_induction, _esketamine_trd, _esketamine_suicidality, _iv_with_anxiety, _iv_qids)
    # Deep copy: helpers share the patient and person dicts, callers may mutate a payload.
    return [(kind, copy.deepcopy(payload)) for build in builders for kind, payload in build()]
